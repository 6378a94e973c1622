"""Chaos: three ``webchat serve`` processes behind nginx, 200 chats on every transport, the
routing leader SIGKILLed mid-run and restarted. Nothing a client was told is lost, nothing
is there twice, and every client has seen exactly its transcript, once.

The deployment is the recipe's (docs/cluster.md) on loopback, without namespaces: three
OS processes sharing one fresh PostgreSQL database and one Redis prefix, and an nginx with
the shipped configuration (deploy/nginx/webchat.conf) spreading requests round robin.
Customers are our Python WebChatService on REST, CometD WebSocket and CometD long-polling
(a third each); agents are :class:`~webchat.transport.agent.AgentClient` (REST calls and the
WebSocket event stream, through nginx too). Each customer sends a few messages; its agent
answers every customer message it sees; half of the chats are ended by the customer, half
by the agent.

In the middle of the talking, the process holding the routing lease is SIGKILLed (no drain,
no goodbye: its sockets just close) and started again a few seconds later. Clients on it
reconnect through the front to another process and resume from their transcript position;
the lease moves; offers it made and had not announced time out and are made again.

What the end checks, per chat, against the ``events`` table read with plain SQL:

* complete: every message a client was told was accepted is stored (a send that failed
  without an answer may or may not be: the client cannot know, and must not retry blindly);
* in order: indexes 1..N, no gap;
* no duplicates: no message text twice;
* the customer saw exactly the stored events 1..N, once each, in order;
* the agent saw exactly the stored events from its joining to the end, once each, in order.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from scripts.cluster_netns import Proc, spawn, start_nginx, tail

from tests.conftest import SERVICE, Customer, free_port
from tests.polling import eventually
from tests.services import fail_or_skip
from tests.tcp_proxy import TcpProxy
from webchat.bus.bus import CommandError
from webchat.server.accounts import hash_password
from webchat.store.postgres import PostgresStore
from webchat.store.records import AgentRecord
from webchat.transport.agent import AgentApiError, AgentClient

CHATS = 200
AGENTS = 20
CAPACITY = 10
"""Enough seats for every chat at once: the test is about failures, not about queueing."""
ROUNDS = 5
"""Messages each customer sends (its agent answers each): few per chat, many chats."""
GAP_S = 2.0
"""Between two messages of one customer (each starts at a random point of the first gap)."""
KILL_AT_S = 3.0
"""When, after the talking began, the lease holder is killed..."""
DOWN_S = 3.0
"""... and how long it stays dead before it is started again."""
SETTLE_S = 40.0
"""How long clients may take, after the last message, to have seen every stored event."""
OFFER_TIMEOUT_S = 3.0
"""An offer the dead leader made but never announced waits this long to be made again."""
TRANSPORTS = ("rest", "websocket", "long-polling")
PASSWORD = "pw"

# The long-polling customers reach the servers through a front that keeps each one on one
# process while it lives (a TcpProxy per customer, moving on when its process refuses):
# until CometD requests are forwarded to the process holding their session, a long-poll
# that another process answers is 402 unknown-session and a re-handshake, every time.
# Once forwarding is in (server/cometd_forward.py), set this to False: they then go round
# robin through nginx like everyone else.
PIN_LONG_POLLING = True


@dataclass
class Node:
    """One ``webchat serve`` process of the cluster."""

    index: int
    port: int
    argv: list[str]
    log: Path
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = spawn(f"chaos{self.index}", self.argv, self.log, f"--port={self.port}")

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed, nothing said to anyone."""
        assert self.proc is not None and self.proc.popen is not None
        self.proc.popen.send_signal(signal.SIGKILL)
        self.proc.popen.wait(5)

    async def ready(self, http: aiohttp.ClientSession, within_s: float = 30.0) -> None:
        """Once it answers ``/healthz`` (failing at once if it exited)."""

        async def answers() -> bool:
            assert self.proc is not None
            assert self.proc.alive(), f"node {self.index} exited:\n{tail(self.log)}"
            try:
                async with http.get(f"{self.url}/healthz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(answers, f"node {self.index} answering /healthz", within_s)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.end(signal.SIGTERM)


@dataclass
class Sent:
    """What one side of a chat sent: text -> whether the server said it took it (False: the
    request failed without an answer, so it may or may not have been written)."""

    texts: dict[str, bool] = field(default_factory=dict)

    def record(self, text: str, accepted: bool) -> None:
        self.texts[text] = accepted

    @property
    def accepted(self) -> set[str]:
        return {t for t, ok in self.texts.items() if ok}

    @property
    def unsure(self) -> int:
        return sum(1 for ok in self.texts.values() if not ok)


@dataclass
class ChatRun:
    number: int
    transport: str
    customer: Customer
    front: TcpProxy | None = None
    chat_id: str = ""
    said: Sent = field(default_factory=Sent)
    end_refused: str = ""
    """Why the customer's endChat failed, if it did (the chat must end all the same)."""

    def seen(self) -> list[dict[str, Any]]:
        """Every transcript event the customer's service published, in order."""
        return [m for e in self.customer.events if e.event == "WebChatService.messageReceived"
                for m in e.data["originalMessages"]]

    @property
    def handshakes(self) -> int:
        transport = self.customer.service.transport
        client = getattr(transport, "client", None)
        return int(client.bayeux.handshakes) if client is not None else 0


class Agent:
    """An agent that accepts every offer and answers every customer message it sees."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.client = AgentClient(url, name, PASSWORD)
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self.said: dict[str, Sent] = {}
        self.hellos = 0
        self.offers = 0
        self.failures: Counter[str] = Counter()
        self._work: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.client.login()
        self.client.listen(self._event, retry_s=0.2)
        await self.client.wait_connected()
        await self.client.set_state(True, CAPACITY)

    @property
    def busy(self) -> bool:
        return bool(self._work)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "hello":
            self.hellos += 1
        elif kind == "offer":
            self.offers += 1
            self._spawn(self._accept(event["chat"]["chatId"]))
        elif kind == "message":
            chat_id, msg = event["chatId"], event["message"]
            self.seen.setdefault(chat_id, []).append(msg)
            if msg["type"] == "Message" and msg["from"]["type"] == "Client" \
                    and not event["chatEnded"]:
                self._spawn(self._reply(chat_id, f"re {msg['text']}"))

    async def _accept(self, chat_id: str) -> None:
        try:
            accepted = await self.client.accept(chat_id)
        except (AgentApiError, aiohttp.ClientError, msgspec.DecodeError) as exc:
            # Taken meanwhile, or the process died under the call: the offer times out and
            # is made again (or the chat is ours and its events come anyway).
            self.failures[f"accept {type(exc).__name__}"] += 1
            return
        self.client.track(chat_id, accepted["nextPosition"])

    async def _reply(self, chat_id: str, text: str) -> None:
        self.said.setdefault(chat_id, Sent()).record(text, await self.attempt(
            "send", self.client.send(chat_id, text)))

    async def attempt(self, what: str, call: Any) -> bool:
        """Whether ``call`` was answered with success; a failure is counted by kind."""
        try:
            await call
        except (AgentApiError, aiohttp.ClientError, msgspec.DecodeError) as exc:
            self.failures[f"{what} {type(exc).__name__}"] += 1
            return False
        return True

    async def end(self, chat_id: str) -> None:
        await self.attempt("end", self.client.end(chat_id))

    async def close(self) -> None:
        for task in list(self._work):
            task.cancel()
        await self.client.close()


@contextmanager
def nginx_front(upstreams: list[str]) -> Iterator[str]:
    """nginx with the shipped configuration in front of ``upstreams``; yields its URL. Its
    state folder must be readable by nginx's workers (www-data): not under pytest's tmp."""
    if shutil.which("nginx") is None:
        fail_or_skip("nginx is not installed (scripts/setup test installs it)", "nginx")
    state = Path(tempfile.mkdtemp(prefix="webchat-chaos-nginx-"))
    state.chmod(0o755)
    listen = f"127.0.0.1:{free_port()}"
    nginx = start_nginx(state, listen, upstreams)
    try:
        yield f"http://{listen}"
    finally:
        nginx.end()
        shutil.rmtree(state, ignore_errors=True)


def customer_options(transport: str, base: str) -> dict[str, Any]:
    """WebChatService options for ``transport``, the server reached at ``base``."""
    options: dict[str, Any] = {
        # Polling goes on through a dead process rather than giving up after five failed
        # refreshes (the widget's default, which then waits for resetPollExceptions).
        "pollInterval": 500, "pollExceptionLimit": 1_000_000}
    if transport != "rest":
        options["cometD"] = {"enabled": True, "cometURL": f"{base}/genesys/cometd",
                             "channel": f"/service/chatV2/{SERVICE}",
                             "websocketEnabled": transport == "websocket"}
    return options


async def make_accounts(dsn: str) -> None:
    """The agents' accounts, straight in the store before any process starts (as an operator
    migrating and provisioning would): no process makes its own, with its own password."""
    store = PostgresStore(dsn)
    await store.open()
    try:
        password_hash = hash_password(PASSWORD)
        for n in range(AGENTS):
            await store.put_agent(AgentRecord(f"agent{n}", f"Agent {n}", password_hash))
    finally:
        await store.close()


@dataclass
class Stored:
    status: str
    events: list[dict[str, Any]] = field(default_factory=list)
    """By index, each with its row's index as ``_idx``."""


