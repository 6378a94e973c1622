"""RedisBroker against the real Redis: what another process hears, in which order, and what
happens when connections break (every loss must be followed by ``on_reconnect``)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from tests.polling import eventually
from tests.tcp_proxy import TcpProxy
from webchat.broker.redis import RedisBroker

MakeBroker = Callable[..., Awaitable[RedisBroker]]


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    forwarder = TcpProxy(redis_url)
    await forwarder.start()
    yield forwarder
    await forwarder.close()


@pytest.fixture
async def make_broker(redis_url: str, redis_prefix: str) -> AsyncIterator[MakeBroker]:
    made: list[RedisBroker] = []

    async def make(name: str, *, url: str | None = None, **options: Any) -> RedisBroker:
        options = {"backoff_s": 0.01, "backoff_max_s": 0.2, **options}
        broker = RedisBroker(url or redis_url, prefix=redis_prefix, name=redis_prefix + name,
                             **options)
        made.append(broker)
        await broker.start()
        return broker

    yield make
    for broker in made:
        await broker.stop()


class Listener:
    """A broker's subscription to some topics: what arrived, and how often ``on_reconnect``
    told it to resynchronise."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.received: list[bytes] = []
        self.resyncs = 0
        broker.on_reconnect.append(self._resync)

    def _resync(self) -> None:
        self.resyncs += 1

    def record(self, topic: str, payload: bytes) -> None:
        self.received.append(payload)

    async def on(self, *topics: str) -> Listener:
        for topic in topics:
            self.broker.subscribe(topic, self.record)
        await self.broker.subscriptions_ready()
        return self


async def listen(broker: RedisBroker, *topics: str) -> Listener:
    return await Listener(broker).on(*topics)


def numbered(count: int, start: int = 0) -> list[bytes]:
    return [str(n).encode() for n in range(start, start + count)]


async def kill(admin: aioredis.Redis, client_name: str, kind: str) -> int:
    """``CLIENT KILL TYPE <kind> ID <id>`` for the connections named ``client_name``: only
    this test's (a bare ``CLIENT KILL TYPE pubsub`` would hit other test runs too)."""
    killed = 0
    for client in await admin.client_list(_type=kind):
        if client["name"] == client_name:
            killed += await admin.execute_command("CLIENT", "KILL", "TYPE", kind,
                                                  "ID", client["id"])
    return killed


