"""CometD transports on the aiohttp app: long-polling and WebSocket at ``/genesys/cometd``.

All protocol decisions are the sans-I/O :class:`BayeuxServer`'s: it answers each request
body or frame with a list of events, and this module performs them in order (:meth:`_perform`):
writes replies, holds connects and wakes them, sets the ``BAYEUX_BROWSER`` cookie, binds a
WebSocket to its session, forgets ended sessions, and hands service-channel publishes to the
application (:class:`ChatChannel`), whose verdict goes back to the core to finish the reply.
It also sweeps expired sessions and idle sockets on a timer.

What a connection may cost is bounded here (limits in :class:`ServerOptions`): a body or
frame is checked for size and JSON depth before it is decoded; what waits to be written to a
WebSocket is capped (a peer that does not read is dropped as a slow consumer); a WebSocket
serves one session at a time and forgets it when it closes; sockets without a live session
that send nothing for ``max_interval_ms`` are closed by the sweeper.

Before the server stops it drains (:meth:`CometdEndpoint.drain`): every client is told to
reconnect, which through a load balancer means to another process, and nothing queued for a
session is dropped: it leaves in the answers that tell it so.

In a cluster, a long-polling request for a session another process holds is passed on to
that process before the core sees it (:mod:`webchat.server.cometd_forward`), after the same
size and decoding checks; the process holding the session applies every rule again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSMessage, WSMsgType, web

from webchat.protocol.bayeux.messages import (
    BayeuxMessage,
    DecodeError,
    TooLarge,
    decode_messages,
    encode_messages,
)
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
    Queued,
    Release,
    Reply,
    ServerOptions,
    ServerSession,
    SetCookie,
    Supersede,
    Wake,
)
from webchat.protocol.gms.forms import FormError, parse_form
from webchat.server import addresses
from webchat.server.addresses import ClientAddress
from webchat.server.ratelimit import RateLimiter
from webchat.server.wsframes import direct, text_frame, writable_now

if TYPE_CHECKING:
    from webchat.server.cometd_forward import Forwarder

log = logging.getLogger(__name__)

COOKIE = "BAYEUX_BROWSER"
ServiceHandler = Callable[[ServerSession, BayeuxMessage], Awaitable[str | None]]
"""Handles a service-channel publish; returns a Bayeux error string to fail its reply."""
EndHandler = Callable[[ServerSession], None]
Sent = Callable[[str, list[BayeuxMessage]], None]
"""Told of messages handed to a client's connection: its transport and the messages."""
GOING_AWAY = 1001
"""WebSocket close code of a draining server (RFC 6455 §7.4.1): clients reconnect."""


def _now() -> int:
    return time.monotonic_ns() // 1_000_000


