"""A round-robin HTTP front for in-process cluster nodes, as nginx's default upstream is:
every request goes to the next node in turn, with no stickiness of any kind (not by client,
not by connection: two requests on one kept-alive connection reach two nodes).

A node that refuses the connection (its app was stopped) is skipped and the request goes to
the next one, as nginx's ``proxy_next_upstream error`` does for a request that never reached
a process; :meth:`RoundRobin.avoid` takes a node out of the rotation while it still runs. A
WebSocket upgrade is tunnelled, frame by frame, to the node its turn gives, for the
socket's life. :attr:`RoundRobin.served` records which node each request went to, in the
order they were sent (a held request is answered later than those sent after it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                         "upgrade", "proxy-connection", "host", "content-length"})


@dataclass
class Served:
    node: str
    """The URL of the node the request went to."""
    method: str
    path: str
    status: int = 0
    """Its answer's, once answered."""


class RoundRobin:
    def __init__(self, nodes: list[str]) -> None:
        self.nodes = list(nodes)
        self.served: list[Served] = []
        self.avoided: set[str] = set()
        self._turn = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> RoundRobin:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        listening = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        await web.SockSite(self._runner, listening).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def avoid(self, node: str) -> None:
        """Send nothing more to ``node`` (it stays up: requests for it must be passed on)."""
        self.avoided.add(node)

    def _order(self) -> list[str]:
        """The nodes to try for the next request: its turn's first, then the others."""
        start = self._turn
        self._turn += 1
        count = len(self.nodes)
        ring = [self.nodes[(start + i) % count] for i in range(count)]
        return [node for node in ring if node not in self.avoided]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._tunnel(request)
        assert self._http is not None
        body = await request.read()
        headers = CIMultiDict((k, v) for k, v in request.headers.items()
                              if k.lower() not in _HOP_BY_HOP)
        for node in self._order():
            entry = Served(node, request.method, request.path)
            self.served.append(entry)
            try:
                async with self._http.request(
                        request.method, node + request.path_qs, data=body, headers=headers,
                        allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=None, sock_read=120)) as resp:
                    payload = await resp.read()
                    passed = CIMultiDict((k, v) for k, v in resp.headers.items()
                                         if k.lower() not in _HOP_BY_HOP)
                    status = resp.status
            except aiohttp.ClientConnectorError:
                self.served.remove(entry)
                continue  # refused: never reached the node, so the next one may have it
            entry.status = status
            return web.Response(status=status, body=payload, headers=passed)
        return web.Response(status=502, text="no node answered")

    async def _tunnel(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("cookie", "origin")}
        for node in self._order():
            try:
                upstream = await self._http.ws_connect("ws" + node[4:] + request.path_qs,
                                                       headers=headers, autoping=False)
            except aiohttp.ClientConnectorError:
                continue
            self.served.append(Served(node, request.method, request.path, 101))
            ws = web.WebSocketResponse(autoping=False)
            await ws.prepare(request)
            try:
                await _pump_both(ws, upstream)
            finally:
                await upstream.close()
                await ws.close()
            return ws
        return web.Response(status=502, text="no node answered")


async def _pump_both(ws: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
                     ) -> None:
    """Frames both ways until either side closes."""

    async def pump(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                   sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        async for frame in source:
            if frame.type == WSMsgType.TEXT:
                await sink.send_str(frame.data)
            elif frame.type == WSMsgType.BINARY:
                await sink.send_bytes(frame.data)
            elif frame.type == WSMsgType.PING:
                await sink.ping(frame.data)
            elif frame.type == WSMsgType.PONG:
                await sink.pong(frame.data)

    tasks = [asyncio.create_task(pump(ws, upstream)), asyncio.create_task(pump(upstream, ws))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
