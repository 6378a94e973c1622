"""Supervisors: watch any chat silently, barge in openly, leave; the customer's WebChatService
reports supervisorConnected / supervisorDisconnected only for what it can see."""

from __future__ import annotations

import pytest

from tests.conftest import accepted_chat
from tests.test_end_to_end import transport_options
from webchat.transport.agent import AgentApiError


@pytest.mark.conformance("event:supervisorConnected", "event:supervisorDisconnected",
                         "event:agentTypingStarted")
@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_supervisor_monitors_silently_then_barges_in_and_leaves(
        server, customer_factory, agent_factory, transport):
    await server.add_agent("sam", nickname="Sam", supervisor=True)
    customer = await customer_factory(server.data_url, **transport_options(server, transport))
    agent, chat_id = await accepted_chat(server, customer, agent_factory)

    supervisor = await agent_factory(server.url, "sam", ready=False)
    assert [c["chatId"] for c in await supervisor.client.supervise()] == [chat_id]
    watched = await supervisor.client.monitor(chat_id)
    supervisor.client.track(chat_id, watched["nextPosition"])
    assert [m["type"] for m in watched["messages"]][:1] == ["ParticipantJoined"]
    with pytest.raises(AgentApiError, match="not_supervisor"):
        await agent.client.monitor(chat_id)

    # Monitoring is silent: the supervisor sees the chat, the customer sees no supervisor.
    await customer.command("sendMessage", {"message": "is anyone there?"})
    await supervisor.wait_for(lambda _: any(m.get("text") == "is anyone there?"
                                            for m in supervisor.messages(chat_id)))
    assert "supervisorConnected" not in customer.names()
    assert [p["type"] for p in (await customer.command("getAgents"))["agents"].values()] \
        == ["Agent"]

    # Barge in: the customer is told, and hears the supervisor.
    await supervisor.client.barge_in(chat_id)
    joined = await customer.wait_event("supervisorConnected")
    assert joined.data["message"]["from"]["nickname"] == "Sam"
    assert joined.data["numAgentsConnected"] == 1  # supervisors are not counted as agents
    await supervisor.client.typing(chat_id, True)
    typing = await customer.wait_event("agentTypingStarted")
    assert typing.data["message"]["from"]["type"] == "Supervisor"
    await supervisor.client.send(chat_id, "I am the supervisor; Grace will sort this out.")
    await customer.wait_for(lambda c: ("Supervisor", "I am the supervisor; Grace will sort "
                                       "this out.") in c.texts())

    # Leave: the chat goes on with its agent.
    await supervisor.client.leave(chat_id)
    await customer.wait_event("supervisorDisconnected")
    await agent.client.send(chat_id, "Here is your answer.")
    await customer.wait_for(lambda c: ("Agent", "Here is your answer.") in c.texts())
    assert customer.service.session.active
    with pytest.raises(AgentApiError, match="not_in_chat"):
        await supervisor.client.send(chat_id, "too late")
