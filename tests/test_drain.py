"""Graceful shutdown: a stop drains before it cuts connections (server/ops.py).

Held CometD connects are answered at once with the advice to reconnect and whatever is queued,
on a connection that then closes; WebSockets close with 1001 once their last answer is written;
a session with deliveries waiting gets to collect them; requests in flight finish; /readyz says
``draining`` meanwhile. Clients of every kind (our Python WebChatService on each transport, the
official CometD client in Node on both of its transports) are told to reconnect, do so to the
process that replaces the one stopped, and end with every transcript event exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import msgspec
import pytest

from tests.cluster import start_deployment
from tests.conftest import SERVICE, NodeClient, RunningServer, free_port, start_server, until
from tests.test_cometd_server import CHANNEL, HANDSHAKE, LongPoll
from tests.test_end_to_end import transport_options
from tests.test_restart import launch
from webchat.protocol.gms.models import EventType
from webchat.server.app import COMETD
from webchat.server.ops import DRAIN
from webchat.store.sqlite import SqliteStore

DRAIN_ADVICE = {"reconnect": "retry", "interval": 0, "timeout": 30_000}


def all_holding(server: RunningServer) -> bool:
    sessions = server.app[COMETD].bayeux.sessions.values()
    return bool(sessions) and all(s.holding for s in sessions)


async def post(http: aiohttp.ClientSession, url: str, *messages: dict[str, Any]
               ) -> tuple[str | None, list[dict[str, Any]]]:
    """A long-poll request: its ``Connection`` header and its replies."""
    async with http.post(url, data=msgspec.json.encode(list(messages)),
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200
        return resp.headers.get("Connection"), msgspec.json.decode(await resp.read())


def connect(lp: LongPoll) -> dict[str, Any]:
    lp.ids += 1
    return {"id": str(lp.ids), "channel": "/meta/connect", "clientId": lp.client_id,
            "connectionType": "long-polling", "ext": {"ack": lp.ack}}


def request_chat(client_id: str, msg_id: str) -> dict[str, Any]:
    return {"id": msg_id, "channel": CHANNEL, "clientId": client_id,
            "data": {"operation": "requestChat", "nickname": "Ada"}}


async def test_a_held_long_poll_is_answered_at_once_and_told_to_reconnect(server_config, http):
    running = await start_server(server_config)
    url = f"{running.url}/genesys/cometd"
    lp = LongPoll(http, url)
    await lp.handshake()
    await lp.connect(hold_ms=0)
    held = asyncio.create_task(post(http, url, connect(lp)))
    await until(lambda: all_holding(running))

    await running.runner.cleanup()
    connection, [reply] = await asyncio.wait_for(held, 10)  # not at the 30 s hold's end
    assert reply["successful"] is True and reply["advice"] == DRAIN_ADVICE
    assert connection == "close"  # the next connect opens a connection, to another process


async def test_what_waits_for_a_long_polling_session_is_collected_while_draining(
        server_config, http):
    """A session between two connects when the stop begins: its next connect, on the
    connection it kept, is answered at once with what was queued; /readyz says draining."""
    running = await start_server(server_config)
    url = f"{running.url}/genesys/cometd"
    lp = LongPoll(http, url)
    await lp.handshake()
    await lp.connect(hold_ms=0)
    _, [published] = await post(http, url, request_chat(lp.client_id, "p1"))
    assert published["successful"] is True  # the chat's own reply waits in the queue
    async with aiohttp.ClientSession() as prober:
        async with prober.get(f"{running.url}/readyz") as resp:
            assert resp.status == 200  # and this connection stays open

        stopping = asyncio.create_task(running.runner.cleanup())
        await until(lambda: running.app[DRAIN].draining)
        async with prober.get(f"{running.url}/readyz") as resp:
            assert (resp.status, await resp.json()) == (503, {"status": "draining"})
            assert resp.headers["Connection"] == "close"

    connection, replies = await post(http, url, connect(lp))
    assert replies[0]["channel"] == "/meta/connect" and replies[0]["advice"] == DRAIN_ADVICE
    chat = replies[1]["data"]
    assert chat["statusCode"] == 0 and chat["messages"][0]["type"] == "ParticipantJoined"
    assert connection == "close"
    await asyncio.wait_for(stopping, 10)  # nothing owed any more: the drain ends early


async def test_a_websocket_gets_its_answer_then_1001(server_config, http):
    running = await start_server(server_config)
    async with http.ws_connect(f"{running.url.replace('http', 'ws')}/genesys/cometd") as ws:
        cid = await ws_session(ws)
        await ws_send(ws, {"id": "3", "channel": "/meta/connect", "clientId": cid,
                           "connectionType": "websocket", "ext": {"ack": 1}})
        await until(lambda: all_holding(running))

        stopping = asyncio.create_task(running.runner.cleanup())
        [reply] = msgspec.json.decode((await ws.receive()).data)
        assert reply["id"] == "3" and reply["advice"] == DRAIN_ADVICE
        closed = await ws.receive()
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1001
    await asyncio.wait_for(stopping, 10)


async def test_a_websocket_owing_deliveries_closes_once_they_are_collected(server_config,
                                                                         http):
    running = await start_server(server_config)
    async with http.ws_connect(f"{running.url.replace('http', 'ws')}/genesys/cometd") as ws:
        cid = await ws_session(ws)
        await ws_send(ws, request_chat(cid, "3"))
        [published] = msgspec.json.decode((await ws.receive()).data)
        assert published["successful"] is True  # the chat's reply waits for the next connect

        stopping = asyncio.create_task(running.runner.cleanup())
        await until(lambda: running.app[DRAIN].draining)
        await ws_send(ws, {"id": "4", "channel": "/meta/connect", "clientId": cid,
                           "connectionType": "websocket", "ext": {"ack": 1}})
        reply, delivery = msgspec.json.decode((await ws.receive()).data)
        assert reply["advice"] == DRAIN_ADVICE
        assert delivery["data"]["messages"][0]["type"] == "ParticipantJoined"
        closed = await ws.receive()
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1001
    await asyncio.wait_for(stopping, 10)


async def ws_send(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> None:
    await ws.send_str(msgspec.json.encode([message]).decode())


async def ws_session(ws: aiohttp.ClientWebSocketResponse) -> str:
    """Handshake (with acks) and the first connect on ``ws``: the session's clientId."""
    await ws_send(ws, {"id": "1", **HANDSHAKE})
    [reply] = msgspec.json.decode((await ws.receive()).data)
    cid = str(reply["clientId"])
    await ws_send(ws, {"id": "2", "channel": "/meta/connect", "clientId": cid,
                       "connectionType": "websocket", "advice": {"timeout": 0},
                       "ext": {"ack": 0}})
    await ws.receive()
    return cid


