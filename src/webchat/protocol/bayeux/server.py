"""The server side of Bayeux as a pure state machine.

Feed :meth:`BayeuxServer.receive` the messages of one HTTP request or WebSocket frame and the
current time; it returns the :data:`Event` list the I/O layer performs, in order, as the
``websockets`` library's protocol objects return what to send: replies to write, a
``/meta/connect`` to hold, sessions to wake or that ended, service-channel publishes for the
application, a cookie to set, a socket to close. The core never awaits and never touches a
socket; the I/O layer holds connects, runs the clock (:meth:`expire`) and calls
:meth:`release` when a held connect should return. A service publish's reply is not final
when :meth:`receive` returns: the :class:`Publish` event carries it pending, and the I/O layer
hands the application's verdict back to :meth:`complete`, which returns the :class:`Reply`.

Each session has one :class:`State`; every change goes through :func:`_move`, which checks
it against :data:`TRANSITIONS` (as h11 keeps its rules in one table), so no path can, say,
hold a connect for a closed session.

Deliveries are only ever sent in ``/meta/connect`` replies (CometD's ``metaConnectDeliverOnly``),
for every session. That gives strict server→client order on both transports, and makes the
acknowledgement extension (§3.10) simple: each connect reply is one batch; a batch stays
buffered until a later connect acknowledges it, and is re-sent, ahead of anything newer, after a
connection drop. Queues are bounded: a session whose queue overflows is closed, never silently
trimmed, and the client re-handshakes and resumes from its own position. (The I/O layer may
write a session's queue straight to its WebSocket when it does not use acks: :meth:`take`.)

A server that is about to stop *drains* (:meth:`BayeuxServer.drain`): every held connect is
answered at once (:class:`Release`), and from then on every connect is answered at once, with
everything queued and the advice to reconnect straight away, followed by :class:`GoAway`: the
I/O layer closes that connection, so the client's next request opens a new one, which a load
balancer sends to another process.

A session is bound to the transport that handshook it: a long-polling session is never served
over a WebSocket or the other way round (CometD clients only change transport with a new
handshake), and a WebSocket session is served by one socket at a time (:class:`Attach`,
:meth:`detach`).
"""

from __future__ import annotations

import enum
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from msgspec import UNSET

from webchat.protocol.bayeux import channels
from webchat.protocol.bayeux.messages import (
    MAX_DEPTH,
    BayeuxMessage,
    ErrorStyle,
    error_text,
    message_size,
)

META_HANDSHAKE = "/meta/handshake"
META_CONNECT = "/meta/connect"
META_SUBSCRIBE = "/meta/subscribe"
META_UNSUBSCRIBE = "/meta/unsubscribe"
META_DISCONNECT = "/meta/disconnect"


@dataclass
class ServerOptions:
    timeout_ms: int = 30_000
    interval_ms: int = 0
    max_interval_ms: int = 10_000
    max_queue: int = 1_000
    """Messages queued for one session (waiting plus sent but not acknowledged)."""
    max_queue_bytes: int = 4 * 1024 * 1024
    """The same in encoded bytes: past either bound the session is closed, never trimmed."""
    max_outbound_bytes: int = 1024 * 1024
    """What may wait to be written to one WebSocket (its write buffer, plus its outbox or, with
    acks, its queue) while the peer does not read. Past it (or ``max_outbound_messages``) the
    peer is a slow consumer and its socket is dropped: a session with acks is kept for the
    client to come back to (everything unacknowledged is re-sent), one without is closed."""
    max_outbound_messages: int = 500
    max_json_depth: int = MAX_DEPTH
    """Nesting bound of a message body, checked before it is decoded (with the body size)."""
    broadcast: bool = False
    """Whether clients may publish to broadcast channels (anything outside ``/service/`` and
    ``/meta/``), relayed to their subscribers. Off by default: GMS chat needs none, and an
    anonymous client relaying to every ``/**`` subscriber is an open relay. On for
    CometD-style pub/sub (``benchmarks/cometd_chat.py`` rooms)."""
    max_sessions: int = 100_000
    connection_types: tuple[str, ...] = ("websocket", "long-polling")
    ack_enabled: bool = True
    error_style: ErrorStyle = ErrorStyle.COMETD5
    require_browser_cookie: bool = False
    """Long-polling requests must also carry the session's ``BAYEUX_BROWSER`` cookie. Off by
    default, as in CometD, where the clientId (144 random bits, known only to its client) is
    the session's credential on every transport and the cookie only marks a browser: the
    Genesys widgets' cross-origin long-polling sends no cookies at all, and neither do
    cookie jars that drop cookies of IP-address hosts."""


