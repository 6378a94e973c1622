"""Saves per second a store takes the way the server makes them: each one a message added to a
chat under :meth:`Store.lock_chat` (lock, save, commit), from many concurrent tasks on many
chats. Prints saves/s, latency per save (p50/p99), this process's CPU per save and, for
PostgreSQL, its backends' CPU per save; then how long ``load_open_chats`` (start-up) takes.

    .venv/bin/python -m benchmarks.store_saves                          # PostgreSQL, max rate
    .venv/bin/python -m benchmarks.store_saves --rate 2000              # the cluster workload
    .venv/bin/python -m benchmarks.store_saves --store sqlite:          # SQLite, for comparison
    .venv/bin/python -m benchmarks.store_saves --if-current             # as messages are saved

Without ``--store`` a scratch database is made on WEBCHAT_TEST_POSTGRES's server (default
``postgresql://postgres@127.0.0.1:5432/test``) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psutil

from benchmarks.common import cpu_by_pid, cpu_spent, postgres_backends, scratch_database
from webchat.protocol.gms.models import Message, Participant
from webchat.store import Store, from_url
from webchat.store.postgres import PostgresStore
from webchat.store.records import ChatRecord, ChatStatus, ParticipantRecord


def chat(n: int) -> ChatRecord:
    record = ChatRecord(f"C{n:05d}", "customer-support", f"key{n}", f"U{n}", "1",
                        ChatStatus.ACTIVE, 1_700_000_000_000, 1_700_000_000_000,
                        {"nickname": "Ada"}, {"topic": "billing"}, agent_id="agent",
                        next_participant=4)
    record.participants = {1: ParticipantRecord(1, "Client", "Ada"),
                           2: ParticipantRecord(2, "External", "system"),
                           3: ParticipantRecord(3, "Agent", "Grace", "agent")}
    return record


def message(record: ChatRecord) -> Message:
    index = record.next_index
    who = Participant("Ada", 1, "Client") if index % 2 else Participant("Grace", 3, "Agent")
    return Message(from_=who, index=index, type="Message", utcTime=int(time.time() * 1000),
                   text=f"message {index} of a chat in a contact centre, about a bill")


async def add(store: Store, record: ChatRecord) -> None:
    """One change as :meth:`~webchat.server.chat.change.Changes.open` makes it."""
    async with store.lock_chat(record.chat_id, record.revision) as held:
        if held.fresh is not None:
            raise AssertionError("nobody else writes these chats")
        event = message(record)
        record.revision += 1
        await held.save(record, [], [event])
        record.events.append(event)


async def add_if_current(store: Store, record: ChatRecord) -> None:
    """One message as :meth:`~webchat.server.chat.change.Changes.apply` makes it."""
    event = message(record)
    record.revision += 1
    if not await store.save_if_current(record, [], [event]):
        raise AssertionError("nobody else writes these chats")
    record.events.append(event)


async def backends(store: Store) -> list[psutil.Process]:
    """The PostgreSQL server processes serving this store's database (none for SQLite)."""
    if not isinstance(store, PostgresStore):
        return []
    async with store.pool.acquire() as conn:
        return await postgres_backends(conn, await conn.fetchval("SELECT current_database()"))


async def run(store: Store, chats: int, workers: int, seconds: float, rate: float | None,
              if_current: bool = False) -> None:
    records = [chat(n) for n in range(chats)]
    for record in records:  # created as the server does: the first save, outside a lock
        record.revision = 1
        await store.save_chat(record, list(record.participants.values()), [])
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    period = workers / rate if rate else 0.0

    async def worker(w: int) -> None:
        mine = records[w::workers]
        due = time.perf_counter() + period * w / workers
        n = 0
        while time.perf_counter() < deadline:
            if period:
                due += period
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            start = time.perf_counter()
            await (add_if_current if if_current else add)(store, mine[n % len(mine)])
            latencies.append(time.perf_counter() - start)
            n += 1

    me = [psutil.Process()]
    ours0, servers0, t0 = cpu_by_pid(me), cpu_by_pid(await backends(store)), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = time.perf_counter() - t0
    ours1, servers1 = cpu_by_pid(me), cpu_by_pid(await backends(store))
    saves = len(latencies)
    ours = cpu_spent(ours0, ours1) / saves * 1e6
    server = cpu_spent(servers0, servers1) / saves * 1e6
    cuts = statistics.quantiles(latencies, n=100)
    print(f"{store.dialect}: {saves} saves by {workers} tasks on {chats} chats in "
          f"{elapsed:.1f} s = {saves / elapsed:,.0f} saves/s"
          + (f" (paced at {rate:,.0f}/s)" if rate else " (as fast as it goes)")
          + (", each a save_if_current" if if_current else ", each under lock_chat"))
    print(f"  per save: p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms; "
          f"client CPU {ours:.0f} µs" + (f", PostgreSQL backends' CPU {server:.0f} µs"
                                        if servers1 else ""))
    start = time.perf_counter()
    loaded = await store.load_open_chats()
    events = sum(len(c.events) for c in loaded)
    print(f"  load_open_chats: {len(loaded)} chats, {events} events in "
          f"{(time.perf_counter() - start) * 1000:.0f} ms")


async def main(url: str | None, chats: int, workers: int, seconds: float,
               rate: float | None, if_current: bool) -> None:
    async with scratch_database() if url is None else _given(url) as dsn:
        with tempfile.TemporaryDirectory() as tmp:
            store = from_url(dsn, tmp)
            await store.open()
            try:
                await run(store, chats, workers, seconds, rate, if_current)
            finally:
                await store.close()


@asynccontextmanager
async def _given(url: str) -> AsyncIterator[str]:
    yield url


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="store URL (default: a scratch PostgreSQL database)")
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=64,
                        help="concurrent tasks, each adding to its own share of the chats")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="pace the saves at this many per second")
    parser.add_argument("--if-current", action="store_true",
                        help="save as a message is (save_if_current), not under lock_chat")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main(args.store, args.chats, args.workers, args.seconds, args.rate,
                         args.if_current))
    else:
        uvloop.run(main(args.store, args.chats, args.workers, args.seconds, args.rate,
                         args.if_current))
