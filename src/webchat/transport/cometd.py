"""Bayeux over aiohttp: WebSocket first, long-polling when the socket cannot be opened.

Drives the sans-I/O :class:`BayeuxClient`: sends what it builds, feeds it what arrives and
follows its :attr:`~BayeuxClient.next_step` (connect again, re-handshake after a backoff, stop).
Subscriptions are re-made after every re-handshake and ``on_handshake`` is told, so the
application can resume from its own position (the chat's ``transcriptPosition``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from msgspec import UNSET

from webchat.protocol.bayeux.client import BayeuxClient, Delivery, NextStep, Step
from webchat.protocol.bayeux.messages import (
    BayeuxMessage,
    DecodeError,
    decode_messages,
    encode_messages,
)

log = logging.getLogger(__name__)

DeliveryHandler = Callable[[str, Any], None]
HandshakeHandler = Callable[[bool], Awaitable[None]]
LinkHandler = Callable[[bool], None]


class CometdError(Exception):
    pass


class CometdClient:
    def __init__(self, url: str, *, websocket: bool = True,
                 on_delivery: DeliveryHandler | None = None,
                 on_handshake: HandshakeHandler | None = None,
                 on_link: LinkHandler | None = None,
                 max_network_delay_ms: int = 10_000,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/")
        self.websocket = websocket
        self.bayeux = BayeuxClient(
            connection_types=("websocket", "long-polling") if websocket else ("long-polling",),
            connection_type="websocket" if websocket else "long-polling")
        self.on_delivery = on_delivery
        self.on_handshake = on_handshake
        self.on_link = on_link
        """Told ``False`` when a handshake or connect fails at the network level, ``True``
        when the next one gets through."""
        self._link_down = False
        self._unreachable = asyncio.Event()
        self._prefer_websocket = websocket
        self.delay = max_network_delay_ms / 1000
        self._http = session
        self._owns_http = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[BayeuxMessage]] = {}
        self._subscriptions: list[str] = []
        self._ready = asyncio.Event()
        self.transport = self.bayeux.connection_type

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            # unsafe: keep BAYEUX_BROWSER for IP hosts such as 127.0.0.1 (protocols.md §3.8)
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        return self._http

    # ---- public API ------------------------------------------------------------------------

    async def start(self, subscriptions: list[str]) -> None:
        """Handshake, subscribe and start connecting; returns once the session is up."""
        self._subscriptions = list(subscriptions)
        self.websocket = self._prefer_websocket
        if self.websocket:
            try:
                await self._open_socket()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.info("CometD WebSocket unavailable (%s); falling back to long-polling", exc)
                self.websocket = False
                self.bayeux.connection_type = "long-polling"
                self.bayeux.connection_types = ("long-polling",)
        self.transport = self.bayeux.connection_type
        self._unreachable.clear()
        self._loop_task = asyncio.create_task(self._run())
        ready = asyncio.create_task(self._ready.wait())
        unreachable = asyncio.create_task(self._unreachable.wait())
        done, _ = await asyncio.wait({ready, unreachable, self._loop_task},
                                     return_when=asyncio.FIRST_COMPLETED)
        for waiter in (ready, unreachable):
            waiter.cancel()
        if not self._ready.is_set():
            # Not reached at all (the first handshake failed at the network level), or the
            # session ended: stop trying, a later start tries again.
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
            await self._drop_socket()
            if unreachable in done:
                raise CometdError("the CometD server could not be reached")
            raise CometdError("the CometD session ended before it was established")

    async def publish(self, channel: str, data: Any) -> BayeuxMessage:
        """Publish and wait for the server's reply to it (``successful`` / ``error``)."""
        return await self._request(self.bayeux.publish(channel, data), "")

    async def close(self) -> None:
        if self.bayeux.client_id and self._loop_task is not None and not self._loop_task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._request(self.bayeux.disconnect(), "/disconnect"), 2)
        self.bayeux.next_step = NextStep(Step.STOP)
        for task in (self._loop_task, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None and self._owns_http:
            await self._http.close()

    # ---- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            step = self.bayeux.next_step
            if step.step is Step.STOP:
                return
            if step.delay_ms:
                await asyncio.sleep(step.delay_ms / 1000)
            try:
                if step.step is Step.HANDSHAKE:
                    await self._handshake()
                else:
                    await self._request(self.bayeux.connect(), "/connect",
                                        self.bayeux.timeout_ms / 1000)
            except (aiohttp.ClientError, OSError, TimeoutError, DecodeError,
                    CometdError) as exc:
                log.debug("CometD %s failed: %s", step.step.value, exc)
                self.bayeux.transport_failed()
                await self._drop_socket()
                self._set_link(up=False)
            else:
                self._set_link(up=True)

    def _set_link(self, *, up: bool) -> None:
        if not up and not self._ready.is_set():
            self._unreachable.set()  # whoever waits in start() hears it, every time
        if self._link_down == (not up):
            return
        self._link_down = not up
        if self.on_link is not None:
            self.on_link(up)

    async def _handshake(self) -> None:
        reply = await self._request(self.bayeux.handshake(), "/handshake")
        if reply.successful is not True:
            return
        for channel in self._subscriptions:
            await self._request(self.bayeux.subscribe(channel), "")
        first = self.bayeux.handshakes == 1
        if self.on_handshake is not None and not first:
            await self.on_handshake(True)
        self._ready.set()

    async def _request(self, msg: BayeuxMessage, suffix: str, hold_s: float = 0.0
                       ) -> BayeuxMessage:
        msg_id = str(msg.id)
        fut: asyncio.Future[BayeuxMessage] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            if self.websocket:
                if self._ws is None or self._ws.closed or \
                        (self._reader is not None and self._reader.done()):
                    await self._open_socket()  # a socket whose reader ended is dead
                assert self._ws is not None
                await self._ws.send_str(encode_messages([msg]).decode())
            else:
                async with self.http.post(
                        self.url + suffix, data=encode_messages([msg]),
                        headers={"Content-Type": "application/json;charset=UTF-8"},
                        timeout=aiohttp.ClientTimeout(total=hold_s + self.delay)) as resp:
                    if resp.status != 200:
                        raise CometdError(f"HTTP {resp.status}")
                    self._handle(decode_messages(await resp.read()))
            return await asyncio.wait_for(fut, hold_s + self.delay)
        finally:
            self._pending.pop(msg_id, None)

    # ---- sockets and dispatch --------------------------------------------------------------

    async def _open_socket(self) -> None:
        ws_url = "ws" + self.url[4:] if self.url.startswith("http") else self.url
        self._ws = await self.http.ws_connect(ws_url, timeout=aiohttp.ClientWSTimeout(
            ws_receive=None, ws_close=2.0), heartbeat=30.0)
        self._reader = asyncio.create_task(self._read(self._ws))

    async def _drop_socket(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            try:
                self._handle(decode_messages(frame.data))
            except DecodeError:
                log.warning("undecodable CometD frame dropped the connection")
                break
        # The socket is gone: whoever waits for a reply learns it now, not at its timeout.
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CometdError("connection closed"))

    def _handle(self, messages: list[BayeuxMessage]) -> None:
        for event in self.bayeux.receive(messages):
            if isinstance(event, Delivery) and self.on_delivery is not None:
                self.on_delivery(event.channel, event.data)
        for msg in messages:
            if msg.id is UNSET or (msg.data is not UNSET and msg.successful is UNSET):
                continue  # a delivery, not a reply to one of ours
            fut = self._pending.get(str(msg.id))
            if fut is not None and not fut.done():
                fut.set_result(msg)
