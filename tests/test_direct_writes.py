"""Frames go straight to the transport on the loop the server ships with, not only on the one
the rest of the suite runs on.

``webchat serve`` runs on uvloop, whose transports are not ``asyncio.WriteTransport``
subclasses: a class check there sent every CometD reply and delivery, and every agent event,
through a task and aiohttp's awaited writer (a task, a coroutine, a context and a future per
frame for the collector to walk) while every test, on asyncio's loop, took the direct path.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import uvloop

from tests.conftest import start_server
from tests.test_cometd_server import websocket_session
from webchat.server.app import COMETD
from webchat.server.config import ServerConfig
from webchat.server.wsframes import direct

LOOPS = pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop,
                                                 uvloop.new_event_loop],
                                ids=["asyncio", "uvloop"])


def _run(loop_factory: Callable[[], asyncio.AbstractEventLoop], coro: object) -> None:
    loop = loop_factory()
    try:
        loop.run_until_complete(coro)  # type: ignore[arg-type]
    finally:
        loop.close()


@LOOPS
def test_a_loopback_connections_transport_takes_frames_directly(loop_factory) -> None:
    async def run() -> None:
        listening = socket.create_server(("127.0.0.1", 0))
        accepted: asyncio.Future[asyncio.BaseTransport] = asyncio.get_running_loop(
        ).create_future()

        class Keep(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.set_result(transport)

        server = await asyncio.get_running_loop().create_server(Keep, sock=listening)
        _, writer = await asyncio.open_connection(*listening.getsockname())
        transport = await accepted
        assert direct(transport) is transport
        assert direct(None) is None
        writer.close()
        transport.close()
        server.close()

    _run(loop_factory, run())


@LOOPS
def test_cometd_websocket_replies_are_written_without_a_task(loop_factory, tmp_path: Path
                                                             ) -> None:
    async def run() -> None:
        running = await start_server(ServerConfig(data_dir=str(tmp_path / "data")))
        try:
            async with aiohttp.ClientSession() as http, \
                    http.ws_connect(running.url.replace("http", "ws") + "/genesys/cometd") as ws:
                await websocket_session(ws)
                [sock] = running.app[COMETD]._connections
                assert sock.transport is not None
                assert sock._flusher is None  # both replies went straight to the transport
        finally:
            await running.runner.cleanup()

    _run(loop_factory, run())
