"""A whole chat across real sockets: WebChatService on a bus <-> server <-> agent client.

Every test runs on one SQLite process and on a cluster of three nodes sharing PostgreSQL and
Redis, the customer on one node and the agent on another (``tests/cluster.py``)."""

from __future__ import annotations

import msgspec
import pytest

from tests.cluster import (
    deployment,
)
from tests.conftest import SERVICE, caller_data
from tests.polling import eventually

server = deployment  # the tests below name their deployment "server"


def transport_options(server, transport: str) -> dict:
    """webchat options for each way WebChatService can reach the server."""
    if transport == "rest":
        return {}
    return {"cometD": {"enabled": True, "cometURL": f"{server.url}/genesys/cometd",
                       "channel": f"/service/chatV2/{SERVICE}",
                       "websocketEnabled": transport == "websocket"}}


@pytest.mark.parametrize("transport", ["rest", "websocket", "long-polling"])
@pytest.mark.conformance("command:startChat", "command:sendMessage", "command:sendTyping",
                         "command:getAgents", "command:getTranscript", "event:ready",
                         "event:started", "event:clientConnected", "event:agentConnected",
                         "event:agentTypingStarted", "event:agentTypingStopped",
                         "event:agentDisconnected", "event:ended", "event:messageReceived",
                         "option:dataURL", "option:cometD.enabled", "option:cometD.cometURL",
                         "option:cometD.channel", "option:cometD.websocketEnabled")
async def test_full_chat_customer_and_agent(server, customer_factory, agent_factory,
                                            transport):
    await server.add_agent("grace", nickname="Grace")
    customer = await customer_factory(server.data_url, **transport_options(server, transport))

    started = await customer.command("startChat", {
        "firstname": "Ada", "lastname": "Byron", "email": "ada@example.org",
        "subject": "Invoice question", "userData": {"orderId": "A-1009", "vip": True}})
    assert started["statusCode"] == 0
    chat_id = started["chatId"]
    assert started["secureKey"] and started["userId"] and started["alias"]
    await customer.wait_event("clientConnected")

    # The chat waits in the queue with its userData visible to agents.
    agent = await agent_factory(server.agent_url, "grace", ready=False)
    queue = await agent.client.queue()
    assert [c["chatId"] for c in queue] == [chat_id]
    assert caller_data(queue[0]["userData"]) == {"orderId": "A-1009", "vip": "true"}
    assert queue[0]["customer"]["emailAddress"] == "ada@example.org"
    notices = [m for e in customer.events if e.event == "WebChatService.messageReceived"
               for m in e.data["messages"] if m["type"] == "Notice"]
    assert "number 1 in the queue" in notices[0]["text"]

    # Ready: the agent is offered the chat and accepts it.
    await agent.client.set_state(True, 2)
    await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
    offer = next(e for e in agent.events if e["type"] == "offer")
    assert offer["chat"]["chatId"] == chat_id
    accepted = await agent.client.accept(chat_id)
    agent.client.track(chat_id, accepted["nextPosition"])
    connected = await customer.wait_event("agentConnected")
    assert connected.data["message"]["from"] == {"nickname": "Grace", "participantId": 3,
                                                  "type": "Agent", "id": 3, "name": "Grace"}
    assert connected.data["numAgentsConnected"] == 1
    assert connected.data["agents"]["3"]["name"] == "Grace"

    # Typing and messages both ways.
    await agent.client.typing(chat_id, True)
    await customer.wait_event("agentTypingStarted")
    await agent.client.send(chat_id, "Hello Ada, how can I help?")
    await agent.client.typing(chat_id, False)
    await customer.wait_event("agentTypingStopped")
    await customer.command("sendTyping", {"message": "My inv"})
    await customer.command("sendMessage", {"message": "My invoice is wrong"})
    await agent.wait_for(lambda ev: any(
        e["type"] == "message" and e["message"].get("text") == "My invoice is wrong" for e in ev))
    typed = [m for m in agent.messages(chat_id)
             if m["type"] == "TypingStarted" and m["from"]["type"] == "Client"]
    assert [m["text"] for m in typed] == ["My inv"]

    agents = await customer.command("getAgents")
    assert list(agents["agents"]) == ["3"]  # the system sender is not an agent
    assert agents["agents"]["3"]["name"] == "Grace"

    await agent.client.send(chat_id, "Fixed, sorry!")
    await customer.wait_for(lambda c: ("Agent", "Fixed, sorry!") in c.texts())
    await agent.client.end(chat_id)
    await customer.wait_event("ended")

    # Everything the customer saw, in order, exactly once.
    assert customer.texts() == [("Agent", "Hello Ada, how can I help?"),
                                ("Client", "My invoice is wrong"), ("Agent", "Fixed, sorry!")]
    indexes = customer.indexes()
    assert indexes == list(range(1, len(indexes) + 1))
    names = customer.names()
    assert names[0] == "ready"
    order = [n for n in names if n in ("started", "clientConnected", "agentConnected",
                                       "agentDisconnected", "pollingStopped", "ended")]
    polling = ["pollingStopped"] if transport == "rest" else []  # CometD pushes: no polling
    assert order == ["started", "clientConnected", "agentConnected", "agentDisconnected",
                     *polling, "ended"]
    if transport != "rest":
        assert customer.service.transport.connection_type == transport

    # The transcript the customer saw is the one stored (SQLite, or PostgreSQL).
    transcript = await customer.command("getTranscript")
    chat = await server.stored(chat_id)
    stored = msgspec.to_builtins(chat.events)
    assert transcript["originalMessages"] == stored
    assert (chat.service, chat.status.value) == (SERVICE, "ended")
    assert stored[-1]["type"] == "ParticipantLeft" and stored[-1]["from"]["type"] == "Agent"


