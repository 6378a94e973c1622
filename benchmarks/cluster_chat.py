"""A contact centre's chat load on the three deployments: 1 process on SQLite, 1 process on
PostgreSQL + Redis, 2 processes (``--workers 2``) on PostgreSQL + Redis.

``--chats`` customers per server process (default 10,000; with ``--same-total``, in all)
each hold a chat over a CometD WebSocket; the chats are
answered by agents (one account per 10,000 chats, the most one agent may hold) that follow
them on the agent event stream and write through the agent REST API. Customer and agent each
send a message every ``--interval`` seconds (10 s: 2,000 messages/s stored and delivered at
10,000 chats). Printed per deployment: messages delivered to the other side per second,
delivery latency p50/p99 (send -> the other side received it, both directions), server CPU
per 1,000 messages and in cores, server RSS in all and per chat, the CPU of the PostgreSQL
backends serving the benchmark's database and of redis-server, the load generator's own
CPU, and ``machine_speed_ms`` (a fixed piece of work timed after the run: this machine's speed
varies from day to day, so compare runs by it); then whether the issue's targets are met.

Scaling is capacity: a second process (a second host) is added with its load, so 2
processes carry twice the chats of 1 and are compared by messages delivered per server core,
both measured. Spreading one load over more processes (``--same-total``) measures something
else: each process then runs at half the rate, with fewer events per wake-up of its loop, and
spends more per message (measured here: 1.53-1.65x instead of 1.93x). ``pg3`` and ``pg4``
(3 and 4 processes, more than this machine's cores) are for light loads
(``--deployments pg,pg4 --chats 500``): every process adopts every other one's commits, and
what that costs each process grows with their number.

The load generator shares this machine's cores with everything it measures, so it is kept
light: raw aiohttp WebSockets speaking the least Bayeux a CometD client needs (handshake, a
held ``/meta/connect``, publishes; no ack extension, so the server writes each delivery
straight to the socket), JSON decoded into small msgspec structs, and agents that are one
event stream and a pool of keep-alive connections each rather than a client per chat. When
the machine is saturated (the generator, the server and the services together near every
core) latencies are the machine's, not the server's: run at a lower rate (``--interval 20``)
and read the per-message CPU, which the summary scales to the target rate, saying so.
Two processes at 10,000 chats each need more than 20,000 open files in the generator, which is
this machine's hard limit (``ulimit -Hn``): the run then stops before it starts, saying so.

    .venv/bin/python -m benchmarks.cluster_chat                      # all three, 10,000 chats
    .venv/bin/python -m benchmarks.cluster_chat --quick              # 500 chats, 20 s: works?
    .venv/bin/python -m benchmarks.cluster_chat --deployments pg,pg2 --interval 20

PostgreSQL: a scratch database per deployment on WEBCHAT_TEST_POSTGRES's server (default
``postgresql://postgres@127.0.0.1:5432/test``), dropped afterwards. Redis: WEBCHAT_TEST_REDIS
(default ``redis://127.0.0.1:6379/0``) with a key prefix of the run's own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import itertools
import json
import math
import random
import re
import resource
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import msgspec
import psutil
import redis.asyncio

from benchmarks.common import (
    POSTGRES_ADMIN,
    REDIS_URL,
    ServerProcess,
    cpu_by_pid,
    cpu_spent,
    percentile,
    postgres_backends,
    redis_process,
    scratch_database,
    start_server,
)

SERVICE = "customer-support"
AGENT_API = "/agent/v1"
CHANNEL = f"/service/chatV2/{SERVICE}"
AGENT_CAPACITY = 10_000
"""The most chats one agent may hold (``MAX_CAPACITY`` of the agent API)."""
SETUP_TIMEOUT_S = 60.0
"""The longest a chat, an agent or a server may take to start before the run gives up."""
TARGET_CHATS = 10_000
TARGET_INTERVAL_S = 10.0
TARGET_RATE = TARGET_CHATS * 2 / TARGET_INTERVAL_S
TARGET_P99_MS = 20.0
TARGET_RSS_MB = 1024.0
TARGET_SCALING = 1.8
"""Two processes, each carrying what one does, must deliver this many times one process's
messages per core each had: messages/s per server core at least 90% of one process's."""
TEXT = " message of a contact centre chat, about a bill that came twice"
"""What follows a message's send time: a sentence, so frames have a chat message's size."""


@dataclass(frozen=True)
class Deployment:
    name: str
    title: str
    workers: int
    shared: bool
    """PostgreSQL + Redis (else SQLite in the data directory, the broker in memory)."""
    burn: bool = False
    """Beside ``--burn`` cores of other work: the machine as busy as with a second process
    and its load, to tell what of a 2-process p99 is the machine's."""
    apart: int = 1
    """How many such deployments side by side, each with its own database, Redis prefix,
    agents and chats (``--chats`` each; with ``--same-total`` a share of them), none hearing
    the others: two processes as busy as a 2-process cluster's, without the cluster."""


DEPLOYMENTS = {d.name: d for d in (
    Deployment("sqlite", "1 process, SQLite", 1, False),
    Deployment("pg", "1 process, PostgreSQL + Redis", 1, True),
    Deployment("pg2", "2 processes, PostgreSQL + Redis", 2, True),
    # More processes than this machine's cores: at a light load each, they show what a
    # process pays for the others' commits (every process adopts every commit).
    Deployment("pg3", "3 processes, PostgreSQL + Redis", 3, True),
    Deployment("pg4", "4 processes, PostgreSQL + Redis", 4, True),
    Deployment("pgburn", "1 process, PostgreSQL + Redis, beside other work", 1, True, True),
    Deployment("pgapart", "2 separate 1-process deployments, PostgreSQL + Redis", 1, True,
               apart=2),
)}

BURNER = """
import sys, time
busy, period = float(sys.argv[1]), 0.005
while True:
    end = time.perf_counter() + busy * period
    while time.perf_counter() < end:
        pass
    time.sleep(period * (1 - busy))
"""
"""A share of one core kept busy: spinning for that share of every 5 ms."""


