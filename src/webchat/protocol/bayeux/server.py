"""The server side of Bayeux as a pure state machine.

Feed :meth:`BayeuxServer.receive` the messages of one HTTP request or WebSocket frame and the
current time; it returns an :class:`Outcome`: replies to send now, a ``/meta/connect`` to hold,
service-channel publishes for the application, a cookie to set. The I/O layer holds connects,
runs the clock (:meth:`expire`) and calls :meth:`release` when a held connect should return.

Deliveries are only ever sent in ``/meta/connect`` replies (CometD's ``metaConnectDeliverOnly``),
for every session. That gives strict server→client order on both transports, and makes the
acknowledgement extension (§3.10) simple: each connect reply is one batch; a batch stays
buffered until a later connect acknowledges it, and is re-sent, ahead of anything newer, after a
connection drop. Queues are bounded: a session whose queue overflows is closed, never silently
trimmed, and the client re-handshakes and resumes from its own position.

A session is bound to the transport that handshook it: a long-polling session is never served
over a WebSocket or the other way round (CometD clients only change transport with a new
handshake), and a WebSocket session is served by one socket at a time (``attached``).
"""

from __future__ import annotations

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


@dataclass(eq=False)
class ServerSession:
    client_id: str
    browser_id: str | None
    expires_at: int
    connection_type: str = ""
    transport: str = "long-polling"
    """The transport that handshook: the only one this session is served on."""
    attached: bool = False
    """A WebSocket serves this session now (set by the I/O layer); no other may take it."""
    queued_bytes: int = 0
    """Encoded size of ``queue`` and ``unacked`` together."""
    subscriptions: set[str] = field(default_factory=set)
    queue: deque[BayeuxMessage] = field(default_factory=deque)
    connected: bool = False
    holding: bool = False
    hold_id: str | int | None = None
    ack: bool = False
    batch: int = 0
    unacked: list[tuple[int, list[BayeuxMessage], int]] = field(default_factory=list)
    """Sent batches not acknowledged yet: (batch number, messages, their encoded size)."""
    closed: bool = False
    attachments: dict[str, Any] = field(default_factory=dict)
    """Application state tied to the session (e.g. the chats it follows)."""

    def pending(self) -> int:
        if not self.unacked:  # the common case, on the delivery hot path
            return len(self.queue)
        return len(self.queue) + sum(len(m) for _, m, _ in self.unacked)


@dataclass
class Outcome:
    replies: list[BayeuxMessage] = field(default_factory=list)
    hold: ServerSession | None = None
    """A connect to hold until :meth:`BayeuxServer.release` (deliveries or its timeout)."""
    hold_timeout_ms: int = 0
    superseded: bool = False
    """A new connect arrived while one was held: the I/O layer fails the older one."""
    published: list[tuple[ServerSession, BayeuxMessage]] = field(default_factory=list)
    """Service-channel publishes for the application (already acknowledged)."""
    woken: list[ServerSession] = field(default_factory=list)
    """Sessions with a held connect that now have something to deliver."""
    queued: list[ServerSession] = field(default_factory=list)
    """Sessions that got deliveries (a WebSocket without acks may write them at once)."""
    ended: list[ServerSession] = field(default_factory=list)
    """Sessions that disconnected, for the application to forget."""
    handshaken: ServerSession | None = None
    session: ServerSession | None = None
    """The existing session the messages were for (a WebSocket resuming is bound to it)."""
    set_cookie: str | None = None
    close: bool = False
    """Protocol violation on a WebSocket: close the connection (1011)."""