async def test_a_rest_request_in_flight_finishes(server_config, http):
    """A request whose body is still arriving when the stop begins is answered (and its
    effect stored) before the server closes."""
    running = await start_server(server_config)
    async with http.post(f"{running.data_url}", data={"nickname": "Ada"}) as resp:
        chat = await resp.json()
    port = int(running.url.rsplit(":", 1)[1])
    body = (f"userId={chat['userId']}&secureKey={chat['secureKey']}&alias={chat['alias']}"
            "&message=sent+during+the+drain").encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /genesys/2/chat/{SERVICE}/{chat['chatId']}/send HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")  # in flight

    stopping = asyncio.create_task(running.runner.cleanup())
    await until(lambda: running.app[DRAIN].draining)
    writer.write(body)
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    assert head.startswith("HTTP/1.1 200") and "Connection: close" in head
    writer.close()
    await asyncio.wait_for(stopping, 10)

    store = SqliteStore(Path(server_config.data_dir) / "webchat.sqlite3")
    await store.open()
    try:
        stored = await store.load_chat(chat["chatId"])
    finally:
        await store.close()
    assert stored is not None
    assert [e.text for e in stored.events if e.type == EventType.MESSAGE.value] == [
        "sent during the drain"]


@pytest.mark.parametrize("transport", ["websocket", "long-polling", "rest"])
async def test_webchatservice_moves_to_the_next_process_losing_nothing(
        server_config, customer_factory, agent_factory, transport):
    port = free_port()
    running = await start_server(server_config, port=port)
    try:
        await running.add_agent("grace", nickname="Grace")
        customer = await customer_factory(running.data_url, pollExceptionLimit=10_000,
                                          **transport_options(running, transport))
        chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
        agent = await agent_factory(running.url, "grace")
        await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
        agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
        await agent.client.send(chat_id, "before")
        await customer.wait_for(lambda c: ("Agent", "before") in c.texts())
        if transport != "rest":
            await until(lambda: all_holding(running))

        # Committed as the stop begins. Over CometD it leaves with the drain's answers, so it
        # arrives while no server runs; a REST client gets it from the next process.
        await running.engine.staff.event("grace", chat_id, EventType.MESSAGE, "at the stop")
        await running.runner.cleanup()
        if transport != "rest":
            await customer.wait_for(lambda c: ("Agent", "at the stop") in c.texts())
        running = await start_server(server_config, port=port)
        await customer.wait_for(lambda c: ("Agent", "at the stop") in c.texts(), within=10)

        await agent.client.wait_connected()
        await agent.client.send(chat_id, "after")
        await customer.wait_for(lambda c: ("Agent", "after") in c.texts(), within=15)
        await customer.command("sendMessage", {"message": "still here"})
        await agent.wait_message(chat_id, lambda m: m.get("text") == "still here", within=10)
        await agent.client.end(chat_id)
        await customer.wait_event("ended", within=10)
    finally:
        await running.runner.cleanup()

    assert customer.texts() == [("Agent", "before"), ("Agent", "at the stop"),
                                ("Agent", "after"), ("Client", "still here")]
    indexes = customer.indexes()
    assert indexes == list(range(1, len(indexes) + 1))  # every event once, in order


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
async def test_official_cometd_client_reconnects_after_a_drain(server_config, node,
                                                                agent_factory, transport):
    port = free_port()
    running = await start_server(server_config, port=port)
    client = await NodeClient.chat(node, f"{running.url}/genesys/cometd", transport)
    try:
        await running.add_agent("grace", nickname="Grace")
        assert (await client.expect("handshake", successful=True))["transport"] == transport
        chat_id = (await client.expect("started"))["chatId"]
        agent = await agent_factory(running.url, "grace")
        agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
        await client.expect("message", type="ParticipantJoined", **{"from": "Agent"})
        await until(lambda: all_holding(running))
        client.events = [e for e in client.events if e["event"] != "advice"]

        await running.engine.staff.event("grace", chat_id, EventType.MESSAGE, "at the stop")
        await running.runner.cleanup()
        # With no server running: the message, in the drain's answer, which says to reconnect
        # at once; a WebSocket then went away with 1001.
        await client.expect("message", text="at the stop")
        assert (await client.expect("advice")) | {"event": "advice"} == {
            "event": "advice", "reconnect": "retry", "interval": 0}
        if transport == "websocket":
            await client.expect("connectFailed", code=1001)
        running = await start_server(server_config, port=port)

        await client.expect("rehandshake", within=15, transport=transport)
        await client.expect("published", operation="requestNotifications", successful=True)
        await agent.client.wait_connected()
        await agent.client.send(chat_id, "after the restart")
        await client.expect("message", text="after the restart")
        await agent.client.end(chat_id)
        indexes = await client.ended_in_order()  # every event once, in order
        assert indexes[-1] == running.engine.chats[chat_id].next_index - 1
    finally:
        await client.close()
        await running.runner.cleanup()


