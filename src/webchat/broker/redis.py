"""The Broker over Redis pub/sub, so that an event committed in one server process reaches the
clients held by every other process within milliseconds.

The store is the truth; this broker only makes the others hear of a change fast. Redis
pub/sub is at most once: a message published while a subscriber is disconnected is gone.
The broker does not try to hide that (no replay buffer, no resending, which could deliver a
message twice); it guarantees instead that every loss is *announced*: whenever messages may
have been missed, each ``on_reconnect`` callback is called, and its owner catches up from the
store. Messages may be missed when

* this broker's subscription connection was lost (callbacks run once it is back and every
  topic is subscribed again, so nothing published after the catch-up starts is missed);
* any broker of the cluster dropped messages it was asked to publish: its queue overflowed,
  Redis was unreachable, or the connection broke with a batch in flight (whether Redis got
  it cannot be known, and resending could duplicate it). Such a publisher announces the gap
  on a control channel as soon as it can publish again, and every broker that hears it runs
  its callbacks.

Publishing is synchronous for the callers (a commit listener cannot await): ``publish``
appends to a bounded queue, and one writer task sends everything queued in one pipeline per
event-loop turn, so a busy process pays one round trip per batch, not per message, and one
publisher's messages reach Redis in the order they were published. Messages this broker
published itself are delivered to its own subscribers too, like :class:`MemoryBroker`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from webchat.broker.base import Handler, Unsubscribe, default_node_id

if TYPE_CHECKING:
    from webchat.broker.lease import RedisLease

log = logging.getLogger(__name__)

LOST = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a broken or unreachable Redis raises (the builtin TimeoutError is an OSError)."""


async def _closed_while_idle(conn: AbstractConnection) -> bool:
    """Whether an idle connection has been closed (or has bytes nobody asked for). redis-py
    8 raises on the peer's close where earlier versions said "readable"; both mean closed
    (tests/test_redis_broker.py::test_publisher_connection_killed_while_idle_loses_nothing
    lost the message after the kill on redis-py 8.2)."""
    if not conn.is_connected:
        return True
    try:
        return bool(await conn.can_read())
    except LOST:
        return True


_CHUNK = 1000
"""Channels per SUBSCRIBE/UNSUBSCRIBE command: keeps one command's size bounded."""


def redis_client(url: str, *, name: str, timeout_s: float) -> Redis:
    """A client that never retries on its own: the broker and the lease decide what a lost
    connection means (a retried PUBLISH could arrive twice; a retried lease renewal could
    land after the holder's deadline), and every command is bounded by ``timeout_s``."""
    return Redis.from_url(url, client_name=name, socket_timeout=timeout_s,
                          socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))