async def stored_chats(dsn: str) -> dict[str, Stored]:
    """chat id -> the chat as PostgreSQL holds it (plain SQL: what is there, whatever the
    store code thinks)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        chats = await conn.fetch("SELECT chat_id, status FROM chats")
        rows = await conn.fetch("SELECT chat_id, idx, message_json FROM events "
                                "ORDER BY chat_id, idx")
    finally:
        await conn.close()
    out = {row["chat_id"]: Stored(row["status"]) for row in chats}
    for row in rows:
        event = msgspec.json.decode(bytes(row["message_json"]))
        out[row["chat_id"]].events.append({**event, "_idx": row["idx"]})
    return out


async def lease_holder_pid(redis_url: str, prefix: str) -> int | None:
    """The pid of the process holding the routing lease (its value is ``<host>-<pid>:...``,
    the broker's default name, see webchat.broker.lease)."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        value = await client.get(f"{prefix}lease:leader")
    finally:
        await client.aclose()
    if value is None:
        return None
    return int(value.decode().partition(":")[0].rpartition("-")[2])


def _key(event: dict[str, Any]) -> tuple[Any, ...]:
    """What two copies of one transcript event must agree on."""
    return (event.get("index"), event.get("type"), event.get("text"),
            (event.get("from") or {}).get("participantId"))


def _keys(events: list[Any]) -> str:
    """Events (or their keys) short enough to read in a failure: index, type, text."""
    keys = [e if isinstance(e, tuple) else _key(e) for e in events]
    return " ".join(f"{k[0]}:{k[1]}" + (f"({k[2]})" if k[2] else "") for k in keys)


def check_chat(run: ChatRun, chat: Stored | None, agents: list[Agent]) -> list[str]:
    """Everything wrong with one chat at the end (see the module docstring)."""
    name = f"chat {run.number} ({run.transport}, {run.chat_id})"
    if chat is None:
        return [f"{name}: not stored"]
    problems: list[str] = []
    if chat.status != "ended":
        problems.append(f"{name}: {chat.status}, not ended; the customer's endChat "
                        f"{run.end_refused or 'did not fail'}; its last events "
                        f"{run.customer.names()[-6:]}")
    stored = chat.events
    indexes = [e["_idx"] for e in stored]
    if indexes != list(range(1, len(stored) + 1)):
        problems.append(f"{name}: stored indexes {indexes} are not 1..{len(stored)}")
    if [e.get("index") for e in stored] != indexes:
        problems.append(f"{name}: events' own indexes differ from their rows'")
    texts = Counter(e["text"] for e in stored if e["type"] == "Message")
    twice = sorted(t for t, n in texts.items() if n > 1)
    if twice:
        problems.append(f"{name}: stored twice: {twice}")
    said = run.said.accepted | {t for a in agents for t in a.said.get(run.chat_id, Sent())
                                .accepted}
    lost = sorted(said - set(texts))
    if lost:
        problems.append(f"{name}: accepted but not stored: {lost}")
    seen = [_key(e) for e in run.seen()]
    if seen != [_key(e) for e in stored]:
        problems.append(f"{name}: the customer saw {_keys(seen)}, stored {_keys(stored)}; "
                        f"its last events {run.customer.names()[-6:]}")
    staff = [a for a in agents if run.chat_id in a.seen]
    if len(staff) != 1:
        problems.append(f"{name}: seen by agents {[a.name for a in staff]}, expected one")
        return problems
    agent = staff[0]
    got = [_key(e) for e in agent.seen[run.chat_id]]
    joined = [e["_idx"] for e in stored if e["type"] == "ParticipantJoined"
              and (e.get("from") or {}).get("type") == "Agent"]
    first = got[0][0] if got else None
    if not joined or first is None or first > joined[0] + 1 \
            or got != [_key(e) for e in stored[first - 1:]]:
        problems.append(f"{name}: agent {agent.name} saw {_keys(got)}, stored "
                        f"{_keys(stored)}, joined at {joined}")
    return problems


@pytest.fixture
async def cluster(postgres_dsn: str, redis_url: str, redis_prefix: str, tmp_path: Path
                  ) -> AsyncIterator[tuple[list[Node], str]]:
    """Three ``webchat serve`` processes on a fresh database and Redis prefix, and nginx in
    front of them: (the nodes, nginx's URL)."""
    await make_accounts(postgres_dsn)
    broker = f"{redis_url}?prefix={redis_prefix}"
    nodes = []
    for n in range(3):
        port = free_port()
        argv = [sys.executable, "-m", "webchat", "serve", "--host", "127.0.0.1",
                f"--port={port}", "--data-dir", str(tmp_path / f"node{n}"),
                "--store", postgres_dsn, "--broker", broker, "--node-id", f"chaos{n}",
                "--offer-timeout", str(OFFER_TIMEOUT_S),
                # Every client comes from 127.0.0.1: the per-address limits would throttle
                # the test itself, not protect anything.
                "--chat-start-rate", "1000:1000", "--cometd-handshake-rate", "1000:1000"]
        nodes.append(Node(n, port, argv, tmp_path / f"node{n}.log"))
    try:
        for node in nodes:
            node.start()
        async with aiohttp.ClientSession() as http:
            for node in nodes:
                await node.ready(http)
        with nginx_front([f"127.0.0.1:{node.port}" for node in nodes]) as front:
            yield nodes, front
    finally:
        for node in nodes:
            node.stop()
        for node in nodes:
            print(f"--- node {node.index} log tail ---\n{tail(node.log, 1500)}")


async def test_chaos_kill_a_process_mid_run(cluster: tuple[list[Node], str], postgres_dsn: str,
                                           redis_url: str, redis_prefix: str) -> None:
    nodes, front = cluster
    began = time.monotonic()
    rng = random.Random(13)
    async with AsyncExitStack() as stack:
        agents = [Agent(front, f"agent{n}") for n in range(AGENTS)]
        for agent in agents:
            stack.push_async_callback(agent.close)
        await asyncio.gather(*(a.start() for a in agents))

        runs: list[ChatRun] = []
        for number in range(CHATS):
            transport = TRANSPORTS[number % len(TRANSPORTS)]
            base, proxy = front, None
            if transport == "long-polling" and PIN_LONG_POLLING:
                home = nodes[number // len(TRANSPORTS) % len(nodes)]
                proxy = TcpProxy(home.url, [n.url for n in nodes if n is not home])
                await proxy.start()
                stack.push_async_callback(proxy.close)
                base = f"http://127.0.0.1:{proxy.port}"
            customer = Customer(f"{base}/genesys/2/chat/{SERVICE}",
                                **customer_options(transport, base))
            stack.push_async_callback(customer.close)
            runs.append(ChatRun(number, transport, await customer.start(), proxy))

        async def start(run: ChatRun) -> None:
            started = await run.customer.command("startChat", {"nickname": f"C{run.number}"})
            run.chat_id = started["chatId"]
            await run.customer.wait_event("agentConnected", within=60)

        starts = await asyncio.gather(*(start(r) for r in runs), return_exceptions=True)
        stalled = [(r, e) for r, e in zip(runs, starts, strict=True) if e is not None]
        if stalled:
            pytest.fail(await why_stalled(stalled, agents, postgres_dsn))
        accepted_s = time.monotonic() - began

        async def talk(run: ChatRun) -> None:
            await asyncio.sleep(rng.uniform(0, GAP_S))
            for r in range(ROUNDS):
                text = f"c{run.number}.{r}"
                try:
                    await run.customer.command("sendMessage", {"message": text})
                    run.said.record(text, True)
                except CommandError:
                    run.said.record(text, False)
                await asyncio.sleep(GAP_S)

        async def chaos() -> int:
            await asyncio.sleep(KILL_AT_S)
            pid = await lease_holder_pid(redis_url, redis_prefix)
            holders = [n for n in nodes if n.proc is not None and n.proc.pid == pid]
            assert holders, f"no node holds the routing lease (its value names pid {pid})"
            victim = holders[0]
            victim.kill()
            await asyncio.sleep(DOWN_S)
            victim.start()
            async with aiohttp.ClientSession() as http:
                await victim.ready(http)
            return victim.index

        talking = time.monotonic()
        *_, victim = await asyncio.gather(*(talk(r) for r in runs), chaos())
        talked_s = time.monotonic() - talking

        # The agents answer what they still see; then half of the chats are ended by their
        # customer, half by their agent.
        await settle(runs, agents, postgres_dsn, ended=False)
        by_chat = {r.chat_id: r for r in runs}

        async def end(run: ChatRun) -> None:
            if run.number % 2:
                owner = next((a for a in agents if run.chat_id in a.seen), None)
                if owner is not None:
                    await owner.end(run.chat_id)
                    return
            try:
                await run.customer.command("endChat")
            except CommandError as exc:  # checked below: every chat must end
                run.end_refused = f"failed: {exc} {exc.data!r:.300}"

        await asyncio.gather(*(end(r) for r in runs))
        stored = await settle(runs, agents, postgres_dsn, ended=True)

        problems = [p for chat_id, run in by_chat.items()
                    for p in check_chat(run, stored.get(chat_id), agents)]
        handshakes = {t: sum(r.handshakes - 1 for r in runs if r.transport == t)
                      for t in TRANSPORTS if t != "rest"}
        messages = sum(1 for chat in stored.values() for e in chat.events
                       if e["type"] == "Message")
        failures = sum((a.failures for a in agents), Counter[str]())
        unsure = {t: sum(r.said.unsure for r in runs if r.transport == t) for t in TRANSPORTS}
        print(f"\nchaos: {CHATS} chats, {messages} messages stored, node {victim} killed "
              f"{KILL_AT_S:g} s into the talking and back {DOWN_S:g} s later; all accepted "
              f"in {accepted_s:.1f} s, talking {talked_s:.1f} s, wall "
              f"{time.monotonic() - began:.1f} s")
        print(f"reconnects: CometD re-handshakes {handshakes}, agent streams "
              f"{sum(a.hellos - 1 for a in agents)}, pinned long-poll fronts moved "
              f"{sum(r.front.moves for r in runs if r.front is not None)}; sends unsure: "
              f"customers {unsure}, agents "
              f"{sum(s.unsure for a in agents for s in a.said.values())}; agent failures "
              f"{dict(failures)}; offers {sum(a.offers for a in agents)}")
        assert not problems, "\n".join(problems[:30]) + f"\n({len(problems)} problems)"
        # The kill reached clients of every kind, and each came back.
        assert all(n > 0 for n in handshakes.values()), handshakes
        assert sum(a.hellos - 1 for a in agents) > 0
        for node in nodes:  # and no server met an error it did not expect
            assert "Traceback" not in node.log.read_text(errors="replace"), tail(node.log)


async def why_stalled(stalled: list[tuple[ChatRun, BaseException]], agents: list[Agent],
                      dsn: str) -> str:
    """What the store, the agents and the customer knew of each chat that did not get its
    agent during set-up (before anything was killed): enough to tell a lost offer from a
    lost event."""
    stored = await stored_chats(dsn)
    failures = sum((a.failures for a in agents), Counter[str]())
    lines = [f"{len(stalled)} of {CHATS} chats got no agent during set-up; agents' failures "
             f"{dict(failures)}, offers {({a.name: a.offers for a in agents if a.offers})}:"]
    for run, exc in stalled[:10]:
        chat = stored.get(run.chat_id)
        session = run.customer.service.session
        lines.append(
            f"chat {run.number} ({run.transport}, {run.chat_id or 'no chat id'}): "
            f"{type(exc).__name__} {exc}; stored {chat.status if chat else 'nothing'} "
            f"{_keys(chat.events) if chat else ''}; the customer's events "
            f"{run.customer.names()}; CometD handshakes {run.handshakes}; the customer's "
            f"session at position {session.next_position}, holding "
            f"{[m.index for m in session.transcript]} (past its last index: it skipped an "
            f"event; at it: the event never came)")
    return "\n".join(lines)


async def settle(runs: list[ChatRun], agents: list[Agent], dsn: str, *, ended: bool
                 ) -> dict[str, Stored]:
    """Wait until no agent has work in hand and every client has seen the last stored event of
    its chat (and, if ``ended``, every chat has ended), for at most SETTLE_S; the store's
    transcripts then."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        stored = await stored_chats(dsn)
        behind = [r for r in runs if not caught_up(r, stored.get(r.chat_id), agents, ended)]
        if (not behind and not any(a.busy for a in agents)) or time.monotonic() > deadline:
            return stored
        await asyncio.sleep(0.5)


def caught_up(run: ChatRun, chat: Stored | None, agents: list[Agent], ended: bool) -> bool:
    if chat is None or not chat.events or (ended and chat.status != "ended"):
        return False
    last = chat.events[-1]["_idx"]
    seen = run.seen()
    agent_seen = [e for a in agents for e in a.seen.get(run.chat_id, ())]
    return bool(seen and seen[-1].get("index") == last and agent_seen
                and max(e.get("index", 0) for e in agent_seen) == last)