PUBLISHER = """
import asyncio, sys
from webchat.broker.redis import RedisBroker

async def main(url, prefix, topics, count):
    broker = RedisBroker(url, prefix=prefix, name=prefix + "A")
    await broker.start()
    for seq in range(count):
        broker.publish(f"topic-{seq % topics}", f"{seq % topics}:{seq // topics}".encode())
        if seq % 500 == 499:
            await asyncio.sleep(0)
    await broker.stop()
    print(broker.published, broker.dropped)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def test_another_process_hears_every_message_in_order_per_topic(
        make_broker: MakeBroker, redis_url: str, redis_prefix: str) -> None:
    topics, count = 100, 10_000
    b = await make_broker("B")
    received: dict[int, list[int]] = defaultdict(list)

    def record(topic: str, payload: bytes) -> None:
        index, seq = map(int, payload.split(b":"))
        assert topic == f"topic-{index}"
        received[index].append(seq)

    for index in range(topics):
        b.subscribe(f"topic-{index}", record)
    await b.subscriptions_ready()

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, redis_url, redis_prefix, str(topics), str(count),
        stdout=asyncio.subprocess.PIPE, env=os.environ.copy())
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert out.split() == [str(count).encode(), b"0"]  # all published, none dropped

    await eventually(lambda: b.received == count, f"{count} messages at B")
    assert {index: seqs for index, seqs in received.items()} == {
        index: list(range(count // topics)) for index in range(topics)}


async def test_own_messages_are_delivered_and_unsubscribe_stops_delivery(
        make_broker: MakeBroker, admin: aioredis.Redis) -> None:
    a = await make_broker("A")
    first: list[bytes] = []
    second: list[bytes] = []
    stop_first = a.subscribe("t", lambda topic, payload: first.append(payload))
    stop_second = a.subscribe("t", lambda topic, payload: second.append(payload))
    marks = await listen(a, "mark")

    a.publish("t", b"1")
    a.publish("mark", b"m1")
    await eventually(lambda: marks.received == [b"m1"], "the first mark")
    assert first == second == [b"1"]

    stop_first()
    stop_first()  # idempotent: does not remove the other registration
    a.publish("t", b"2")
    a.publish("mark", b"m2")
    await eventually(lambda: len(marks.received) == 2, "the second mark")
    assert first == [b"1"]
    assert second == [b"1", b"2"]

    stop_second()
    await a.subscriptions_ready()
    channel = a.prefix + "t:t"
    assert await admin.pubsub_numsub(channel) == [(channel.encode(), 0)]
    # Published before the mark by the same publisher, so it would have arrived first.
    a.publish("t", b"3")
    a.publish("mark", b"m3")
    await eventually(lambda: len(marks.received) == 3, "the third mark")
    assert second == [b"1", b"2"]
    assert a.subscriber_count("t") == 0


async def test_a_failing_handler_does_not_stop_the_others(
        make_broker: MakeBroker, caplog: pytest.LogCaptureFixture) -> None:
    a = await make_broker("A")
    b = await make_broker("B")
    calls: list[bytes] = []

    def failing(topic: str, payload: bytes) -> None:
        calls.append(payload)
        raise RuntimeError("handler bug")

    b.subscribe("t", failing)
    others = await listen(b, "t")
    with caplog.at_level(logging.ERROR, logger="webchat.broker.redis"):
        for payload in numbered(3):
            a.publish("t", payload)
        await eventually(lambda: len(others.received) == 3, "three messages")
    assert calls == others.received == numbered(3)
    assert sum("handler for t failed" in r.getMessage() for r in caplog.records) == 3


async def test_many_topics_are_subscribed_in_bounded_commands(make_broker: MakeBroker) -> None:
    a = await make_broker("A")
    b = await listen(await make_broker("B"), *(f"chat-{n}" for n in range(2500)))
    for n, payload in enumerate(numbered(2500)):
        a.publish(f"chat-{n}", payload)
    await eventually(lambda: len(b.received) == 2500, "one message on each of 2,500 topics")
    assert b.received == numbered(2500)


async def test_killed_subscription_reconnects_resubscribes_and_resyncs(
        make_broker: MakeBroker, admin: aioredis.Redis) -> None:
    a = await make_broker("A")
    b = await listen(await make_broker("B"), "t", "u")
    a.publish("t", b"before")
    await eventually(lambda: b.received == [b"before"], "the message before the kill")

    assert await kill(admin, f"{b.broker.name}/sub", "pubsub") == 1
    await eventually(lambda: b.resyncs, "on_reconnect after the subscription was killed")
    assert b.resyncs == 1
    assert b.broker.reconnects == 1
    assert b.broker.connected
    a.publish("t", b"after-t")
    a.publish("u", b"after-u")
    await eventually(lambda: len(b.received) == 3, "messages after the reconnect")
    assert b.received == [b"before", b"after-t", b"after-u"]


async def test_publisher_connection_killed_while_idle_loses_nothing(
        make_broker: MakeBroker, admin: aioredis.Redis) -> None:
    a = await make_broker("A")
    b = await listen(await make_broker("B"), "t")
    a.publish("t", b"1")
    await eventually(lambda: b.received == [b"1"], "the first message")

    assert await kill(admin, f"{a.name}/pub", "normal") == 1
    a.publish("t", b"2")
    await eventually(lambda: len(b.received) == 2, "the message after the kill")
    assert b.received == [b"1", b"2"]
    assert a.dropped == 0
    assert b.resyncs == 0


async def test_publisher_killed_mid_stream_keeps_order_and_announces_any_loss(
        make_broker: MakeBroker, admin: aioredis.Redis) -> None:
    a = await make_broker("A")
    b = await listen(await make_broker("B"), "t")
    sent = 20_000

    async def publish() -> None:
        for seq, payload in enumerate(numbered(sent)):
            a.publish("t", payload)
            if seq % 50 == 49:
                await asyncio.sleep(0)

    publishing = asyncio.create_task(publish())
    kills = 0
    while not publishing.done():
        await asyncio.sleep(0.02)
        kills += await kill(admin, f"{a.name}/pub", "normal")
    await publishing
    assert kills >= 1

    await eventually(lambda: a.connected, "the publisher reconnected")
    a.publish("t", b"-1")
    await eventually(lambda: b.received and b.received[-1] == b"-1", "the last message")
    delivered = [int(payload) for payload in b.received[:-1]]
    assert delivered == sorted(set(delivered))  # in order, none twice
    # A batch cut off in flight may have reached Redis and still be counted as dropped.
    assert len(delivered) + a.dropped >= sent
    if len(delivered) < sent:
        assert a.dropped and b.resyncs, "a loss must be announced to the subscribers"


async def test_redis_unreachable_then_back(make_broker: MakeBroker, proxy: TcpProxy) -> None:
    a = await listen(await make_broker("A", url=proxy.url), "t")
    b = await listen(await make_broker("B"), "t")

    await proxy.cut()
    for n in range(5):
        a.broker.publish("t", f"lost-{n}".encode())
    await eventually(lambda: a.broker.dropped == 5, "five messages counted as dropped")
    assert not a.broker.connected
    with pytest.raises((redis.exceptions.ConnectionError, OSError)):
        await a.broker.ping()

    await proxy.restore()
    await eventually(lambda: a.broker.connected and a.resyncs and b.resyncs,
                     "both brokers told to resynchronise")
    await a.broker.ping()
    a.broker.publish("t", b"back")
    await eventually(lambda: a.received == b.received == [b"back"],
                     "the message after Redis came back, at both brokers")


async def test_a_stalled_subscription_is_detected_and_restored(
        make_broker: MakeBroker, proxy: TcpProxy) -> None:
    """A network that stops answering without closing anything: the idle subscription's
    PINGs go unanswered, so it is given up and made again once the network is back."""
    a = await make_broker("A")
    b = await listen(await make_broker("B", url=proxy.url, health_interval_s=0.05,
                                       timeout_s=0.5), "t")
    proxy.freeze()
    await eventually(lambda: not b.broker.connected, "the stalled subscription given up")
    proxy.thaw()
    await eventually(lambda: b.resyncs and b.broker.connected, "the subscription restored")
    a.publish("t", b"after")
    await eventually(lambda: b.received == [b"after"], "a message after the stall")


async def test_queue_overflow_is_counted_and_announced(make_broker: MakeBroker) -> None:
    a = await make_broker("A", max_queue=10)
    b = await listen(await make_broker("B"), "t")
    for payload in numbered(25):
        a.publish("t", payload)
    assert a.dropped == 15
    await eventually(lambda: len(b.received) == 10 and b.resyncs,
                     "the queued ten and the notice")
    assert b.received == numbered(10)
    assert b.resyncs == 1


async def test_stop_sends_what_is_queued(make_broker: MakeBroker) -> None:
    a = await make_broker("A")
    b = await listen(await make_broker("B"), "t")
    for payload in numbered(1000):
        a.publish("t", payload)
    await a.stop()
    await eventually(lambda: len(b.received) == 1000, "every message queued before stop")
    assert a.dropped == 0


async def test_spaced_batches_keep_every_message_in_order(make_broker: MakeBroker) -> None:
    a = await make_broker("A", min_interval_s=0.005)
    b = await listen(await make_broker("B"), "t")
    for turn in range(20):
        for payload in numbered(10, start=turn * 10):
            a.publish("t", payload)
        await asyncio.sleep(0)
    await eventually(lambda: len(b.received) == 200, "200 messages")
    assert b.received == numbered(200)


async def test_start_fails_when_redis_cannot_be_reached(
        make_broker: MakeBroker, proxy: TcpProxy) -> None:
    await proxy.cut()  # its port now refuses connections
    with pytest.raises(redis.exceptions.ConnectionError):
        await make_broker("A", url=proxy.url)
