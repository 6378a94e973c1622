"""The rest of the WebChatService surface: notices, user data, filtered messages, prefilters and
preprocessors, polling control, stats and history, session checks, run-time configuration and
the connection options — each against a real server, as a widget integrator would use them."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace

import pytest
from aiohttp import web

from tests.conftest import SERVICE, accepted_chat, caller_data, free_port, start_server
from tests.test_end_to_end import transport_options
from webchat.bus import CommandError
from webchat.service.plugin import COMMANDS


def agent_saw(agent, chat_id: str, type_: str) -> list[dict]:
    return [m for m in agent.messages(chat_id) if m["type"] == type_]


@pytest.mark.conformance("command:sendCustomNotice", "command:updateUserData")
@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_custom_notice_and_user_data_reach_the_agent(server, customer_factory,
                                                           agent_factory, transport):
    customer = await customer_factory(server.data_url, **transport_options(server, transport))
    agent, chat_id = await accepted_chat(server, customer, agent_factory)
    await customer.command("sendCustomNotice", {"message": "customer opened the invoice page"})
    await customer.command("updateUserData", {"orderId": "A-1009", "vip": True, "items": 3})
    await agent.wait_for(lambda ev: any(e["type"] == "userData" for e in ev))
    assert caller_data(next(e for e in agent.events if e["type"] == "userData")["userData"]) \
        == {"orderId": "A-1009", "vip": "true", "items": "3"}
    await agent.wait_for(lambda _: agent_saw(agent, chat_id, "CustomNotice"))
    assert agent_saw(agent, chat_id, "CustomNotice")[0]["text"] == \
        "customer opened the invoice page"
    with pytest.raises(CommandError, match="malformed JSON provided in userData"):
        await customer.command("updateUserData", {"nested": {"a": 1}})
    with pytest.raises(CommandError, match="no userData provided"):
        await customer.command("updateUserData", {})


@pytest.mark.conformance("command:sendFilteredMessage", "command:addPrefilter",
                         "command:registerPreProcessor")
async def test_filters_hide_and_preprocessors_transform_what_the_customer_is_shown(
        server, customer_factory, agent_factory):
    customer = await customer_factory(server.data_url)
    agent, chat_id = await accepted_chat(server, customer, agent_factory)
    await customer.command("registerPreProcessor", {
        "preprocessor": lambda m: {**m, "text": m["text"].upper()} if m.get("text") else m})
    assert (await customer.command("addPrefilter", {"filters": [r"^#internal"]})) == {
        "filters": 1}
    await customer.command("sendFilteredMessage", {"message": "PIN 4711",
                                                   "regex": r"^PIN \d+$"})
    await agent.client.send(chat_id, "#internal note for the bot")
    await agent.client.send(chat_id, "thanks, verified")
    await agent.wait_message(chat_id, lambda m: m.get("text") == "PIN 4711")  # the agent gets it
    await customer.wait_for(lambda c: ("Agent", "THANKS, VERIFIED") in c.texts())
    shown = [t for _, t in customer.texts()]
    assert "PIN 4711" not in shown and not any("internal" in t.lower() for t in shown)
    originals = [m.get("text") for e in customer.events
                 if e.event == "WebChatService.messageReceived"
                 for m in e.data["originalMessages"]]
    assert {"PIN 4711", "#internal note for the bot", "thanks, verified"} <= set(originals)
    for bad, reason in [({"message": "x", "regex": "("}, "invalid regular expression"),
                        ({"message": "x"}, "option 'regex' is required"),
                        ({"message": "", "regex": "x"}, "No message text provided")]:
        with pytest.raises(CommandError, match=re.escape(reason)):
            await customer.command("sendFilteredMessage", bad)
    with pytest.raises(CommandError, match="must be a function"):
        await customer.command("registerPreProcessor", {"preprocessor": "upper"})
    with pytest.raises(CommandError, match="must be a regular expression"):
        await customer.command("addPrefilter", {"filters": [3]})


@pytest.mark.conformance("command:poll", "command:startPoll", "command:stopPoll",
                         "option:pollInterval")
async def test_polling_control(server, customer_factory, agent_factory):
    customer = await customer_factory(server.data_url)  # polls every 50 ms
    agent, chat_id = await accepted_chat(server, customer, agent_factory)
    assert (await customer.command("stopPoll")) == {"polling": False}
    await customer.command("configure", {"pollInterval": 60_000})
    assert (await customer.command("startPoll")) == {"polling": True}
    assert customer.names().count("pollingStarted") == 2
    await agent.client.send(chat_id, "are you there?")
    await asyncio.sleep(0.3)
    assert ("Agent", "are you there?") not in customer.texts()  # next poll is a minute away
    reply = await customer.command("poll")
    assert any(m.get("text") == "are you there?" for m in reply["messages"])
    assert ("Agent", "are you there?") in customer.texts()


async def test_polling_commands_are_refused_over_cometd(server, customer_factory):
    customer = await customer_factory(server.data_url, **transport_options(server, "websocket"))
    await customer.command("startChat", {"nickname": "Ada"})
    with pytest.raises(CommandError, match="Polling is not supported when using CometD"):
        await customer.command("startPoll")
    assert "messages" in await customer.command("fetchHistory")


@pytest.mark.conformance("command:getStats", "command:fetchHistory", "command:verifySession")
async def test_stats_history_and_session_checks(server, customer_factory, agent_factory):
    customer = await customer_factory(server.data_url)
    assert (await customer.command("verifySession")) == {"sessionActive": False,
                                                         "sessionData": None}
    with pytest.raises(CommandError, match="There is no active chat session"):
        await customer.command("getStats")
    agent, chat_id = await accepted_chat(server, customer, agent_factory)
    await customer.command("sendMessage", {"message": "one"})
    await customer.command("sendMessage", {"message": "two"})
    await agent.client.send(chat_id, "three")
    await customer.wait_for(lambda c: ("Agent", "three") in c.texts())
    stats = await customer.command("getStats")
    assert (stats["messagesSent"], stats["messagesReceived"], stats["agentsJoined"]) == (2, 1, 1)
    assert stats["sessionID"] == chat_id and stats["endTime"] is None
    verified = await customer.command("verifySession")
    assert verified["sessionActive"] and verified["sessionData"]["sessionID"] == chat_id
    history = await customer.command("fetchHistory")
    assert [m["index"] for m in history["messages"]] == list(
        range(1, server.engine.chats[chat_id].next_index))
    before = customer.indexes()
    assert before == sorted(set(before))  # fetching history showed nothing twice
    await agent.client.end(chat_id)
    await customer.wait_event("ended")
    assert (await customer.command("getStats"))["endTime"] is not None
    assert (await customer.command("verifySession"))["sessionActive"] is False


@pytest.mark.conformance("command:configure", "option:cometD.logLevel")
async def test_configure_at_run_time(server, customer_factory):
    customer = await customer_factory(server.data_url)
    await customer.command("configure", {"typingStopDelay": 50, "userData": {"page": "faq"}})
    started = await customer.command("startChat", {"nickname": "Ada"})
    assert caller_data(server.engine.chats[started["chatId"]].user_data) == {"page": "faq"}
    with pytest.raises(CommandError, match="cannot change during an active chat"):
        await customer.command("configure", transport_options(server, "websocket"))
    with pytest.raises(CommandError, match="ajaxTimeout must be positive"):
        await customer.command("configure", {"ajaxTimeout": 0})
    await customer.command("endChat")
    await customer.wait_event("ended")
    comet = transport_options(server, "long-polling")
    comet["cometD"]["logLevel"] = "debug"
    await customer.command("configure", comet)
    assert logging.getLogger("webchat.transport").level == logging.DEBUG
    await customer.command("startChat", {"nickname": "Ada"})
    assert customer.service.transport.connection_type == "long-polling"


@pytest.mark.conformance("option:apikey", "option:endpoint")
async def test_apikey_and_endpoint(server_config, customer_factory):
    server = await start_server(replace(server_config, api_keys=("k-123",)))
    try:
        base = f"{server.url}/genesys/2/chat"
        customer = await customer_factory(base, endpoint=SERVICE, apikey="k-123")
        assert (await customer.command("startChat", {"nickname": "Ada"}))["statusCode"] == 0
        wrong = await customer_factory(base, endpoint=SERVICE, apikey="nope")
        with pytest.raises(CommandError, match="1009"):
            await wrong.command("startChat", {"nickname": "Ada"})
    finally:
        await server.runner.cleanup()


@pytest.mark.conformance("option:ajaxTimeout")
async def test_ajax_timeout_rejects_and_reports_a_silent_server(customer_factory):
    release = asyncio.Event()

    async def never(_: web.Request) -> web.Response:
        await release.wait()  # answers only after the test, long past ajaxTimeout
        return web.Response()

    app = web.Application()
    app.router.add_post("/{tail:.*}", never)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        customer = await customer_factory(f"http://127.0.0.1:{port}/genesys/2/chat/x",
                                          ajaxTimeout=200)
        with pytest.raises(CommandError, match=r"no reply within 0\.2 s"):
            await customer.command("startChat", {"nickname": "Ada"})
        assert customer.names()[-1] == "error"
    finally:
        release.set()
        await runner.cleanup()


# Every command, in an active chat, with arguments a careless integrator might pass.
WRONG_TYPE = {
    "configure": ({"pollInterval": "fast"}, "pollInterval must be int"),
    "startChat": ({"nickname": 7}, "option 'nickname' must be str"),
    "sendMessage": ({"message": ["hi"]}, "option 'message' must be str"),
    "sendCustomNotice": ({"message": 1.5}, "option 'message' must be str"),
    "sendTyping": ({"message": True}, "option 'message' must be str"),
    "sendFilteredMessage": ({"message": "x", "regex": 5}, "option 'regex' must be"),
    "addPrefilter": ({"filters": 5}, "option 'filters' must be"),
    "updateUserData": ({"a": {"b": 1}}, "malformed JSON provided in userData property"),
    "sendFile": ({"data": "not bytes", "fileName": "a.txt"}, "option 'data' must be bytes"),
    "downloadFile": ({"fileId": 12}, "option 'fileId' must be str"),
    "deleteFile": ({"fileId": None}, "option 'fileId' is required"),
    "registerPreProcessor": ({"preprocessor": 3}, "must be a function"),
}
MISSING = {
    "sendMessage": "No message text provided",
    "sendFilteredMessage": "option 'regex' is required",
    "addPrefilter": "option 'filters' is required",
    "updateUserData": "no userData provided",
    "sendFile": "give either 'file'",
    "downloadFile": "option 'fileId' is required",
    "deleteFile": "option 'fileId' is required",
    "registerPreProcessor": "option 'preprocessor' is required",
}


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"updateUserData", "configure"}))
async def test_every_command_refuses_unknown_options(server, customer_factory, command):
    customer = await customer_factory(server.data_url)
    if command not in ("startChat", "restore", "restoreChat"):
        await customer.command("startChat", {"nickname": "Ada"})
    with pytest.raises(CommandError, match="unknown option 'bogus'"):
        await customer.command(command, {"bogus": 1})
    with pytest.raises(CommandError, match="options must be an object"):
        await customer.bus.command(f"WebChatService.{command}", ["bogus"])  # type: ignore[arg-type]


@pytest.mark.parametrize("command", sorted(WRONG_TYPE))
async def test_wrong_typed_arguments_are_refused_with_the_option_named(server, customer_factory,
                                                                      command):
    customer = await customer_factory(server.data_url)
    if command != "startChat":
        await customer.command("startChat", {"nickname": "Ada"})
    options, reason = WRONG_TYPE[command]
    before = len(next(iter(server.engine.chats.values())).events) if server.engine.chats else 0
    with pytest.raises(CommandError, match=re.escape(reason)):
        await customer.command(command, options)
    after = len(next(iter(server.engine.chats.values())).events) if server.engine.chats else 0
    assert after == before  # nothing reached the server


@pytest.mark.parametrize("command", sorted(MISSING))
async def test_missing_arguments_are_refused(server, customer_factory, command):
    customer = await customer_factory(server.data_url)
    await customer.command("startChat", {"nickname": "Ada"})
    with pytest.raises(CommandError, match=re.escape(MISSING[command])):
        await customer.command(command, {})


async def test_configure_refuses_bad_values_and_keeps_the_old_configuration(
        server, customer_factory):
    customer = await customer_factory(server.data_url)
    for options, reason in [({"pollInterval": "fast"}, "pollInterval must be int"),
                            ({"cometD": {"enabled": True}}, "needs cometD.cometURL"),
                            ({"async": {"newMessageRestoreState": "sideways"}},
                             "newMessageRestoreState must be one of"),
                            ({"restoreTimeout": -1}, "restoreTimeout must be positive")]:
        with pytest.raises(CommandError, match=re.escape(reason)):
            await customer.command("configure", options)
    assert customer.service.config.pollInterval == 50