async def test_sigterm_drains_webchat_serve(tmp_path, http):
    """SIGTERM: /readyz says draining on a connection opened before, the session's queued
    reply is collected with the advice to reconnect, and the process exits cleanly."""
    port = free_port()
    proc = await launch(tmp_path, port)
    try:
        url = f"http://127.0.0.1:{port}/genesys/cometd"
        lp = LongPoll(http, url)
        await lp.handshake()
        await lp.connect(hold_ms=0)
        _, [published] = await post(http, url, request_chat(lp.client_id, "p1"))
        assert published["successful"] is True
        async with aiohttp.ClientSession() as prober:
            async with prober.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 200
            proc.send_signal(signal.SIGTERM)
            status = 200
            while status == 200:  # until the process has seen the signal
                await asyncio.sleep(0.01)
                async with prober.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    status = resp.status
            assert status == 503

        _, replies = await post(http, url, connect(lp))
        assert replies[0]["advice"] == DRAIN_ADVICE
        assert replies[1]["data"]["messages"][0]["type"] == "ParticipantJoined"
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 20) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


class Balancer:
    """A TCP load balancer as nginx is one here (``proxy_next_upstream error``): each new
    connection goes to the first upstream that accepts it, none sticky. A node that drains
    closes its listening socket, so from then on its clients land on the next one."""

    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self.picked: list[int] = []
        """The upstream port of every connection, in order."""
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        for port in self.upstreams:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.picked.append(port)
            for pipe in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
                task = asyncio.create_task(pipe)
                self._pipes.add(task)
                task.add_done_callback(self._pipes.discard)
            return
        writer.close()  # no upstream: the client sees the connection fail, and retries

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