async def test_custom_notice_push_url_nickname_and_user_data_reach_the_agent(
        server, http, agent_factory):
    await server.add_agent("grace", nickname="Grace")
    async with http.post(server.data_url, data={"nickname": "Ada",
                                                "userData[a]": "1"}) as resp:
        chat = await resp.json()
    agent = await agent_factory(server.agent_url, "grace")
    accepted = await agent.client.accept(chat["chatId"])
    agent.client.track(chat["chatId"], accepted["nextPosition"])
    ident = {"userId": chat["userId"], "secureKey": chat["secureKey"], "alias": chat["alias"]}
    base = f"{server.data_url}/{chat['chatId']}"
    for op, extra in [("customNotice", {"message": "scanning file"}),
                      ("pushUrl", {"pushUrl": "https://example.org/order/1"}),
                      ("updateNickname", {"nickname": "Ada B."}),
                      ("updateData", {"userData[b]": "2", "userData[a]": "9"})]:
        async with http.post(f"{base}/{op}", data={**ident, **extra}) as resp:
            assert (resp.status, (await resp.json())["statusCode"]) == (200, 0), op
    await agent.wait_for(lambda ev: any(
        e.get("message", {}).get("type") == "NicknameUpdated" for e in ev))
    seen = {m["type"]: m for m in agent.messages(chat["chatId"])}
    assert seen["CustomNotice"]["text"] == "scanning file"
    assert seen["PushUrl"]["text"] == "https://example.org/order/1"
    assert seen["NicknameUpdated"]["from"]["nickname"] == "Ada B."
    await agent.wait_for(lambda ev: any(e["type"] == "userData" for e in ev))
    pushed = next(e for e in agent.events if e["type"] == "userData")
    assert pushed == {"type": "userData", "chatId": chat["chatId"],
                      "userData": {"a": "9", "b": "2"}}

    # Across processes the agent's next request may reach one that has not adopted the
    # commit yet (it arrives over the broker, milliseconds later): the change is eventual
    # there, never lost.
    async def updated() -> bool:
        detail = await agent.client.chat(chat["chatId"])
        return detail["userData"] == {"a": "9", "b": "2"} \
            and detail["customer"]["nickname"] == "Ada B."

    await eventually(updated, "the chat's detail with the customer's new data and nickname")


@pytest.mark.parametrize("transport", ["rest", "websocket", "long-polling"])
@pytest.mark.conformance("command:endChat", "event:clientDisconnected")
async def test_customer_ending_the_chat_sees_every_final_event(server, customer_factory,
                                                                agent_factory, transport):
    await server.add_agent("grace", nickname="Grace")
    customer = await customer_factory(server.data_url, **transport_options(server, transport))
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    agent = await agent_factory(server.agent_url, "grace")
    await agent.client.accept(chat_id)
    await customer.wait_event("agentConnected")
    await customer.command("endChat")
    await customer.wait_event("ended")
    await customer.wait_event("agentDisconnected")
    stored = (await server.stored(chat_id)).events
    assert customer.indexes() == [m.index for m in stored]
    assert [m["type"] for m in (await customer.command("getTranscript"))["messages"]][-2:] == [
        "ParticipantLeft", "ParticipantLeft"]
