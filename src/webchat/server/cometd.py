"""CometD transports on the aiohttp app: long-polling and WebSocket at ``/genesys/cometd``.

All protocol decisions are the sans-I/O :class:`BayeuxServer`'s; this module only holds
connects, wakes them, sets the ``BAYEUX_BROWSER`` cookie, sweeps expired sessions, and hands
service-channel publishes to the application (:class:`ChatChannel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from webchat.protocol.bayeux.messages import (
    BayeuxMessage,
    DecodeError,
    decode_messages,
    encode_messages,
)
from webchat.protocol.bayeux.server import BayeuxServer, Outcome, ServerOptions, ServerSession
from webchat.protocol.gms.forms import FormError, parse_form
from webchat.server import addresses
from webchat.server.addresses import ClientAddress
from webchat.server.ratelimit import RateLimiter

log = logging.getLogger(__name__)

COOKIE = "BAYEUX_BROWSER"
ServiceHandler = Callable[[ServerSession, BayeuxMessage], Awaitable[str | None]]
"""Handles a service-channel publish; returns a Bayeux error string to fail its reply."""
EndHandler = Callable[[ServerSession], None]


def _now() -> int:
    return time.monotonic_ns() // 1_000_000


class CometdEndpoint:
    def __init__(self, path: str, options: ServerOptions | None = None, *,
                 max_body_bytes: int = 256 * 1024, handshake_rate: tuple[float, int] = (5, 50),
                 duplicate_connect_status: int = 500,
                 client_address: ClientAddress | None = None) -> None:
        self.path = path
        self.client_address = client_address or addresses.client_address(False)
        self.bayeux = BayeuxServer(options)
        self.max_body = max_body_bytes
        self.handshakes = RateLimiter(*handshake_rate)
        self.duplicate_status = duplicate_connect_status
        self.on_service: ServiceHandler | None = None
        self.on_end: EndHandler | None = None
        self._waiters: dict[str, asyncio.Future[bool]] = {}
        self._pushers: dict[str, Callable[[list[BayeuxMessage]], None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.sockets: set[web.WebSocketResponse] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", self.path, self.handle)
        app.router.add_route("*", self.path + "/{suffix:.*}", self.handle)

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for ws in list(self.sockets):
            await ws.close(code=1001, message=b"server shutting down")
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_result(False)

    # ---- application side ------------------------------------------------------------------

    def deliver(self, session: ServerSession, message: BayeuxMessage) -> None:
        holding = self.bayeux.deliver(session, message)
        if not self._push(session) and holding:
            self._wake(session)
        if session.closed and self.on_end is not None:
            self.on_end(session)

    def _push(self, session: ServerSession) -> bool:
        """Write deliveries straight to a WebSocket when the session does not use acks
        (CometD's default); acknowledged sessions get them in connect replies only."""
        pusher = self._pushers.get(session.client_id)
        if pusher is None or session.ack:
            return False
        messages = self.bayeux.take(session)
        if messages:
            pusher(messages)
        return True

    def _wake(self, session: ServerSession) -> None:
        fut = self._waiters.get(session.client_id)
        if fut is not None and not fut.done():
            fut.set_result(True)

    async def _apply(self, out: Outcome) -> None:
        """Run the application's side of an outcome. Service publishes are handled before the
        replies go out, in order, so a publish's reply says whether the operation worked."""
        for session in out.woken:
            if not self._push(session):
                self._wake(session)
        for session in out.queued:
            self._push(session)
        for session in out.ended:
            if self.on_end is not None:
                self.on_end(session)
        for session, msg in out.published:
            if self.on_service is None:
                continue
            try:
                error = await self.on_service(session, msg)
            except Exception:
                log.exception("service handler failed on %s", msg.channel)
                error = "500::internal_error"
            if error is not None:
                for reply in out.replies:
                    if reply.channel == msg.channel and reply.id == msg.id:
                        reply.successful, reply.error = False, error
                        break

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for session in self.bayeux.expire(_now()):
                if self.on_end is not None:
                    self.on_end(session)

    async def _hold(self, session: ServerSession, timeout_ms: int) -> list[BayeuxMessage]:
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
        fut = self._waiters.pop(session.client_id, None)
        if fut is not None and not fut.done():
            fut.set_result(False)

    # ---- HTTP ------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        if request.method != "POST":
            return web.Response(status=405, text="Bayeux expects POST or a WebSocket upgrade")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="message too large")
        try:
            messages = self._decode_http(body, request.content_type)
        except DecodeError as exc:
            return web.Response(status=400, text=f"malformed Bayeux message: {exc}")
        browser = request.cookies.get(COOKIE)
        remote = self.client_address(request)
        refusal = self._flood_refusal(messages, remote, {"reconnect": "handshake",
                                                         "interval": 2000})
        if refusal is not None:
            return _json(refusal)
        out = self.bayeux.receive(messages, _now(), browser_id=browser)
        if out.handshaken is not None:
            out.handshaken.attachments[addresses.CLIENT] = remote
        if out.superseded and out.hold is not None:
            self._supersede(out.hold)
        await self._apply(out)
        replies = list(out.replies)
        if out.hold is not None:
            try:
                replies.extend(await self._hold(out.hold, out.hold_timeout_ms))
            except _Superseded:
                return web.Response(status=self.duplicate_status,
                                    text="superseded by a newer /meta/connect")
        response = _json(replies)
        if out.set_cookie:
            response.set_cookie(COOKIE, out.set_cookie, path="/", httponly=True)
        return response

    def _flood_refusal(self, messages: list[BayeuxMessage], remote: str,
                       advice: dict[str, object]) -> list[BayeuxMessage] | None:
        """The reply to a handshake over this address's rate, or None to let it through."""
        if not any(m.channel == "/meta/handshake" for m in messages) \
                or self.handshakes.allow(remote):
            return None
        return [BayeuxMessage(channel="/meta/handshake", successful=False,
                              error="403::handshake_denied", advice=advice)]

    def _decode_http(self, body: bytes, content_type: str) -> list[BayeuxMessage]:
        if content_type == "application/x-www-form-urlencoded":
            try:
                form = parse_form(body)
            except FormError as exc:
                raise DecodeError(str(exc)) from None
            if "message" not in form:
                raise DecodeError("form body without a 'message' parameter")
            return decode_messages(form["message"])
        return decode_messages(body)

    # ---- WebSocket -------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # No permessage-deflate: Bayeux frames are small, and compressing each one cost more
        # CPU than everything else per delivery (profiled under load).
        ws = web.WebSocketResponse(max_msg_size=self.max_body, heartbeat=60.0, compress=False)
        # The browser cookie binds HTTP side doors (chat-ntf files) to this session too.
        browser = request.cookies.get(COOKIE)
        if browser is None:
            browser = secrets.token_hex(8)
            ws.set_cookie(COOKIE, browser, path="/", httponly=True)
        await ws.prepare(request)
        self.sockets.add(ws)
        bound: ServerSession | None = None
        held: asyncio.Task[None] | None = None
        send_lock = asyncio.Lock()
        remote = self.client_address(request)

        async def send(messages: list[BayeuxMessage]) -> None:
            if messages and not ws.closed:
                async with send_lock:
                    # Already UTF-8 JSON: send it as a text frame without a decode/encode trip.
                    await ws.send_frame(encode_messages(messages), WSMsgType.TEXT)

        outbox: list[BayeuxMessage] = []
        flusher: list[asyncio.Task[None]] = []
        transport = request.transport

        def push(messages: list[BayeuxMessage]) -> None:
            # The hot path: one synchronous write per delivery, no task, no lock. Only when
            # the socket is backed up (or a reply is being written) do deliveries wait in an
            # outbox, written in order by one task that honours the socket's flow control.
            if (transport is None or send_lock.locked() or outbox
                    or transport.get_write_buffer_size() > _WRITE_BUFFER_HIGH):
                outbox.extend(messages)
                if not flusher or flusher[0].done():
                    flusher[:] = [asyncio.create_task(flush())]
            elif not ws.closed and not transport.is_closing():
                transport.write(text_frame(encode_messages(messages)))

        async def flush() -> None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                while outbox:
                    batch = outbox[:]
                    outbox.clear()
                    await send(batch)

        async def hold(session: ServerSession, timeout_ms: int) -> None:
            with contextlib.suppress(_Superseded, ConnectionError):
                await send(await self._hold(session, timeout_ms))

        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    if frame.type == WSMsgType.BINARY:
                        await ws.close(code=1003, message=b"text frames only")
                    break
                try:
                    messages = decode_messages(frame.data)
                except DecodeError:
                    await ws.close(code=1011, message=b"malformed Bayeux message")
                    break
                refusal = self._flood_refusal(messages, remote, {"reconnect": "none"})
                if refusal is not None:
                    await send(refusal)
                    continue
                out = self.bayeux.receive(messages, _now(), browser_id=browser, bound=bound,
                                          transport="websocket")
                if out.close:
                    await ws.close(code=1011, message=b"protocol violation")
                    break
                if out.handshaken is not None:
                    bound = out.handshaken
                    bound.attachments[addresses.CLIENT] = remote
                elif bound is None and out.hold is not None:
                    bound = out.hold  # a new socket resuming an existing session
                if bound is not None and not bound.ack:
                    self._pushers[bound.client_id] = push
                if out.hold is not None and held is not None and not held.done():
                    self._supersede(out.hold)
                await self._apply(out)
                await send(out.replies)
                if out.hold is not None:
                    held = asyncio.create_task(hold(out.hold, out.hold_timeout_ms))
        finally:
            self.sockets.discard(ws)
            if bound is not None and self._pushers.get(bound.client_id) is push:
                del self._pushers[bound.client_id]
            if held is not None:
                held.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await held
        return ws


_WRITE_BUFFER_HIGH = 64 * 1024


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2), as a server sends it.

    aiohttp's writer does the same with an await and bookkeeping per frame; on the delivery
    hot path that overhead was a quarter of the server's CPU (profiled), so pushes build
    frames here and write them to the transport in one call, which keeps them atomic.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


class _Superseded(Exception):
    pass


def _settle_true(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


def _json(messages: list[BayeuxMessage]) -> web.Response:
    return web.Response(body=encode_messages(messages),
                        content_type="application/json", charset="utf-8")
