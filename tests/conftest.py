"""Shared fixtures: a real server on a loopback port with a SQLite file in a temp dir, and
(from tests/services.py) the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

# The PostgreSQL and Redis fixtures, for every test module (they fail under CI=true, else skip,
# when the service is not there).
from tests.polling import eventually
from tests.services import (  # noqa: F401
    postgres,
    postgres_dsn,
    postgres_module_dsn,
    redis_prefix,
    redis_server_url,
    redis_url,
)
from webchat.bus import Bus, BusEvent
from webchat.server import ServerConfig, build_app
from webchat.server.app import ACCOUNTS, ENGINE
from webchat.server.connections import make_runner
from webchat.server.engine import ChatEngine
from webchat.service import WebChatConfig, WebChatService
from webchat.service.storage import SessionStorage
from webchat.transport.agent import AgentClient

SERVICE = "customer-support"
INTEROP = Path(__file__).parent / "interop"
"""The Node interop peers (the official CometD client, faye)."""


def free_port() -> int:
    """A loopback port nothing listens on, for servers started in another process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    app: web.Application
    runner: web.AppRunner
    config: ServerConfig

    @property
    def engine(self) -> ChatEngine:
        return self.app[ENGINE]

    @property
    def data_url(self) -> str:
        return f"{self.url}/genesys/2/chat/{SERVICE}"

    async def add_agent(self, name: str, password: str = "pw", nickname: str | None = None,
                        *, supervisor: bool = False) -> None:
        await self.app[ACCOUNTS].upsert(name, password, nickname, supervisor=supervisor)


async def start_server(config: ServerConfig, *, port: int = 0, **app_options: Any
                       ) -> RunningServer:
    """A server on a loopback port (``0``: any free one). A node of a cluster (``cluster=``)
    advertises that address to its peers unless its config names another (they pass it the
    CometD long-polling requests of its sessions: ``server/cometd_forward.py``), so the
    socket is bound first, the port known before the app starts."""
    listening = socket.create_server(("127.0.0.1", port))
    url = f"http://127.0.0.1:{listening.getsockname()[1]}"
    if app_options.get("cluster") is not None and config.advertise_url is None:
        config = replace(config, advertise_url=url)
    app = build_app(config, **app_options)
    runner = make_runner(app, config, handle_signals=False)
    try:
        await runner.setup()
        await web.SockSite(runner, listening).start()
    except BaseException:
        listening.close()
        raise
    return RunningServer(url, app, runner, config)


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(data_dir=str(tmp_path / "data"), offer_timeout_s=5.0)


@pytest.fixture
async def server(server_config: ServerConfig) -> AsyncIterator[RunningServer]:
    running = await start_server(server_config)
    yield running
    await running.runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe=True: keep cookies for IP hosts such as 127.0.0.1 (protocols.md §3.8).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