def port_of(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
async def test_a_drained_node_hands_its_customer_to_another_losing_nothing(
        server_config, postgres_dsn, redis_url, redis_prefix, customer_factory, agent_factory,
        transport):
    """Three nodes on PostgreSQL and Redis; the customer reaches node 0 through the balancer,
    the agent is on node 2. Node 0 drains: the customer is told to reconnect, lands on node 1,
    and the chat goes on with every event exactly once."""
    cluster = await start_deployment("cluster", server_config, postgres_dsn=postgres_dsn,
                                     redis_url=redis_url, redis_prefix=redis_prefix)
    first, second, agents_node = cluster.nodes
    balancer = Balancer([port_of(first), port_of(second)])
    front = await balancer.start()
    try:
        await cluster.add_agent("grace", nickname="Grace")
        customer = await customer_factory(
            f"{front}/genesys/2/chat/{SERVICE}", pollExceptionLimit=10_000,
            **transport_options(SimpleNamespace(url=front), transport))
        chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
        agent = await agent_factory(agents_node.url, "grace")
        await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev), within=10)
        agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
        await agent.client.send(chat_id, "before")
        await customer.wait_for(lambda c: ("Agent", "before") in c.texts(), within=10)
        assert set(balancer.picked) == {port_of(first)}
        await until(lambda: all_holding(first))

        await agent.client.send(chat_id, "at the stop")
        cluster.nodes.remove(first)
        await first.runner.cleanup()
        await customer.wait_for(lambda c: ("Agent", "at the stop") in c.texts(), within=15)
        await agent.client.send(chat_id, "after")
        await customer.wait_for(lambda c: ("Agent", "after") in c.texts(), within=15)
        await customer.command("sendMessage", {"message": "still here"})
        await agent.wait_message(chat_id, lambda m: m.get("text") == "still here", within=10)
        assert balancer.picked[-1] == port_of(second)  # moved, through the balancer
        await agent.client.end(chat_id)
        await customer.wait_event("ended", within=10)
    finally:
        await balancer.close()
        await cluster.close()

    assert customer.texts() == [("Agent", "before"), ("Agent", "at the stop"),
                                ("Agent", "after"), ("Client", "still here")]
    indexes = customer.indexes()
    assert indexes == list(range(1, len(indexes) + 1))  # every event once, in order
