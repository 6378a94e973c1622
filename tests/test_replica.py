"""Commits between the nodes of a cluster (``server/chat/replica.py``), on the real PostgreSQL
and Redis: a commit made at one node reaches the others' memory through the broker, a gap is
caught up from the store, concurrent writers at two nodes never give an index twice, and a
node whose broker connection dropped catches up once it is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from tests.cluster import Deployment, start_deployment
from tests.conftest import SERVICE
from tests.polling import eventually
from webchat.protocol.gms.models import EventType
from webchat.server.chat.customers import CustomerForm
from webchat.server.config import ServerConfig
from webchat.server.engine import ChatEngine
from webchat.store.records import ChatRecord


@pytest.fixture
async def cluster(server_config: ServerConfig, postgres_dsn: str, redis_url: str,
                  redis_prefix: str) -> AsyncIterator[Deployment]:
    running = await start_deployment("cluster", server_config, postgres_dsn=postgres_dsn,
                                     redis_url=redis_url, redis_prefix=redis_prefix)
    yield running
    await running.close()


async def new_chat(engine: ChatEngine) -> ChatRecord:
    return await engine.customers.request_chat(
        SERVICE, CustomerForm("Ada", "", "", "", "", {}))


def copy_at(engine: ChatEngine, chat_id: str) -> ChatRecord | None:
    return engine.registry.cached(chat_id)


async def test_a_commit_at_one_node_reaches_the_others_memory_without_a_store_read(
        cluster: Deployment) -> None:
    a, b, c = (node.engine for node in cluster.nodes)
    chat = await new_chat(a)
    await eventually(lambda: copy_at(b, chat.chat_id) is not None
                     and copy_at(c, chat.chat_id) is not None, "the new chat at b and c")
    await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "hello")
    await eventually(lambda: [m.text for m in copy_at(b, chat.chat_id).events][-1] == "hello",
                     "the message at b")
    assert b.replica is not None and b.replica.caught_up == 0
    assert b.replica.applied >= 2
    stored = await cluster.stored(chat.chat_id)
    for engine in (b, c):
        assert copy_at(engine, chat.chat_id).events == stored.events
        assert copy_at(engine, chat.chat_id).revision == stored.revision


async def await_subscribers(redis_url: str, channel: str, count: int) -> None:
    """Until Redis counts ``count`` subscribers of ``channel`` (a SUBSCRIBE takes effect
    asynchronously)."""
    admin = aioredis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(10):
            while int(dict(await admin.pubsub_numsub(channel))[  # noqa: ASYNC110 - Redis's
                    channel.encode()]) != count:                 # state, no event to await
                await asyncio.sleep(0.01)
    finally:
        await admin.aclose()


async def test_a_missed_commit_is_caught_up_from_the_store(
        cluster: Deployment, redis_url: str, redis_prefix: str) -> None:
    a, b, _ = (node.engine for node in cluster.nodes)
    chat = await new_chat(a)
    await eventually(lambda: copy_at(b, chat.chat_id) is not None, "the new chat at b")
    assert b.replica is not None
    channel = f"{redis_prefix}t:commits"
    b.replica.stop_listening()  # b hears nothing of the next two commits
    await await_subscribers(redis_url, channel, 2)
    await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "one")
    await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "two")
    b.replica.start()
    await await_subscribers(redis_url, channel, 3)  # b listens again
    await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "three")
    # "three" follows a revision b never saw: b reads the chat from the store instead.
    await eventually(lambda: [m.text for m in copy_at(b, chat.chat_id).events][-3:]
                     == ["one", "two", "three"], "b caught up")
    assert b.replica.caught_up >= 1
    assert copy_at(b, chat.chat_id).events == (await cluster.stored(chat.chat_id)).events


async def test_writers_at_two_nodes_never_give_an_index_twice(cluster: Deployment) -> None:
    a, b, _ = (node.engine for node in cluster.nodes)
    chat = await new_chat(a)
    await eventually(lambda: copy_at(b, chat.chat_id) is not None, "the new chat at b")

    async def write(engine: ChatEngine, who: str) -> None:
        for n in range(40):
            await engine.customers.event(engine.registry.cached(chat.chat_id),
                                         EventType.MESSAGE, f"{who}{n}")

    await asyncio.gather(write(a, "a"), write(b, "b"))
    stored = await cluster.stored(chat.chat_id)
    assert [m.index for m in stored.events] == list(range(1, len(stored.events) + 1))
    texts = [m.text for m in stored.events if m.type == "Message"]
    assert sorted(texts) == sorted([f"a{n}" for n in range(40)] + [f"b{n}" for n in range(40)])
    # every node ends with the store's transcript, in the store's order
    for engine in (a, b, cluster.nodes[2].engine):
        await eventually(lambda e=engine: copy_at(e, chat.chat_id).events == stored.events,
                         "the stored transcript at every node")


@contextmanager
def locks_taken(engine: ChatEngine) -> Iterator[list[str]]:
    """The chats ``engine`` takes the store's lock of (``Store.lock_chat``) from now on."""
    store = engine.changes._store
    original = store.lock_chat
    taken: list[str] = []

    def counted(chat_id: str, revision: int) -> Any:
        taken.append(chat_id)
        return original(chat_id, revision)

    store.lock_chat = counted  # type: ignore[method-assign]
    try:
        yield taken
    finally:
        store.lock_chat = original  # type: ignore[method-assign]