class Customer:
    """A bus + WebChatService pair recording every WebChatService event in order."""

    def __init__(self, data_url: str, *, storage: SessionStorage | None = None,
                 **options: Any) -> None:
        self.bus = Bus()
        config = {"dataURL": data_url, "pollInterval": 50, **options}
        self.service = WebChatService(self.bus, WebChatConfig.from_dict(config), storage=storage)
        self.events: list[BusEvent] = []
        self._changed = asyncio.Event()
        self.bus.subscribe("WebChatService.*", self._record)

    def _record(self, event: BusEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def start(self) -> Customer:
        await self.service.start()
        return self

    def names(self) -> list[str]:
        return [e.event.split(".", 1)[1] for e in self.events]

    async def wait_for(self, predicate: Callable[[Customer], bool], within: float = 5.0
                       ) -> None:
        async with asyncio.timeout(within):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    async def wait_event(self, name: str, count: int = 1, within: float = 5.0) -> BusEvent:
        await self.wait_for(lambda c: c.names().count(name) >= count, within)
        return [e for e in self.events if e.event == f"WebChatService.{name}"][count - 1]

    def texts(self) -> list[tuple[str, str]]:
        """(sender type, text) of every Message received, in order."""
        out = []
        for e in self.events:
            if e.event == "WebChatService.messageReceived":
                for m in e.data["messages"]:
                    if m["type"] == "Message":
                        out.append((m["from"]["type"], m["text"]))
        return out

    def indexes(self) -> list[int]:
        return [m["index"] for e in self.events if e.event == "WebChatService.messageReceived"
                for m in e.data["messages"]]

    async def command(self, name: str, options: dict[str, Any] | None = None) -> Any:
        return await self.bus.command(f"WebChatService.{name}", options)

    async def close(self) -> None:
        await self.service.close()


@pytest.fixture
async def customer_factory() -> AsyncIterator[Callable[..., Any]]:
    made: list[Customer] = []

    async def make(data_url: str, *, storage: SessionStorage | None = None,
                   **options: Any) -> Customer:
        c = await Customer(data_url, storage=storage, **options).start()
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


class AgentRecorder:
    """An AgentClient whose stream events are recorded for assertions."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def handle(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool],
                       within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate(self.events):
                self._changed.clear()
                await self._changed.wait()

    def messages(self, chat_id: str) -> list[dict[str, Any]]:
        return [e["message"] for e in self.events
                if e["type"] == "message" and e["chatId"] == chat_id]

    async def wait_message(self, chat_id: str, predicate: Callable[[dict[str, Any]], Any],
                           within: float = 5.0) -> dict[str, Any]:
        """The first transcript event of the chat the agent received that satisfies
        ``predicate``, once it has arrived."""
        await self.wait_for(lambda _: any(predicate(m) for m in self.messages(chat_id)), within)
        return next(m for m in self.messages(chat_id) if predicate(m))


@pytest.fixture
async def agent_factory() -> AsyncIterator[Callable[..., Any]]:
    made: list[AgentRecorder] = []

    async def make(url: str, name: str, password: str = "pw", ready: bool = True,
                   capacity: int = 3) -> AgentRecorder:
        client = AgentClient(url, name, password)
        await client.login()
        rec = AgentRecorder(client)
        client.listen(rec.handle, retry_s=0.05)
        await client.wait_connected()
        if ready:
            await client.set_state(True, capacity)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        await rec.client.close()


class NodeClient:
    """A Node interop script (``tests/interop``): JSON lines out, commands in."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def chat(cls, node: str, cometd_url: str, transport: str) -> NodeClient:
        """``cometd_chat.mjs``: the official CometD client chatting on ``transport``."""
        return cls(await asyncio.create_subprocess_exec(
            node, str(INTEROP / "cometd_chat.mjs"), cometd_url, transport, SERVICE,
            cwd=INTEROP, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE))

    async def ended_in_order(self) -> list[int]:
        """The indexes the client saw once its chat ended: each once, in order, from 1."""
        indexes: list[int] = (await self.expect("ended"))["indexes"]
        assert indexes == list(range(1, len(indexes) + 1))
        return indexes

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()

    async def expect(self, event: str, within: float = 10.0, **match: object
                     ) -> dict[str, Any]:
        """The first observation named ``event`` with these fields, seen or yet to come."""
        for seen in self.events:
            if seen["event"] == event and all(seen.get(k) == v for k, v in match.items()):
                self.events.remove(seen)
                return seen
        async with asyncio.timeout(within):
            while True:
                assert self.proc.stdout is not None
                line = await self.proc.stdout.readline()
                if not line:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"node exited: {err.decode()[-2000:]}")
                seen = json.loads(line)
                if seen["event"] == event and all(seen.get(k) == v for k, v in match.items()):
                    return dict(seen)
                self.events.append(seen)

    async def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()


@pytest.fixture
def node() -> str:
    path = shutil.which("node")
    if path is None or not (INTEROP / "node_modules" / "cometd").exists():
        pytest.fail("node and tests/interop/node_modules are required: run scripts/setup test")
    return path


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for a state of a server (not for a time): :func:`tests.polling.eventually`."""
    await eventually(predicate, "the state waited for", within)


async def accepted_chat(server: RunningServer, customer: Customer,
                        agent_factory: Callable[..., Any], **start: Any
                        ) -> tuple[AgentRecorder, str]:
    """Agent "grace" (Grace) ready; the customer starts a chat, Grace accepts and follows it,
    and the customer has seen her join."""
    await server.add_agent("grace", nickname="Grace")
    agent: AgentRecorder = await agent_factory(server.url, "grace")
    chat_id: str = (await customer.command("startChat", {"nickname": "Ada", **start}))["chatId"]
    await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
    agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
    await customer.wait_event("agentConnected")
    return agent, chat_id


async def saved_chat(customer_factory: Callable[..., Any], data_url: str,
                     storage: SessionStorage) -> dict[str, Any]:
    """Start a chat in one customer, close that customer, return what it saved."""
    first = await customer_factory(data_url, storage=storage)
    await first.command("startChat", {"nickname": "Ada"})
    await first.close()
    data = storage.load()
    assert data is not None
    return data


__all__ = [
    "INTEROP",
    "SERVICE",
    "AgentRecorder",
    "Customer",
    "NodeClient",
    "RunningServer",
    "accepted_chat",
    "free_port",
    "replace",
    "saved_chat",
    "start_server",
    "until",
]


def caller_data(user_data: dict[str, str]) -> dict[str, str]:
    """A chat's userData without the page context every startChat adds (``_genesys_*``, as
    the original does), so a test about the caller's own userData can compare it exactly."""
    return {k: v for k, v in user_data.items() if not k.startswith("_genesys_")}