class BayeuxServer:
    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.sessions: dict[str, ServerSession] = {}
        self.subscribers: dict[str, set[str]] = {}

    # ---- input -----------------------------------------------------------------------------

    def receive(self, messages: list[BayeuxMessage], now_ms: int, *,
                browser_id: str | None = None, bound: ServerSession | None = None,
                transport: str = "long-polling") -> Outcome:
        out = Outcome()
        handshakes = [m for m in messages if m.channel == META_HANDSHAKE]
        if handshakes and len(messages) > 1:
            if transport == "websocket":
                out.close = True  # CometD closes with 1011 on this protocol violation
                return out
            messages = handshakes[:1]  # HTTP: a handshake is processed alone
        for msg in messages:
            self._one(msg, now_ms, browser_id, bound, transport, out)
        return out

    def _one(self, msg: BayeuxMessage, now: int, browser_id: str | None,
             bound: ServerSession | None, transport: str, out: Outcome) -> None:
        channel = msg.channel
        if channel is UNSET or not channel:
            out.replies.append(self._fail(msg, "", "channel_missing"))
            return
        if msg.id is not UNSET and not _valid_id(msg.id):
            out.replies.append(self._fail(msg, channel, "id_invalid"))
            return
        if not channels.is_valid(channel):
            out.replies.append(self._fail(msg, channel, "channel_invalid"))
            return
        if channel == META_HANDSHAKE:
            self._handshake(msg, now, browser_id, transport, out)
            return
        session = self._session(msg, browser_id, bound, transport)
        if session is None:
            out.replies.append(self._unknown(msg, channel))
            return
        out.session = session
        if channel == META_CONNECT:
            self._connect(session, msg, now, transport, out)
        elif channel == META_DISCONNECT:
            self._disconnect(session, msg, out)
        elif channel in (META_SUBSCRIBE, META_UNSUBSCRIBE):
            self._subscription(session, msg, out)
        elif channels.is_meta(channel) or channels.is_wild(channel):
            out.replies.append(self._fail(msg, channel, "channel_invalid"))
        else:
            self._publish(session, msg, now, out)

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

    def _handshake(self, msg: BayeuxMessage, now: int, browser_id: str | None, transport: str,
                   out: Outcome) -> None:
        offered = msg.supportedConnectionTypes
        common = [t for t in self.options.connection_types
                  if offered is UNSET or t in offered]
        if msg.version is UNSET or not common:
            reply = self._fail(msg, META_HANDSHAKE, "handshake_denied")
            reply.supportedConnectionTypes = list(self.options.connection_types)
            reply.advice = {"reconnect": "none"}
            out.replies.append(reply)
            return
        if len(self.sessions) >= self.options.max_sessions:
            reply = self._fail(msg, META_HANDSHAKE, "handshake_denied")
            reply.advice = {"reconnect": "handshake", "interval": 1000}
            out.replies.append(reply)
            return
        if transport != "websocket" and browser_id is None:
            browser_id = secrets.token_hex(8)
            out.set_cookie = browser_id
        session = ServerSession(
            client_id=secrets.token_urlsafe(18), browser_id=browser_id,
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
        out.replies.append(reply)
        out.handshaken = session

    def _connect(self, session: ServerSession, msg: BayeuxMessage, now: int, transport: str,
                 out: Outcome) -> None:
        session.connection_type = msg.connectionType if isinstance(msg.connectionType, str) \
            else transport
        if session.holding:
            out.superseded = True
        if session.ack:
            acked = msg.ext.get("ack") if isinstance(msg.ext, dict) else None
            if isinstance(acked, int) and not isinstance(acked, bool):
                self._acknowledge(session, acked)
            self._requeue_unacked(session)
        client_timeout = None
        if isinstance(msg.advice, dict) and isinstance(msg.advice.get("timeout"), int):
            client_timeout = int(msg.advice["timeout"])
        immediate = (not session.connected or client_timeout == 0 or bool(session.queue))
        session.hold_id = msg.id if msg.id is not UNSET else None
        session.connected = True
        send_advice = client_timeout is not None or isinstance(msg.advice, dict)
        if immediate:
            session.holding = False
            out.replies.extend(self._connect_reply(session, now, send_advice))
            return
        session.holding = True
        out.hold = session
        timeout = self.options.timeout_ms if client_timeout is None else client_timeout
        out.hold_timeout_ms = max(0, min(timeout, self.options.timeout_ms))

    def _connect_reply(self, session: ServerSession, now: int, advice: bool
                       ) -> list[BayeuxMessage]:
        reply = BayeuxMessage(channel=META_CONNECT, successful=True)
        if session.hold_id is not None:
            reply.id = session.hold_id
        if advice:
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
        return [reply, *delivered]

    def release(self, session: ServerSession, now_ms: int) -> list[BayeuxMessage]:
        """Answer a held connect: its reply and everything queued (or an empty reply on
        timeout). A session closed meanwhile gets ``reconnect: none``."""
        session.holding = False
        if session.closed:
            reply = BayeuxMessage(channel=META_CONNECT, successful=True,
                                  advice={"reconnect": "none"})
            if session.hold_id is not None:
                reply.id = session.hold_id
            return [reply]
        return self._connect_reply(session, now_ms, advice=False)

    def abandon(self, session: ServerSession, now_ms: int) -> None:
        """The connection of a held connect went away: start the expiry clock (§3.7)."""
        if session.holding:
            session.holding = False
            session.expires_at = now_ms + self.options.interval_ms + self.options.max_interval_ms

    def _acknowledge(self, session: ServerSession, acked: int) -> None:
        kept = [entry for entry in session.unacked if entry[0] > acked]
        session.queued_bytes -= sum(size for b, _, size in session.unacked if b <= acked)
        session.unacked = kept

    def _requeue_unacked(self, session: ServerSession) -> None:
        if session.unacked:  # their bytes stay counted: they move back to the queue
            resend = [m for _, batch, _ in session.unacked for m in batch]
            session.unacked.clear()
            session.queue.extendleft(reversed(resend))

    def _disconnect(self, session: ServerSession, msg: BayeuxMessage, out: Outcome) -> None:
        reply = BayeuxMessage(channel=META_DISCONNECT, successful=True)
        if msg.id is not UNSET:
            reply.id = msg.id
        out.replies.append(reply)
        self._remove(session)
        out.ended.append(session)
        if session.holding:
            out.woken.append(session)

    def _subscription(self, session: ServerSession, msg: BayeuxMessage, out: Outcome) -> None:
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
        out.replies.append(reply)

    def _unsubscribe(self, name: str, client_id: str) -> None:
        subs = self.subscribers.get(name)
        if subs is not None:
            subs.discard(client_id)
            if not subs:
                del self.subscribers[name]

    def _publish(self, session: ServerSession, msg: BayeuxMessage, now: int,
                 out: Outcome) -> None:
        channel = str(msg.channel)
        reply = BayeuxMessage(channel=channel)
        if msg.id is not UNSET:
            reply.id = msg.id
        if msg.data is UNSET:
            reply.successful, reply.error = False, "400::data_missing"
            out.replies.append(reply)
            return
        if not channels.is_service(channel) and not self.options.broadcast:
            reply.successful, reply.error = False, "403::publish_denied"
            out.replies.append(reply)
            return
        reply.successful = True
        out.replies.append(reply)
        if channels.is_service(channel):
            out.published.append((session, msg))
        else:
            out.queued.extend(self.broadcast(channel, msg.data, woken=out.woken))

    # ---- output ----------------------------------------------------------------------------

    def broadcast(self, channel: str, data: Any, woken: list[ServerSession] | None = None
                  ) -> list[ServerSession]:
        """Deliver to every subscriber of ``channel`` (never the publisher's id/clientId).
        Returns the sessions delivered to; those with a held connect are added to ``woken``."""
        targets: set[str] = set()
        for pattern in channels.patterns_for(channel):
            targets |= self.subscribers.get(pattern, set())
        delivered = []
        message = BayeuxMessage(channel=channel, data=data)  # shared: messages are not mutated
        size = message_size(message)
        for client_id in targets:
            session = self.sessions.get(client_id)
            if session is None:
                continue
            if self.deliver(session, message, size) and woken is not None:
                woken.append(session)
            delivered.append(session)
        return delivered

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
                ) -> bool:
        """Queue a delivery (``size``: its encoded length, when the caller knows it); returns
        True when a held connect should be released now. Past the session's bounds the
        session is closed (``closed`` is then set; the I/O layer ends it)."""
        if session.closed:
            return False
        size = message_size(message) if size is None else size
        if session.pending() >= self.options.max_queue \
                or session.queued_bytes + size > self.options.max_queue_bytes:
            self._remove(session)  # overflow: close rather than drop silently
            return session.holding
        session.queue.append(message)
        session.queued_bytes += size
        return session.holding

    def expire(self, now_ms: int) -> list[ServerSession]:
        """Remove sessions whose client stopped connecting (§3.7 maxInterval)."""
        gone = [s for s in self.sessions.values() if not s.holding and s.expires_at < now_ms]
        for session in gone:
            self._remove(session)
        return gone

    def end(self, session: ServerSession) -> None:
        """Close a session from the I/O side (its socket broke the protocol, or it was
        replaced by a new handshake on the same socket)."""
        self._remove(session)

    def _remove(self, session: ServerSession) -> None:
        session.closed = True
        self.sessions.pop(session.client_id, None)
        for name in list(session.subscriptions):
            self._unsubscribe(name, session.client_id)
        session.subscriptions.clear()
        session.queue.clear()
        session.unacked.clear()
        session.queued_bytes = 0

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
