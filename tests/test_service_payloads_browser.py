"""The browser WebChatService's events and command results in the original's shapes, in real
headless Chromium: the events it declares with registerEvents (the same list as the Python
service's), an agent who sends or leaves while typing has stopped typing, and transcript events
carrying the original's from.id / from.name / timestamp / restoring beside the server's own
fields. The Python service proves the same in tests/test_service_payloads.py."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.test_browser import (
    TRANSPORTS,
    accepted_on_page,
    browser,
    grace,
    open_page,
    pytestmark,
    service_ready,
    widget,
)
from tests.test_service_browser import RECORD, heard, names, record_events, until_heard
from tests.test_service_payloads import UNDECLARED, is_grace
from webchat.service.core import EVENTS

__all__ = ["browser", "pytestmark"]  # the fixture and the Chromium skip, from test_browser


def data_of(events: list[dict[str, Any]], name: str) -> list[Any]:
    return [e["data"] for e in events if e["name"] == name]


@pytest.mark.conformance("CXBus.api:registerEvents")
async def test_the_browser_service_declares_every_event_it_publishes(server, browser,
                                                                     agent_factory):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport=rest")
    warnings: list[str] = []
    page.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)
    await service_ready(page)
    registry = await page.evaluate("() => window.CXBus.registry().WebChatService")
    assert registry["events"] == list(EVENTS)  # the same list as the Python service's

    await page.evaluate("() => window.CXBus.configure({debug: true})")
    await record_events(page)
    chat_id = await accepted_on_page(page, agent)
    await agent.client.typing(chat_id, True)
    await agent.client.send(chat_id, "Hello Ada")
    await agent.client.end(chat_id)
    await until_heard(page, "ended")
    assert {"agentConnected", "agentTypingStarted", "messageReceived",
            "agentDisconnected"} <= set(await names(page))
    assert not [w for w in warnings if UNDECLARED in w]
    async with page.expect_console_message(lambda m: UNDECLARED in m.text) as warned:
        await page.evaluate(
            "() => window.CXBus.plugins.get('WebChatService').publish('agentWentForCoffee')")
    assert (await warned.value).text == (
        "CXBus: published WebChatService.agentWentForCoffee, which WebChatService has not "
        "registered (registerEvents)")


@pytest.mark.conformance("event:agentTypingStopped", "event:agentTypingStarted")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_typing_line_goes_when_the_agent_leaves_and_a_message_ends_typing(server, browser,
                                                                   agent_factory, transport):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport={transport}")
    await record_events(page)
    chat_id = await accepted_on_page(page, agent)
    typing_line = widget(page).locator(".typing")

    await agent.client.typing(chat_id, True)
    await expect(typing_line).to_contain_text("Grace")
    await agent.client.send(chat_id, "Hello Ada")  # no TypingStopped: the message ends it
    await expect(widget(page).locator(".log")).to_contain_text("Hello Ada")
    await expect(typing_line).to_have_text("")
    events = await heard(page)
    started, stopped = data_of(events, "agentTypingStarted")[0], \
        data_of(events, "agentTypingStopped")[0]
    # The original's data is the message itself (its widget reads data.from.id / .name).
    assert is_grace(started["from"]) and started["isTyping"] is True
    assert is_grace(stopped["from"]) and stopped["isTyping"] is False
    assert (stopped["type"], stopped["text"]) == ("Message", "Hello Ada")
    assert stopped["message"]["type"] == "Message"

    await agent.client.typing(chat_id, True)
    await expect(typing_line).to_contain_text("Grace")
    await agent.client.transfer(chat_id)  # she leaves while typing; the chat goes on
    await until_heard(page, "agentDisconnected")
    await expect(typing_line).to_have_text("")
    events = await heard(page)
    assert "ended" not in [e["name"] for e in events]
    tail = [e["name"] for e in events if e["name"] in ("agentDisconnected", "agentTypingStopped")]
    assert tail == ["agentTypingStopped", "agentDisconnected", "agentTypingStopped"]
    assert data_of(events, "agentTypingStopped")[-1]["type"] == "ParticipantLeft"


@pytest.mark.conformance("event:messageReceived", "event:agentConnected", "event:started",
                         "command:getTranscript", "command:getAgents", "command:getStats")
async def test_the_browser_events_and_results_carry_the_originals_shapes(server, browser,
                                                                       agent_factory):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport=rest")
    await record_events(page)
    chat_id = await accepted_on_page(page, agent)
    await agent.client.send(chat_id, "Hello Ada")
    await expect(widget(page).locator(".log")).to_contain_text("Hello Ada")
    events = await heard(page)

    started = data_of(events, "started")[0]  # the request-chat reply with the session data
    assert started["chatId"] == started["sessionID"] == chat_id and started["statusCode"] == 0
    connected = data_of(events, "agentConnected")[0]
    assert is_grace(connected["message"]["from"]) and connected["message"]["restoring"] is False
    grace_entry = connected["agents"]["3"]
    assert grace_entry["supervisor"] is False and grace_entry["disconnectedTime"] is False
    assert grace_entry["connectedTime"] == connected["message"]["timestamp"]

    said = next(m for d in data_of(events, "messageReceived") for m in d["messages"]
                if m.get("text") == "Hello Ada")
    assert is_grace(said["from"]) and said["timestamp"] == said["utcTime"]
    assert said["restoring"] is False
    original = next(m for d in data_of(events, "messageReceived")
                    for m in d["originalMessages"] if m.get("text") == "Hello Ada")
    assert original["from"] == {"nickname": "Grace", "participantId": 3, "type": "Agent"}

    result = await page.evaluate("""async () => ({
        transcript: await CXBus.command("WebChatService.getTranscript"),
        agents: await CXBus.command("WebChatService.getAgents"),
        stats: await CXBus.command("WebChatService.getStats")})""")
    transcript = result["transcript"]
    assert transcript["messages"][-1] == said
    assert [m["index"] for m in transcript["messages"]] == [
        m["index"] for m in transcript["originalMessages"]]
    assert "name" not in transcript["originalMessages"][-1]["from"]
    assert result["agents"]["agents"]["3"] == grace_entry
    assert result["stats"]["agents"] == result["agents"]["agents"]
    assert result["stats"]["duration"] == said["timestamp"] - result["stats"]["startTime"]


@pytest.mark.conformance("event:messageReceived", "event:clientConnected", "event:restored")
async def test_a_reload_replays_messages_marked_restoring(server, browser, agent_factory):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport=rest")
    chat_id = await accepted_on_page(page, agent)
    await agent.client.send(chat_id, "before the reload")
    await expect(widget(page).locator(".log")).to_contain_text("before the reload")
    # From the reload on, before the service restores: what it publishes then is heard too.
    await page.add_init_script(
        f'window.addEventListener("webchat:loaded", (e) => ({RECORD})(e.detail.bus));')
    await page.reload()
    await until_heard(page, "restored")
    await agent.client.send(chat_id, "after the reload")
    await expect(widget(page).locator(".log")).to_contain_text("after the reload")
    events = await heard(page)
    shown = {m.get("text"): m["restoring"] for d in data_of(events, "messageReceived")
             for m in d["messages"] if m["type"] == "Message"}
    assert shown == {"before the reload": True, "after the reload": False}
    # The original's plugins skip a replayed join by message.restoring.
    assert data_of(events, "clientConnected")[0]["message"]["restoring"] is True


@pytest.mark.conformance("command:updateUserData", "command:startPoll")
async def test_a_page_gives_user_data_before_the_chat(server, browser, agent_factory):
    """As the original: updateUserData without a chat keeps the data for the next startChat
    and resolves with the merged userData; startPoll over CometD gives the original's
    reason."""
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport=websocket")
    await service_ready(page)
    merged = await page.evaluate("""() => CXBus.command("WebChatService.updateUserData",
                                                      {customerId: "C-42", vip: true})""")
    assert merged["customerId"] == "C-42" and merged["vip"] == "true"
    chat_id = await accepted_on_page(page, agent)
    user_data = server.engine.chats[chat_id].user_data
    assert (user_data["customerId"], user_data["vip"]) == ("C-42", "true")
    refused = await page.evaluate("""() => CXBus.command("WebChatService.startPoll")
                                      .then(() => null, (e) => e.reason ?? String(e))""")
    assert refused == "Polling is not supported when using CometD"