class State(enum.Enum):
    """Where a session is in its life. The transitions are :data:`TRANSITIONS`."""

    HANDSHAKEN = "handshaken"
    """Handshake answered, no connect yet (the first connect is always answered at once)."""
    CONNECTED = "connected"
    """Between connects: the client has its reply and the expiry clock runs (§3.7)."""
    HELD = "held"
    """A ``/meta/connect`` is held until deliveries or its timeout; the session never expires."""
    CLOSED = "closed"
    """Disconnected, expired, overflowed or ended by the I/O layer: final, and forgotten."""


TRANSITIONS: dict[State, frozenset[State]] = {
    State.HANDSHAKEN: frozenset({State.CONNECTED, State.CLOSED}),
    State.CONNECTED: frozenset({State.CONNECTED, State.HELD, State.CLOSED}),
    # HELD -> HELD: a newer connect supersedes the held one; -> CONNECTED: released/abandoned.
    State.HELD: frozenset({State.HELD, State.CONNECTED, State.CLOSED}),
    State.CLOSED: frozenset(),
}
"""Every state change a session may make, in one place."""


class StateError(RuntimeError):
    """A transition :data:`TRANSITIONS` does not allow: a bug in the core, never input."""


@dataclass(eq=False)
class ServerSession:
    client_id: str
    browser_id: str | None
    expires_at: int
    connection_type: str = ""
    transport: str = "long-polling"
    """The transport that handshook: the only one this session is served on."""
    state: State = State.HANDSHAKEN
    attached: bool = False
    """A WebSocket serves this session now (:class:`Attach`); no other socket may take it."""
    queued_bytes: int = 0
    """Encoded size of ``queue`` and ``unacked`` together."""
    subscriptions: set[str] = field(default_factory=set)
    queue: deque[BayeuxMessage] = field(default_factory=deque)
    hold_id: str | int | None = None
    ack: bool = False
    batch: int = 0
    unacked: list[tuple[int, list[BayeuxMessage], int]] = field(default_factory=list)
    """Sent batches not acknowledged yet: (batch number, messages, their encoded size)."""
    attachments: dict[str, Any] = field(default_factory=dict)
    """Application state tied to the session (e.g. the chats it follows)."""
    publishing: int = 0
    """Service publishes whose application verdict is awaited. While the server owes the
    client an answer the session does not expire: a connect answered in the same batch as
    a slow publish (a chat start under load) leaves only with it, and the client's
    ``maxInterval`` counts from then (:meth:`BayeuxServer.complete`), not from when the
    reply was made."""

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def holding(self) -> bool:
        return self.state is State.HELD

    def pending(self) -> int:
        if not self.unacked:  # the common case, on the delivery hot path
            return len(self.queue)
        return len(self.queue) + sum(len(m) for _, m, _ in self.unacked)


def _move(session: ServerSession, state: State) -> None:
    """The one place a session changes state."""
    if state not in TRANSITIONS[session.state]:
        raise StateError(f"{session.state.value} -> {state.value}")
    session.state = state


# ---- events ---------------------------------------------------------------------------------
# What the I/O layer performs, in the order given. Slotted and frozen: a delivery to every
# member of a room makes one per member, on the hot path.


@dataclass(frozen=True, slots=True)
class Reply:
    """A message to write back on the request or socket that sent the input, in order."""

    message: BayeuxMessage