class Backoff:
    """Capped exponential delays with jitter, so that the processes of a cluster do not all
    reconnect in the same instant after Redis comes back."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._next_s = first_s

    def reset(self) -> None:
        self._next_s = self._first_s

    def next(self) -> float:
        delay = self._next_s
        self._next_s = min(self._max_s, delay * 2)
        return delay * random.uniform(0.5, 1.0)


async def connect(conn: AbstractConnection, timeout_s: float) -> None:
    """Open ``conn`` unless it is open, handshake (AUTH, SELECT, CLIENT SETNAME) included,
    within ``timeout_s``. A failed attempt leaves it closed: redis-py would otherwise take a
    socket whose handshake was cut short for an open connection."""
    try:
        async with asyncio.timeout(timeout_s):
            await conn.connect()  # type: ignore[no-untyped-call]
    except BaseException:
        await conn.disconnect(nowait=True)
        raise


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end. redis-py can turn a cancellation into an
    error (an exception raised while it cleans up replaces the CancelledError: seen as a
    lease that went on contending after stop), so the cancel is repeated until the task is
    done, and the loops given to this also end on their own ``_stopping`` flag."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed while stopping", task.get_name(), exc_info=task.exception())


def _chunks(items: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


class RedisBroker:
    """Topic pub/sub between processes over one Redis (see the module docstring).

    ``prefix`` namespaces the channels (``<prefix>t:<topic>`` for topics, ``<prefix>c:resync``
    for gap announcements), so clusters or test runs sharing a Redis never hear each other.
    ``name`` is the client name in CLIENT LIST (``<name>/pub`` and ``<name>/sub`` for the
    two long-lived connections). At most ``max_queue`` messages wait to be sent; beyond that,
    and while Redis is unreachable, messages are dropped, counted in ``dropped``, and the gap
    is announced when publishing works again. ``timeout_s`` bounds every connect and every
    batch's answer; the idle subscription is PINGed every ``health_interval_s`` and given up
    after three intervals without any answer (a network that stalls without closing).
    Reconnecting waits ``backoff_s``, doubling up to ``backoff_max_s``. ``min_interval_s``
    spaces batches: a batch goes out at once unless the previous one left less than that
    ago, so a lone message waits for nothing and a steady stream is sent in fewer, larger
    batches (each batch costs a write and a wakeup in this process, in Redis and in every
    subscriber; see ``benchmarks/redis_broker.py``).
    """

    def __init__(self, url: str, *, prefix: str = "webchat:", name: str | None = None,
                 max_queue: int = 10_000, max_batch: int = 2_000, timeout_s: float = 5.0,
                 backoff_s: float = 0.05, backoff_max_s: float = 2.0,
                 health_interval_s: float = 5.0, min_interval_s: float = 0.0) -> None:
        self.name = name or default_node_id()
        self.prefix = prefix
        self.on_reconnect: list[Callable[[], None]] = []
        """Called (on the event loop) whenever messages may have been missed; see above."""
        self.dropped = 0
        """Messages given to :meth:`publish` that were not (or not surely) sent."""
        self.published = 0
        self.received = 0
        self.reconnects = 0
        """Times the subscription was re-established after a loss."""
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._min_interval_s = min_interval_s
        self._timeout_s = timeout_s
        self._backoff = (backoff_s, backoff_max_s)
        self._health_s = health_interval_s
        self._client = redis_client(url, name=self.name, timeout_s=timeout_s)
        self._pub = self._connection("pub")
        self._sub = self._connection("sub")
        self._topic_prefix = f"{prefix}t:".encode()
        self._control = f"{prefix}c:resync".encode()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # publishing
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._pub_up = True
        self._gap = False
        # subscribing: the wanted state is _handlers/_channels; the subscriber task makes the
        # connection's state (_subscribed) follow it. _wanted counts changes of the wanted
        # state, _sent the last one sent, _confirmed the last one Redis confirmed.
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        self._channels: dict[bytes, str] = {}
        self._subscribed: set[bytes] = set()
        self._changed = asyncio.Event()
        self._wanted = self._sent = self._confirmed = 0
        self._replies_due = 0
        self._ready: list[tuple[int, asyncio.Future[None]]] = []
        self._resync_due = False
        self._sub_up = False
        self._last_rx = 0.0

    def _connection(self, role: str) -> AbstractConnection:
        pool = self._client.connection_pool
        conn: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
        conn.client_name = f"{self.name}/{role}"
        # RESP2 whatever the URL says: the replies read below (subscription messages as
        # plain arrays) are RESP2's; RESP3 would turn them into push notifications.
        conn.protocol = 2
        # Bounded by the callers instead (one timer per batch): with a socket_timeout,
        # redis-py wraps every write in asyncio.wait_for, a task per batch.
        conn.socket_timeout = None
        return conn

    # lifecycle

    async def start(self) -> None:
        """Connect, and return once every topic subscribed so far is live. Raises when Redis
        cannot be reached now: a wrong URL should stop a server from starting; after start,
        losses are ridden out by reconnecting."""
        try:
            await connect(self._pub, self._timeout_s)
            await connect(self._sub, self._timeout_s)
        except LOST:
            await self._close_connections()
            raise
        self._tasks = [asyncio.create_task(self._run_writer(), name=f"{self.name} publish"),
                       asyncio.create_task(self._run_subscriber(), name=f"{self.name} subscribe")]
        self._want_change()  # at least the control channel
        await self.subscriptions_ready()

    async def stop(self) -> None:
        """Send what is queued or in flight (bounded by the timeout), then disconnect."""
        if self._tasks and self._pub_up and (self._queue or self._gap
                                             or not self._drained.is_set()):
            if self._queue or self._gap:
                self._drained.clear()
            self._wake.set()
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._drained.wait()
            except TimeoutError:
                log.warning("broker %s stopped with %d messages unsent", self.name,
                            len(self._queue))
        self._stopping = True
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        for _, waiter in self._ready:
            waiter.cancel()
        self._ready.clear()
        self._handlers.clear()
        self._channels.clear()
        await self._close_connections()

    async def _close_connections(self) -> None:
        await self._pub.disconnect()
        await self._sub.disconnect()
        await self._client.aclose()

    @property
    def connected(self) -> bool:
        """Neither connection is known to be broken: the subscription is established and
        the last attempt to publish (if any) did not fail."""
        return self._pub_up and self._sub_up

    @property
    def client(self) -> Redis:
        """This broker's client for plain commands (pub/sub has connections of its own),
        bounded by its timeout and never retrying: what the lease and the CometD node
        directory (``server/cometd_forward.py``) share, keyed under :attr:`prefix`."""
        return self._client

    def lease(self, name: str = "leader", **options: Any) -> RedisLease:
        """A lease on this broker's Redis (its connections), named within its prefix and held
        under its node name: the cluster's leadership for :class:`ChatEngine`."""
        from webchat.broker.lease import RedisLease

        return RedisLease(self._client, name, node_id=self.name, prefix=self.prefix, **options)

    async def ping(self) -> None:
        """Raise unless Redis answers (``/readyz``)."""
        await self._client.ping()

    async def latency_ms(self) -> float:
        """One PING's round trip, for metrics."""
        started = time.perf_counter()
        await self._client.ping()
        return (time.perf_counter() - started) * 1000

    # publishing

    def publish(self, topic: str, payload: bytes) -> None:
        if not self._pub_up or len(self._queue) >= self._max_queue:
            self.dropped += 1
            self._gap = True
            return
        self._queue.append((self._topic_prefix + topic.encode(), payload))
        if not self._wake.is_set():
            self._wake.set()

    async def _run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(*self._backoff)
        last_sent = -math.inf
        while not self._stopping:
            if not self._queue and not self._gap:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            pause = last_sent + self._min_interval_s - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            last_sent = loop.time()
            self._drained.clear()
            batch = [self._queue.popleft()
                     for _ in range(min(len(self._queue), self._max_batch))]
            announce, self._gap = self._gap, False
            try:
                await self._send(batch, announce)
            except Exception as exc:
                # Lost or not, the connection's state is unknown now: start afresh.
                self.dropped += len(batch)
                self._gap = True
                self._pub_up = False
                log.log(logging.WARNING if isinstance(exc, LOST) else logging.ERROR,
                        "broker %s: publishing failed (%r); %d messages dropped",
                        self.name, exc, len(batch), exc_info=not isinstance(exc, LOST))
                await self._pub.disconnect(nowait=True)
                await self._reconnect(self._pub, backoff)
                self._pub_up = True

    async def _send(self, batch: list[tuple[bytes, bytes]], announce: bool) -> None:
        conn = self._pub
        if await _closed_while_idle(conn):
            # Closed by the server while idle (or stray bytes): nothing of ours was in flight,
            # so a fresh connection loses nothing.
            await conn.disconnect(nowait=True)
            await connect(conn, self._timeout_s)
        commands: list[tuple[bytes, ...]] = []
        if announce:
            commands.append((b"PUBLISH", self._control, self.name.encode()))
        commands.extend((b"PUBLISH", channel, payload) for channel, payload in batch)
        async with asyncio.timeout(self._timeout_s):
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            for _ in commands:
                try:
                    await conn.read_response(timeout=math.inf)
                except ResponseError as exc:  # a refused command; the connection is fine
                    log.error("broker %s: Redis refused a PUBLISH: %s", self.name, exc)
        self.published += len(batch)

    async def _reconnect(self, conn: AbstractConnection, backoff: Backoff) -> None:
        while not self._stopping:
            await asyncio.sleep(backoff.next())
            try:
                await connect(conn, self._timeout_s)
            except LOST as exc:
                log.debug("broker %s: Redis still unreachable: %s", self.name, exc)
                continue
            backoff.reset()
            return

    # subscribing

    def subscribe(self, topic: str, handler: Handler) -> Unsubscribe:
        channel = self._topic_prefix + topic.encode()
        handlers = self._handlers.get(topic, ())
        self._handlers[topic] = (*handlers, handler)
        if not handlers:
            self._channels[channel] = topic
            self._want_change()
        active = True

        def unsubscribe() -> None:
            nonlocal active
            current = self._handlers.get(topic, ())
            if not active or handler not in current:
                return
            active = False
            index = current.index(handler)
            remaining = current[:index] + current[index + 1:]
            if remaining:
                self._handlers[topic] = remaining
                return
            del self._handlers[topic]
            del self._channels[channel]
            self._want_change()

        return unsubscribe

    def subscriber_count(self, topic: str) -> int:
        return len(self._handlers.get(topic, ()))

    async def subscriptions_ready(self) -> None:
        """Return once Redis has confirmed every subscribe and unsubscribe made so far: from
        then on, a message published on those topics by any process is delivered here."""
        target = self._wanted
        if self._confirmed >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._ready.append((target, waiter))
        await waiter

    def _want_change(self) -> None:
        self._wanted += 1
        self._changed.set()

    async def _run_subscriber(self) -> None:
        backoff = Backoff(*self._backoff)
        while not self._stopping:
            try:
                await self._session(backoff)
            except Exception as exc:
                log.log(logging.WARNING if isinstance(exc, LOST) else logging.ERROR,
                        "broker %s: subscription lost (%r); reconnecting", self.name, exc,
                        exc_info=not isinstance(exc, LOST))
            await self._sub.disconnect(nowait=True)
            self._sub_up = False
            self._resync_due = True
            await self._reconnect(self._sub, backoff)

    async def _session(self, backoff: Backoff) -> None:
        """One connection's life: follow the wanted subscriptions, PING when idle."""
        conn = self._sub
        loop = asyncio.get_running_loop()
        self._subscribed = set()
        self._replies_due = 0
        self._last_rx = loop.time()
        reader = asyncio.create_task(self._read(conn, backoff), name=f"{self.name} read")
        reader.add_done_callback(lambda _: self._changed.set())
        try:
            while not self._stopping:
                self._changed.clear()
                if reader.done():
                    reader.result()
                    raise RedisConnectionError("subscription reader ended")
                await self._send_subscriptions(conn)
                try:
                    async with asyncio.timeout(self._health_s):
                        await self._changed.wait()
                except TimeoutError:
                    if loop.time() - self._last_rx > 3 * self._health_s:
                        raise RedisConnectionError("no answer to PING") from None
                    await conn.send_command("PING", check_health=False)
        finally:
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, *LOST, RedisError):
                pass

    async def _send_subscriptions(self, conn: AbstractConnection) -> None:
        wanted = {*self._channels, self._control}
        add = sorted(wanted - self._subscribed)
        remove = sorted(self._subscribed - wanted)
        # Count the replies and record the state before sending anything: the reader may
        # see the first replies while later chunks are still being written.
        self._replies_due += len(add) + len(remove)
        self._subscribed = wanted
        self._sent = self._wanted
        for command, channels in ((b"SUBSCRIBE", add), (b"UNSUBSCRIBE", remove)):
            for chunk in _chunks(channels):
                await conn.send_command(command, *chunk, check_health=False)
        if self._replies_due == 0:
            self._confirm()

    async def _read(self, conn: AbstractConnection, backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        while True:
            reply = await conn.read_response(timeout=math.inf, disconnect_on_error=False)
            self._last_rx = loop.time()
            kind = reply[0]
            if kind == b"message":
                self._deliver(reply[1], reply[2])
            elif kind == b"subscribe" or kind == b"unsubscribe":
                self._replies_due -= 1
                if self._replies_due == 0:
                    if self._resync_due:
                        backoff.reset()
                    self._confirm()

    def _confirm(self) -> None:
        self._confirmed = self._sent
        self._sub_up = True
        if self._ready:
            waiting = []
            for target, waiter in self._ready:
                if target <= self._confirmed:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    waiting.append((target, waiter))
            self._ready = waiting
        if self._resync_due:
            self._resync_due = False
            self.reconnects += 1
            log.info("broker %s: subscriptions restored; resynchronising", self.name)
            self._fire_reconnect()

    def _deliver(self, channel: bytes, payload: bytes) -> None:
        if channel == self._control:
            log.info("broker %s: %s announced dropped messages; resynchronising", self.name,
                     payload.decode(errors="replace"))
            self._fire_reconnect()
            return
        topic = self._channels.get(channel)
        if topic is None:  # unsubscribed here after Redis sent it
            return
        self.received += 1
        for handler in self._handlers[topic]:
            try:
                handler(topic, payload)
            except Exception:
                log.exception("broker handler for %s failed", topic)

    def _fire_reconnect(self) -> None:
        for callback in list(self.on_reconnect):
            try:
                callback()
            except Exception:
                log.exception("broker on_reconnect callback failed")
