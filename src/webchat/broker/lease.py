"""A leader lease: which one process of a cluster runs the cluster-wide timers and routing.

The lease is an optimisation, not what keeps chats correct. No lease can promise that two
processes never act as the holder at once (a holder can be frozen between reading ``held``
and acting on it). What keeps a chat whole is that every action of the holder is a chat
change made under the store's lock on that chat (:meth:`Store.lock_chat`, a row lock in
PostgreSQL) which re-checks the premise it acts on (the offer still pending, the chat still
idle): two holders for a moment can duplicate work but not break a chat. The lease makes
such duplicate work rare.

:class:`RedisLease` is one key, ``<prefix>lease:<name>``, whose value names the holder and
which expires ``ttl_ms`` after it was last renewed:

* acquire: ``SET key value NX PX ttl`` (in a script that also takes back a lease that is
  already this contender's, one whose reply it lost), and a new fencing ``token`` from
  ``INCR`` on a second key, so that every holding period has a larger number than all before
  it. The counter is raised to at least Redis's clock in milliseconds, so that the tokens
  still grow after Redis lost its data (this machine runs it without persistence).
* renew (every ``renew_ms``) and release: scripts that touch the key only while it holds
  this contender's value, so that nobody ever extends or deletes somebody else's lease.
* the holder's own clock: a holding is valid until ``ttl - margin`` after the moment the
  acquire or renewal was *sent* (Redis started the TTL later than that, when it ran the
  command). When that moment passes without a successful renewal (Redis slow or
  unreachable, a renewal lost) the holder drops ``held`` by itself, before the key can
  expire in Redis and another contender can take it. ``margin`` covers the difference
  between the two clocks' rates and a late event loop.

``held`` reads the clock, so it is right even if the timer that reports the end of a holding
runs late; ``on_change`` callbacks are called on the event loop at every change of ``held``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from webchat.broker.base import default_node_id
from webchat.broker.redis import LOST, cancel_and_wait, redis_client

log = logging.getLogger(__name__)

_ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local token = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if token < floor then
  token = floor
  redis.call('SET', KEYS[2], token)
end
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    """Whether this process is the one that runs the cluster-wide work now."""

    on_change: list[Callable[[bool], None]]
    """Called with the new value at every change of :attr:`held`, on the event loop."""

    @property
    def held(self) -> bool: ...

    @property
    def token(self) -> int:
        """The fencing number of the current (or last) holding: larger for every new one."""
        ...

    async def start(self) -> None:
        """Begin contending; returns after the first attempt (held, if it succeeded)."""
        ...

    async def stop(self) -> None:
        """Stop contending, and give the lease up at once if held."""
        ...


def _notify(callbacks: list[Callable[[bool], None]], held: bool) -> None:
    for callback in list(callbacks):
        try:
            callback(held)
        except Exception:
            log.exception("lease on_change callback failed")


class LocalLease:
    """The lease of a process that is the whole cluster: held from start to stop."""

    def __init__(self) -> None:
        self.on_change: list[Callable[[bool], None]] = []
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    @property
    def token(self) -> int:
        return 1

    async def start(self) -> None:
        if not self._held:
            self._held = True
            _notify(self.on_change, True)

    async def stop(self) -> None:
        if self._held:
            self._held = False
            _notify(self.on_change, False)


class RedisLease:
    """A lease shared through Redis by the contenders named ``name`` (see the module).

    ``redis`` is a URL (the lease then owns its client) or a client to share (its retry
    policy then applies to the lease's commands too; :func:`redis_client`'s has none).
    """

    def __init__(self, redis: str | Redis, name: str, *, ttl_ms: int = 5000,
                 renew_ms: int | None = None, margin_ms: int | None = None,
                 node_id: str | None = None, prefix: str = "webchat:") -> None:
        renew_ms = ttl_ms // 3 if renew_ms is None else renew_ms
        margin_ms = max(ttl_ms // 10, 10) if margin_ms is None else margin_ms
        if not 0 < renew_ms < ttl_ms - margin_ms:
            raise ValueError("need 0 < renew_ms < ttl_ms - margin_ms")
        self.name = name
        self.node_id = node_id or default_node_id()
        self.on_change: list[Callable[[bool], None]] = []
        self._ttl_ms = ttl_ms
        self._renew_s = renew_ms / 1000
        self._valid_s = (ttl_ms - margin_ms) / 1000
        self._owns_client = isinstance(redis, str)
        self._client = (redis_client(redis, name=f"{self.node_id}/lease", timeout_s=self._valid_s)
                        if isinstance(redis, str) else redis)
        self._key = f"{prefix}lease:{name}"
        self._keys = [self._key, f"{prefix}lease:{name}:token"]
        self._value = f"{self.node_id}:{secrets.token_hex(8)}"
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held = False
        self._token = 0
        self._deadline = 0.0
        self._renew_at = 0.0
        self._expiry: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def held(self) -> bool:
        return (self._held and self._loop is not None
                and self._loop.time() < self._deadline)

    @property
    def token(self) -> int:
        return self._token

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._attempt()
        self._task = asyncio.create_task(self._run(), name=f"lease {self.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self._lose("stopping")
        try:  # also when not held here: the key may be ours from an answer that came too late
            async with asyncio.timeout(self._renew_s):
                await self._release(keys=[self._key], args=[self._value])
        except (*LOST, RedisError) as exc:
            log.warning("lease %s: release failed (%r); it expires by itself", self.name, exc)
        if self._owns_client:
            await self._client.aclose()

    async def _run(self) -> None:
        assert self._loop is not None
        while not self._stopping:
            try:
                if self._held:
                    await asyncio.sleep(max(0.0, self._renew_at - self._loop.time()))
                    await self._extend()
                else:
                    await asyncio.sleep(self._renew_s)
                    await self._attempt()
            except Exception:  # a bug must not end contending; the deadline timer still runs
                log.exception("lease %s: unexpected failure", self.name)
                await asyncio.sleep(self._renew_s)

    async def _attempt(self) -> None:
        assert self._loop is not None
        sent = self._loop.time()
        try:
            async with asyncio.timeout(self._valid_s):  # a later answer would be of no use
                token = int(await self._acquire(keys=self._keys, args=[self._value, self._ttl_ms]))
        except (*LOST, RedisError) as exc:
            log.debug("lease %s: acquire failed: %r", self.name, exc)
            return
        if token == 0:
            return
        self._hold_until(sent)
        if self._loop.time() < self._deadline:  # else answered too late to be of use
            self._token = token
            self._held = True
            log.info("lease %s: acquired by %s, token %d", self.name, self.node_id, token)
            _notify(self.on_change, True)

    async def _extend(self) -> None:
        assert self._loop is not None
        sent = self._loop.time()
        try:
            async with asyncio.timeout(max(0.0, self._deadline - sent)):
                renewed = int(await self._renew(keys=[self._key],
                                                args=[self._value, self._ttl_ms]))
        except TimeoutError:
            self._lose("renewal not answered in time")
            return
        except (*LOST, RedisError) as exc:
            log.warning("lease %s: renewal failed (%r); retrying", self.name, exc)
            self._renew_at = sent + self._renew_s / 4
            return
        if renewed:
            self._hold_until(sent)
        else:
            self._lose("taken over or expired in Redis")

    def _hold_until(self, sent: float) -> None:
        """Record a successful acquire or renewal that was sent at ``sent``."""
        assert self._loop is not None
        self._deadline = sent + self._valid_s
        self._renew_at = sent + self._renew_s
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = self._loop.call_at(self._deadline, self._lose, "renewal overdue")

    def _lose(self, reason: str) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if not self._held:
            return
        self._held = False
        log.info("lease %s: %s no longer holds it (%s)", self.name, self.node_id, reason)
        _notify(self.on_change, False)