@dataclass(frozen=True, slots=True)
class Deliver:
    """Deliveries written right after the connect reply they travel in (same response)."""

    messages: list[BayeuxMessage]


@dataclass(frozen=True, slots=True)
class Publish:
    """A service-channel publish for the application. Its reply is held back until the
    application ran: pass the verdict (None, or a Bayeux error string) to
    :meth:`BayeuxServer.complete`, which returns the :class:`Reply` to write in its place."""

    session: ServerSession
    message: BayeuxMessage
    reply: BayeuxMessage
    """Pending: only :meth:`BayeuxServer.complete` finishes it."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Hold this connect until the session is woken or ``timeout_ms`` passes, then answer it
    with :meth:`BayeuxServer.release`."""

    session: ServerSession
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Supersede:
    """A newer connect is held in place of an older one: fail the older (CometD answers it
    with an error; its client has already moved on)."""

    session: ServerSession


@dataclass(frozen=True, slots=True)
class Wake:
    """A session with a held connect has deliveries: release the connect (or, with a
    WebSocket and no acks, write them straight away)."""

    session: ServerSession


@dataclass(frozen=True, slots=True)
class Queued:
    """Deliveries wait for a session not holding a connect; a WebSocket without acks may
    write them at once (:meth:`BayeuxServer.take`)."""

    session: ServerSession


@dataclass(frozen=True, slots=True)
class Release:
    """The server is draining: answer this session's held connect now
    (:meth:`BayeuxServer.release`), with what is queued and the advice to reconnect."""

    session: ServerSession


@dataclass(frozen=True, slots=True)
class GoAway:
    """The server is draining and this exchange answered the session's connect: once its
    replies are written, close the connection (a long-poll response with ``Connection:
    close``, a WebSocket with 1001), so that the client reconnects on a new one, elsewhere."""

    session: ServerSession


@dataclass(frozen=True, slots=True)
class Handshaken:
    """A new session (the I/O layer records where it came from)."""

    session: ServerSession


@dataclass(frozen=True, slots=True)
class Attach:
    """This WebSocket serves the session from now on (it handshook or resumed on it)."""

    session: ServerSession


@dataclass(frozen=True, slots=True)
class Ended:
    """The session is closed: its socket, held connect and application state must let go of
    it. Performing it twice is harmless (a delivery to a closed session repeats it)."""

    session: ServerSession


