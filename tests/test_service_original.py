"""What callers of the original Genesys Widgets 8.5 WebChatService pass, and what it sends:
``sendMessage`` with ``type`` (sent as ``messageType``, "text" by default), ``sendTyping``
with ``isTyping``, ``startChat`` with ``userData`` as a JSON string, and the page context
(``_genesys_*``) it adds to every chat's userData — each checked where it lands, on the server."""

from __future__ import annotations

import platform
import re
from typing import Any

import pytest

import webchat
from tests.conftest import accepted_chat, caller_data
from tests.test_end_to_end import transport_options
from webchat.bus import CommandError


def stored(server: Any, chat_id: str, type_: str) -> list[Any]:
    """The chat's events of one type, as the server stored them."""
    return [m for m in server.engine.chats[chat_id].events if m.type == type_]


@pytest.mark.conformance("command:sendMessage")
@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_send_message_takes_the_originals_type_and_sends_text_by_default(
        server, customer_factory, transport):
    customer = await customer_factory(server.data_url, **transport_options(server, transport))
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    await customer.command("sendMessage", {"message": "plain"})
    await customer.command("sendMessage", {"message": "as the original", "type": "custom"})
    await customer.command("sendMessage", {"message": "ours", "messageType": "ours"})
    await customer.command("sendMessage", {"message": "both", "type": "x", "messageType": "x"})
    await customer.command("sendFilteredMessage", {"message": "PIN 1", "regex": "^PIN"})
    with pytest.raises(CommandError, match=re.escape(
            "options 'messageType' and 'type' differ; give one of them")):
        await customer.command("sendMessage", {"message": "?", "type": "a", "messageType": "b"})
    with pytest.raises(CommandError, match="option 'type' must be str"):
        await customer.command("sendMessage", {"message": "?", "type": 3})
    assert [(m.text, m.messageType) for m in stored(server, chat_id, "Message")] == [
        ("plain", "text"), ("as the original", "custom"), ("ours", "ours"), ("both", "x"),
        ("PIN 1", "text")]


@pytest.mark.conformance("command:sendTyping", "event:clientTypingStarted",
                         "event:clientTypingStopped")
@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_send_typing_is_typing_false_stops_at_once(server, customer_factory, transport):
    customer = await customer_factory(server.data_url, typingStopDelay=60_000,
                                      **transport_options(server, transport))
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    assert await customer.command("sendTyping", {"isTyping": False}) is None  # not typing
    await customer.command("sendTyping", {"isTyping": True, "message": "he"})
    await customer.command("sendTyping", {"isTyping": False})  # a minute before the idle stop
    await customer.command("sendTyping", {"isTyping": "yes", "message": "hello"})  # true
    await customer.command("sendTyping", {"isTyping": False, "message": "ignored"})
    await customer.command("sendTyping", {"message": "again"})  # absent: true
    typing = [(m.type, m.text) for m in server.engine.chats[chat_id].events
              if m.type.startswith("Typing")]
    assert typing == [("TypingStarted", "he"), ("TypingStopped", None),
                      ("TypingStarted", "hello"), ("TypingStopped", None),
                      ("TypingStarted", "again")]
    names = [n for n in customer.names() if n.startswith("clientTyping")]
    assert names == ["clientTypingStarted", "clientTypingStopped"] * 2 + ["clientTypingStarted"]


@pytest.mark.conformance("command:startChat", "option:userData")
async def test_start_chat_takes_user_data_as_a_json_string(server, customer_factory):
    customer = await customer_factory(server.data_url, userData={"source": "config"})
    for bad in ("{orderId: 1}", "{\"a\": NaN}", "{\"a\": {\"nested\": 1}}"):
        with pytest.raises(CommandError) as info:
            await customer.command("startChat", {"nickname": "Ada", "userData": bad})
        assert info.value.reason == "malformed JSON provided in userData property"
    with pytest.raises(CommandError, match="option 'userData' must be dict or str"):
        await customer.command("startChat", {"nickname": "Ada", "userData": 5})
    assert server.engine.chats == {}  # nothing reached the server
    seen = []
    for given in ('{"orderId": "A-1009", "vip": true, "items": 3}', "[1]", "5", "  ", ""):
        chat_id = (await customer.command("startChat", {"nickname": "Ada",
                                                        "userData": given}))["chatId"]
        seen.append(caller_data(server.engine.chats[chat_id].user_data))
        await customer.command("endChat")
        await customer.wait_event("ended", count=len(seen))
    assert seen == [{"source": "config", "orderId": "A-1009", "vip": "true", "items": "3"},
                    *[{"source": "config"}] * 4]  # a non-object or blank string: none of its own


@pytest.mark.conformance("command:startChat", "option:userData")
async def test_start_chat_sends_the_page_context_under_the_callers_user_data(
        server, customer_factory, agent_factory):
    plain = await customer_factory(server.data_url)
    agent, chat_id = await accepted_chat(server, plain, agent_factory)
    context = {"_genesys_source": "api", "_genesys_referrer": "", "_genesys_url": "",
               "_genesys_pageTitle": "", "_genesys_OS": platform.system(),
               "_genesys_browser": f"webchat-python/{webchat.__version__}"}
    assert server.engine.chats[chat_id].user_data == context
    assert (await agent.client.chat(chat_id))["userData"] == context  # agents see it
    # Configured userData wins over the context, the caller's over both.
    page = await customer_factory(server.data_url, userData={
        "_genesys_url": "https://shop.example/cart", "_genesys_source": "kiosk"})
    chat_id = (await page.command("startChat", {"nickname": "Bo", "userData": {
        "_genesys_source": "till", "orderId": "A-1"}}))["chatId"]
    assert server.engine.chats[chat_id].user_data == {
        **context, "_genesys_url": "https://shop.example/cart", "_genesys_source": "till",
        "orderId": "A-1"}
