"""/readyz (store and broker reachable, not draining) and /metrics (Prometheus text format)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import start_deployment
from tests.conftest import SERVICE, RunningServer, start_server, until
from tests.services import with_database
from tests.test_end_to_end import transport_options
from webchat.broker.base import Handler, Unsubscribe
from webchat.broker.memory import MemoryBroker
from webchat.server.ops import READINESS
from webchat.store.postgres import PostgresStore

SALES = "sales"


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


async def test_readyz_reports_the_store_and_the_broker(server, http):
    status, body = await get_json(http, f"{server.url}/readyz")
    assert status == 200 and body["status"] == "ready"
    for dependency in ("store", "broker"):
        assert body[dependency]["ok"] is True and body[dependency]["ms"] >= 0


async def test_readyz_fails_while_the_store_is_gone(server, http):
    await server.app[READINESS].store.close()
    status, body = await get_json(http, f"{server.url}/readyz")
    assert status == 503 and body["status"] == "unready"
    assert body["store"]["ok"] is False and body["store"]["error"] == "RuntimeError"
    assert body["broker"]["ok"] is True
    status, _ = await get_json(http, f"{server.url}/healthz")
    assert status == 200  # alive all the same: restarting the process would not help


async def test_readyz_follows_postgresql_going_away_and_coming_back(server_config, http,
                                                                      postgres_dsn):
    running = await start_server(server_config, store=PostgresStore(postgres_dsn))
    database = urlsplit(postgres_dsn).path.lstrip("/")
    admin = await asyncpg.connect(with_database(postgres_dsn, "postgres"))
    try:
        status, body = await get_json(http, f"{running.url}/readyz")
        assert status == 200 and body["store"]["ok"] is True
        # The database refuses connections and drops the ones it had: as if it went away.
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1", database)
        status, body = await get_json(http, f"{running.url}/readyz")
        assert status == 503 and body["store"]["ok"] is False, body
        assert body["broker"]["ok"] is True
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        status, body = await get_json(http, f"{running.url}/readyz")
        assert status == 200 and body["store"]["ok"] is True, body  # ready again by itself
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
        await running.runner.cleanup()


class UnreachableBroker(MemoryBroker):
    """Fan-out in the process, but its ping fails the way a refused connection does."""

    async def ping(self) -> None:
        raise ConnectionRefusedError("connection refused: 10.0.0.7:6379")


class SilentBroker(MemoryBroker):
    """Its ping never comes back (a broker behind a dropped route)."""

    async def ping(self) -> None:
        await asyncio.Event().wait()


class BrokerWithoutPing:
    """A broker that has no ping at all (the interface makes it optional)."""

    def __init__(self) -> None:
        self._inner = MemoryBroker()

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    def publish(self, topic: str, payload: bytes) -> None:
        self._inner.publish(topic, payload)

    def subscribe(self, topic: str, handler: Handler) -> Unsubscribe:
        return self._inner.subscribe(topic, handler)


@pytest.mark.parametrize(("broker", "status", "answer"), [
    (UnreachableBroker, 503, {"ok": False, "error": "ConnectionRefusedError"}),  # no address
    (SilentBroker, 503, {"ok": False, "error": "no answer within 1 s"}),
    (BrokerWithoutPing, 200, {"ok": True}),
])
async def test_readyz_says_which_broker_cannot_be_reached(server_config, http, broker, status,
                                                          answer):
    running = await start_server(server_config, broker=broker())
    try:
        got, body = await get_json(http, f"{running.url}/readyz")
    finally:
        await running.runner.cleanup()
    assert (got, body["store"]["ok"]) == (status, True)
    assert {k: v for k, v in body["broker"].items() if k != "ms"} == answer


class Scrape:
    """One /metrics answer, parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, name: str, **labels: str) -> float:
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        raise AssertionError(f"no sample {name}{labels} in:\n{self.text}")


