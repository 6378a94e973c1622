"""The Python WebChatService's events and command results in the original's shapes, where a
site written for the original Genesys Widgets reads them (the 8.5 bundle's WebChat widget and
plugins read ``message.from.name``, ``message.timestamp``, ``message.restoring``, typing
events' ``data.from``): checked on a real server, with a real agent. The browser service
proves the same in tests/test_service_payloads_browser.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import accepted_chat, caller_data
from tests.test_end_to_end import transport_options
from webchat.bus import CommandError
from webchat.service import reference
from webchat.service.core import EVENTS
from webchat.service.storage import MemoryStorage

UNDECLARED = "has not registered (registerEvents)"


def data_of(customer: Any, name: str) -> list[Any]:
    return [e.data for e in customer.events if e.event == f"WebChatService.{name}"]


def is_grace(sender: dict[str, Any]) -> bool:
    """The original's names for the sender and ours, side by side."""
    return sender == {"nickname": "Grace", "participantId": 3, "type": "Agent",
                      "id": 3, "name": "Grace"}


@pytest.mark.conformance("CXBus.api:registerEvents")
async def test_the_service_declares_every_event_it_publishes(server, customer_factory,
                                                             agent_factory, caplog):
    customer = await customer_factory(server.data_url)
    declared = customer.bus.registry()["WebChatService"]["events"]
    assert declared == list(EVENTS)
    assert set(declared) == {i.name for i in reference.EVENTS if i.scope != "browser"}

    # A whole chat on a debug bus: nothing it publishes is undeclared...
    customer.bus.configure({"debug": True})
    caplog.set_level(logging.INFO, logger="webchat.bus")
    agent, chat_id = await accepted_chat(server, customer, agent_factory)
    await agent.client.typing(chat_id, True)
    await customer.command("sendTyping", {"message": "hel"})
    await customer.command("sendMessage", {"message": "hello"})
    await agent.client.send(chat_id, "Hi Ada")
    await agent.client.end(chat_id)
    await customer.wait_event("ended")
    assert {"agentTypingStarted", "clientTypingStarted", "messageReceived",
            "agentDisconnected"} <= set(customer.names())
    assert not [r for r in caplog.records if UNDECLARED in r.getMessage()]
    # ...and the debug bus does report a name the service never declared.
    customer.service.plugin.publish("agentWentForCoffee")
    assert [r.getMessage() for r in caplog.records if UNDECLARED in r.getMessage()] == [
        "published WebChatService.agentWentForCoffee, which WebChatService has not "
        "registered (registerEvents)"]


@pytest.mark.conformance("event:agentTypingStopped", "event:agentTypingStarted")
@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_an_agent_who_sends_or_leaves_has_stopped_typing(server, customer_factory,
                                                               agent_factory, transport):
    customer = await customer_factory(server.data_url, **transport_options(server, transport))
    agent, chat_id = await accepted_chat(server, customer, agent_factory)

    await agent.client.typing(chat_id, True)
    started = await customer.wait_event("agentTypingStarted")
    # The original's data is the message itself; ours also names it message.
    assert is_grace(started.data["from"]) and started.data["isTyping"] is True
    assert started.data["message"]["type"] == "TypingStarted"

    await agent.client.send(chat_id, "Hello Ada")  # no TypingStopped: the message ends it
    stopped = await customer.wait_event("agentTypingStopped")
    assert is_grace(stopped.data["from"]) and stopped.data["isTyping"] is False
    assert (stopped.data["type"], stopped.data["text"]) == ("Message", "Hello Ada")
    await agent.client.send(chat_id, "Still there?")  # not typing: nothing to stop
    await customer.wait_for(lambda c: ("Agent", "Still there?") in c.texts())
    assert customer.names().count("agentTypingStopped") == 1

    await agent.client.typing(chat_id, True)
    await customer.wait_event("agentTypingStarted", count=2)
    await agent.client.end(chat_id)  # she leaves while typing
    await customer.wait_event("ended")
    tail = [n for n in customer.names() if n in ("agentDisconnected", "agentTypingStopped")]
    assert tail == ["agentTypingStopped", "agentDisconnected", "agentTypingStopped"]
    assert data_of(customer, "agentTypingStopped")[-1]["type"] == "ParticipantLeft"


