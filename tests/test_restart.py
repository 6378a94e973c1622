"""The server process is killed mid-chat and started again on the same data dir."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SERVICE, free_port
from tests.test_end_to_end import transport_options
from webchat.bus import CommandError


async def launch(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(  # noqa: ASYNC220 - a short-lived launch in a test
        [sys.executable, "-m", "webchat", "serve", "--port", str(port), "--data-dir",
         str(data_dir), "--agent", "grace:pw", "--offer-timeout", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "exited")
            await asyncio.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


class _Url:
    def __init__(self, url: str) -> None:
        self.url = url


@pytest.mark.parametrize("transport", ["rest", "websocket", "long-polling"])
async def test_restart_mid_chat_loses_and_repeats_nothing(tmp_path, customer_factory,
                                                          agent_factory, transport):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await launch(tmp_path, port)
    try:
        customer = await customer_factory(f"{url}/genesys/2/chat/{SERVICE}",
                                          pollExceptionLimit=10_000,
                                          **transport_options(_Url(url), transport))
        started = await customer.command("startChat", {"nickname": "Ada"})
        chat_id = started["chatId"]
        agent = await agent_factory(url, "grace")
        await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
        accepted = await agent.client.accept(chat_id)
        agent.client.track(chat_id, accepted["nextPosition"])
        await agent.client.send(chat_id, "before restart")
        await customer.command("sendMessage", {"message": "customer before"})
        await customer.wait_for(lambda c: ("Agent", "before restart") in c.texts())
        await agent.wait_for(lambda ev: any(
            e["type"] == "message" and e["message"].get("text") == "customer before"
            for e in ev))

        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # While the server is down, sending fails visibly instead of being dropped.
        with pytest.raises(CommandError):
            await customer.command("sendMessage", {"message": "while down"})
        await customer.wait_event("error")

        proc = await launch(tmp_path, port)
        await agent.client.wait_connected()
        await agent.client.send(chat_id, "after restart")
        await customer.wait_for(lambda c: ("Agent", "after restart") in c.texts(), within=10)
        await customer.command("sendMessage", {"message": "customer after"})
        await agent.wait_for(lambda ev: any(
            e["type"] == "message" and e["message"].get("text") == "customer after"
            for e in ev), within=10)
        await agent.client.end(chat_id)
        await customer.wait_event("ended", within=10)
        await agent.wait_for(lambda ev: any(
            e["type"] == "message" and e["chatEnded"] for e in ev), within=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)

    assert customer.texts() == [("Agent", "before restart"), ("Client", "customer before"),
                                ("Agent", "after restart"), ("Client", "customer after")]
    indexes = customer.indexes()
    assert indexes == list(range(1, len(indexes) + 1))
    agent_indexes = [m["index"] for m in agent.messages(chat_id)]
    assert agent_indexes == list(range(agent_indexes[0], agent_indexes[-1] + 1))
    assert agent_indexes[-1] == indexes[-1]


async def test_server_closing_the_socket_mid_chat_loses_nothing(server, customer_factory,
                                                                agent_factory):
    from webchat.server.app import COMETD

    await server.add_agent("grace")
    customer = await customer_factory(server.data_url,
                                      **transport_options(server, "websocket"))
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    agent = await agent_factory(server.url, "grace")
    await agent.client.accept(chat_id)
    for n in range(3):
        await agent.client.send(chat_id, f"before {n}")
    await customer.wait_for(lambda c: ("Agent", "before 2") in c.texts())
    for round_ in range(2):
        for ws in list(server.app[COMETD].sockets):
            await ws.close(code=1011)
        for n in range(3):
            await agent.client.send(chat_id, f"drop {round_} after {n}")
    await customer.command("sendMessage", {"message": "still here"})
    await customer.wait_for(lambda c: ("Agent", "drop 1 after 2") in c.texts(), within=15)
    await agent.wait_for(lambda ev: any(e.get("message", {}).get("text") == "still here"
                                        for e in ev))
    agent_texts = [t for who, t in customer.texts() if who == "Agent"]
    assert agent_texts == [f"before {n}" for n in range(3)] + [
        f"drop {r} after {n}" for r in range(2) for n in range(3)]
    indexes = customer.indexes()
    assert indexes == list(range(1, len(indexes) + 1))
