"""Our Python Bayeux client against a second server implementation: faye (npm)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.conftest import free_port
from webchat.transport.cometd import CometdClient

INTEROP = Path(__file__).parent / "interop"


@pytest.fixture
async def faye_url():
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "faye").exists():
        pytest.fail("node and tests/interop/node_modules are required: run scripts/setup test")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        node, str(INTEROP / "faye_server.cjs"), str(port), cwd=INTEROP,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 10)) == b"ready\n"
    yield f"http://127.0.0.1:{port}/bayeux"
    proc.kill()
    await proc.wait()


@pytest.mark.parametrize("websocket", [True, False])
async def test_python_client_publishes_and_receives_through_faye(faye_url, websocket):
    got: dict[str, list] = {"a": [], "b": []}
    arrived = asyncio.Event()

    def recorder(name: str):
        def record(channel: str, data: dict) -> None:
            got[name].append((channel, data))
            arrived.set()
        return record

    a = CometdClient(faye_url, websocket=websocket, on_delivery=recorder("a"))
    b = CometdClient(faye_url, websocket=websocket, on_delivery=recorder("b"))
    try:
        await a.start(["/rooms/lobby"])
        await b.start(["/rooms/*"])
        assert a.transport == ("websocket" if websocket else "long-polling")
        for n in range(5):
            reply = await a.publish("/rooms/lobby", {"n": n, "text": f"hello {n}"})
            assert reply.successful is True
        async with asyncio.timeout(10):
            while len(got["a"]) < 5 or len(got["b"]) < 5:
                arrived.clear()
                await arrived.wait()
        for name in ("a", "b"):
            assert [d["n"] for _, d in got[name]] == [0, 1, 2, 3, 4]
            assert {ch for ch, _ in got[name]} == {"/rooms/lobby"}
    finally:
        await a.close()
        await b.close()
