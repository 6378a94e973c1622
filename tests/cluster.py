"""Deployments the end-to-end tests run on: one process with SQLite, or a cluster.

A cluster here is three server nodes sharing one PostgreSQL database and one Redis, the
customer and the agent talking to different nodes; or the same three behind a round-robin
front (``round-robin``, ``tests/round_robin.py``) that sends each of the customer's requests
to the next node, as a load balancer without stickiness does (the agent stays on the last
node). The nodes run in the test's process (each with its own store pool, broker
connections, lease and HTTP port — everything that separates processes — so a test can
still look inside one); the chaos and routing tests
(``test_cluster_chaos.py``) run them as separate OS processes that can be killed.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from tests.conftest import SERVICE, RunningServer, start_server
from tests.round_robin import RoundRobin
from webchat.server.config import ServerConfig
from webchat.store.records import ChatRecord


@dataclass
class Deployment:
    nodes: list[RunningServer]
    kind: str
    front: RoundRobin | None = None
    """In front of every node, for customers (``round-robin``)."""

    @property
    def customer(self) -> RunningServer:
        """Where customers connect (the first node)."""
        return self.nodes[0]

    @property
    def url(self) -> str:
        """Where customers connect: the first node, or the front."""
        return self.front.url if self.front is not None else self.customer.url

    @property
    def agent_url(self) -> str:
        """Where agents connect: another node than customers, when there are several."""
        return self.nodes[-1].url

    @property
    def data_url(self) -> str:
        return f"{self.url}/genesys/2/chat/{SERVICE}"

    @property
    def config(self) -> ServerConfig:
        return self.customer.config

    @property
    def engine(self) -> Any:
        return self.customer.engine

    async def add_agent(self, name: str, password: str = "pw", nickname: str | None = None,
                        *, supervisor: bool = False) -> None:
        await self.nodes[-1].add_agent(name, password, nickname, supervisor=supervisor)

    async def stored(self, chat_id: str) -> ChatRecord:
        """The chat as the store holds it (what survives every process)."""
        chat = await self.customer.engine.registry._store.load_chat(chat_id)
        assert chat is not None
        return chat

    async def close(self) -> None:
        if self.front is not None:
            await self.front.close()
        for node in reversed(self.nodes):
            await node.runner.cleanup()


async def start_deployment(kind: str, config: ServerConfig, *, postgres_dsn: str = "",
                           redis_url: str = "", redis_prefix: str = "") -> Deployment:
    if kind == "sqlite":
        return Deployment([await start_server(config)], kind)
    from webchat.broker.redis import RedisBroker
    from webchat.store.postgres import PostgresStore

    prefix = redis_prefix or f"webchat-test-{secrets.token_hex(4)}:"
    nodes = []
    for n in range(3):
        node = f"node{n}"
        broker = RedisBroker(redis_url, prefix=prefix, name=node)
        nodes.append(await start_server(
            replace(config, node_id=node), store=PostgresStore(postgres_dsn),
            cluster=broker, leadership=broker.lease(ttl_ms=2000)))
    if kind == "round-robin":
        front = await RoundRobin([node.url for node in nodes]).start()
        return Deployment(nodes, kind, front)
    return Deployment(nodes, kind)


@pytest.fixture(params=["sqlite", "cluster", "round-robin"])
async def deployment(request: pytest.FixtureRequest, server_config: ServerConfig
                     ) -> AsyncIterator[Deployment]:
    """One SQLite process, or three nodes on PostgreSQL and Redis, reached directly or
    through a round-robin front (see the module docstring): the same test, every way."""
    if request.param == "sqlite":
        running = await start_deployment("sqlite", server_config)
    else:
        running = await start_deployment(
            request.param, server_config, postgres_dsn=request.getfixturevalue("postgres_dsn"),
            redis_url=request.getfixturevalue("redis_url"),
            redis_prefix=request.getfixturevalue("redis_prefix"))
    yield running
    await running.close()
