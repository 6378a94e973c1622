"""The start's reply and the first pushes of a chat over CometD long-polling come on different
requests' answers: the reply as a delivery on a held ``/meta/connect``, the publish's own
acknowledgement on the publish's response. When the acknowledgement is the slower of the
two, a push (the agent joining) can reach the service while it still waits for the start:
this must neither be taken for the start's reply nor lost. (test_cluster_chaos met it: a
long-polling customer whose agent joined within that moment never heard of it.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from webchat.protocol.bayeux.messages import BayeuxMessage
from webchat.protocol.gms.session import ChatSession, MessagesReceived, ParticipantJoined
from webchat.transport.chat_cometd import CometdChatTransport

CHANNEL = "/service/chatV2/customer-support"


def event(index: int, type_: str, nickname: str, participant: int, kind: str) -> dict[str, Any]:
    return {"from": {"nickname": nickname, "participantId": participant, "type": kind},
            "type": type_, "index": index, "utcTime": 1000 + index}


def response(next_position: int, *events: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 0, "chatId": "C1", "userId": "U", "secureKey": "K", "alias": "0",
            "nextPosition": next_position, "messages": list(events)}


class SlowAcknowledgements:
    """The CometD client with the publish's acknowledgement in the test's hands."""

    def __init__(self) -> None:
        self.acknowledged: asyncio.Future[BayeuxMessage] = \
            asyncio.get_running_loop().create_future()

    async def publish(self, channel: str, data: Any) -> BayeuxMessage:
        return await self.acknowledged

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("agent_joins", ["before the acknowledgement", "after it"])
async def test_a_push_before_the_start_is_acknowledged_is_applied_after_the_start(
        agent_joins: str) -> None:
    transport = CometdChatTransport("http://127.0.0.1:1/genesys/cometd", CHANNEL)
    client = SlowAcknowledgements()
    transport.client = client  # type: ignore[assignment]
    transport._up = True
    session = ChatSession()
    events: list[Any] = []
    transport.on_push = lambda pushed: events.extend(session.push(pushed))
    request = session.request_chat({"nickname": "Ada"})
    call = asyncio.ensure_future(transport.call(request))
    await asyncio.sleep(0)

    transport._delivered(CHANNEL, response(  # the start's reply, on a connect
        3, event(1, "ParticipantJoined", "Ada", 1, "Client"),
        event(2, "Notice", "system", 2, "External")))
    joined = response(4, event(3, "ParticipantJoined", "Grace", 3, "Agent"))
    if agent_joins == "before the acknowledgement":
        transport._delivered(CHANNEL, joined)  # the next connect's answer
    client.acknowledged.set_result(BayeuxMessage(channel=CHANNEL, successful=True))
    events.extend(session.receive(request, await call))
    if agent_joins == "after it":
        transport._delivered(CHANNEL, joined)

    assert [m.index for m in session.transcript] == [1, 2, 3]
    assert session.next_position == 4
    assert [e.message.from_.nickname for e in events if isinstance(e, ParticipantJoined)] == \
        ["Ada", "Grace"]
    assert sum(len(e.messages) for e in events if isinstance(e, MessagesReceived)) == 3