class CometdEndpoint:
    def __init__(self, path: str, options: ServerOptions | None = None, *,
                 max_body_bytes: int = 256 * 1024, handshake_rate: tuple[float, int] = (5, 50),
                 duplicate_connect_status: int = 500,
                 client_address: ClientAddress | None = None,
                 forwarder: Forwarder | None = None) -> None:
        self.path = path
        self.client_address = client_address or addresses.client_address(False)
        self.bayeux = BayeuxServer(options)
        self.options = self.bayeux.options
        self.max_body = max_body_bytes
        self.handshakes = RateLimiter(*handshake_rate)
        self.duplicate_status = duplicate_connect_status
        self.on_service: ServiceHandler | None = None
        self.on_end: EndHandler | None = None
        self.forwarder = forwarder
        """In a cluster: passes long-polling requests for another process's sessions on to
        it (``server/cometd_forward.py``); None for a process alone."""
        self._waiters: dict[str, asyncio.Future[bool] | _SocketHold] = {}
        """Each held connect by clientId: a long-poll request's future, or a WebSocket's
        :class:`_SocketHold`."""
        self._serving: dict[str, _Socket] = {}
        """The WebSocket serving each attached session, by clientId."""
        self._sweeper: asyncio.Task[None] | None = None
        self._connections: set[_Socket] = set()
        self.sent: list[Sent] = []
        """Told of every reply and delivery as it is handed to a connection (metrics)."""
        self._drain: asyncio.Task[None] | None = None
        self._owed: set[ServerSession] = set()
        """While draining: sessions that had deliveries waiting for their client's next
        connect when the drain began, and have not had their answer yet."""
        self._drain_progress = asyncio.Event()
        """Set when a draining client collected its answer or a socket closed."""
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def sockets(self) -> list[web.WebSocketResponse]:
        """The open CometD WebSockets."""
        return [sock.ws for sock in self._connections]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", self.path, self.handle)
        app.router.add_route("*", self.path + "/{suffix:.*}", self.handle)

    async def start(self) -> None:
        if self.forwarder is not None:
            self.bayeux.node_tag = await self.forwarder.start()
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        """Drain (with no time to wait for anyone, if nobody drained before), then let go of
        whatever is left."""
        if self.forwarder is not None:
            await self.forwarder.stop()  # first: peers stop sending this process requests
        await self.drain(0.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for sock in list(self._connections):
            await self._go_away(sock)
        for waiter in list(self._waiters.values()):
            self._settle(waiter, True)

    def begin_drain(self) -> None:
        """The server is about to stop: from now on no connect is held, and every answer to
        one tells its client to reconnect at once, on a new connection (which a load balancer
        sends to another process), with everything queued (:meth:`BayeuxServer.drain`). Held
        connects are answered now; a WebSocket that owes its client nothing is closed with
        1001 (the CometD clients reconnect on it), the others once their last answer is
        written. Idempotent."""
        if self.bayeux.draining:
            return
        self._affect_all(self.bayeux.drain())
        self._owed = {s for s in self.bayeux.sessions.values() if s.queue and not s.holding}
        for sock in list(self._connections):
            session = sock.session
            if session is None or not (session.holding or session.queue):
                self._retire(sock)

    async def drain(self, within_s: float) -> None:
        """:meth:`begin_drain`, then give sessions with deliveries waiting for their client's
        next connect up to ``within_s`` for it to come and collect them; then close every
        socket still open. Idempotent: a second call waits for the first."""
        self.begin_drain()
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_within(within_s))
        await asyncio.shield(self._drain)

    async def _drain_within(self, within_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while (self._connections or self._owed) and loop.time() < deadline:
            self._drain_progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain_progress.wait(), deadline - loop.time())
        for sock in list(self._connections):
            self._retire(sock)
        if self._closing:
            await asyncio.wait(set(self._closing))

    def _retire(self, sock: _Socket) -> None:
        """Close the socket with 1001 once what waits for it is written (in a task of its
        own: the socket's own tasks are cancelled as it closes)."""
        if sock.retiring:
            return
        sock.retiring = True
        task = asyncio.create_task(self._go_away(sock))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _go_away(self, sock: _Socket) -> None:
        sock.retiring = True
        await sock.flushed()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await sock.ws.close(code=GOING_AWAY, message=b"server shutting down")

    @property
    def attached(self) -> int:
        """How many sessions a WebSocket serves now (for tests and the benchmark)."""
        return len(self._serving)

    # ---- application side ------------------------------------------------------------------

    def deliver(self, session: ServerSession, message: BayeuxMessage) -> None:
        self._affect(self.bayeux.deliver(session, message))

    def _push(self, session: ServerSession) -> bool:
        """Write deliveries straight to a WebSocket when the session does not use acks
        (CometD's default); acknowledged sessions get them in connect replies only. Either
        way, a socket whose peer does not read is dropped once its bound is passed."""
        sock = self._serving.get(session.client_id)
        if sock is None:
            return False
        if session.ack:
            # Everything not acknowledged yet waits for this peer, sent or not.
            if session.queued_bytes + sock.buffered() > self.options.max_outbound_bytes \
                    or session.pending() > self.options.max_outbound_messages:
                self._drop_slow(sock)
            return False
        messages = self.bayeux.take(session)
        if messages:
            self._send(sock, messages)
        return True

    def _send(self, sock: _Socket, messages: list[BayeuxMessage]) -> None:
        """Replies and deliveries alike, in order on the socket; a peer that lets them pile
        up past the bounds is dropped."""
        if not messages:
            return
        sock.push(messages)
        self._sent("websocket", messages)
        if sock.buffered() > self.options.max_outbound_bytes \
                or len(sock.outbox) > self.options.max_outbound_messages:
            self._drop_slow(sock)

    def _drop_slow(self, sock: _Socket) -> None:
        """A peer that does not read what it is sent. Its socket is aborted (a close frame
        would only queue behind what it does not read). With acks the session stays for
        ``max_interval_ms``: the client reconnects (the standing advice is ``retry``) and gets
        every unacknowledged message again. Without, what was dropped cannot be re-sent, so
        the session ends and the client re-handshakes (402 advises it)."""
        session = sock.session
        log.info("dropping a slow CometD consumer (%d bytes waiting)", sock.buffered())
        if session is not None and not session.ack:
            self._affect_all(self.bayeux.end(session))
        sock.abort()

    def _wake(self, session: ServerSession) -> None:
        waiter = self._waiters.get(session.client_id)
        if waiter is not None:
            self._settle(waiter, True)

    def _settle(self, waiter: asyncio.Future[bool] | _SocketHold, answer: bool) -> None:
        """End a held connect: answered (True), or dropped for a newer one (False).

        A WebSocket's is answered on the loop's next turn, as a long-poll's future wakes its
        request: whatever else this turn queues for the session (more deliveries, the
        drain's advice) leaves in the same answer."""
        if isinstance(waiter, _SocketHold):
            if answer:
                asyncio.get_running_loop().call_soon(self._answer_hold, waiter)
            else:
                self._answer_hold(waiter, superseded=True)
        elif not waiter.done():
            waiter.set_result(answer)

    def _ended(self, session: ServerSession) -> None:
        """A session is gone (disconnect, expiry, overflow, or ended here): nothing may keep
        it, its socket or its held connect alive any longer."""
        sock = self._serving.pop(session.client_id, None)
        if sock is not None and sock.session is session:
            sock.session = None
        self.bayeux.detach(session)
        self._wake(session)
        if session in self._owed:  # its client will not come for what it was owed
            self._owed.discard(session)
            self._drain_progress.set()
        if self.on_end is not None:
            self.on_end(session)

    def _affect(self, event: Event) -> None:
        """Perform an event about a session rather than about the exchange at hand (a
        delivery, an expiry, a drop): they need no reply and no await."""
        match event:
            case Wake(session):
                if not self._push(session):
                    self._wake(session)
            case Queued(session):
                self._push(session)
            case Ended(session):
                self._ended(session)
            case Release(session):
                self._wake(session)
            case Supersede(session):
                self._supersede(session)
            case _:
                raise AssertionError(f"{type(event).__name__} needs an exchange")

    def _affect_all(self, events: list[Event]) -> None:
        for event in events:
            self._affect(event)

    async def _perform(self, events: list[Event], exchange: _Exchange) -> None:
        """Perform the core's events for one request or frame, in order. A service publish
        runs the application before anything after it; its verdict goes back to the core,
        which returns the finished reply in the publish's place."""
        for event in events:
            if isinstance(event, Publish):
                verdict: str | None = "500::internal_error"  # if cancelled: never written
                try:
                    verdict = await self._verdict(event)
                finally:
                    reply = self.bayeux.complete(event, verdict, _now())
                exchange.messages.append(reply.message)
            else:
                self._gather(event, exchange)

    def _gather(self, event: Event, exchange: _Exchange) -> None:
        """Perform one event that needs no await into ``exchange`` (all but a publish)."""
        match event:
            case Reply(message):
                exchange.messages.append(message)
            case Deliver(messages):
                exchange.messages.extend(messages)
            case Hold():
                exchange.hold = event
            case Handshaken(session):
                session.attachments[addresses.CLIENT] = exchange.remote
            case Attach(session):
                if exchange.sock is not None:
                    self._attach(exchange.sock, session)
            case SetCookie(browser_id):
                exchange.cookie = browser_id
            case Close():
                exchange.close = event
            case GoAway(session):
                exchange.go_away = True
                self._owed.discard(session)
                self._drain_progress.set()
            case _:
                self._affect(event)

    def _sent(self, transport: str, messages: list[BayeuxMessage]) -> None:
        for listener in self.sent:
            listener(transport, messages)

    async def _verdict(self, event: Publish) -> str | None:
        """The application's answer to a service publish: None, or the reply's error."""
        if self.on_service is None:
            return None
        try:
            return await self.on_service(event.session, event.message)
        except Exception:
            log.exception("service handler failed on %s", event.message.channel)
            return "500::internal_error"

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = _now()
            self._affect_all(self.bayeux.expire(now))
            idle = self.options.max_interval_ms
            for sock in [s for s in self._connections
                         if s.session is None and now - s.last_frame > idle]:
                sock.abort()  # idle WebSocket reaping: no session, nothing sent

    async def _hold(self, session: ServerSession, timeout_ms: int) -> list[Event]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiters[session.client_id] = fut
        if session.queue or session.closed:
            fut.set_result(True)  # delivered while the request was being processed
        # A plain timer rather than wait_for: this runs once per delivery round trip.
        timer = loop.call_later(timeout_ms / 1000, _settle_true, fut)
        try:
            superseded = (await fut) is False
        except asyncio.CancelledError:
            self.bayeux.abandon(session, _now())
            raise
        finally:
            timer.cancel()
            if self._waiters.get(session.client_id) is fut:
                del self._waiters[session.client_id]
        if superseded and not session.closed:
            raise _Superseded
        return self.bayeux.release(session, _now())

    def _supersede(self, session: ServerSession) -> None:
        waiter = self._waiters.pop(session.client_id, None)
        if waiter is not None:
            self._settle(waiter, False)

    def _hold_on_socket(self, sock: _Socket, event: Hold, remote: str) -> None:
        """Hold a connect that came on a WebSocket: a timer and the socket, no task. The
        socket goes on reading while the connect is held, and whatever ends the hold (a
        wake, the timeout, a newer connect, the drain) answers it right there, through the
        socket's ordered writes. A task per hold (its coroutines, a future, an exchange,
        some fifteen objects) lived the 30 s of each hold: at 10,000 chats and 1,000
        messages/s they were the largest share of what the garbage collector found young and
        walked twice (``benchmarks/cluster_chat.py``)."""
        session = event.session
        hold = _SocketHold(sock, session, remote)
        self._waiters[session.client_id] = hold
        sock.hold = hold
        if session.queue or session.closed:  # delivered while the frame was being handled
            self._answer_hold(hold)
            return
        hold.timer = asyncio.get_running_loop().call_later(
            event.timeout_ms / 1000, self._answer_hold, hold)

    def _answer_hold(self, hold: _SocketHold, superseded: bool = False) -> None:
        """Answer a WebSocket's held connect (or, superseded, just forget it: its client
        has moved on). Idempotent: whichever comes first ends the hold."""
        sock, session = hold.sock, hold.session
        if not self._end_hold(hold):
            return
        if superseded and not session.closed:
            return
        exchange = _Exchange(hold.remote, sock)
        for event in self.bayeux.release(session, _now()):
            self._gather(event, exchange)
        self._send(sock, exchange.messages)
        if exchange.go_away:
            self._retire(sock)

    def _drop_hold(self, sock: _Socket) -> None:
        """The socket of a held connect closed: nobody is left to answer; the session's
        expiry clock starts (the client may resume it on another connection)."""
        hold = sock.hold
        if hold is not None and self._end_hold(hold):
            self.bayeux.abandon(hold.session, _now())

    def _end_hold(self, hold: _SocketHold) -> bool:
        """Forget a WebSocket's held connect (its socket's mark, its timer, its waiter);
        False if it had ended already, whichever way."""
        if hold.sock.hold is not hold:
            return False
        hold.sock.hold = None
        if hold.timer is not None:
            hold.timer.cancel()
            hold.timer = None
        if self._waiters.get(hold.session.client_id) is hold:
            del self._waiters[hold.session.client_id]
        return True

    # ---- HTTP ------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        if request.method != "POST":
            return web.Response(status=405, text="Bayeux expects POST or a WebSocket upgrade",
                                headers={"Allow": "POST"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="message too large")
        try:
            messages = self._decode_http(body, request.content_type)
        except TooLarge as exc:
            return web.Response(status=413 if len(body) > self.max_body else 400,
                                text=f"malformed Bayeux message: {exc}")
        except DecodeError as exc:
            return web.Response(status=400, text=f"malformed Bayeux message: {exc}")
        remote = self.client_address(request)
        if self.forwarder is not None:
            routed = await self.forwarder.route(request, body, messages, remote)
            if isinstance(routed, web.StreamResponse):
                return routed  # the answer of the process holding the session
            remote = routed
        browser = request.cookies.get(COOKIE)
        refusal = self._flood_refusal(messages, remote, {"reconnect": "handshake",
                                                         "interval": 2000})
        if refusal is not None:
            return _json(refusal)
        exchange = _Exchange(remote)
        await self._perform(self.bayeux.receive(messages, _now(), browser_id=browser), exchange)
        if exchange.hold is not None:
            try:
                held = await self._hold(exchange.hold.session, exchange.hold.timeout_ms)
            except _Superseded:
                return web.Response(status=self.duplicate_status,
                                    text="superseded by a newer /meta/connect")
            await self._perform(held, exchange)
        response = _json(exchange.messages)
        if exchange.cookie:
            response.set_cookie(COOKIE, exchange.cookie, path="/", httponly=True)
        if exchange.go_away or self.bayeux.draining:
            response.force_close()  # the next request opens a connection to another process
        self._sent("long-polling", exchange.messages)
        return response

    def _flood_refusal(self, messages: list[BayeuxMessage], remote: str,
                       advice: dict[str, object]) -> list[BayeuxMessage] | None:
        """The reply to a handshake over this address's rate, or None to let it through."""
        if not any(m.channel == "/meta/handshake" for m in messages) \
                or self.handshakes.allow(remote):
            return None
        return [BayeuxMessage(channel="/meta/handshake", successful=False,
                              error="403::handshake_denied", advice=advice)]

    def _decode(self, body: bytes | str) -> list[BayeuxMessage]:
        """The one bounded decode for long-polling bodies and WebSocket frames."""
        return decode_messages(body, max_bytes=self.max_body,
                               max_depth=self.options.max_json_depth)

    def _decode_http(self, body: bytes, content_type: str) -> list[BayeuxMessage]:
        if content_type == "application/x-www-form-urlencoded":
            try:
                form = parse_form(body)
            except FormError as exc:
                raise DecodeError(str(exc)) from None
            if "message" not in form:
                raise DecodeError("form body without a 'message' parameter")
            return self._decode(form["message"])
        return self._decode(body)

    # ---- WebSocket -------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.bayeux.draining:
            return web.Response(status=503, text="shutting down: connect again",
                                headers={"Connection": "close"})
        # No permessage-deflate: Bayeux frames are small, and compressing each one cost more
        # CPU than everything else per delivery (profiled under load).
        ws = web.WebSocketResponse(max_msg_size=self.max_body, heartbeat=60.0, compress=False,
                                   timeout=_CLOSE_TIMEOUT_S)
        # The browser cookie binds HTTP side doors (chat-ntf files) to this session too.
        browser = request.cookies.get(COOKIE)
        if browser is None:
            browser = secrets.token_hex(8)
            ws.set_cookie(COOKIE, browser, path="/", httponly=True)
        await ws.prepare(request)
        sock = _Socket(ws, request.transport)
        self._connections.add(sock)
        remote = self.client_address(request)

        try:
            # ``ws.receive()`` rather than ``async for``: one coroutine less waiting on each
            # socket. Each wait lasts until the peer's next frame (seconds), so what is made
            # for it is no short-lived garbage but the collector's work twice over.
            while (frame := await ws.receive()).type not in _CLOSED:
                more = await self._on_frame(sock, frame, remote, browser)
                del frame  # with what it made (its exchange, messages), not at the next one
                if not more:
                    break
        except ConnectionError:
            pass  # the peer went away mid-write; the finally below forgets it
        finally:
            self._connections.discard(sock)
            self._drop_hold(sock)
            session = sock.session
            if session is not None:
                self.bayeux.detach(session)
                if self._serving.get(session.client_id) is sock:
                    del self._serving[session.client_id]
                sock.session = None
            await sock.stop()
            self._drain_progress.set()
            # aiohttp re-arms the heartbeat timer when data (the peer's close frame) arrives
            # after close(): the loop's TimerHandle then keeps the response, its reader and
            # buffers alive for the 60 s heartbeat (measured: 4,000 sockets closed for a
            # malformed frame, +46 MB for a minute). Disarm it once more, after that last
            # data has been handled.
            asyncio.get_running_loop().call_soon(_disarm_heartbeat, ws)
        return ws

    async def _on_frame(self, sock: _Socket, frame: WSMessage, remote: str, browser: str
                        ) -> bool:
        """Perform one frame of ``sock``'s peer; False once the socket is to close."""
        sock.last_frame = _now()
        if frame.type != WSMsgType.TEXT:
            if frame.type == WSMsgType.BINARY:
                await self._violation(sock, 1003, b"text frames only")
            return False
        try:
            messages = self._decode(frame.data)
        except TooLarge:
            await self._violation(sock, 1009, b"message too big or too deep")
            return False
        except DecodeError:
            await self._violation(sock, 1011, b"malformed Bayeux message")
            return False
        refusal = self._flood_refusal(messages, remote, {"reconnect": "none"})
        if refusal is not None:
            self._send(sock, refusal)
            return True
        exchange = _Exchange(remote, sock)
        await self._perform(self.bayeux.receive(
            messages, _now(), browser_id=browser, bound=sock.session,
            transport="websocket"), exchange)
        if exchange.close is not None:
            await self._violation(sock, exchange.close.code, exchange.close.reason.encode())
            return False
        self._send(sock, exchange.messages)
        if exchange.go_away:
            await self._go_away(sock)
            return False
        if exchange.hold is not None:
            self._hold_on_socket(sock, exchange.hold, remote)
        return True

    def _attach(self, sock: _Socket, session: ServerSession) -> None:
        sock.session = session
        self._serving[session.client_id] = sock

    async def _violation(self, sock: _Socket, code: int, reason: bytes) -> None:
        """Close a socket that broke the protocol. Its session ends now: the client cannot
        resume what it broke, and waiting for the expiry would keep it for nothing."""
        session = sock.session
        if session is not None and not session.closed:
            self._affect_all(self.bayeux.end(session))
        await sock.ws.close(code=code, message=reason)


class _SocketHold:
    """A connect held on a WebSocket (:meth:`CometdEndpoint._hold_on_socket`)."""

    __slots__ = ("remote", "session", "sock", "timer")

    def __init__(self, sock: _Socket, session: ServerSession, remote: str) -> None:
        self.sock = sock
        self.session = session
        self.remote = remote
        self.timer: asyncio.TimerHandle | None = None


@dataclass
class _Exchange:
    """What one request body or WebSocket frame produced for its own connection, gathered
    while its events are performed: what to write back, a connect to hold, a cookie, a
    close."""

    remote: str
    sock: _Socket | None = None
    messages: list[BayeuxMessage] = field(default_factory=list)
    hold: Hold | None = None
    cookie: str | None = None
    close: Close | None = None
    go_away: bool = False


_CLOSE_TIMEOUT_S = 2.0
"""How long a closing WebSocket waits for the peer's close frame before dropping it."""
_CLOSED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})
"""What ``ws.receive()`` returns once the socket is closing (where ``async for`` stops)."""