async def scrape(http: aiohttp.ClientSession, server: RunningServer) -> Scrape:
    async with http.get(f"{server.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape(await resp.text())


async def test_metrics_follow_chats_on_every_transport(server_config, http, customer_factory,
                                                       agent_factory):
    running = await start_server(replace(server_config, services=(SERVICE, SALES)))
    try:
        await running.add_agent("grace", nickname="Grace")
        before = await scrape(http, running)
        assert before.value("webchat_chats_waiting", service=SERVICE) == 0
        assert before.value("webchat_agents_ready") == 0
        assert before.value("webchat_dependency_up", dependency="store") == 1
        assert before.value("webchat_dependency_up", dependency="broker") == 1
        assert before.value("webchat_draining") == 0

        customers, chats = {}, {}
        for transport in ("rest", "websocket", "long-polling"):
            customers[transport] = await customer_factory(
                running.data_url, **transport_options(running, transport))
            started = await customers[transport].command("startChat", {"nickname": "Ada"})
            chats[transport] = started["chatId"]
        waiting = await scrape(http, running)
        assert waiting.value("webchat_chats_waiting", service=SERVICE) == 3
        assert waiting.value("webchat_chats_waiting", service=SALES) == 0
        assert waiting.value("webchat_chats_active", service=SERVICE) == 0
        assert waiting.value("webchat_bayeux_sessions", transport="websocket") == 1
        assert waiting.value("webchat_bayeux_sessions", transport="long-polling") == 1

        agent = await agent_factory(running.url, "grace", capacity=3)
        for transport, chat_id in chats.items():
            await agent.wait_for(lambda ev, c=chat_id: any(
                e["type"] == "offer" and e["chat"]["chatId"] == c for e in ev))
            agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
            await agent.client.send(chat_id, f"hello over {transport}")
        for transport, customer in customers.items():
            await customer.command("sendMessage", {"message": f"thanks, {transport}"})
            await customer.wait_for(
                lambda c, t=transport: ("Agent", f"hello over {t}") in c.texts())
            await agent.wait_message(chats[transport],
                                     lambda m, t=transport: m.get("text") == f"thanks, {t}")
        for transport, customer in customers.items():
            last = running.engine.chats[chats[transport]].next_index - 1
            await customer.wait_for(_has_seen(last))

        active = await scrape(http, running)
    finally:
        await running.runner.cleanup()

    assert active.value("webchat_chats_waiting", service=SERVICE) == 0
    assert active.value("webchat_chats_active", service=SERVICE) == 3
    assert active.value("webchat_agents_ready") == 1
    assert active.value("webchat_queue_wait_seconds_count", service=SERVICE) == 3
    assert active.value("webchat_queue_wait_seconds_count", service=SALES) == 0
    assert active.value("webchat_events_committed_total", type="Message") == 6
    assert active.value("webchat_events_committed_total", type="ParticipantJoined") == 6
    assert active.value("webchat_store_save_seconds_count") > 0
    for transport in ("rest", "websocket", "long-polling"):
        # Each of the chat's events once, whatever the answers that carried it again.
        delivered = active.value("webchat_delivery_latency_seconds_count", transport=transport)
        assert delivered == len(set(customers[transport].indexes())), transport
    # Bounded labels: services, transports, event types, dependencies; never a chat.
    assert not any(chat_id in active.text for chat_id in chats.values())
    for name, family in active.families.items():
        if name.startswith("webchat_"):
            assert family.documentation, name


def _has_seen(index: int) -> Callable[[Any], bool]:
    return lambda customer: index in customer.indexes()


async def test_each_app_has_its_own_registry(server, server_config, http, customer_factory):
    other = await start_server(replace(server_config,
                                       data_dir=server_config.data_dir + "-other"))
    try:
        customer = await customer_factory(server.data_url)
        await customer.command("startChat", {"nickname": "Ada"})
        mine, theirs = await scrape(http, server), await scrape(http, other)
    finally:
        await other.runner.cleanup()
    assert mine.value("webchat_chats_waiting", service=SERVICE) == 1
    assert mine.value("webchat_events_committed_total", type="ParticipantJoined") == 1
    assert theirs.value("webchat_chats_waiting", service=SERVICE) == 0
    assert theirs.value("webchat_events_committed_total", type="ParticipantJoined") == 0


async def test_a_cluster_node_reports_the_cluster_and_counts_its_own(
        server_config, http, postgres_dsn, redis_url, redis_prefix, customer_factory):
    """On PostgreSQL and Redis: /readyz probes Redis; the chat gauges are the cluster's at
    every node (aggregate with max), the counters only the committing node's (sum)."""
    cluster = await start_deployment("cluster", server_config, postgres_dsn=postgres_dsn,
                                     redis_url=redis_url, redis_prefix=redis_prefix)
    first, other, _ = cluster.nodes
    try:
        status, body = await get_json(http, f"{other.url}/readyz")
        assert status == 200 and body["store"]["ok"] and body["broker"]["ok"]
        customer = await customer_factory(first.data_url)
        await customer.command("startChat", {"nickname": "Ada"})
        await until(lambda: other.engine.dispatch.router.waiting_count(SERVICE) == 1)
        here, there = await scrape(http, first), await scrape(http, other)
    finally:
        await cluster.close()
    assert here.value("webchat_chats_waiting", service=SERVICE) == 1
    assert there.value("webchat_chats_waiting", service=SERVICE) == 1
    assert here.value("webchat_events_committed_total", type="ParticipantJoined") == 1
    assert there.value("webchat_events_committed_total", type="ParticipantJoined") == 0
    assert there.value("webchat_dependency_up", dependency="broker") == 1