@contextlib.asynccontextmanager
async def burning(cores: float) -> AsyncIterator[None]:
    """``cores`` of this machine kept busy meanwhile (as many processes as whole cores)."""
    count = math.ceil(cores)
    burners = [await asyncio.create_subprocess_exec(sys.executable, "-c", BURNER,
                                                    str(cores / count))
               for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            await burner.wait()


# ---- what the generator reads: only the fields it needs -------------------------------------

class _From(msgspec.Struct):
    type: str = ""


class _Message(msgspec.Struct, rename={"from_": "from"}):
    type: str = ""
    index: int = 0
    text: str | None = None
    from_: _From | None = None


class _ChatResponse(msgspec.Struct):
    chatId: str | None = None
    secureKey: str | None = None
    messages: list[_Message] | None = None


class _Bayeux(msgspec.Struct):
    channel: str = ""
    successful: bool | None = None
    clientId: str | None = None
    data: _ChatResponse | None = None
    error: str | None = None


class _ChatRef(msgspec.Struct):
    chatId: str


class _AgentEvent(msgspec.Struct):
    type: str = ""
    chatId: str | None = None
    message: _Message | None = None
    chat: _ChatRef | None = None
    id: int | None = None
    """A reply's: the write it answers."""
    ok: bool | None = None
    status: int | None = None


_bayeux = msgspec.json.Decoder(list[_Bayeux])
_agent_event = msgspec.json.Decoder(_AgentEvent)
_encode = msgspec.json.Encoder()


class Stats:
    """Deliveries of the messages sent inside the measured window, by direction.

    A message carries the time it was sent (CLOCK_MONOTONIC, one clock for this process, which
    is both sides); it counts when it was sent inside the window, however late it arrives, so
    delivered/s and "lost" are about the same messages.
    """

    def __init__(self) -> None:
        self.window = (0, 0)
        self.sent = 0
        self.to_agent_ms: list[float] = []
        self.to_customer_ms: list[float] = []
        self.agent_send_ms: list[float] = []
        """How long each agent ``/send`` took to be answered (from the generator's decision to
        send): where an agent's message waits before the server's change even opens."""
        self.crossing: set[str] = set()
        """Chats whose customer and agent are connected to different server processes (read
        from the OS once every chat is set up: :meth:`ServerProcess.serving`)."""
        self.unplaced: set[str] = set()
        """Chats with a side whose process could not be read (or, with ``--agent-writes
        rest``, whose agent writes on connections of any process): in neither split."""
        self.by_path: tuple[list[float], list[float]] = ([], [])
        """The latencies of placed chats again, split: within one process, and across two."""
        self.collector_pauses_ms: list[float] = []
        """The servers' logged garbage-collection pauses (50 ms or more) in the window."""
        self.loop_lag_ms: list[float] = []
        """How late the generator's loop ran a 5 ms timer, each beat in the window."""
        self.errors: dict[str, int] = {}
        self.next_index: dict[tuple[str, str], int] = {}
        """(side, chat) -> the transcript index that side should be pushed next."""
        self.closing = False
        """Set when the run is over: what the teardown breaks is no error."""

    def measures(self, sent_ns: int) -> bool:
        return self.window[0] <= sent_ns < self.window[1]

    def sending(self, sent_ns: int) -> None:
        if self.measures(sent_ns):
            self.sent += 1

    def arrived(self, message: _Message, now_ns: int, latencies: list[float], chat_id: str
                ) -> None:
        sent_ns = int((message.text or "0").partition(" ")[0])
        if self.measures(sent_ns):
            latency = (now_ns - sent_ns) / 1e6
            latencies.append(latency)
            if chat_id not in self.unplaced:
                self.by_path[chat_id in self.crossing].append(latency)

    def in_order(self, side: str, chat_id: str, index: int) -> None:
        """Each side must see its chat's transcript whole and once: a push that skips an
        index is an event it never got (a client would only find it by asking again), one
        below what it has seen a repeat."""
        key = (side, chat_id)
        expected = self.next_index.get(key)
        if expected is not None and index != expected:
            self.error(f"{side} {'missed events' if index > expected else 'saw an event again'}")
        if expected is None or index >= expected:
            self.next_index[key] = index + 1

    def error(self, kind: str) -> None:
        if not self.closing:
            self.errors[kind] = self.errors.get(kind, 0) + 1


def text(now_ns: int) -> str:
    return f"{now_ns}{TEXT}"


async def put(ws: aiohttp.ClientWebSocketResponse, messages: list[dict[str, Any]]) -> None:
    """Bayeux over a WebSocket: a text frame holding a JSON array (msgspec's bytes are UTF-8
    already, so no str round trip)."""
    await ws.send_frame(_encode.encode(messages), aiohttp.WSMsgType.TEXT)


# ---- a customer: one CometD WebSocket, the least Bayeux that works ---------------------------

class Customer:
    """A GMS chat over a raw Bayeux WebSocket: handshake, one ``/meta/connect`` held at a time
    (re-sent when the server answers it, every 30 s), publishes of ``requestChat`` and
    ``sendMessage``; deliveries arrive as pushes between connects."""

    __slots__ = ("chat_id", "client_id", "n", "reader", "secure_key", "started", "stats", "ws")

    def __init__(self, stats: Stats, n: int) -> None:
        self.stats = stats
        self.n = n
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.client_id = ""
        self.secure_key = ""
        self.chat_id = ""
        self.started = asyncio.get_running_loop().create_future()
        self.reader: asyncio.Task[None] | None = None

    async def open(self, http: aiohttp.ClientSession, url: str) -> None:
        ws = self.ws = await http.ws_connect(url, autoping=True, max_msg_size=1 << 20)
        await put(ws, [{
            "channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
            "supportedConnectionTypes": ["websocket"]}])
        frame = await ws.receive()
        reply = _bayeux.decode(frame.data)[0] if frame.type is aiohttp.WSMsgType.TEXT else None
        if reply is None or not reply.successful or not reply.clientId:
            raise RuntimeError(f"handshake refused: {reply}")
        self.client_id = reply.clientId
        self.reader = asyncio.create_task(self._read(ws))
        # The first connect is answered at once; the ones after it are held by the server.
        await put(ws, [
            {"channel": "/meta/connect", "clientId": self.client_id,
             "connectionType": "websocket", "advice": {"timeout": 0}},
            {"channel": CHANNEL, "clientId": self.client_id,
             "data": {"operation": "requestChat", "nickname": f"customer {self.n}",
                      "subject": "billing"}}])

    async def send(self, now_ns: int) -> None:
        assert self.ws is not None
        self.stats.sending(now_ns)
        await put(self.ws, [
            {"channel": CHANNEL, "clientId": self.client_id,
             "data": {"operation": "sendMessage", "secureKey": self.secure_key,
                      "message": text(now_ns)}}])

    async def _connect(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await put(ws, [{"channel": "/meta/connect", "clientId": self.client_id,
                        "connectionType": "websocket"}])

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        stats = self.stats
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            async for frame in ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    break
                now = time.monotonic_ns()
                for msg in _bayeux.decode(frame.data):
                    if msg.channel == "/meta/connect":
                        if msg.successful:
                            await self._connect(ws)
                        else:
                            stats.error(f"connect: {msg.error}")
                        continue
                    data = msg.data
                    if data is None:  # a publish reply
                        if msg.successful is False:
                            stats.error(f"publish: {msg.error}")
                        continue
                    if not self.started.done() and data.secureKey and data.chatId:
                        self.secure_key, self.chat_id = data.secureKey, data.chatId
                        self.started.set_result(None)
                    for event in data.messages or ():
                        stats.in_order("customer", self.chat_id, event.index)
                        if event.type == "Message" and event.from_ is not None \
                                and event.from_.type == "Agent":
                            stats.arrived(event, now, stats.to_customer_ms, self.chat_id)
        stats.error(f"customer socket closed: {ws.close_code}")
        if not self.started.done():
            self.started.set_exception(RuntimeError("closed before the chat started"))


# ---- an agent: one event stream, REST calls on a pool of keep-alive connections --------------

Done = Callable[[int, bytes], None]
"""What is called with a reply's status and body (status 0: the connection was lost)."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection taking requests in turn, one in flight (no reliance
    on pipelining). Replies are read by their Content-Length, which every reply of the agent
    API has: a few lines instead of aiohttp's client, whose per-request cost was most of the
    generator's CPU (profiled), without a task per request."""

    def __init__(self, lost: Callable[[_Connection], None]) -> None:
        self.lost = lost
        self.transport: asyncio.Transport | None = None
        self.queue: collections.deque[tuple[bytes, Done]] = collections.deque()
        self.buffer = bytearray()
        self.head: tuple[int, int] | None = None
        """The status and body length of the reply being read, once its head is in."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def call(self, request: bytes, done: Done) -> None:
        self.queue.append((request, done))
        if len(self.queue) == 1 and self.transport is not None:
            self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while self.queue:
            if self.head is None:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buffer[:end]).lower()
                at = head.find(b"\r\ncontent-length:")
                length = 0 if at < 0 else int(head[at + 17:].split(b"\r\n", 1)[0])
                self.head = (int(head[9:12]), length)
                del buffer[:end + 4]
            status, length = self.head
            if len(buffer) < length:
                return
            body = bytes(buffer[:length])
            del buffer[:length]
            self.head = None
            _, done = self.queue.popleft()
            if self.queue and self.transport is not None:
                self.transport.write(self.queue[0][0])
            done(status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost(self)
        while self.queue:
            self.queue.popleft()[1](0, b"")


class Rest:
    """Agent API calls on ``size`` keep-alive connections, each call on the one with the
    fewest waiting (with ``--workers`` the kernel spreads the connections over the
    processes, as a load balancer would). A connection the server closes (idle keep-alive
    connections are closed after ``--header-timeout``) is replaced."""

    def __init__(self, url: str, size: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.size = size
        self.token = ""
        self.connections: list[_Connection] = []
        self._replacing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def open(self) -> None:
        for _ in range(self.size):
            await self._connect()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: _Connection(self._lost),
                                                   self.host, self.port)
        self.connections.append(protocol)

    def _lost(self, connection: _Connection) -> None:
        with contextlib.suppress(ValueError):
            self.connections.remove(connection)
        if not self._closed:
            task = asyncio.ensure_future(self._connect())
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)

    def call(self, method: str, path: str, body: bytes, done: Done) -> None:
        request = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                   f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body

        def retried(status: int, reply: bytes) -> None:
            if status == 0:  # lost with its connection (the server closed it as the request
                self._send(request, done)  # went out, as keep-alive allows): again, once
            else:
                done(status, reply)

        self._send(request, retried)

    def _send(self, request: bytes, done: Done) -> None:
        if not self.connections:
            done(0, b"")  # every one was lost at once; replacements are on their way
            return
        min(self.connections, key=lambda c: len(c.queue)).call(request, done)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        reply: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.call(method, path, body, lambda status, data: reply.set_result((status, data)))
        return await reply

    def close(self) -> None:
        self._closed = True
        for task in self._replacing:
            task.cancel()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()


class Agent:
    """An agent account holding up to :data:`AGENT_CAPACITY` chats: accepts every offer, hears
    its chats on one event stream and writes on it (``--agent-writes rest``: through
    ``POST /agent/v1/chats/{id}/send``)."""

    def __init__(self, stats: Stats, base: str, username: str, password: str,
                 connections: int, writes: str = "stream") -> None:
        self.stats = stats
        self.writes = writes
        """"stream": messages go on the event stream (as the agent clients send them);
        "rest": a ``POST .../send`` each."""
        self.sent_at: dict[int, int] = {}
        """A stream write's id -> when it was sent, until its reply."""
        self._ids = itertools.count(1)
        self.base = base
        self.username = username
        self.password = password
        self.http = aiohttp.ClientSession()
        self.rest = Rest(base, connections)
        self.accepted: set[str] = set()
        self.accepting: set[str] = set()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, capacity: int) -> None:
        async with self.http.post(f"{self.base}{AGENT_API}/login", json={
                "username": self.username, "password": self.password}) as resp:
            token = self.rest.token = (await resp.json())["token"]
        await self.rest.open()
        self.ws = await self.http.ws_connect(f"{self.base}{AGENT_API}/events",
                                             params={"token": token}, max_msg_size=1 << 24)
        hello = _agent_event.decode((await self.ws.receive()).data)
        assert hello.type == "hello", hello
        self._reader = asyncio.create_task(self._read(self.ws))
        status, body = await self.rest.request(
            "POST", f"{AGENT_API}/state", _encode.encode({"ready": True, "capacity": capacity}))
        if status != 200:
            raise RuntimeError(f"agent state refused: {status} {body!r}")

    def send(self, chat_id: str, now_ns: int) -> None:
        self.stats.sending(now_ns)
        if self.writes == "stream" and self.ws is not None:
            n = next(self._ids)
            self.sent_at[n] = now_ns
            self._spawn(self.ws.send_frame(_encode.encode(
                {"id": n, "op": "send", "chatId": chat_id, "body": {"text": text(now_ns)}}),
                aiohttp.WSMsgType.TEXT))
            return
        self.rest.call("POST", f"{AGENT_API}/chats/{chat_id}/send",
                       _encode.encode({"text": text(now_ns)}),
                       lambda status, body: self._sent(now_ns, status))

    def _sent(self, sent_ns: int, status: int) -> None:
        if status != 200:
            self.stats.error(f"agent send: HTTP {status}")
        elif self.stats.measures(sent_ns):
            self.stats.agent_send_ms.append((time.monotonic_ns() - sent_ns) / 1e6)

    async def take_waiting(self) -> None:
        """Accept what waits in the queue: an offer may have gone to the agent while it was
        full, or timed out while the machine was busy."""
        _, body = await self.rest.request("GET", f"{AGENT_API}/queue?limit=200")
        waiting = msgspec.json.decode(body)["chats"]
        await asyncio.gather(*(self._accept(chat["chatId"]) for chat in waiting))

    async def _accept(self, chat_id: str) -> None:
        if chat_id in self.accepting:
            return  # offered and found waiting at once
        self.accepting.add(chat_id)
        status, _ = await self.rest.request("POST", f"{AGENT_API}/chats/{chat_id}/accept")
        if status == 200:
            self.accepted.add(chat_id)
        else:
            self.stats.error(f"agent accept: HTTP {status}")
            self.accepting.discard(chat_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        stats = self.stats
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            async for frame in ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    break
                now = time.monotonic_ns()
                event = _agent_event.decode(frame.data)
                if event.type == "message" and event.message is not None:
                    msg = event.message
                    stats.in_order("agent", event.chatId or "", msg.index)
                    if msg.type == "Message" and msg.from_ is not None \
                            and msg.from_.type == "Client":
                        stats.arrived(msg, now, stats.to_agent_ms, event.chatId or "")
                elif event.type == "reply" and event.id is not None:
                    sent = self.sent_at.pop(event.id, None)
                    if sent is not None:
                        self._sent(sent, 200 if event.ok else event.status or 500)
                elif event.type == "offer" and event.chat is not None:
                    self._spawn(self._accept(event.chat.chatId))
        stats.error(f"agent stream closed: {ws.close_code}")

    async def close(self) -> None:
        for task in [*self._tasks, *([self._reader] if self._reader else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.rest.close()
        if self.ws is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.ws.close()
        await self.http.close()


# ---- the conversation --------------------------------------------------------------------------

@dataclass
class Chat:
    customer: Customer
    agent: Agent


async def watch_loop(stats: Stats, beat_s: float = 0.005) -> None:
    """How late this generator's own event loop runs a timer, every ``beat_s``, until
    cancelled: its own work (the deliveries it reads arrive together) and any stall of the
    machine's (the host taking the CPU) show here; a stall of the servers' alone does not."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + beat_s
        await asyncio.sleep(beat_s)
        if stats.measures(time.monotonic_ns()):
            stats.loop_lag_ms.append((loop.time() - due) * 1000)


async def converse(chats: list[Chat], interval_s: float) -> None:
    """Each side of each chat sends every ``interval_s``, at a phase of its own (spread evenly
    at random over the interval), as people do; runs until cancelled."""
    slots = sorted((random.random() * interval_s, n, side)
                   for n in range(len(chats)) for side in (0, 1))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for cycle in itertools.count():
        base = start + cycle * interval_s
        for phase, n, side in slots:
            due = base + phase
            delay = due - loop.time()
            if delay > 0.005:  # sends within 5 ms of each other go out together
                await asyncio.sleep(delay)
            chat = chats[n]
            now = time.monotonic_ns()
            if side:
                chat.agent.send(chat.customer.chat_id, now)
            else:
                await chat.customer.send(now)


async def open_customers(stats: Stats, http: aiohttp.ClientSession, url: str, count: int,
                         rate: float, concurrency: int) -> list[Customer]:
    """``count`` customers requesting chats at ``rate`` per second, at most ``concurrency``
    opening at once; returns once every one's chat has started (it has its secureKey)."""
    gate = asyncio.Semaphore(concurrency)
    customers = [Customer(stats, n) for n in range(count)]
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(customer: Customer) -> None:
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_S):
                await customer.open(http, url)
                await customer.started
        finally:
            gate.release()

    opening = []
    for n, customer in enumerate(customers):
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        await gate.acquire()
        opening.append(asyncio.create_task(one(customer)))
    await asyncio.gather(*opening)
    return customers


def place(serving: dict[int, int], chats: list[Chat]) -> tuple[set[str], set[str]]:
    """Of one server's ``chats``: those whose two sides the kernel put on different processes
    of it, and those with a side on no process of ``serving`` (:meth:`ServerProcess.serving`:
    a client port -> its process). A connection is known by its local port, unique only among
    connections to one server: a port can serve a connection to another server meanwhile."""
    def process(ws: aiohttp.ClientWebSocketResponse | None) -> int | None:
        sockname = ws.get_extra_info("sockname") if ws is not None else None
        return serving.get(sockname[1]) if sockname else None

    crossing, unplaced = set(), set()
    for chat in chats:
        sides = process(chat.customer.ws), process(chat.agent.ws)
        if None in sides:
            unplaced.add(chat.customer.chat_id)
        elif sides[0] != sides[1]:
            crossing.add(chat.customer.chat_id)
    return crossing, unplaced


def pair(customers: list[Customer], agents: list[Agent]) -> list[Chat]:
    """Each customer's chat with the agent that accepted it (the router spreads chats over
    the agents: the least busy first)."""
    agent_of = {chat_id: agent for agent in agents for chat_id in agent.accepted}
    return [Chat(customer, agent_of[customer.chat_id]) for customer in customers]


async def wait_accepted(customers: list[Customer], agents: list[Agent], timeout_s: float
                        ) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        accepted = set().union(*(a.accepted for a in agents))
        missing = sum(c.chat_id not in accepted for c in customers)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{missing} chats not accepted after {timeout_s:.0f} s")
        await asyncio.sleep(1.0)
        for agent in agents:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await agent.take_waiting()


# ---- what is measured --------------------------------------------------------------------------

@dataclass
class Meters:
    """CPU of every party: the servers' processes, the PostgreSQL backends of their databases,
    redis-server, this generator, and the whole machine; read at named marks."""

    servers: list[ServerProcess]
    postgres: asyncpg.Connection[asyncpg.Record] | None
    databases: list[str]
    redis: psutil.Process | None
    marks: dict[str, dict[str, float]] = field(default_factory=dict)

    async def mark(self, name: str) -> None:
        backends = [] if self.postgres is None else [
            b for database in self.databases
            for b in await postgres_backends(self.postgres, database)]
        machine = psutil.cpu_times()
        self.marks[name] = {
            "time": time.monotonic(),
            "server": sum(server.cpu_seconds() for server in self.servers),
            **{f"pg{pid}": t for pid, t in cpu_by_pid(backends).items()},
            "redis": sum(cpu_by_pid([self.redis]).values()) if self.redis else math.nan,
            "generator": sum(cpu_by_pid([psutil.Process()]).values()),
            "machine": sum(getattr(machine, name, 0.0) for name in (
                "user", "nice", "system", "irq", "softirq", "steal")),  # guest is in user
            "steal": getattr(machine, "steal", 0.0),
        }

    def cores(self, key: str, start: str, end: str) -> float:
        """Cores ``key`` used from mark ``start`` to ``end`` (``postgres``: every backend)."""
        before, after = self.marks[start], self.marks[end]
        elapsed = after["time"] - before["time"]
        if key == "postgres":
            if self.postgres is None:
                return math.nan

            def backends(mark: dict[str, float]) -> dict[int, float]:
                return {int(k[2:]): v for k, v in mark.items() if k.startswith("pg")}
            return cpu_spent(backends(before), backends(after)) / elapsed
        return (after[key] - before[key]) / elapsed


@contextlib.asynccontextmanager
async def backing(deployment: Deployment) -> AsyncIterator[tuple[list[str], str | None]]:
    """The server's options for the deployment's store and broker, and its database's name;
    the scratch database and the Redis keys are gone afterwards."""
    if not deployment.shared:
        yield [], None
        return
    prefix = f"webchat-bench-{secrets.token_hex(4)}:"
    broker = f"{REDIS_URL}{'&' if '?' in REDIS_URL else '?'}prefix={prefix}"
    try:
        async with scratch_database() as dsn:
            yield ["--store", dsn, "--broker", broker, "--workers", str(deployment.workers)], \
                dsn.rsplit("/", 1)[1]
    finally:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


def machine_speed_ms(rounds: int = 5) -> float:
    """How long this machine takes for a fixed piece of pure-Python work (JSON in and out,
    dict churn), the best of ``rounds``: the same commit measured 30% apart on different days
    here, so a run's figures are read beside its own calibration (lower is faster)."""
    best = math.inf
    for _ in range(rounds):
        started = time.process_time()
        kept: dict[int, Any] = {}
        for i in range(20_000):
            kept[i % 500] = json.loads(json.dumps({"i": i, "pair": [i, i + 1], "s": "x" * 20}))
        best = min(best, time.process_time() - started)
    return round(best * 1000, 1)


def quiet_collector() -> None:
    """Keep this process's garbage collector out of the latencies: with 10,000 WebSockets a
    full collection here scans over a million objects, a pause every delivery waiting in it
    would be charged to the server. The set-up's objects are frozen (never scanned again) and
    collection is off while measuring (bounded: the window makes little cyclic garbage)."""
    gc.collect()
    gc.freeze()
    gc.disable()


def collector_pauses(server: ServerProcess, start: int) -> list[float]:
    """The garbage collector's long pauses (ms) a server logged since ``start`` (an offset in
    its output; ``webchat.server.gc_policy.LONG_PAUSE_S``)."""
    with server.log.open("rb") as out:
        out.seek(start)
        return [float(m) for m in re.findall(
            rb"garbage collection paused this process for (\d+) ms", out.read())]


async def wait_workers(url: str, workers: int, timeout_s: float = 30.0) -> None:
    """Until ``workers`` processes answer on the shared port: the supervisor starts worker 0
    first, and chats opened before the others listen would all land on it."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {workers} workers answered")
        # A new connection each time: the kernel spreads connections over the listeners.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                         timeout=aiohttp.ClientTimeout(total=5)) as http, \
                http.get(f"{url}/healthz") as resp:
            seen.add((await resp.json())["pid"])
        await asyncio.sleep(0.05)


def agents_per_server(chats: int) -> int:
    """Agent accounts one server's ``chats`` need (each holds :data:`AGENT_CAPACITY`)."""
    return max(1, math.ceil(chats / AGENT_CAPACITY))


def chats_of(deployment: Deployment, args: argparse.Namespace) -> int:
    """The chats a deployment carries: ``--chats`` per process (a process added carries as
    much again, as a host added to a cluster would), or ``--chats`` in all with
    ``--same-total``."""
    chats: int = args.chats
    return chats if args.same_total else chats * deployment.workers * deployment.apart


async def run(deployment: Deployment, args: argparse.Namespace) -> dict[str, Any]:
    password = secrets.token_urlsafe(12)
    chat_count = chats_of(deployment, args)
    per_server = chat_count // deployment.apart
    chat_count = per_server * deployment.apart
    accounts = [f"bench{n}" for n in range(agents_per_server(per_server))]
    many = f"{per_server * 10}:{per_server * 10}"
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(burning(args.burn if deployment.burn else 0.0))
        servers: list[ServerProcess] = []
        databases: list[str] = []
        for _ in range(deployment.apart):
            options, database = await stack.enter_async_context(backing(deployment))
            servers.append(await start_server(
                *options, *(a for name in accounts for a in ("--agent", f"{name}:{password}")),
                "--offer-timeout", "600", "--chat-start-rate", many,
                "--cometd-handshake-rate", many, *args.serve_option))
            # Stopped when the stack unwinds: after the clients (``finally`` below), before
            # its database goes.
            stack.push_async_callback(asyncio.to_thread, servers[-1].stop)
            databases += [database] if database else []
        stats = Stats()
        agents: list[list[Agent]] = [[] for _ in servers]
        postgres = await asyncpg.connect(POSTGRES_ADMIN) if databases else None
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        talk: asyncio.Task[None] | None = None
        watcher: asyncio.Task[None] | None = None
        customers: list[list[Customer]] = []
        try:
            for server, theirs in zip(servers, agents, strict=True):
                await wait_workers(server.url, deployment.workers)
                for name in accounts:
                    agent = Agent(stats, server.url, name, password, args.agent_connections,
                                  args.agent_writes)
                    theirs.append(agent)
                    async with asyncio.timeout(SETUP_TIMEOUT_S):
                        await agent.start(AGENT_CAPACITY)
            await asyncio.sleep(1.0)
            rss_idle = sum(server.rss_mb() for server in servers)
            setup = time.monotonic()
            async with asyncio.TaskGroup() as opening:
                tasks = [opening.create_task(open_customers(
                    stats, http, f"{server.url}/genesys/cometd", per_server,
                    args.ramp_rate / len(servers), args.setup_concurrency))
                    for server in servers]
            customers = [task.result() for task in tasks]
            for theirs, mine in zip(agents, customers, strict=True):
                await wait_accepted(mine, theirs, 60 + chat_count / 50)
            setup_s = time.monotonic() - setup
            by_server = [pair(mine, theirs)
                         for theirs, mine in zip(agents, customers, strict=True)]
            for server, its_chats in zip(servers, by_server, strict=True):
                if args.agent_writes == "stream":
                    crossing, unplaced = place(server.serving(), its_chats)
                    stats.crossing |= crossing
                    stats.unplaced |= unplaced
                else:
                    stats.unplaced |= {chat.customer.chat_id for chat in its_chats}
            chats = [chat for its_chats in by_server for chat in its_chats]
            quiet_collector()
            meters = Meters(servers, postgres, databases,
                            redis_process(REDIS_URL) if deployment.shared else None)
            await meters.mark("idle")  # holding the chats, nobody writing
            await asyncio.sleep(args.idle)
            await meters.mark("talk")
            talk = asyncio.create_task(converse(chats, args.interval))
            watcher = asyncio.create_task(watch_loop(stats))
            await asyncio.sleep(args.warmup)
            await meters.mark("window")
            logged = [server.log.stat().st_size for server in servers]
            now = time.monotonic_ns()
            stats.window = (now, now + int(args.duration * 1e9))
            await asyncio.sleep(args.duration)
            await meters.mark("end")
            stats.collector_pauses_ms = [
                ms for server, start in zip(servers, logged, strict=True)
                for ms in collector_pauses(server, start)]
            rss = sum(server.rss_mb() for server in servers)
            await asyncio.sleep(args.grace)  # the window's last messages land
            if talk.done():
                talk.result()  # the sender failed: say why
        except BaseException:
            print(f"the run failed (errors seen: {stats.errors})", file=sys.stderr)
            for server in servers:
                print(f"the output of the server at {server.url} ends:\n"
                      f"{server.log_tail(60)}", file=sys.stderr)
            raise
        finally:
            gc.enable()
            gc.unfreeze()  # this run's objects may go now
            stats.closing = True
            for task in (talk, watcher):
                if task is not None:
                    task.cancel()
            everyone = [c for mine in customers for c in mine]
            # Clients first, all at once: a server stopping gracefully closes its sockets
            # one after the other, each waiting for the client's close frame.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await asyncio.gather(*(c.ws.close() for c in everyone if c.ws),
                                         return_exceptions=True)
            for customer in everyone:
                if customer.reader is not None:
                    customer.reader.cancel()
            await http.close()
            for agent in (a for theirs in agents for a in theirs):
                await agent.close()
            if postgres is not None:
                await postgres.close()
    return result(deployment, args, chat_count, stats, meters, rss_idle, rss, setup_s)


def p50_p99(latencies: list[float]) -> str:
    return f"{percentile(latencies, 50):.2f} / {percentile(latencies, 99):.2f}"


def result(deployment: Deployment, args: argparse.Namespace, chats: int, stats: Stats,
           meters: Meters, rss_idle: float, rss: float, setup_s: float) -> dict[str, Any]:
    window = float(args.duration)
    latencies = stats.to_agent_ms + stats.to_customer_ms
    rate = max(stats.sent, 1) / window

    def cores(key: str) -> float:
        return meters.cores(key, "window", "end")

    def idle(key: str) -> float:
        return meters.cores(key, "idle", "talk")

    def per_k(cores: float) -> float:  # cores -> ms of CPU per 1,000 messages
        return round(cores / rate * 1e6, 1)

    ours = sum(c for c in map(cores, ("server", "postgres", "redis", "generator"))
               if not math.isnan(c))
    return {
        "deployment": deployment.title,
        "processes": deployment.workers * deployment.apart,
        "burned_cores": args.burn if deployment.burn else 0.0,
        "chats": chats,
        "setup_s": round(setup_s, 1),
        "offered_msgs_per_s": round(chats * 2 / args.interval, 1),
        "sent_msgs_per_s": round(stats.sent / window, 1),
        "delivered_per_s": round(len(latencies) / window, 1),
        "lost": stats.sent - len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies, default=math.nan), 1),
        "to_agent_p50_p99_ms": p50_p99(stats.to_agent_ms),
        "to_customer_p50_p99_ms": p50_p99(stats.to_customer_ms),
        "within_process_share": round(len(stats.by_path[0]) / max(len(latencies), 1), 2),
        "unplaced_chats": len(stats.unplaced),
        "within_process_p50_p99_ms": p50_p99(stats.by_path[0]),
        "across_processes_p50_p99_ms": p50_p99(stats.by_path[1]),
        "agent_send_p50_p99_ms": p50_p99(stats.agent_send_ms),
        "server_cores": round(cores("server"), 3),
        "server_idle_cores": round(idle("server"), 3),
        "server_cpu_ms_per_1k_msgs": per_k(cores("server")),
        "server_marginal_ms_per_1k_msgs": per_k(cores("server") - idle("server")),
        "server_rss_mb": round(rss, 1),
        "server_rss_kb_per_chat": round((rss - rss_idle) * 1024 / chats, 1),
        "postgres_cores": round(cores("postgres"), 3),
        "postgres_cpu_ms_per_1k_msgs": per_k(cores("postgres")),
        "redis_cores": round(cores("redis"), 3),
        "redis_cpu_ms_per_1k_msgs": per_k(cores("redis")),
        "generator_cores": round(cores("generator"), 3),
        "machine_busy_cores": round(cores("machine"), 2),
        "machine_steal_cores": round(cores("steal"), 3),
        "server_collector_pauses_ms": sorted(stats.collector_pauses_ms, reverse=True)[:5],
        "generator_loop_lag_p99_max_ms": f"{percentile(stats.loop_lag_ms, 99):.1f} / "
                                         f"{max(stats.loop_lag_ms, default=math.nan):.1f}",
        "others_cores": round(cores("machine") - ours, 2),
        "machine_speed_ms": machine_speed_ms(),
        "errors": dict(stats.errors),
    }