@pytest.mark.conformance("event:messageReceived", "event:agentConnected", "event:started",
                         "command:getTranscript", "command:getAgents", "command:getStats")
async def test_events_and_results_carry_the_originals_message_and_agent_shapes(
        server, customer_factory, agent_factory):
    customer = await customer_factory(server.data_url)
    agent, chat_id = await accepted_chat(server, customer, agent_factory)
    await agent.client.send(chat_id, "Hello Ada")
    await customer.wait_for(lambda c: ("Agent", "Hello Ada") in c.texts())

    started = data_of(customer, "started")[0]  # the request-chat reply with the session data
    assert started["chatId"] == started["sessionID"] == chat_id
    assert started["statusCode"] == 0 and started["secureKey"] and started["userId"]

    connected = data_of(customer, "agentConnected")[0]
    assert is_grace(connected["message"]["from"]) and connected["message"]["restoring"] is False
    grace = connected["agents"]["3"]
    assert grace["supervisor"] is False and grace["disconnectedTime"] is False
    assert grace["connectedTime"] == connected["message"]["timestamp"] \
        == connected["message"]["utcTime"]

    said = next(m for d in data_of(customer, "messageReceived") for m in d["messages"]
                if m.get("text") == "Hello Ada")
    assert is_grace(said["from"]) and said["timestamp"] == said["utcTime"]
    assert said["restoring"] is False
    received = [d for d in data_of(customer, "messageReceived")
                if any(m.get("text") == "Hello Ada" for m in d["originalMessages"])]
    assert received[0]["originalMessages"][-1]["from"] == {
        "nickname": "Grace", "participantId": 3, "type": "Agent"}  # as the server sent it

    transcript = await customer.command("getTranscript")
    assert [m["index"] for m in transcript["messages"]] == [
        m["index"] for m in transcript["originalMessages"]]
    assert transcript["messages"][-1] == said
    assert "name" not in transcript["originalMessages"][-1]["from"]

    agents = (await customer.command("getAgents"))["agents"]
    assert agents["3"] == {**grace, "connected": True}
    stats = await customer.command("getStats")
    assert stats["agents"] == agents
    assert stats["duration"] == transcript["messages"][-1]["timestamp"] - stats["startTime"]

    await agent.client.end(chat_id)
    left = (await customer.wait_event("agentDisconnected")).data
    assert left["agents"]["3"]["disconnectedTime"] == left["message"]["timestamp"]
    assert left["agents"]["3"]["connected"] is False


@pytest.mark.conformance("event:messageReceived", "event:clientConnected", "event:restored")
async def test_restored_messages_say_they_are_restoring(server, customer_factory,
                                                        agent_factory):
    """The original's plugins skip what a restore replays by ``message.restoring`` (its
    knowledge-center plugin checks it on clientConnected)."""
    storage = MemoryStorage()
    first = await customer_factory(server.data_url, storage=storage)
    agent, chat_id = await accepted_chat(server, first, agent_factory)
    await agent.client.send(chat_id, "before the restart")
    await first.wait_for(lambda c: ("Agent", "before the restart") in c.texts())
    await first.close()
    await agent.client.send(chat_id, "while away")

    second = await customer_factory(server.data_url, storage=storage)
    await second.wait_for(lambda c: ("Agent", "while away") in c.texts())
    shown = [m for d in data_of(second, "messageReceived") for m in d["messages"]]
    assert {m.get("text"): m["restoring"] for m in shown if m["type"] == "Message"} == {
        "before the restart": True, "while away": False}
    assert data_of(second, "clientConnected")[0]["message"]["restoring"] is True


@pytest.mark.conformance("command:updateUserData", "command:startPoll")
async def test_user_data_given_before_the_chat_goes_with_it(server, customer_factory):
    """As the original: updateUserData without a chat keeps the data for the next startChat
    and resolves with the merged userData; startPoll over CometD gives the original's
    reason."""
    customer = await customer_factory(server.data_url, userData={"source": "web"},
                                      **transport_options(server, "websocket"))
    merged = await customer.command("updateUserData", {"customerId": "C-42", "vip": True})
    assert merged == {"source": "web", "customerId": "C-42", "vip": "true"}
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    assert caller_data(server.engine.chats[chat_id].user_data) == merged
    with pytest.raises(CommandError) as refused:
        await customer.command("startPoll")
    assert refused.value.reason == "Polling is not supported when using CometD"
