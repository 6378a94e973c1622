"""Property tests of the sans-I/O Bayeux server: whatever the interleaving of deliveries,
connects, lost replies and dropped connections, a client using the ack extension receives
every message, in order, never loses one and never sees an acknowledged one again; and the
server's buffers stay bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from webchat.protocol.bayeux.messages import BayeuxMessage
from webchat.protocol.bayeux.server import BayeuxServer, ServerOptions

OPS = st.lists(st.one_of(
    st.tuples(st.just("deliver"), st.integers(min_value=1, max_value=5)),
    st.tuples(st.just("connect"), st.booleans()),      # bool: the reply reaches the client
    st.tuples(st.just("drop"), st.just(0)),            # a held connect's socket goes away
), max_size=60)


class Client:
    def __init__(self, server: BayeuxServer) -> None:
        self.server = server
        out = server.receive([BayeuxMessage(channel="/meta/handshake", version="1.0",
                                            supportedConnectionTypes=["long-polling"],
                                            ext={"ack": True})], 0, browser_id="b")
        self.session = out.handshaken
        assert self.session is not None and self.session.ack
        self.batch = 0
        self.received: list[int] = []
        self.acked_upto = -1  # highest message number the client has acknowledged
        self.batches: dict[int, list[int]] = {}
        self.now = 1

    def connect(self, reply_arrives: bool) -> None:
        self.now += 1
        # Acknowledging batch N acknowledges every message in it and before it.
        for batch, items in self.batches.items():
            if batch <= self.batch and items:
                self.acked_upto = max(self.acked_upto, max(items))
        out = self.server.receive([BayeuxMessage(
            channel="/meta/connect", clientId=self.session.client_id,
            connectionType="long-polling", ext={"ack": self.batch})], self.now, browser_id="b")
        replies = out.replies
        if out.hold is not None:
            replies = self.server.release(out.hold, self.now)  # woken, or its timeout
        if not reply_arrives:
            return
        connect = replies[0]
        assert connect.successful is True
        items = [m.data for m in replies[1:]]
        for n in items:
            assert n > self.acked_upto, f"acknowledged message {n} was delivered again"
        self.batch = connect.ext["ack"]
        self.batches[self.batch] = items
        self.received.extend(items)

    def drop(self) -> None:
        self.server.abandon(self.session, self.now)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_ack_extension_delivers_everything_in_order_exactly_once_after_dedupe(ops):
    server = BayeuxServer(ServerOptions(ack_enabled=True, max_queue=10_000))
    client = Client(server)
    client.connect(True)
    sent = 0
    for op, arg in ops:
        if op == "deliver":
            for _ in range(arg):
                server.deliver(client.session, BayeuxMessage(channel="/chat", data=sent))
                sent += 1
        elif op == "connect":
            client.connect(arg)
        else:
            client.drop()
        # Bounded: at most one unacknowledged batch is kept; nothing beyond what was sent.
        assert len(client.session.unacked) <= 1
        assert client.session.pending() <= sent
    client.connect(True)
    client.connect(True)
    deduped = list(dict.fromkeys(client.received))
    assert deduped == list(range(sent))


@given(st.integers(min_value=1, max_value=50))
def test_overflowing_queue_closes_the_session_instead_of_growing(extra):
    server = BayeuxServer(ServerOptions(max_queue=10))
    client = Client(server)
    for n in range(10 + extra):
        server.deliver(client.session, BayeuxMessage(channel="/chat", data=n))
    assert client.session.closed
    assert client.session.pending() == 0
    assert client.session.client_id not in server.sessions
    out = server.receive([BayeuxMessage(channel="/meta/connect",
                                        clientId=client.session.client_id,
                                        connectionType="long-polling")], 5, browser_id="b")
    assert out.replies[0].error.startswith("402::")
    assert out.replies[0].advice == {"reconnect": "handshake", "interval": 0}


def test_sessions_expire_after_max_interval_unless_connected():
    server = BayeuxServer(ServerOptions(max_interval_ms=1000))
    client = Client(server)
    client.connect(True)  # replied at now=2: expires at 2 + 0 + 1000
    assert server.expire(500) == []
    held = server.receive([BayeuxMessage(channel="/meta/connect",
                                         clientId=client.session.client_id,
                                         connectionType="long-polling")], 600, browser_id="b")
    assert held.hold is client.session
    assert server.expire(10_000) == []  # never while a connect is held
    server.abandon(client.session, 10_000)
    assert server.expire(10_500) == []
    assert server.expire(11_001) == [client.session]
    assert not server.sessions