class _Socket:
    """One CometD WebSocket: the session it serves, its held connect, and what waits to be
    written to it.

    Replies, and deliveries to a session without acks, are written straight to the transport
    (the hot path: one synchronous write, no task, lock or await; aiohttp's awaited writer
    for each reply was 7 % of the server's time at 10,000 chats, profiled). Only when the
    socket is backed up do they wait in ``outbox`` as encoded arrays, written in order by one
    task that honours the socket's flow control; the endpoint bounds what waits.
    """

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None
                 ) -> None:
        self.ws = ws
        self.transport = direct(transport)
        self.session: ServerSession | None = None
        self.hold: _SocketHold | None = None
        """The connect held on this socket, if one is."""
        self.last_frame = _now()
        self.outbox: deque[bytes] = deque()
        self.outbox_bytes = 0
        self.retiring = False
        """Being closed for good (the server drains)."""
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    def buffered(self) -> int:
        """Bytes written but not yet taken by the peer, plus those waiting to be written."""
        transport = self.transport
        pending = transport.get_write_buffer_size() if transport is not None else 0
        return pending + self.outbox_bytes

    def push(self, messages: list[BayeuxMessage]) -> None:
        transport = self.transport
        payload = encode_messages(messages)
        if transport is not None and not (self._lock.locked() or self.outbox) \
                and writable_now(transport):
            if not self.ws.closed:
                transport.write(text_frame(payload))
            return
        if transport is not None and transport.is_closing():
            return
        self.outbox.append(payload)
        self.outbox_bytes += len(payload)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while self.outbox and not self.ws.closed:
                batch = list(self.outbox)
                self.outbox.clear()
                self.outbox_bytes = 0
                # Each payload is a JSON array of messages: one frame holds them all.
                joined = b"[" + b",".join(p[1:-1] for p in batch) + b"]"
                async with self._lock:
                    await self.ws.send_frame(joined, WSMsgType.TEXT)

    async def flushed(self) -> None:
        """Wait until what waits in the outbox has been written (or the socket closed)."""
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            await asyncio.wait({flusher})

    def abort(self) -> None:
        """Drop the connection at once, discarding whatever the peer has not read."""
        self.outbox.clear()
        self.outbox_bytes = 0
        if self.transport is not None:
            self.transport.abort()

    async def stop(self) -> None:
        """The socket is closed: cancel what still runs for it and let go of its buffers."""
        self.outbox.clear()
        self.outbox_bytes = 0
        task = self._flusher
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._flusher = None


class _Superseded(Exception):
    pass


def _disarm_heartbeat(ws: web.WebSocketResponse) -> None:
    ws._cancel_heartbeat()  # private, but the one call that drops the timer's reference


def _settle_true(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


def _json(messages: list[BayeuxMessage]) -> web.Response:
    return web.Response(body=encode_messages(messages),
                        content_type="application/json", charset="utf-8")