def at_target(r: dict[str, Any]) -> float:
    """Server cores at the target load (10,000 chats, 2,000 messages/s): measured when run
    there, else what holding the chats cost (scaled by the number of chats) plus the
    marginal CPU per message times 2,000/s — a straight line through the two loads."""
    if r["chats"] == TARGET_CHATS and r["offered_msgs_per_s"] == TARGET_RATE:
        return float(r["server_cores"])
    return float(r["server_idle_cores"] * TARGET_CHATS / r["chats"]
                 + r["server_marginal_ms_per_1k_msgs"] / 1e6 * TARGET_RATE)


def saturation(r: dict[str, Any], cores: int) -> str:
    """What a verdict on ``r`` must add when the machine was near every core busy."""
    if r["machine_busy_cores"] > 0.9 * cores:
        return " (the machine was saturated: latencies are the machine's)"
    return ""


def beside(runs: list[tuple[str, dict[str, Any]]], name: str, other: str
           ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each run of deployment ``name`` with the run of ``other`` just before it (or, for a
    first one, just after): interleaved runs are compared pair by pair, as measured in the
    same minutes of this machine's varying speed."""
    pairs = []
    for i, (n, run_) in enumerate(runs):
        if n != name:
            continue
        before = [r for m, r in runs[:i] if m == other]
        after = [r for m, r in runs[i + 1:] if m == other]
        if before or after:
            pairs.append((run_, before[-1] if before else after[0]))
    return pairs


def scaling_pairs(runs: list[tuple[str, dict[str, Any]]]
                  ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(1 process, N processes) on PostgreSQL + Redis, each N-process run with the 1-process
    run beside it (:func:`beside`; ``--deployments pg,pg2,pg,pg2``)."""
    return [(one, many)
            for name in dict.fromkeys(n for n, _ in runs)
            if DEPLOYMENTS[name].shared and DEPLOYMENTS[name].workers > 1
            for many, one in beside(runs, name, "pg")]


def verdicts(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The issue's targets, checked against what was measured (or extrapolated, when the run
    was not at the target load), in plain words: a line per run, and per pair for scaling."""
    lines = []
    cores = psutil.cpu_count() or 1
    for name, r in runs:
        measured = r["chats"] == TARGET_CHATS and r["offered_msgs_per_s"] == TARGET_RATE
        if DEPLOYMENTS[name].workers != 1 or DEPLOYMENTS[name].burn \
                or DEPLOYMENTS[name].apart != 1:
            continue
        load = f"{at_target(r):.2f} server cores" + ("" if measured else (
            f" at the target load, extrapolated (idle {r['server_idle_cores']:.2f} cores with "
            f"{r['chats']:,} chats, {r['server_marginal_ms_per_1k_msgs']:.0f} ms CPU per "
            f"1,000 messages beyond it at {r['sent_msgs_per_s']:,.0f}/s)"))
        met = (measured and r["p99_ms"] < TARGET_P99_MS and r["server_cores"] < 1
               and r["server_rss_mb"] < TARGET_RSS_MB and r["lost"] == 0)
        lines.append(f"{r['deployment']}: p99 {r['p99_ms']:.1f} ms (< {TARGET_P99_MS:.0f}), "
                     f"{load} (< 1), RSS {r['server_rss_mb']:.0f} MB (< 1,024), lost "
                     f"{r['lost']}: " + ("MET" if met else "not met" if measured else
                                         "not run at the target load")
                     + saturation(r, cores))
    for one, many in scaling_pairs(runs):
        n = many["processes"]
        per_core = [r["delivered_per_s"] / r["server_cores"] for r in (one, many)]
        ratio = n * per_core[1] / per_core[0]
        load = ("the same total load, spread over them" if one["chats"] == many["chats"] else
                f"{many['chats'] / one['chats']:g}x the chats, as many per process")
        p99s = f"p99 {many['p99_ms']:.1f} ms vs {one['p99_ms']:.1f} ms"
        if n == 2:  # the target
            met = ratio >= TARGET_SCALING and many["p99_ms"] <= one["p99_ms"] * 1.1
            verdict = f"target >= {TARGET_SCALING}), {p99s}: {'MET' if met else 'not met'}"
        else:
            verdict = f"ideal {n}), {p99s}"
        lines.append(
            f"scaling: 1 process delivered {per_core[0]:,.0f} messages/s per server core "
            f"({one['delivered_per_s']:,.0f}/s on {one['server_cores']:.2f} cores), "
            f"{n} processes {per_core[1]:,.0f} ({many['delivered_per_s']:,.0f}/s on "
            f"{many['server_cores']:.2f} cores, {load}): {n} processes with a core each "
            f"deliver {ratio:.2f}x one process on one core ({verdict}"
            + saturation(many, cores))
        if "nan" not in many.get("across_processes_p50_p99_ms", "nan") + many.get(
                "within_process_p50_p99_ms", "nan"):
            lines.append(
                f"  where the {n}-process run's time went: deliveries within one process "
                f"(the customer's and the agent's connections on the same process, "
                f"{many['within_process_share']:.0%} of them) p50 / p99 "
                f"{many['within_process_p50_p99_ms']} ms, across processes "
                f"{many['across_processes_p50_p99_ms']} ms; the 1-process run "
                f"{one['p50_ms']:.2f} / {one['p99_ms']:.2f} ms")
    for burned, two in beside(runs, "pgburn", "pg2"):
        lines.append(
            f"control: 1 process beside {burned['burned_cores']:.2f} cores of other work "
            f"(machine busy {burned['machine_busy_cores']:.2f} cores): p99 "
            f"{burned['p99_ms']:.1f} ms; the 2-process run beside it (machine busy "
            f"{two['machine_busy_cores']:.2f} cores): p99 {two['p99_ms']:.1f} ms")
    for apart, two in beside(runs, "pgapart", "pg2"):
        per_core = [r["delivered_per_s"] / r["server_cores"] for r in (apart, two)]
        lines.append(
            f"control: 2 separate 1-process deployments side by side, neither hearing the "
            f"other (machine busy {apart['machine_busy_cores']:.2f} cores): p50 / p99 "
            f"{apart['p50_ms']:.2f} / {apart['p99_ms']:.2f} ms, {per_core[0]:,.0f} messages/s "
            f"per server core; the 2-process cluster beside them (machine busy "
            f"{two['machine_busy_cores']:.2f} cores): {two['p50_ms']:.2f} / "
            f"{two['p99_ms']:.2f} ms, {per_core[1]:,.0f} per core "
            f"({per_core[1] / per_core[0]:.2f}x)")
    return lines


def show(runs: list[tuple[str, dict[str, Any]]]) -> None:
    rows = list(runs[0][1])
    width = max(map(len, rows))
    columns = [[str(r[row]) for row in rows] for _, r in runs]
    widths = [max(len(c) for c in col) for col in columns]
    for i, row in enumerate(rows):
        print(f"{row:<{width}}  " + "  ".join(f"{col[i]:>{w}}"
                                              for col, w in zip(columns, widths, strict=True)))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 4)[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--burn", type=float, default=0.7,
                   help="cores of other work beside the pgburn deployment")
    p.add_argument("--deployments", default="sqlite,pg,pg2",
                   help=f"which to run, in order: {', '.join(DEPLOYMENTS)}")
    p.add_argument("--chats", type=int, default=TARGET_CHATS)
    p.add_argument("--interval", type=float, default=TARGET_INTERVAL_S,
                   help="seconds between one side's messages in a chat")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    p.add_argument("--idle", type=float, default=10.0,
                   help="seconds measured holding the chats before anyone writes")
    p.add_argument("--warmup", type=float, default=TARGET_INTERVAL_S,
                   help="seconds of conversation before measuring")
    p.add_argument("--grace", type=float, default=3.0,
                   help="seconds after the window for its last messages to arrive")
    p.add_argument("--ramp-rate", type=float, default=500.0, help="chats started per second")
    p.add_argument("--setup-concurrency", type=int, default=200)
    p.add_argument("--agent-connections", type=int, default=256,
                   help="keep-alive connections of each agent's REST calls (pipelined: with "
                        "32, one slow answer held up the sends queued behind it, which real "
                        "agents, each on a connection of their own, never see)")
    p.add_argument("--agent-writes", choices=("stream", "rest"), default="stream",
                   help="how agents send their messages: on their event stream (as the agent "
                        "clients do) or a REST call each")
    p.add_argument("--same-total", action="store_true",
                   help="every deployment carries --chats in all (by default each process "
                        "carries --chats: two processes twice the load of one, as a cluster "
                        "grows by adding hosts with their load)")
    p.add_argument("--serve-option", action="append", default=[], metavar="OPTION",
                   help="passed to webchat serve as it is (repeatable): e.g. "
                        "--serve-option=--gc-thresholds=5000,2,1000")
    p.add_argument("--quick", action="store_true",
                   help="500 chats, 20 s measured: does it work?")
    args = p.parse_args()
    if args.quick:
        args.chats, args.duration, args.warmup, args.idle = 500, 20.0, 5.0, 5.0
    unknown = set(args.deployments.split(",")) - set(DEPLOYMENTS)
    if unknown:
        p.error(f"unknown deployments {', '.join(sorted(unknown))}")
    return args


DESCRIPTOR_MARGIN = 200
"""Open files the generator needs beyond its sockets to the server (PostgreSQL, Redis,
psutil's /proc reads, the interpreter's own)."""


def descriptors_needed(deployment: Deployment, args: argparse.Namespace) -> int:
    """Open files this generator holds for ``deployment``: a WebSocket per chat, each agent's
    event stream and keep-alive pool, and :data:`DESCRIPTOR_MARGIN`."""
    chats = chats_of(deployment, args)
    agents = agents_per_server(chats // deployment.apart) * deployment.apart
    return chats + agents * (args.agent_connections + 1) + DESCRIPTOR_MARGIN


def check_descriptors(args: argparse.Namespace) -> str | None:
    """Raise this process's open-file limit to the hard one; say why the run cannot be made
    when a deployment needs more (20,000 chats for 2 processes at 10,000 each met this
    machine's 20,000 mid-run, after minutes of set-up, as 'Too many open files')."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for name in args.deployments.split(","):
        deployment = DEPLOYMENTS[name]
        needed = descriptors_needed(deployment, args)
        if hard != resource.RLIM_INFINITY and needed > hard:
            return (f"{deployment.title} needs about {needed:,} open files in this load "
                    f"generator ({chats_of(deployment, args):,} chats) and this machine "
                    f"allows {hard:,} (ulimit -Hn): run it with fewer --chats, or raise the "
                    f"hard limit")
    return None


async def main(args: argparse.Namespace) -> None:
    refusal = check_descriptors(args)
    if refusal is not None:
        sys.exit(refusal)
    runs = []
    for name in args.deployments.split(","):
        print(f"running {DEPLOYMENTS[name].title} ...", file=sys.stderr, flush=True)
        runs.append((name, await run(DEPLOYMENTS[name], args)))
        print(json.dumps(runs[-1][1]), flush=True)
    show(runs)
    for line in verdicts(runs):
        print(line)


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main(parse()))
    else:
        uvloop.run(main(parse()))
