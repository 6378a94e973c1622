"""WebChatService commands: the original's rejection reasons, polling, typing, config."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import caller_data
from webchat.bus import Bus, CommandError
from webchat.protocol.gms.models import ChatResponse
from webchat.protocol.gms.session import HttpRequest, SessionState
from webchat.service import ConfigError, WebChatConfig, WebChatService


@pytest.mark.conformance("command:startChat", "command:sendMessage", "command:endChat",
                         "command:getSessionData")
async def test_rejections_use_the_original_reasons(server, customer_factory):
    c = await customer_factory(server.data_url)
    for name, options in [("sendMessage", {"message": "hi"}), ("endChat", None),
                          ("sendTyping", None), ("getSessionData", None)]:
        with pytest.raises(CommandError, match="There is no active chat session"):
            await c.command(name, options)
    await c.command("startChat", {"nickname": "Ada"})
    with pytest.raises(CommandError, match="There is already an active chat session"):
        await c.command("startChat", {"nickname": "Ada"})
    with pytest.raises(CommandError, match="No message text provided"):
        await c.command("sendMessage", {"message": ""})
    with pytest.raises(CommandError, match="No message text provided"):
        await c.command("sendMessage", {})


async def test_bad_arguments_are_rejected_before_anything_is_sent(server, customer_factory):
    c = await customer_factory(server.data_url)
    with pytest.raises(CommandError, match="malformed JSON provided in userData property"):
        await c.command("startChat", {"nickname": "Ada", "userData": {"a": {"nested": 1}}})
    with pytest.raises(CommandError, match="unknown option 'nick'"):
        await c.command("startChat", {"nick": "Ada"})
    with pytest.raises(CommandError, match="malformed JSON provided in userData property"):
        await c.command("startChat", {"nickname": "Ada", "userData": "x=1"})
    with pytest.raises(CommandError, match="unknown option 'extra'"):
        await c.command("getTranscript", {"extra": 1})
    assert server.engine.chats == {}
    await c.command("startChat", {"nickname": "Ada"})  # still startable
    with pytest.raises(CommandError, match="option 'message' must be str"):
        await c.command("sendMessage", {"message": 42})


@pytest.mark.conformance("event:error")
async def test_server_rejection_reaches_the_caller_and_error_event(server, customer_factory):
    c = await customer_factory(server.data_url)
    with pytest.raises(CommandError, match="161") as info:
        await c.command("startChat", {"subject": "no name"})
    assert info.value.data["errors"][0]["code"] == 161
    assert "error" in c.names()
    await c.command("startChat", {"nickname": "Ada"})
    with pytest.raises(CommandError, match="204"):
        await c.command("sendMessage", {"message": "x" * 5000})


@pytest.mark.conformance("option:userData", "command:getSessionData")
async def test_session_data_and_config_user_data(server, customer_factory):
    c = await customer_factory(server.data_url, userData={"source": "web", "page": 3})
    started = await c.command("startChat", {"nickname": "Ada", "userData": {"page": "4"}})
    data = await c.command("getSessionData")
    assert data["sessionID"] == started["chatId"]
    assert (data["secureKey"], data["userId"], data["alias"]) == (
        started["secureKey"], started["userId"], started["alias"])
    assert caller_data(server.engine.chats[started["chatId"]].user_data) == {
        "source": "web", "page": "4"}


@pytest.mark.conformance("option:typingStopDelay", "event:clientTypingStarted",
                         "event:clientTypingStopped")
async def test_typing_stops_by_itself_after_the_idle_delay(server, customer_factory):
    c = await customer_factory(server.data_url, typingStopDelay=100)
    started = await c.command("startChat", {"nickname": "Ada"})
    await c.command("sendTyping", {"message": "he"})
    await c.command("sendTyping", {"message": "hel"})  # still typing: not sent again
    await c.wait_event("clientTypingStopped")
    types = [m.type for m in server.engine.chats[started["chatId"]].events]
    assert types.count("TypingStarted") == 1
    assert types[-1] == "TypingStopped"
    assert c.names().count("clientTypingStarted") == 1


@pytest.mark.conformance("option:pollExceptionLimit", "command:resetPollExceptions",
                         "event:chatServerWentOffline", "event:chatServerBackOnline",
                         "event:pollingStarted", "event:pollingStopped")
async def test_poll_exception_limit_goes_offline_and_reset_comes_back(server, customer_factory):
    c = await customer_factory(server.data_url, pollExceptionLimit=2)
    await c.command("startChat", {"nickname": "Ada"})
    real_url = c.service.transport.data_url
    c.service.transport.data_url = "http://127.0.0.1:9/nowhere"  # nothing listens on port 9
    offline = await c.wait_event("chatServerWentOffline")
    assert offline.data == {"pollExceptions": 2}
    await c.wait_event("pollingStopped")
    assert sum(1 for e in c.events if e.event == "WebChatService.error") == 2
    c.service.transport.data_url = real_url
    await c.command("resetPollExceptions")
    await c.wait_event("pollingStarted", count=2)
    await c.wait_event("chatServerBackOnline")
    assert c.service.poll_exceptions == 0
    assert c.names().count("chatServerWentOffline") == 1


async def test_end_chat_by_customer(server, customer_factory):
    c = await customer_factory(server.data_url)
    started = await c.command("startChat", {"nickname": "Ada"})
    await c.command("endChat")
    await c.wait_event("ended")
    assert "clientDisconnected" in c.names()
    assert server.engine.chats[started["chatId"]].ended
    with pytest.raises(CommandError, match="There is no active chat session"):
        await c.command("sendMessage", {"message": "late"})
    # A new chat can be started after the old one ended.
    again = await c.command("startChat", {"nickname": "Ada"})
    assert again["chatId"] != started["chatId"]


@pytest.mark.parametrize(("options", "message"), [
    ({}, "dataURL is required"),
    ({"dataURL": 5}, "dataURL must be str"),
    ({"dataURL": "http://x", "pollExceptionLimit": True}, "must be a number"),
    ({"dataURL": "http://x", "ajaxTimeout": 0}, "ajaxTimeout must be positive"),
    ({"dataURL": "http://x", "userData": {"a": [1]}}, r"userData\[a\]"),
    ({"dataURL": "http://x", "cometD": {"enabled": True, "bogus": 1}}, "unknown option"),
])
def test_config_errors_name_the_option(options, message):
    with pytest.raises(ConfigError, match=message):
        WebChatConfig.from_dict(options)


@pytest.mark.conformance("option:enableCustomHeader")
def test_config_keeps_widget_ui_options_and_custom_headers():
    config = WebChatConfig.from_dict({"dataURL": "http://x", "emojis": True,
                                      "enableCustomHeader": True},
                                     main={"header": {"X-Tenant": "acme"}})
    assert config.extra == {"emojis": True}
    service = WebChatService(Bus(), config)
    assert service.transport.headers["X-Tenant"] == "acme"


async def test_a_start_cancelled_while_waiting_can_be_made_again() -> None:
    """A startChat whose caller gave up (its task cancelled while the request was out) leaves
    no chat half-started: the next startChat is not refused as "already active"."""
    service = WebChatService(Bus(), WebChatConfig.from_dict({"dataURL": "http://x"}))
    never: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()

    async def hangs(request: HttpRequest) -> ChatResponse:
        return await never

    service.carry = hangs  # type: ignore[method-assign]
    starting = asyncio.ensure_future(service.start_chat({"nickname": "Ada"}))
    await asyncio.sleep(0)
    assert service.session.state is SessionState.STARTING
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert service.session.state is SessionState.IDLE
