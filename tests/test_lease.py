"""The leader lease against the real Redis: one holder at a time, fencing tokens that only
grow, quick failover, and a holder that cannot renew giving up before anyone else can take
over. Each contender reaches Redis through its own TCP proxy, so that a test can crash it
(cut: connections refused) or stall it (freeze: nothing answered) alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.polling import eventually
from tests.tcp_proxy import TcpProxy
from webchat.broker.lease import LocalLease, RedisLease

TTL_MS = 1000

MakeLease = Callable[..., RedisLease]


class Watch:
    """Records every change of ``held`` and checks, at each change and every few ms, that no
    two contenders hold the lease at once (a callback cannot fail a test: its exceptions are
    logged, so violations are collected instead)."""

    def __init__(self, leases: list[RedisLease]) -> None:
        self.leases = leases
        self.log: list[tuple[str, bool, int]] = []
        self.violations: list[list[str]] = []
        for lease in leases:
            lease.on_change.append(lambda held, lease=lease: self._changed(lease, held))

    def _changed(self, lease: RedisLease, held: bool) -> None:
        self.log.append((lease.node_id, held, lease.token))
        self.check()

    def check(self) -> None:
        holders = [lease.node_id for lease in self.leases if lease.held]
        if len(holders) > 1:
            self.violations.append(holders)

    def holder(self) -> RedisLease | None:
        held = [lease for lease in self.leases if lease.held]
        return held[0] if len(held) == 1 else None

    @contextlib.asynccontextmanager
    async def sampling(self) -> AsyncIterator[None]:
        async def sample() -> None:
            while True:
                self.check()
                await asyncio.sleep(0.002)

        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def acquisitions(self) -> list[tuple[str, int]]:
        return [(node, token) for node, held, token in self.log if held]


@pytest.fixture
async def proxies(redis_url: str) -> AsyncIterator[Callable[[], Any]]:
    made: list[TcpProxy] = []

    async def make() -> TcpProxy:
        proxy = TcpProxy(redis_url)
        await proxy.start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        await proxy.close()


@pytest.fixture
async def make_lease(redis_url: str, redis_prefix: str) -> AsyncIterator[MakeLease]:
    made: list[RedisLease] = []

    def make(node: str, *, url: str | None = None, **options: Any) -> RedisLease:
        lease = RedisLease(url or redis_url, "timers", node_id=node, prefix=redis_prefix,
                           **{"ttl_ms": TTL_MS, **options})
        made.append(lease)
        return lease

    yield make
    for lease in made:
        await lease.stop()


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_local_lease_is_held_from_start_to_stop() -> None:
    lease = LocalLease()
    changes: list[bool] = []
    lease.on_change.append(changes.append)
    assert not lease.held
    await lease.start()
    assert lease.held
    assert lease.token == 1
    await lease.stop()
    assert not lease.held
    assert changes == [True, False]


async def test_three_contenders_one_holder_at_a_time_through_failovers(
        make_lease: MakeLease, proxies: Callable[[], Any]) -> None:
    links = {node: await proxies() for node in "abc"}
    leases = {node: make_lease(node, url=link.url) for node, link in links.items()}
    watch = Watch(list(leases.values()))
    loop = asyncio.get_running_loop()
    async with watch.sampling():
        for lease in leases.values():
            await lease.start()
        first = watch.holder()
        assert first is not None  # the first to start took it at once
        assert first is leases["a"]

        # 1. The holder stops: it releases at once and another takes over within the TTL.
        stopped = loop.time()
        await first.stop()
        await eventually(lambda: watch.holder() is not None, "a holder after the stop")
        assert loop.time() - stopped < TTL_MS / 1000
        second = watch.holder()
        assert second is not None and second is not first

        # 2. The holder crashes (its connections die, it never releases): the lease expires
        # in Redis and the last contender takes it.
        await links[second.node_id].cut()
        await eventually(lambda: watch.holder() not in (None, second), "a holder after a crash")
        third = watch.holder()
        assert third is not None and third not in (first, second)

        # 3. The crashed one comes back as a contender; the holder stalls; it takes over.
        await links[second.node_id].restore()
        links[third.node_id].freeze()
        await eventually(lambda: watch.holder() is second, "the restored contender holding")
        links[third.node_id].thaw()  # the stalled one's late answers arrive now
        await asyncio.sleep(TTL_MS / 1000)

    assert watch.violations == []
    tokens = [token for _, token in watch.acquisitions()]
    assert len(tokens) >= 4
    assert tokens == sorted(set(tokens)), "fencing tokens must strictly increase"


async def test_a_stalled_holder_gives_up_before_another_can_acquire(
        make_lease: MakeLease, proxies: Callable[[], Any]) -> None:
    link = await proxies()
    stalled = make_lease("stalled", url=link.url)
    other = make_lease("other")
    watch = Watch([stalled, other])
    async with watch.sampling():
        await stalled.start()
        await other.start()
        assert stalled.held and not other.held
        link.freeze()  # its renewals reach Redis no more
        await eventually(lambda: other.held, "the other contender holding")
    assert watch.log.index(("stalled", False, stalled.token)) < watch.log.index(
        ("other", True, other.token))
    assert watch.violations == []


async def test_never_extends_or_deletes_someone_elses_lease(
        make_lease: MakeLease, admin: aioredis.Redis, redis_prefix: str) -> None:
    key = f"{redis_prefix}lease:timers"
    lease = make_lease("a")
    changes: list[bool] = []
    lease.on_change.append(changes.append)
    await lease.start()
    assert lease.held
    # As if its lease had expired and someone else had taken it meanwhile:
    await admin.set(key, "someone-else", px=60_000)
    await eventually(lambda: not lease.held, "the holder noticing it lost the lease")
    assert changes == [True, False]
    assert await admin.get(key) == b"someone-else"
    assert await admin.pttl(key) > 10 * TTL_MS  # its renewal did not touch the key
    await lease.stop()
    assert await admin.get(key) == b"someone-else"  # nor did its release


async def test_tokens_grow_even_after_redis_lost_its_data(
        make_lease: MakeLease, admin: aioredis.Redis, redis_prefix: str) -> None:
    first = make_lease("a")
    await first.start()
    assert first.held
    await first.stop()
    deleted = await admin.delete(f"{redis_prefix}lease:timers:token")
    assert deleted == 1  # the counter is gone, as after a restart without persistence
    second = make_lease("b")
    await second.start()
    assert second.held
    assert second.token > first.token


async def test_start_with_redis_unreachable_contends_until_it_is_back(
        make_lease: MakeLease, proxies: Callable[[], Any]) -> None:
    link = await proxies()
    await link.cut()
    lease = make_lease("a", url=link.url)
    await lease.start()  # no exception: it keeps trying
    assert not lease.held
    await link.restore()
    await eventually(lambda: lease.held, "the lease acquired once Redis is reachable")
    assert lease.token > 0