@dataclass(frozen=True, slots=True)
class SetCookie:
    """Set the ``BAYEUX_BROWSER`` cookie on this response."""

    browser_id: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the WebSocket: the frame broke the protocol (CometD closes with 1011)."""

    code: int
    reason: str


Event = Reply | Deliver | Publish | Hold | Supersede | Wake | Queued | Release | GoAway \
    | Handshaken | Attach | Ended | SetCookie | Close


CLIENT_ID_RANDOM_BYTES = 18
"""Randomness of a clientId (144 bits, as CometD's), whatever node tag it also carries."""


class BayeuxServer:
    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.node_tag = ""
        """Prefixed to every new clientId: which process of a cluster holds the session, so
        that another one can pass the session's requests on to it
        (``server/cometd_forward.py``). Empty for a process alone."""
        self.sessions: dict[str, ServerSession] = {}
        self.subscribers: dict[str, set[str]] = {}
        self.draining = False
        """Set by :meth:`drain`: connects are no longer held (see the module docstring)."""

    # ---- input -----------------------------------------------------------------------------

    def receive(self, messages: list[BayeuxMessage], now_ms: int, *,
                browser_id: str | None = None, bound: ServerSession | None = None,
                transport: str = "long-polling") -> list[Event]:
        """The events for one request body or WebSocket frame. ``bound``: the session the
        WebSocket serves already (its messages may only be for that one)."""
        out: list[Event] = []
        handshakes = [m for m in messages if m.channel == META_HANDSHAKE]
        if handshakes and len(messages) > 1:
            if transport == "websocket":
                # CometD closes with 1011 on this protocol violation; so does the socket's
                # session, which the client cannot resume after breaking it.
                if bound is not None:
                    self._close(bound, out)
                out.append(Close(1011, "protocol violation"))
                return out
            messages = handshakes[:1]  # HTTP: a handshake is processed alone
        for msg in messages:
            found = self._one(msg, now_ms, browser_id, bound, transport, out)
            if transport == "websocket" and found is not None and found is not bound:
                found.attached = True
                out.append(Attach(found))
                bound = found  # the rest of the frame is for this session only
        return out

    def complete(self, publish: Publish, error: str | None, now_ms: int) -> Reply:
        """Finish a publish's reply with the application's verdict (None: it worked). Call
        it exactly once per :class:`Publish`, also when the application failed or the
        exchange was cancelled: until then the session cannot expire (see
        :attr:`ServerSession.publishing`)."""
        session = publish.session
        session.publishing -= 1
        if not session.closed and not session.holding:
            session.expires_at = max(session.expires_at, now_ms + self.options.interval_ms
                                     + self.options.max_interval_ms)
        reply = publish.reply
        if error is None:
            reply.successful = True
        else:
            reply.successful, reply.error = False, error
        return Reply(reply)

    def _one(self, msg: BayeuxMessage, now: int, browser_id: str | None,
             bound: ServerSession | None, transport: str, out: list[Event]
             ) -> ServerSession | None:
        """Process one message; returns the live session it was for, if any."""
        channel = msg.channel
        if channel is UNSET or not channel:
            out.append(Reply(self._fail(msg, "", "channel_missing")))
            return None
        if msg.id is not UNSET and not _valid_id(msg.id):
            out.append(Reply(self._fail(msg, channel, "id_invalid")))
            return None
        if not channels.is_valid(channel):
            out.append(Reply(self._fail(msg, channel, "channel_invalid")))
            return None
        if channel == META_HANDSHAKE:
            return self._handshake(msg, now, browser_id, bound, transport, out)
        session = self._session(msg, browser_id, bound, transport)
        if session is None:
            out.append(Reply(self._unknown(msg, channel)))
            return None
        if channel == META_CONNECT:
            self._connect(session, msg, now, transport, out)
        elif channel == META_DISCONNECT:
            self._disconnect(session, msg, out)
            return None
        elif channel in (META_SUBSCRIBE, META_UNSUBSCRIBE):
            self._subscription(session, msg, out)
        elif channels.is_meta(channel) or channels.is_wild(channel):
            out.append(Reply(self._fail(msg, channel, "channel_invalid")))
        else:
            self._publish(session, msg, out)
        return None if session.closed else session

    def _session(self, msg: BayeuxMessage, browser_id: str | None,
                 bound: ServerSession | None, transport: str) -> ServerSession | None:
        if bound is not None:
            # A WebSocket is bound to the session that handshook on it; a clientId naming
            # another session is not trusted.
            if bound.closed or (msg.clientId is not UNSET and msg.clientId != bound.client_id):
                return None
            return bound
        if msg.clientId is UNSET:
            return None
        session = self.sessions.get(msg.clientId)
        if session is None or session.closed:
            return None
        if session.transport != transport:
            return None  # bound to the transport that handshook (clients re-handshake)
        if transport == "websocket":
            # A new socket resuming by clientId (CometD reconnects without a handshake), but
            # never one that would take the session from the live socket serving it.
            return None if session.attached else session
        if session.browser_id is not None and session.browser_id != browser_id \
                and self.options.require_browser_cookie:
            return None
        return session

    def _handshake(self, msg: BayeuxMessage, now: int, browser_id: str | None,
                   bound: ServerSession | None, transport: str, out: list[Event]
                   ) -> ServerSession | None:
        offered = msg.supportedConnectionTypes
        common = [t for t in self.options.connection_types
                  if offered is UNSET or t in offered]
        if msg.version is UNSET or not common:
            reply = self._fail(msg, META_HANDSHAKE, "handshake_denied")
            reply.supportedConnectionTypes = list(self.options.connection_types)
            reply.advice = {"reconnect": "none"}
            out.append(Reply(reply))
            return None
        if len(self.sessions) >= self.options.max_sessions:
            reply = self._fail(msg, META_HANDSHAKE, "handshake_denied")
            reply.advice = {"reconnect": "handshake", "interval": 1000}
            out.append(Reply(reply))
            return None
        if bound is not None:
            # A second handshake on a socket replaces its session: the first would otherwise
            # live on with nothing to serve it.
            self._close(bound, out)
        if transport != "websocket" and browser_id is None:
            browser_id = secrets.token_hex(8)
            out.append(SetCookie(browser_id))
        session = ServerSession(
            client_id=self.node_tag + secrets.token_urlsafe(CLIENT_ID_RANDOM_BYTES),
            browser_id=browser_id,
            expires_at=now + self.options.max_interval_ms, connection_type=transport,
            transport=transport)
        wants_ack = isinstance(msg.ext, dict) and msg.ext.get("ack") is True
        session.ack = wants_ack and self.options.ack_enabled
        self.sessions[session.client_id] = session
        reply = BayeuxMessage(
            channel=META_HANDSHAKE, successful=True, clientId=session.client_id, version="1.0",
            minimumVersion="1.0", supportedConnectionTypes=list(self.options.connection_types),
            advice={"reconnect": "retry", "interval": self.options.interval_ms,
                    "timeout": self.options.timeout_ms})
        if msg.id is not UNSET:
            reply.id = msg.id
        if session.ack:
            reply.ext = {"ack": True}
        out.append(Handshaken(session))
        out.append(Reply(reply))
        return session

    def _connect(self, session: ServerSession, msg: BayeuxMessage, now: int, transport: str,
                 out: list[Event]) -> None:
        session.connection_type = msg.connectionType if isinstance(msg.connectionType, str) \
            else transport
        was_held = session.state is State.HELD
        if session.ack:
            acked = msg.ext.get("ack") if isinstance(msg.ext, dict) else None
            if isinstance(acked, int) and not isinstance(acked, bool):
                self._acknowledge(session, acked)
            self._requeue_unacked(session)
        client_timeout = None
        if isinstance(msg.advice, dict) and isinstance(msg.advice.get("timeout"), int):
            client_timeout = int(msg.advice["timeout"])
        immediate = (session.state is State.HANDSHAKEN or client_timeout == 0
                     or bool(session.queue) or self.draining)
        session.hold_id = msg.id if msg.id is not UNSET else None
        send_advice = client_timeout is not None or isinstance(msg.advice, dict)
        if immediate:
            _move(session, State.CONNECTED)
            self._connect_reply(session, now, send_advice, out)
            return
        _move(session, State.HELD)
        if was_held:
            out.append(Supersede(session))
        timeout = self.options.timeout_ms if client_timeout is None else client_timeout
        out.append(Hold(session, max(0, min(timeout, self.options.timeout_ms))))

    def _connect_reply(self, session: ServerSession, now: int, advice: bool,
                       out: list[Event]) -> None:
        reply = BayeuxMessage(channel=META_CONNECT, successful=True)
        if session.hold_id is not None:
            reply.id = session.hold_id
        if self.draining:
            # Reconnect at once: a new connection, which lands on a process that stays.
            reply.advice = {"reconnect": "retry", "interval": 0,
                            "timeout": self.options.timeout_ms}
        elif advice:
            reply.advice = {"reconnect": "retry", "interval": self.options.interval_ms,
                            "timeout": self.options.timeout_ms}
        delivered = list(session.queue)
        session.queue.clear()
        if session.ack:
            session.batch += 1
            session.unacked.append((session.batch, delivered, session.queued_bytes
                                    - sum(b for _, _, b in session.unacked)))
            reply.ext = {"ack": session.batch}
        else:
            session.queued_bytes = 0
        session.expires_at = now + self.options.interval_ms + self.options.max_interval_ms
        out.append(Reply(reply))
        if delivered:
            out.append(Deliver(delivered))
        if self.draining:
            out.append(GoAway(session))

    def drain(self) -> list[Event]:
        """The server is about to stop: hold no connect any longer. Every held one is to be
        answered now (a :class:`Release` each), and every later connect is answered at once;
        each such answer carries what is queued and the advice to reconnect at once, and is
        followed by :class:`GoAway`. Nothing queued is dropped: it leaves in those answers."""
        self.draining = True
        return [Release(s) for s in self.sessions.values() if s.holding]

    def release(self, session: ServerSession, now_ms: int) -> list[Event]:
        """Answer a held connect: its reply and everything queued (or an empty reply on
        timeout). A session closed meanwhile gets ``reconnect: none``."""
        out: list[Event] = []
        if session.closed:
            reply = BayeuxMessage(channel=META_CONNECT, successful=True,
                                  advice={"reconnect": "none"})
            if session.hold_id is not None:
                reply.id = session.hold_id
            out.append(Reply(reply))
            return out
        _move(session, State.CONNECTED)
        self._connect_reply(session, now_ms, False, out)
        return out

    def abandon(self, session: ServerSession, now_ms: int) -> None:
        """The connection of a held connect went away: start the expiry clock (§3.7)."""
        if session.state is State.HELD:
            _move(session, State.CONNECTED)
            session.expires_at = now_ms + self.options.interval_ms + self.options.max_interval_ms

    def detach(self, session: ServerSession) -> None:
        """The WebSocket serving the session closed: another socket may resume it."""
        session.attached = False

    def _acknowledge(self, session: ServerSession, acked: int) -> None:
        kept = [entry for entry in session.unacked if entry[0] > acked]
        session.queued_bytes -= sum(size for b, _, size in session.unacked if b <= acked)
        session.unacked = kept

    def _requeue_unacked(self, session: ServerSession) -> None:
        if session.unacked:  # their bytes stay counted: they move back to the queue
            resend = [m for _, batch, _ in session.unacked for m in batch]
            session.unacked.clear()
            session.queue.extendleft(reversed(resend))

    def _disconnect(self, session: ServerSession, msg: BayeuxMessage, out: list[Event]) -> None:
        reply = BayeuxMessage(channel=META_DISCONNECT, successful=True)
        if msg.id is not UNSET:
            reply.id = msg.id
        out.append(Reply(reply))
        self._close(session, out)

    def _subscription(self, session: ServerSession, msg: BayeuxMessage, out: list[Event]
                      ) -> None:
        channel = str(msg.channel)
        raw = msg.subscription
        names = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else []
        reply = BayeuxMessage(channel=channel, subscription=raw if raw is not UNSET else UNSET)
        if msg.id is not UNSET:
            reply.id = msg.id
        if not names:
            reply.successful, reply.error = False, "403::subscription_missing"
        elif not all(channels.is_valid(n, allow_wildcard=True) for n in names):
            reply.successful, reply.error = False, "403::subscription_invalid"
        elif any(channels.is_meta(n) for n in names):
            reply.successful = False
            reply.error = "403::subscribe_failed" if channel == META_SUBSCRIBE \
                else "403::unsubscribe_failed"
        else:
            reply.successful = True
            for name in names:
                if channels.is_service(name):
                    continue  # service subscriptions are answered but not recorded (§3.1)
                if channel == META_SUBSCRIBE:
                    session.subscriptions.add(name)
                    self.subscribers.setdefault(name, set()).add(session.client_id)
                else:
                    session.subscriptions.discard(name)
                    self._unsubscribe(name, session.client_id)
        out.append(Reply(reply))

    def _unsubscribe(self, name: str, client_id: str) -> None:
        subs = self.subscribers.get(name)
        if subs is not None:
            subs.discard(client_id)
            if not subs:
                del self.subscribers[name]

    def _publish(self, session: ServerSession, msg: BayeuxMessage, out: list[Event]) -> None:
        channel = str(msg.channel)
        reply = BayeuxMessage(channel=channel)
        if msg.id is not UNSET:
            reply.id = msg.id
        if msg.data is UNSET:
            reply.successful, reply.error = False, "400::data_missing"
            out.append(Reply(reply))
            return
        if channels.is_service(channel):
            session.publishing += 1
            out.append(Publish(session, msg, reply))  # its reply waits for the application
            return
        if not self.options.broadcast:
            reply.successful, reply.error = False, "403::publish_denied"
            out.append(Reply(reply))
            return
        reply.successful = True
        out.append(Reply(reply))
        out.extend(self.broadcast(channel, msg.data))

    # ---- output ----------------------------------------------------------------------------

    def broadcast(self, channel: str, data: Any) -> list[Event]:
        """Deliver to every subscriber of ``channel`` (never the publisher's id/clientId):
        an event per session delivered to (:meth:`deliver`)."""
        targets: set[str] = set()
        for pattern in channels.patterns_for(channel):
            targets |= self.subscribers.get(pattern, set())
        events: list[Event] = []
        message = BayeuxMessage(channel=channel, data=data)  # shared: messages are not mutated
        size = message_size(message)
        for client_id in targets:
            session = self.sessions.get(client_id)
            if session is not None:
                events.append(self.deliver(session, message, size))
        return events

    def take(self, session: ServerSession) -> list[BayeuxMessage]:
        """Hand over a session's queue to be written now, outside any connect reply. Only for
        sessions without the ack extension, whose deliveries need no batch accounting."""
        if session.ack:
            return []
        taken = list(session.queue)
        session.queue.clear()
        session.queued_bytes = 0
        return taken

    def deliver(self, session: ServerSession, message: BayeuxMessage, size: int | None = None
                ) -> Wake | Queued | Ended:
        """Queue a delivery (``size``: its encoded length, when the caller knows it). Past
        the session's bounds the session is closed rather than trimmed: :class:`Ended`."""
        if session.closed:
            return Ended(session)
        size = message_size(message) if size is None else size
        if session.pending() >= self.options.max_queue \
                or session.queued_bytes + size > self.options.max_queue_bytes:
            out: list[Event] = []
            self._close(session, out)
            return Ended(session)
        session.queue.append(message)
        session.queued_bytes += size
        return Wake(session) if session.state is State.HELD else Queued(session)

    def expire(self, now_ms: int) -> list[Event]:
        """Remove sessions whose client stopped connecting (§3.7 maxInterval)."""
        gone = [s for s in self.sessions.values()
                if s.state is not State.HELD and not s.publishing and s.expires_at < now_ms]
        out: list[Event] = []
        for session in gone:
            self._close(session, out)
        return out

    def end(self, session: ServerSession) -> list[Event]:
        """Close a session from the I/O side (e.g. its socket was dropped as a slow consumer)."""
        out: list[Event] = []
        self._close(session, out)
        return out

    def _close(self, session: ServerSession, out: list[Event]) -> None:
        """The one way a session ends: forgotten here, and :class:`Ended` for the I/O layer
        (a held connect is then answered with ``reconnect: none``)."""
        if session.closed:
            return
        _move(session, State.CLOSED)
        self.sessions.pop(session.client_id, None)
        for name in list(session.subscriptions):
            self._unsubscribe(name, session.client_id)
        session.subscriptions.clear()
        session.queue.clear()
        session.unacked.clear()
        session.queued_bytes = 0
        out.append(Ended(session))

    # ---- errors ----------------------------------------------------------------------------

    def _fail(self, msg: BayeuxMessage, channel: str, key: str) -> BayeuxMessage:
        reply = BayeuxMessage(channel=channel or "", successful=False,
                              error=error_text(self.options.error_style, key))
        if msg.id is not UNSET and _valid_id(msg.id):
            reply.id = msg.id
        return reply

    def _unknown(self, msg: BayeuxMessage, channel: str) -> BayeuxMessage:
        reply = self._fail(msg, channel, "unknown")
        reply.advice = {"reconnect": "handshake", "interval": 0}
        return reply


def _valid_id(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isascii() \
        and all(c.isalnum() or c in "-_." for c in value)