async def test_a_message_on_a_current_copy_takes_no_lock(cluster: Deployment) -> None:
    """The one-round-trip path: a node whose copy is the stored one saves a message with the
    revision compared in the save, without the store's lock (four round trips)."""
    a, b, _ = (node.engine for node in cluster.nodes)
    chat = await new_chat(a)
    await eventually(lambda: copy_at(b, chat.chat_id) is not None, "the new chat at b")
    with locks_taken(a) as locks:
        await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "one")
        await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "two")
    assert locks == []
    assert [m.text for m in (await cluster.stored(chat.chat_id)).events][-2:] == ["one", "two"]
    await eventually(lambda: [m.text for m in copy_at(b, chat.chat_id).events][-1] == "two",
                     "the messages at b")


async def test_an_agent_message_at_a_node_that_has_not_heard_the_agent_join_is_saved(
        cluster: Deployment, redis_url: str, redis_prefix: str) -> None:
    """Round robin without stickiness: an agent joins at one process and writes at another
    before that one heard of it. Its copy says the agent is not in the chat; the store says
    it is, and the store is the truth: the message is saved, not refused."""
    a, b, _ = (node.engine for node in cluster.nodes)
    await cluster.add_agent("sup", supervisor=True)
    await eventually(lambda: a.staff.is_supervisor("sup") and b.staff.is_supervisor("sup"),
                     "the supervisor known everywhere")
    chat = await new_chat(a)
    await eventually(lambda: copy_at(b, chat.chat_id) is not None, "the new chat at b")
    assert b.replica is not None
    b.replica.stop_listening()  # b will not hear the barge-in
    await await_subscribers(redis_url, f"{redis_prefix}t:commits", 2)
    await a.supervision.barge_in("sup", chat.chat_id)

    await b.staff.event("sup", chat.chat_id, EventType.MESSAGE, "hello from b")

    stored = await cluster.stored(chat.chat_id)
    assert [m.text for m in stored.events][-1] == "hello from b"
    assert copy_at(b, chat.chat_id).events == stored.events


async def test_a_message_at_a_node_behind_lands_after_what_it_had_not_heard(
        cluster: Deployment, redis_url: str, redis_prefix: str) -> None:
    """A message is saved only if the node's copy is the stored one (one round trip); at a
    node that has not heard another's commit yet, it is made again on the stored chat: it
    lands after that commit, which the node announces first, and nothing is lost."""
    a, b, _ = (node.engine for node in cluster.nodes)
    chat = await new_chat(a)
    await eventually(lambda: copy_at(b, chat.chat_id) is not None, "the new chat at b")
    assert b.replica is not None
    heard_at_b: list[str] = []
    b.follow(chat.chat_id, lambda _t, p: heard_at_b.append(msgspec.json.decode(p)["text"]))
    b.replica.stop_listening()  # b will not hear a's next commit
    await await_subscribers(redis_url, f"{redis_prefix}t:commits", 2)
    await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "from a")
    behind = copy_at(b, chat.chat_id)
    assert behind is not None and [m.text for m in behind.events][-1] != "from a"

    with locks_taken(b) as locks:
        await b.customers.event(behind, EventType.MESSAGE, "from b")
    assert locks == [chat.chat_id]  # the compare lost: made again under the lock

    stored = await cluster.stored(chat.chat_id)
    assert [m.text for m in stored.events][-2:] == ["from a", "from b"]
    assert [m.index for m in stored.events] == list(range(1, len(stored.events) + 1))
    assert copy_at(b, chat.chat_id).events == stored.events
    assert heard_at_b == ["from a", "from b"]


