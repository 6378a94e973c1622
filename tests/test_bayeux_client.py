"""The sans-I/O Bayeux client follows the server's advice and backs off like CometD's."""

from __future__ import annotations

from webchat.protocol.bayeux.client import BayeuxClient, Delivery, Handshook, Reply, Step
from webchat.protocol.bayeux.messages import BayeuxMessage


def handshook(client: BayeuxClient, again: bool = False) -> None:
    msg = client.handshake()
    assert msg.ext == {"ack": True}
    events = client.receive([BayeuxMessage(
        channel="/meta/handshake", id=msg.id, successful=True, clientId="c1",
        supportedConnectionTypes=["long-polling"], ext={"ack": True},
        advice={"reconnect": "retry", "interval": 0, "timeout": 30000})])
    assert events == [Handshook("c1", rehandshake=again)]


def test_first_connect_asks_for_an_immediate_reply_and_acks_batches():
    client = BayeuxClient(connection_types=("websocket", "long-polling"))
    handshook(client)
    assert client.connection_type == "long-polling"  # the server does not offer websocket
    first = client.connect()
    assert first.advice == {"timeout": 0}
    assert first.ext == {"ack": 0}
    client.receive([BayeuxMessage(channel="/meta/connect", successful=True, ext={"ack": 1}),
                    BayeuxMessage(channel="/chat", data={"n": 1})])
    second = client.connect()
    assert second.advice is not None and second.ext == {"ack": 1}
    assert client.next_step.step is Step.CONNECT


def test_deliveries_and_replies_are_told_apart_by_data():
    client = BayeuxClient()
    handshook(client)
    events = client.receive([BayeuxMessage(channel="/chat", id="7", successful=True),
                             BayeuxMessage(channel="/chat", data={"x": 1})])
    assert events == [Reply("7", "/chat", True, None), Delivery("/chat", {"x": 1})]


def test_advice_and_backoff():
    client = BayeuxClient()
    handshook(client)
    delays = []
    for _ in range(70):
        client.transport_failed()
        delays.append(client.next_step.delay_ms)
    assert delays[:3] == [1000, 2000, 3000]
    assert max(delays) == 60_000
    client.receive([BayeuxMessage(channel="/meta/connect", successful=True)])
    assert client.backoff_ms == 0
    client.receive([BayeuxMessage(channel="/meta/connect", successful=False,
                                  error="402::session_unknown",
                                  advice={"reconnect": "handshake", "interval": 0})])
    assert client.next_step.step is Step.HANDSHAKE and client.client_id is None
    handshook(client, again=True)
    client.receive([BayeuxMessage(channel="/meta/connect", successful=False,
                                  error="403::denied", advice={"reconnect": "none"})])
    assert client.next_step.step is Step.STOP
