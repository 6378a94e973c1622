"""Property tests of the sans-I/O Bayeux server: whatever the interleaving of deliveries,
connects, lost replies and dropped connections, a client using the ack extension receives
every message, in order, never loses one and never sees an acknowledged one again; and the
server's buffers stay bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import UNSET

from webchat.protocol.bayeux.messages import BayeuxMessage
from webchat.protocol.bayeux.server import (
    Attach,
    BayeuxServer,
    Close,
    Deliver,
    Ended,
    Event,
    GoAway,
    Handshaken,
    Hold,
    Publish,
    Release,
    Reply,
    ServerOptions,
    ServerSession,
    State,
)


def written(events: list[Event]) -> list[BayeuxMessage]:
    """What the I/O layer would write for these events."""
    out: list[BayeuxMessage] = []
    for event in events:
        if isinstance(event, Reply):
            out.append(event.message)
        elif isinstance(event, Deliver):
            out.extend(event.messages)
    return out


def held(events: list[Event]) -> Hold | None:
    return next((e for e in events if isinstance(e, Hold)), None)

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
        self.session = next(e.session for e in out if isinstance(e, Handshaken))
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
        hold = held(out)
        if self.server.draining:  # answered at once, told to reconnect, connection closed
            assert hold is None and GoAway(self.session) in out
        if hold is not None:
            out = self.server.release(hold.session, self.now)  # woken or timeout
        replies = written(out)
        if not reply_arrives:
            return
        connect = replies[0]
        assert connect.successful is True
        if self.server.draining:
            assert connect.advice == {"reconnect": "retry", "interval": 0, "timeout": 30_000}
        items = [m.data for m in replies[1:]]
        for n in items:
            assert n > self.acked_upto, f"acknowledged message {n} was delivered again"
        self.batch = connect.ext["ack"]
        self.batches[self.batch] = items
        self.received.extend(items)

    def drop(self) -> None:
        self.server.abandon(self.session, self.now)


def play(server: BayeuxServer, client: Client, ops: list[tuple[str, int]], sent: int) -> int:
    """Apply ``ops``; deliveries are numbered on from ``sent``. Returns how many were sent."""
    for op, arg in ops:
        if op == "deliver":
            for _ in range(arg):
                server.deliver(client.session, BayeuxMessage(channel="/chat", data=sent))
                sent += 1
        elif op == "connect":
            client.connect(bool(arg))
        else:
            client.drop()
        # Bounded: at most one unacknowledged batch is kept; nothing beyond what was sent.
        assert len(client.session.unacked) <= 1
        assert client.session.pending() <= sent
    return sent


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_ack_extension_delivers_everything_in_order_exactly_once_after_dedupe(ops):
    server = BayeuxServer(ServerOptions(ack_enabled=True, max_queue=10_000))
    client = Client(server)
    client.connect(True)
    sent = play(server, client, ops, 0)
    client.connect(True)
    client.connect(True)
    deduped = list(dict.fromkeys(client.received))
    assert deduped == list(range(sent))


@settings(max_examples=200, deadline=None)
@given(OPS, OPS)
def test_a_draining_server_holds_no_connect_and_loses_nothing(before, after):
    """Drained at any point (Client.connect checks each answer once it is): every connect
    answered at once with the advice to reconnect, nothing lost or repeated."""
    server = BayeuxServer(ServerOptions(ack_enabled=True, max_queue=10_000))
    client = Client(server)
    client.connect(True)
    sent = play(server, client, before, 0)
    assert server.drain() == []  # this client never leaves a connect held between steps
    sent = play(server, client, after, sent)
    client.connect(True)
    client.connect(True)
    assert list(dict.fromkeys(client.received)) == list(range(sent))


def test_a_drain_releases_held_connects_with_what_is_queued():
    server = BayeuxServer()
    client = Client(server)
    client.connect(True)
    hold = held(server.receive([BayeuxMessage(channel="/meta/connect",
                                              clientId=client.session.client_id,
                                              connectionType="long-polling")], 5))
    assert hold is not None
    server.deliver(client.session, BayeuxMessage(channel="/chat", data="queued"))
    assert server.drain() == [Release(client.session)]
    out = server.release(client.session, 6)
    reply, delivery, go_away = out
    assert isinstance(reply, Reply) and reply.message.advice["reconnect"] == "retry"
    assert delivery == Deliver([BayeuxMessage(channel="/chat", data="queued")])
    assert go_away == GoAway(client.session)


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
    [reply] = written(out)
    assert reply.error.startswith("402::")
    assert reply.advice == {"reconnect": "handshake", "interval": 0}


def test_sessions_expire_after_max_interval_unless_connected():
    server = BayeuxServer(ServerOptions(max_interval_ms=1000))
    client = Client(server)
    client.connect(True)  # replied at now=2: expires at 2 + 0 + 1000
    assert server.expire(500) == []
    events = server.receive([BayeuxMessage(channel="/meta/connect",
                                           clientId=client.session.client_id,
                                           connectionType="long-polling")], 600, browser_id="b")
    hold = held(events)
    assert hold is not None
    assert hold.session is client.session
    assert server.expire(10_000) == []  # never while a connect is held
    server.abandon(client.session, 10_000)
    assert server.expire(10_500) == []
    assert server.expire(11_001) == [Ended(client.session)]
    assert not server.sessions


def test_a_session_answering_a_slow_publish_expires_only_after_the_answer_left():
    """A connect and a service publish in one batch: the connect's reply leaves with the
    publish's, once the application answered. Its expiry was counted from when the reply
    was made, so a publish slower than ``maxInterval`` (a chat start on an overloaded
    server) expired the session under the client, which then found its next connect
    refused (402) through no fault of its own."""
    server = BayeuxServer(ServerOptions(max_interval_ms=1000))
    client = Client(server)
    events = server.receive([
        BayeuxMessage(channel="/meta/connect", clientId=client.session.client_id,
                      connectionType="long-polling", advice={"timeout": 0}),
        BayeuxMessage(channel="/service/chat", clientId=client.session.client_id,
                      data={"operation": "requestChat"})], 10, browser_id="b")
    [publish] = [e for e in events if isinstance(e, Publish)]
    assert server.expire(5_000) == []  # the application is still at it: the server owes
    server.complete(publish, None, 5_000)  # answered now: the client's clock starts
    assert server.expire(5_900) == []
    assert server.expire(6_001) == [Ended(client.session)]


# ---- arbitrary traffic -------------------------------------------------------------------
# Valid and broken messages from long-polling requests and WebSockets, interleaved with
# deliveries, releases, dropped connections and expiry: whatever happens, the core never
# breaks its own state rules (``_move`` raises on a transition TRANSITIONS does not allow),
# answers every message exactly once, and keeps no trace of a closed session.

CHANNELS = st.sampled_from(["/meta/handshake", "/meta/connect", "/meta/subscribe",
                            "/meta/unsubscribe", "/meta/disconnect", "/meta/nosuch",
                            "/service/chat", "/room/a", "/room/*", "", "no/slash", "/a//b"])
IDS = st.sampled_from([UNSET, "1", 7, True, "bad id!", "x" * 80])
ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                   lambda inner: st.lists(inner, max_size=3)
                   | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


@st.composite
def message(draw: st.DrawFn) -> dict[str, object]:
    fields: dict[str, object] = {"channel": draw(CHANNELS), "id": draw(IDS),
                                 "clientId": draw(st.sampled_from(["known", "nosuch", UNSET]))}
    if draw(st.booleans()):
        fields["version"] = "1.0"
        fields["supportedConnectionTypes"] = draw(st.sampled_from(
            [["long-polling", "websocket"], ["callback-polling"], UNSET]))
    if draw(st.booleans()):
        fields["ext"] = {"ack": draw(st.sampled_from([True, 0, 1, 2, -1, "1", False]))}
    if draw(st.booleans()):
        fields["advice"] = {"timeout": draw(st.sampled_from([0, 10, 100_000, "x"]))}
    if draw(st.booleans()):
        fields["subscription"] = draw(st.sampled_from(
            ["/room/a", "/room/*", "/meta/x", "/service/y", ["/room/a", "/b"], "bad"]))
    if draw(st.booleans()):
        fields["data"] = draw(ANY)
    return fields


STEPS = st.lists(st.one_of(
    st.tuples(st.just("lp"), st.lists(message(), min_size=1, max_size=4)),
    st.tuples(st.sampled_from(["ws0", "ws1"]), st.lists(message(), min_size=1, max_size=4)),
    st.tuples(st.sampled_from(["deliver", "release", "abandon", "expire", "close-ws0"]),
              st.just([])),
), max_size=25)


class Traffic:
    """The I/O layer's bookkeeping, reduced to what the core's events ask for."""

    def __init__(self) -> None:
        self.server = BayeuxServer(ServerOptions(max_queue=5, broadcast=True,
                                                 max_interval_ms=50))
        self.now = 0
        self.known: list[ServerSession] = []
        self.bound: dict[str, ServerSession | None] = {"ws0": None, "ws1": None}
        self.held: dict[str, ServerSession] = {}

    def build(self, fields: dict[str, object]) -> BayeuxMessage:
        client_id = fields.pop("clientId")
        if client_id == "known":
            client_id = self.known[-1].client_id if self.known else "nosuch"
        return BayeuxMessage(clientId=client_id, **fields)  # type: ignore[arg-type]

    def send(self, where: str, raw: list[dict[str, object]]) -> None:
        messages = [self.build(dict(m)) for m in raw]
        ws = where.startswith("ws")
        events = self.server.receive(messages, self.now, browser_id="b",
                                     bound=self.bound[where] if ws else None,
                                     transport="websocket" if ws else "long-polling")
        answered = 0
        for event in events:
            if isinstance(event, Publish):
                reply = self.server.complete(event, None if event.message.data else "400::no",
                                             self.now)
                assert reply.message.channel == event.message.channel
                assert reply.message.id == event.message.id
                assert reply.message.data is UNSET  # an ack, never a delivery
            if isinstance(event, Reply | Publish | Hold):
                answered += 1
            if isinstance(event, Hold):
                self.held[event.session.client_id] = event.session
            if isinstance(event, Attach):
                assert ws and event.session.attached
                self.bound[where] = event.session
            if isinstance(event, Ended) and event.session.client_id in self.held:
                del self.held[event.session.client_id]
            session = getattr(event, "session", None)
            if isinstance(session, ServerSession) and session not in self.known:
                self.known.append(session)
        if any(isinstance(e, Close) for e in events):
            assert ws and len(messages) > 1
            self.close(where)
            return
        handshake_alone = not ws and len(messages) > 1 and any(
            m.channel == "/meta/handshake" for m in messages)
        assert answered == (1 if handshake_alone else len(messages)), events

    def close(self, where: str) -> None:
        session = self.bound[where]
        if session is not None:
            self.server.abandon(session, self.now)
            self.server.detach(session)
            self.held.pop(session.client_id, None)
        self.bound[where] = None

    def step(self, op: str, raw: list[dict[str, object]]) -> None:
        self.now += 20
        if op in ("lp", "ws0", "ws1"):
            self.send(op, raw)
        elif op == "deliver":
            self.server.broadcast("/room/a", {"n": self.now})
        elif op == "release":
            for session in list(self.held.values()):
                assert written(self.server.release(session, self.now))[0].channel \
                    == "/meta/connect"
            self.held.clear()
        elif op == "abandon":
            for session in list(self.held.values()):
                self.server.abandon(session, self.now)
            self.held.clear()
        elif op == "expire":
            for event in self.server.expire(self.now):
                assert isinstance(event, Ended) and event.session.closed
        else:
            self.close("ws0")

    def check(self) -> None:
        live = self.server.sessions
        assert all(s.state is not State.CLOSED for s in live.values())
        for session in self.known:
            if session.closed:
                assert session.client_id not in live
                assert not session.queue and not session.unacked and not session.subscriptions
                assert session.queued_bytes == 0
            assert session.pending() <= self.server.options.max_queue
        for subscribers in self.server.subscribers.values():
            assert subscribers and subscribers <= live.keys()


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_arbitrary_traffic_keeps_the_state_rules_and_answers_every_message_once(steps):
    traffic = Traffic()
    for op, raw in steps:
        traffic.step(op, raw)
        traffic.check()