async def test_a_node_whose_broker_dropped_catches_up_when_it_is_back(
        cluster: Deployment, redis_url: str) -> None:
    a, b, _ = (node.engine for node in cluster.nodes)
    chat = await new_chat(a)
    await eventually(lambda: copy_at(b, chat.chat_id) is not None, "the new chat at b")
    admin = aioredis.Redis.from_url(redis_url)
    try:
        # Kill b's subscription connection; a message published meanwhile is lost to b.
        await admin.client_kill_filter(_type="pubsub")
        await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "while away")
        await eventually(lambda: [m.text for m in copy_at(b, chat.chat_id).events][-1]
                         == "while away", "b resynced after the broker came back")
    finally:
        await admin.aclose()


@contextmanager
def commits_heard(engine: ChatEngine) -> Iterator[list[bytes]]:
    """The commits ``engine``'s cluster broker delivers from now on. Subscribed after its
    replica, so told after it: a commit here has reached the replica too."""
    assert engine.replica is not None
    heard: list[bytes] = []
    unsubscribe = engine.replica._cluster.subscribe("commits", lambda _t, p: heard.append(p))
    try:
        yield heard
    finally:
        unsubscribe()


async def test_a_commit_heard_while_this_node_holds_the_chat_is_not_lost(
        cluster: Deployment) -> None:
    """A note arriving while this node holds the chat's lock was dropped, on the ground that
    the holder catches up under the store's lock. The holder may already be past that lock
    (committing, or reading the chat again): then nothing brought the other node's commit
    here until the chat's next one, seconds later. cluster_chat measured it: 2 processes,
    max delivery latency 10 s (a chat's next message, a side's interval, later)."""
    a, b, _ = (node.engine for node in cluster.nodes)
    chat = await new_chat(a)
    await eventually(lambda: copy_at(b, chat.chat_id) is not None, "the new chat at b")
    assert b.replica is not None
    with commits_heard(b) as heard:
        lock = b.registry.lock(chat.chat_id)
        await lock.acquire()  # b is somewhere in a change, past its store lock
        try:
            await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "meanwhile")
            await eventually(lambda: bool(heard), "the commit heard at b")
        finally:
            lock.release()
        await eventually(lambda: [m.text for m in copy_at(b, chat.chat_id).events][-1]
                         == "meanwhile", "the message at b without a later commit")


async def test_a_commit_heard_while_this_node_reads_the_chat_again_is_not_lost(
        cluster: Deployment) -> None:
    """The same while this node's own catch-up of the chat holds the lock, having read the
    chat before the commit: asking for a catch-up then was a no-op (one already ran), so
    that commit waited for the chat's next one."""
    a, b, _ = (node.engine for node in cluster.nodes)
    chat = await new_chat(a)
    await eventually(lambda: copy_at(b, chat.chat_id) is not None, "the new chat at b")
    assert b.replica is not None
    store = b.replica._store
    original = store.load_chat
    read, go_on = asyncio.Event(), asyncio.Event()

    async def stale_read(chat_id: str) -> ChatRecord | None:
        stored = await original(chat_id)
        read.set()
        await go_on.wait()
        return stored

    with commits_heard(b) as heard:
        try:
            store.load_chat = stale_read  # type: ignore[method-assign]
            b.replica.catch_up(chat.chat_id)
            await read.wait()  # b's catch-up holds the chat, with what was stored before
            store.load_chat = original  # type: ignore[method-assign]
            await a.customers.event(a.chats[chat.chat_id], EventType.MESSAGE, "meanwhile")
            await eventually(lambda: bool(heard), "the commit heard at b")
        finally:
            go_on.set()
        await eventually(lambda: [m.text for m in copy_at(b, chat.chat_id).events][-1]
                         == "meanwhile", "the message at b without a later commit")
