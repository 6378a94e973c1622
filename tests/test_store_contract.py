"""The Store contract, on every store: SQLite (one node) and PostgreSQL (a cluster).

What a server relies on: a saved chat comes back exactly (every field, unicode, userData's
order), open chats and secureKey lookups, agents and tokens; and, where processes share the
store (PostgreSQL), that a change holds its chat against every other process, hands over the
stored chat when the caller's copy is behind, and rolls back when the change fails — so that
two processes writing one chat give its transcript indexes 1..N, none twice, none missing.
Migrations are one list in two dialects, idempotent, and run once however many processes
start together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from tests.conftest import SERVICE, accepted_chat, start_server
from tests.polling import eventually
from tests.test_files import files_options
from webchat.cli.main import cli
from webchat.protocol.gms.models import Message, Participant
from webchat.server import ServerConfig
from webchat.server.files import DiskVault, Vault
from webchat.store import Store, from_url
from webchat.store.migrations import DIALECTS, migrations
from webchat.store.postgres import PostgresStore
from webchat.store.records import (
    AgentRecord,
    ChatRecord,
    ChatStatus,
    FileRecord,
    ParticipantRecord,
    copy,
)
from webchat.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent
LATEST = migrations("sqlite")[-1].version


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/webchat.sqlite3"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.fixture
async def store(store_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    opened = from_url(store_url, tmp_path)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def shared(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    """The store processes share: what :meth:`Store.lock_chat` must hold across them."""
    opened = PostgresStore(postgres_dsn, min_size=1, max_size=4)
    await opened.open()
    yield opened
    await opened.close()


# ---- chats as a server writes them ---------------------------------------------------------

def message(chat: ChatRecord, index: int, pid: int, text: str, *,
            message_type: str | None = None, user_data: dict[str, str] | None = None
            ) -> Message:
    p = chat.participants[pid]
    return Message(from_=Participant(p.nickname, pid, p.type), index=index, type="Message",
                   utcTime=1_700_000_000_000 + index, text=text, messageType=message_type,
                   userData=user_data)


def new_chat(chat_id: str = "c1", key: str = "k1", status: ChatStatus = ChatStatus.QUEUED
             ) -> ChatRecord:
    chat = ChatRecord(
        chat_id=chat_id, service=SERVICE, secure_key=key, user_id="u-1", alias="117",
        status=status, created_ms=1_700_000_000_000, queued_ms=1_700_000_000_123,
        customer={"nickname": "Zoë 🐙", "email": "zoe@example.org"},
        # Keys out of alphabetical order: a client shows them in the order it sent them.
        user_data={"zeta": "last", "alpha": "first", "_genesys_url": "https://ex.org/?q=é"},
        next_participant=3)
    chat.participants = {1: ParticipantRecord(1, "Customer", "Zoë 🐙"),
                         2: ParticipantRecord(2, "External", "system")}
    return chat


async def saved(store: Store, chat: ChatRecord, events: list[Message],
                participants: list[ParticipantRecord] | None = None,
                files: list[FileRecord] | None = None) -> ChatRecord:
    """Save like a change does (the revision counts it) and keep the copy in step."""
    chat.revision += 1
    chat_participants = list(chat.participants.values()) if participants is None else participants
    await store.save_chat(chat, chat_participants, events, files or [])
    chat.events.extend(events)
    chat.files.update((f.file_id, f) for f in files or [])
    return chat


async def test_a_chat_comes_back_with_every_field(store: Store) -> None:
    chat = new_chat()
    chat.ended_ms, chat.agent_id, chat.target_agent = None, None, "grace"
    first = [message(chat, 1, 2, "Bienvenue, Zoë — 欢迎", message_type="system"),
             message(chat, 2, 1, "a\nb\t\"c\" \\ 🐙", user_data={"b": "2", "a": "1"})]
    await saved(store, chat, first)
    # An offer changes the chat's own fields only: a save of the row alone.
    chat.offered_to, chat.offered_ms = "grace", 1_700_000_001_000
    await saved(store, chat, [], [])

    loaded = await store.load_chat("c1")
    assert loaded == chat
    assert loaded is not None and list(loaded.user_data) == ["zeta", "alpha", "_genesys_url"]
    assert loaded.events[1].userData is not None and list(loaded.events[1].userData) == ["b", "a"]
    assert (loaded.revision, loaded.offered_to, loaded.offered_ms) == (2, "grace",
                                                                       1_700_000_001_000)

    # A later change: the agent joins (offer withdrawn), a file, the customer drops out.
    chat.status, chat.agent_id, chat.offered_to, chat.offered_ms = (ChatStatus.ACTIVE, "grace",
                                                                    None, None)
    chat.participants[3] = agent = ParticipantRecord(3, "Agent", "Grace", "grace")
    chat.participants[1] = customer = copy(chat.participants[1], connected=False)
    chat.next_participant = 4
    upload = FileRecord("ab" * 16, "c1", "reçu.png", 1234, "image/png", 1, 1_700_000_002_000,
                        "ma facture")
    await saved(store, chat, [message(chat, 3, 3, "hi")], [agent, customer], [upload])
    # And one that counts a download and deletes nothing else.
    chat.files[upload.file_id] = counted = copy(upload, downloads=1, deleted=True)
    await saved(store, chat, [], [], [counted])

    assert await store.load_chat("c1") == chat
    assert await store.load_chat("nope") is None


async def test_open_chats_and_secure_keys(store: Store) -> None:
    for n, status in enumerate([ChatStatus.QUEUED, ChatStatus.ACTIVE, ChatStatus.ENDED]):
        chat = new_chat(f"c{n}", f"key-{n}", status)
        await saved(store, chat, [message(chat, 1, 2, f"chat {n}")])
        if status is ChatStatus.ENDED:
            chat.ended_ms = 1_700_000_009_000
            await saved(store, chat, [message(chat, 2, 2, "bye")])

    open_chats = sorted(await store.load_open_chats(), key=lambda c: c.chat_id)
    assert [(c.chat_id, c.status, [e.text for e in c.events]) for c in open_chats] == [
        ("c0", ChatStatus.QUEUED, ["chat 0"]), ("c1", ChatStatus.ACTIVE, ["chat 1"])]
    assert await store.chat_id_for_key("key-2") == "c2"
    assert await store.chat_id_for_key("key-9") is None
    ended = await store.load_chat("c2")
    assert ended is not None and ended.ended_ms == 1_700_000_009_000 and ended.ended


async def test_agents_and_tokens(store: Store) -> None:
    assert await store.get_agent("grace") is None
    grace = AgentRecord("grace", "Grace Hopper", "scrypt$…", ready=True, capacity=2)
    await store.put_agent(grace)
    await store.put_agent(AgentRecord("ada", "Ada", "h", supervisor=True))
    assert await store.get_agent("grace") == grace
    updated = dataclasses.replace(grace, nickname="Grace H.", ready=False, capacity=5,
                                  supervisor=True)
    await store.put_agent(updated)
    assert await store.list_agents() == [AgentRecord("ada", "Ada", "h", supervisor=True),
                                         updated]

    await store.add_token("t-hash", "grace", 1_700_000_000_000)
    assert await store.agent_for_token("t-hash") == "grace"
    assert await store.agent_for_token("other") is None
    await store.delete_token("t-hash")
    assert await store.agent_for_token("t-hash") is None


async def test_a_change_under_the_lock_is_saved(store: Store) -> None:
    chat = new_chat()
    async with store.lock_chat("c1", 0) as held:  # not stored yet: nothing to hold
        assert held.fresh is None
        chat.revision = 1
        await held.save(chat, list(chat.participants.values()), [message(chat, 1, 2, "hi")])
    async with store.lock_chat("c1", 1) as held:  # current: nothing to hand over
        assert held.fresh is None
    loaded = await store.load_chat("c1")
    assert loaded is not None and [e.text for e in loaded.events] == ["hi"]
    await store.ping()


async def test_a_failed_change_writes_nothing(store: Store) -> None:
    chat = await saved(store, new_chat(), [])
    with pytest.raises(RuntimeError):
        async with store.lock_chat("c1", chat.revision):
            raise RuntimeError("the change was refused before its save")
    assert await store.load_chat("c1") == chat


async def test_a_save_if_current_on_the_current_copy_is_a_save(store: Store) -> None:
    chat = await saved(store, new_chat(), [message(new_chat(), 1, 2, "first")])
    chat.status, chat.agent_id, chat.next_participant = ChatStatus.ACTIVE, "grace", 4
    chat.participants[3] = agent = ParticipantRecord(3, "Agent", "Grace", "grace")
    upload = FileRecord("cd" * 16, "c1", "a.png", 9, "image/png", 3, 1_700_000_002_000, "")
    chat.revision += 1
    assert await store.save_if_current(chat, [agent], [message(chat, 2, 3, "hi")], [upload])
    chat.events.append(message(chat, 2, 3, "hi"))
    chat.files[upload.file_id] = upload
    assert await store.load_chat("c1") == chat


# ---- what sharing a store between processes needs (PostgreSQL) -----------------------------

async def test_a_stale_copy_is_handed_the_stored_chat(shared: PostgresStore) -> None:
    chat = await saved(shared, new_chat(), [])
    behind = copy(chat, events=list(chat.events))
    await saved(shared, chat, [message(chat, 1, 2, "from another process")])

    async with shared.lock_chat("c1", behind.revision) as held:
        assert held.fresh == chat
    async with shared.lock_chat("c1", chat.revision) as held:
        assert held.fresh is None


async def test_a_save_if_current_on_a_stale_copy_writes_nothing(shared: PostgresStore) -> None:
    chat = await saved(shared, new_chat(), [message(new_chat(), 1, 2, "first")])
    behind = copy(chat, events=list(chat.events))
    await saved(shared, chat, [message(chat, 2, 2, "from another process")])
    stored = await shared.load_chat("c1")

    behind.status, behind.revision = ChatStatus.ENDED, behind.revision + 1
    customer = copy(behind.participants[1], connected=False)
    upload = FileRecord("ef" * 16, "c1", "late.png", 9, "image/png", 1, 1_700_000_003_000, "")
    assert not await shared.save_if_current(behind, [customer], [message(behind, 2, 1, "late")],
                                            [upload])
    assert await shared.load_chat("c1") == stored


async def chats_saved(store: Store, count: int) -> list[ChatRecord]:
    return [await saved(store, new_chat(f"c{n}", f"k{n}"), [message(new_chat(), 1, 2, "first")])
            for n in range(count)]


def next_message(chat: ChatRecord, text: str) -> tuple[ChatRecord, Message]:
    """The chat as a message makes it (the next revision, its own transcript list, the
    message not in it yet) and the message."""
    return (copy(chat, revision=chat.revision + 1, events=list(chat.events)),
            message(chat, chat.next_index, 1, text))


async def write_message(store: Store, chat: ChatRecord, text: str, *, if_current: bool = True
                        ) -> tuple[ChatRecord, bool]:
    """``text`` from the customer, written as a change writes it: first saved only if the
    copy is current (:meth:`Changes.apply`), and when that lost (or without ``if_current``,
    at once) under the lock on the stored chat (:meth:`Changes.open`). Returns the chat as
    written and whether the compare lost."""
    if if_current:
        after, event = next_message(chat, text)
        if await store.save_if_current(after, [], [event]):
            after.events.append(event)
            return after, False
    async with store.lock_chat(chat.chat_id, chat.revision) as held:
        # A lost save: the copy is behind, or another writer held the chat then.
        after, event = next_message(held.fresh or chat, text)
        await held.save(after, [], [event])
    after.events.append(event)
    return after, if_current


async def write_next(store: Store, chat: ChatRecord) -> bool:
    """A message to ``chat`` saved as :meth:`Changes.apply` saves it."""
    after, event = next_message(chat, f"to {chat.chat_id}")
    return await store.save_if_current(after, [], [event])


@dataclasses.dataclass
class Statements:
    """What a store's group commit sent: each statement's number of saves, and what failed."""

    sizes: list[int] = dataclasses.field(default_factory=list)
    failures: list[BaseException] = dataclasses.field(default_factory=list)
    out: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set when a statement is sent."""


def spy_statements(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> Statements:
    seen = Statements()
    written = store._group._written

    async def counted(batch: Any) -> None:
        seen.sizes.append(len(batch))
        seen.out.set()
        try:
            await written(batch)
        except BaseException as exc:
            seen.failures.append(exc)
            raise

    monkeypatch.setattr(store._group, "_written", counted)
    return seen


async def test_saves_made_together_leave_together_each_answered_for_its_chat(
        shared: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group commit: saves asked for at once go in one statement (one commit), and each
    caller still learns whether its own chat was written: the current ones are, the ones
    another writer moved on are not, and nothing of theirs is."""
    chats = await chats_saved(shared, 12)
    for chat in chats[::3]:  # another process writes every third chat meanwhile
        await saved(shared, copy(chat, events=list(chat.events)),
                    [message(chat, 2, 2, "from another process")])
    stored = [await shared.load_chat(c.chat_id) for c in chats]
    seen = spy_statements(shared, monkeypatch)
    answers = await asyncio.gather(*(write_next(shared, c) for c in chats))
    assert seen.sizes == [12]
    assert answers == [n % 3 != 0 for n in range(12)]
    for n, chat in enumerate(chats):
        loaded = await shared.load_chat(chat.chat_id)
        if n % 3 == 0:
            assert loaded == stored[n]
        else:
            assert loaded is not None and loaded.revision == chat.revision + 1
            assert [e.text for e in loaded.events] == ["first", f"to {chat.chat_id}"]


async def test_a_save_if_current_does_not_wait_for_a_chat_another_process_holds(
        shared: PostgresStore, postgres_dsn: str) -> None:
    """A chat held under lock_chat by another process is not waited for: the save is lost at
    once, with nothing written (its caller then waits for the lock itself). Waiting inside a
    statement that writes many chats could deadlock two processes' statements."""
    (chat,) = await chats_saved(shared, 1)
    other = PostgresStore(postgres_dsn, min_size=1, max_size=1)
    await other.open()
    try:
        async with other.lock_chat(chat.chat_id, chat.revision) as held:
            assert held.fresh is None
            # A bound only so that a wait shows as a failure instead of a hung run.
            async with asyncio.timeout(10):
                assert not await write_next(shared, chat)
        assert await shared.load_chat(chat.chat_id) == chat
        assert await write_next(shared, chat)  # free again
    finally:
        await other.close()


async def test_two_saves_of_one_chat_asked_together_are_written_one_after_the_other(
        shared: PostgresStore) -> None:
    """Both made on the same copy: the first is written, the second then finds the chat
    moved on and writes nothing, none of its events either (in one statement, the chat row
    would be updated once but both saves' events inserted, each caller told it was written)."""
    (chat,) = await chats_saved(shared, 1)
    after, first = next_message(chat, "first of two")
    second = message(chat, chat.next_index + 1, 1, "second of two, on the same copy")
    answers = await asyncio.gather(shared.save_if_current(after, [], [first]),
                                   shared.save_if_current(copy(after), [], [second]))
    assert list(answers) == [True, False]
    loaded = await shared.load_chat(chat.chat_id)
    assert loaded is not None and [e.text for e in loaded.events] == ["first", "first of two"]


async def test_a_bad_save_fails_only_its_own_caller(shared: PostgresStore,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL refuses the statement of three (it rolled back); each save is tried again
    alone, and only the bad one's caller gets the refusal."""
    chats = await chats_saved(shared, 3)
    seen = spy_statements(shared, monkeypatch)
    bad = copy(chats[1], revision=chats[1].revision + 1)
    taken = message(chats[1], 1, 1, "an index already given")
    answers = await asyncio.gather(write_next(shared, chats[0]),
                                   shared.save_if_current(bad, [], [taken]),
                                   write_next(shared, chats[2]), return_exceptions=True)
    assert answers[0] is True and answers[2] is True
    assert isinstance(answers[1], asyncpg.UniqueViolationError)
    assert seen.sizes == [3, 1, 1, 1]
    assert await shared.load_chat(chats[1].chat_id) == chats[1]
    for chat in (chats[0], chats[2]):
        loaded = await shared.load_chat(chat.chat_id)
        assert loaded is not None and loaded.events[-1].text == f"to {chat.chat_id}"


async def test_a_save_its_caller_gave_up_before_it_left_is_not_written(
        shared: PostgresStore) -> None:
    """A change cancelled (a stop) before its statement left is not stored: stored, it would
    be in the transcript without ever having been announced."""
    (chat,) = await chats_saved(shared, 1)
    waiting = asyncio.create_task(write_next(shared, chat))
    await asyncio.sleep(0)  # the save is asked for; its statement leaves on the next turn
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await shared._group.drain()  # had it been sent, it is committed by now
    assert await shared.load_chat(chat.chat_id) == chat


async def test_a_refused_statement_is_not_tried_again_for_a_caller_that_gave_up(
        shared: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The statement was out when a caller gave up (a stop); PostgreSQL refused it for
    another save: only the saves still awaited are tried again."""
    chats = await chats_saved(shared, 2)
    seen = spy_statements(shared, monkeypatch)
    bad = shared.save_if_current(copy(chats[0], revision=chats[0].revision + 1), [],
                                 [message(chats[0], 1, 1, "an index already given")])
    refused = asyncio.create_task(bad)
    given_up = asyncio.create_task(write_next(shared, chats[1]))
    await seen.out.wait()
    given_up.cancel()
    with pytest.raises(asyncpg.UniqueViolationError):
        await refused
    with pytest.raises(asyncio.CancelledError):
        await given_up
    await shared._group.drain()
    assert seen.sizes == [2, 1]
    assert await shared.load_chat(chats[1].chat_id) == chats[1]


class _LostAfterCommit:
    """A pool whose statement commits, then whose connection is lost before the answer."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        await self._pool.fetch(sql, *args)
        raise asyncpg.ConnectionDoesNotExistError("connection lost before the answer")


async def test_a_statement_whose_outcome_is_unknown_is_every_callers_error(
        shared: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its saves may have been written: tried again, each would lose its compare and its
    caller make the change a second time (each message stored twice). Each caller gets the
    error instead, as with a save of its own."""
    chats = await chats_saved(shared, 2)
    seen = spy_statements(shared, monkeypatch)
    pool = shared.pool
    monkeypatch.setattr(shared._group, "_pool", lambda: _LostAfterCommit(pool))
    answers = await asyncio.gather(*(write_next(shared, c) for c in chats),
                                   return_exceptions=True)
    assert [type(a) for a in answers] == [asyncpg.ConnectionDoesNotExistError] * 2
    assert seen.sizes == [2]
    for chat in chats:
        loaded = await shared.load_chat(chat.chat_id)
        assert loaded is not None and [e.text for e in loaded.events] == [
            "first", f"to {chat.chat_id}"]


async def test_closing_the_store_answers_the_saves_still_to_leave(postgres_dsn: str,
                                                                  shared: PostgresStore) -> None:
    (chat,) = await chats_saved(shared, 1)
    store = PostgresStore(postgres_dsn, min_size=1, max_size=1)
    await store.open()
    try:
        asked = asyncio.create_task(write_next(store, chat))
        await asyncio.sleep(0)  # asked for; its statement leaves on the next turn
    finally:
        await store.close()
    assert await asked
    loaded = await shared.load_chat(chat.chat_id)
    assert loaded is not None and loaded.revision == chat.revision + 1


async def test_processes_writing_the_same_chats_in_batches_never_deadlock(
        postgres_dsn: str, shared: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes, both current, each saving the same chats in one statement in opposite
    orders, while a third holds the middle chat under lock_chat until both wait for it. Had
    a statement waited for a row lock, each would have locked its half up to the middle,
    then waited for the other's half: a deadlock, which PostgreSQL breaks after
    deadlock_timeout (a second's stall) by failing one of the statements. No statement
    fails; every chat's transcript ends dense, each process's messages all there."""
    chats = await chats_saved(shared, 16)
    # As many chats as a contact centre's, so that the statement finds its chats by the
    # primary key in the order given (on a few rows a scan of the table, in the table's
    # order for both, would hide the hazard).
    await shared.pool.execute(
        "INSERT INTO chats (chat_id, service, secure_key, user_id, alias, status, created_ms,"
        " queued_ms, next_participant, customer_json, user_data_json) SELECT 'other' || n, "
        "'s', 'key' || n, 'u', '1', 'ended', 0, 0, 1, '{}', '{}' "
        "FROM generate_series(1, 5000) AS n; ANALYZE chats")
    middle = chats[len(chats) // 2]
    rounds = 3
    all_three = asyncio.Barrier(3)
    holder = PostgresStore(postgres_dsn, min_size=1, max_size=1)
    await holder.open()
    holder_pid = await holder.pool.fetchval("SELECT pg_backend_pid()")
    seen = Statements()

    async def process(name: str, order: int) -> None:
        store = PostgresStore(postgres_dsn, min_size=1, max_size=4)
        await store.open()
        mine = spy_statements(store, monkeypatch)

        try:
            for n in range(rounds):
                current = [await store.load_chat(c.chat_id) for c in chats[::order]]
                await all_three.wait()  # both current, both about to write every chat
                await asyncio.gather(*(write_message(store, c, f"{name}-{n}")
                                       for c in current if c))
                await all_three.wait()
        finally:
            await store.close()
            seen.sizes.extend(mine.sizes)
            seen.failures.extend(mine.failures)

    async def both_wait_for_the_holder() -> bool:
        # The first waiter for a row waits for its holder, the next for the first waiter.
        return bool(await shared.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity a WHERE $1 = ANY(pg_blocking_pids(a.pid)) "
            "OR EXISTS (SELECT 1 FROM pg_stat_activity b WHERE b.pid = "
            "ANY(pg_blocking_pids(a.pid)) AND $1 = ANY(pg_blocking_pids(b.pid)))",
            holder_pid) >= 2)

    async def hold() -> None:
        for _ in range(rounds):
            async with holder.lock_chat(middle.chat_id, 0):
                await all_three.wait()
                await eventually(both_wait_for_the_holder, "both waiting for the middle chat")
            await all_three.wait()

    try:
        async with asyncio.timeout(60):
            await asyncio.gather(process("p0", 1), process("p1", -1), hold())
    finally:
        await holder.close()
    assert seen.failures == []
    assert len(seen.sizes) >= 2 * rounds and max(seen.sizes) == len(chats)
    for chat in chats:
        assert_dense(await shared.load_chat(chat.chat_id), {"p0": rounds, "p1": rounds})


async def test_an_error_after_the_save_rolls_it_back(shared: PostgresStore) -> None:
    chat = await saved(shared, new_chat(), [message(new_chat(), 1, 2, "kept")])
    before = await shared.load_chat("c1")
    with pytest.raises(RuntimeError):
        async with shared.lock_chat("c1", chat.revision) as held:
            await held.save(copy(chat, revision=chat.revision + 1,
                                    status=ChatStatus.ENDED), [],
                            [message(chat, 2, 2, "lost")])
            raise RuntimeError("after the save, before the commit")
    assert await shared.load_chat("c1") == before


async def test_an_index_is_never_given_twice(shared: PostgresStore) -> None:
    chat = await saved(shared, new_chat(), [message(new_chat(), 1, 2, "first")])
    with pytest.raises(asyncpg.UniqueViolationError):
        async with shared.lock_chat("c1", 0) as held:  # ignores that it is behind
            await held.save(copy(chat, revision=5), [], [message(chat, 1, 1, "again")])
    loaded = await shared.load_chat("c1")
    assert loaded is not None and loaded.revision == 1
    assert [(e.index, e.text) for e in loaded.events] == [(1, "first")]


async def test_a_frozen_holder_loses_the_chat_and_cannot_write(postgres_dsn: str) -> None:
    """A process that stops while holding a chat (frozen, or its host gone without closing
    the connection) is cut off by PostgreSQL after ``hold_timeout_s``: the others get the
    chat, and the frozen one's late save fails rather than lands."""
    frozen = PostgresStore(postgres_dsn, min_size=1, max_size=1, hold_timeout_s=0.5)
    other = PostgresStore(postgres_dsn, min_size=1, max_size=1)
    await frozen.open()
    await other.open()
    try:
        chat = await saved(other, new_chat(), [message(new_chat(), 1, 2, "first")])
        held = frozen.lock_chat("c1", chat.revision)
        late = await held.__aenter__()
        # A bound only so that a failure shows as one instead of a hung run.
        async with asyncio.timeout(30), other.lock_chat("c1", chat.revision) as mine:
            assert mine.fresh is None
            await mine.save(copy(chat, revision=2), [], [message(chat, 2, 1, "second")])
        # However the cut-off reaches the frozen connection first (the server's error, the
        # closed socket, or asyncpg still busy with the server's goodbye), the save fails.
        refused = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                   OSError)
        with pytest.raises(refused):
            await late.save(copy(chat, revision=2), [], [message(chat, 2, 2, "late")])
        with contextlib.suppress(*refused):
            await held.__aexit__(None, None, None)
        loaded = await other.load_chat("c1")
        assert loaded is not None and [e.text for e in loaded.events] == ["first", "second"]
    finally:
        await frozen.close()
        await other.close()


async def append(dsn: str, chat_id: str, count: int, writer: str, *,
                 if_current: bool = False) -> int:
    """One process's writer: ``count`` events on ``chat_id``, each under the lock, on its own
    copy of the chat brought up to date by the lock (as :meth:`Changes.open` does); with
    ``if_current``, each first saved only if the copy is current, and under the lock on the
    stored chat only when that lost (as :meth:`Changes.apply` does). Returns how often it
    lost."""
    store = PostgresStore(dsn, min_size=1, max_size=2)
    await store.open()
    lost = 0
    try:
        chat = await store.load_chat(chat_id)
        assert chat is not None
        for n in range(count):
            chat, lost_one = await write_message(store, chat, f"{writer}-{n}",
                                                 if_current=if_current)
            lost += lost_one
    finally:
        await store.close()
    return lost


def assert_dense(chat: ChatRecord | None, writers: dict[str, int]) -> None:
    """Indexes exactly 1..N and every writer's events all there, each once, in its order."""
    assert chat is not None
    total = 1 + sum(writers.values())
    assert [e.index for e in chat.events] == list(range(1, total + 1))
    assert chat.revision == total
    texts = [e.text or "" for e in chat.events[1:]]
    for writer, count in writers.items():
        assert [t for t in texts if t.startswith(writer + "-")] == [
            f"{writer}-{n}" for n in range(count)]


async def test_two_pools_writing_one_chat_give_dense_indexes(postgres_dsn: str,
                                                             shared: PostgresStore) -> None:
    await saved(shared, new_chat(), [message(new_chat(), 1, 2, "start")])
    writers = {f"w{n}": 60 for n in range(4)}  # two pools, as two processes, two tasks each
    await asyncio.gather(*(append(postgres_dsn, "c1", count, writer)
                           for writer, count in writers.items()))
    assert_dense(await shared.load_chat("c1"), writers)


async def test_writers_saving_if_current_give_dense_indexes(postgres_dsn: str,
                                                          shared: PostgresStore) -> None:
    await saved(shared, new_chat(), [message(new_chat(), 1, 2, "start")])
    writers = {f"w{n}": 60 for n in range(4)}
    lost = await asyncio.gather(*(append(postgres_dsn, "c1", count, writer, if_current=True)
                                  for writer, count in writers.items()))
    assert_dense(await shared.load_chat("c1"), writers)
    assert sum(lost) > 0  # they did race: some saves lost and were made again
    assert sum(lost) < sum(writers.values())  # and some were written by the compare


async def test_two_processes_writing_one_chat_give_dense_indexes(postgres_dsn: str,
                                                                 shared: PostgresStore) -> None:
    await saved(shared, new_chat(), [message(new_chat(), 1, 2, "start")])
    writers = {"p0": 80, "p1": 80}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    code = ("import asyncio, sys; from tests.test_store_contract import append; "
            "asyncio.run(append(sys.argv[1], 'c1', int(sys.argv[2]), sys.argv[3]))")
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, postgres_dsn, str(count), writer, cwd=REPO, env=env,
        stderr=subprocess.PIPE) for writer, count in writers.items()]
    for proc in procs:
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    assert_dense(await shared.load_chat("c1"), writers)


# ---- files' bytes --------------------------------------------------------------------------

@pytest.fixture
async def vault(store: Store, tmp_path: Path) -> Vault:
    """The vault a server gets for the store (PostgreSQL keeps the bytes itself)."""
    if isinstance(store, PostgresStore):
        return store.vault()
    return DiskVault(tmp_path / "files")


async def test_vault_keeps_bytes_by_id(vault: Vault) -> None:
    first, second = vault.new_id(), vault.new_id()
    assert first != second
    data = bytes(range(256)) * 1000
    await vault.write(first, data)
    assert await vault.read(first) == data
    assert await vault.read(second) is None
    await vault.delete(first)
    await vault.delete(first)  # again: nothing there, no error
    assert await vault.read(first) is None
    assert await vault.read("../../etc/passwd") is None


async def test_bytes_are_written_while_every_chat_connection_is_held(postgres_dsn: str) -> None:
    """An upload writes its bytes inside its chat's change: with the pool's only connection
    held by that change, the write still goes through (it has connections of its own)."""
    store = PostgresStore(postgres_dsn, min_size=1, max_size=1, blob_connections=1)
    await store.open()
    try:
        vault = store.vault()
        chat = await saved(store, new_chat(), [])
        async with store.lock_chat("c1", chat.revision):
            file_id = vault.new_id()
            # A bound, so that the deadlock this is about fails the test instead of hanging it.
            await asyncio.wait_for(vault.write(file_id, b"%PDF-1.7"), 30)
        assert await vault.read(file_id) == b"%PDF-1.7"
    finally:
        await store.close()


async def test_files_through_a_server_on_postgresql(postgres_dsn: str, tmp_path: Path,
                                                    customer_factory: Callable[..., Any],
                                                    agent_factory: Callable[..., Any]) -> None:
    """A server on PostgreSQL keeps uploads in the database (any process can serve them)."""
    config = ServerConfig(data_dir=str(tmp_path / "data"), offer_timeout_s=5.0)
    server = await start_server(config, store=PostgresStore(postgres_dsn))
    try:
        customer = await customer_factory(server.data_url, **files_options(server, "rest"))
        agent, chat_id = await accepted_chat(server, customer, agent_factory)
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
        sent = await customer.command("sendFile", {"data": png, "fileName": "a.png"})
        data, _ = await agent.client.download_file(chat_id, sent["userData"]["file-id"])
        assert data == png
    finally:
        await server.runner.cleanup()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert await conn.fetchval("SELECT data FROM file_blobs") == png
    finally:
        await conn.close()
    assert not (tmp_path / "data" / "files").exists()


# ---- migrations ----------------------------------------------------------------------------

def test_every_dialect_has_the_same_migrations() -> None:
    listed = {d: [(m.version, m.name) for m in migrations(d)] for d in DIALECTS}
    assert listed["sqlite"] == listed["postgresql"]
    assert [v for v, _ in listed["sqlite"]] == list(range(1, LATEST + 1))
    with pytest.raises(ValueError, match="no migrations for dialect"):
        migrations("oracle")


async def test_migrating_again_changes_nothing(store_url: str, tmp_path: Path) -> None:
    first = from_url(store_url, tmp_path)
    await first.open()
    await first.put_agent(AgentRecord("grace", "Grace", "h"))
    await first.close()
    again = from_url(store_url, tmp_path)
    await again.open()
    try:
        assert (first.schema_version, again.schema_version) == (LATEST, LATEST)
        assert await again.get_agent("grace") == AgentRecord("grace", "Grace", "h")
    finally:
        await again.close()


async def test_processes_starting_together_migrate_once(postgres_dsn: str) -> None:
    stores = [PostgresStore(postgres_dsn, min_size=1, max_size=1) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert {s.schema_version for s in stores} == {LATEST}
        versions = await stores[0].pool.fetch("SELECT version FROM schema_version ORDER BY 1")
        assert [r[0] for r in versions] == list(range(1, LATEST + 1))
    finally:
        await asyncio.gather(*(s.close() for s in stores))


def test_store_urls(tmp_path: Path) -> None:
    default = from_url(None, tmp_path)
    assert isinstance(default, SqliteStore) and default.path == tmp_path / "webchat.sqlite3"
    named = from_url("sqlite:///var/lib/webchat/chats.db", tmp_path)
    assert isinstance(named, SqliteStore) and named.path == Path("/var/lib/webchat/chats.db")
    for url in ("postgresql://webchat@db.internal:5432/chats", "postgres://db/chats"):
        pg = from_url(url, tmp_path)
        assert isinstance(pg, PostgresStore) and pg.dsn == url
    for bad in ("mysql://db/chats", "sqlite://host/x.db"):
        with pytest.raises(ValueError):
            from_url(bad, tmp_path)


def test_migrate_command(store_url: str, tmp_path: Path) -> None:
    dialect = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    for _ in range(2):
        result = CliRunner().invoke(cli, ["migrate", "--store", store_url])
        assert result.exit_code == 0, result.output
        assert result.output == f"{dialect} schema version {LATEST}\n"
    unreachable = CliRunner().invoke(
        cli, ["migrate", "--store", "postgresql://nobody@127.0.0.1:1/none"])
    assert unreachable.exit_code == 1
    assert "could not migrate the postgresql store" in unreachable.output


async def test_saves_queued_together_commit_together_and_one_failing_fails_alone(
        tmp_path: Path) -> None:
    """SQLite's writer commits the saves queued behind a busy moment as one batch (one
    statement per table); a save that breaks a constraint there fails alone, and every other
    save of the batch is durable."""
    store = SqliteStore(tmp_path / "webchat.sqlite3")
    await store.open()
    try:
        chats = [await saved(store, new_chat(f"c{n}", f"k{n}"), [message(new_chat(), 1, 2, "a")])
                 for n in range(20)]
        batches: list[int] = []
        run_batch = SqliteStore._run_batch

        def counting(conn: Any, batch: list[Any]) -> None:
            batches.append(len(batch))
            run_batch(conn, batch)

        SqliteStore._run_batch = staticmethod(counting)  # type: ignore[method-assign]
        try:
            busy = store._run(lambda conn: __import__("time").sleep(0.3))
            await asyncio.sleep(0.05)  # the writer is in the busy job: the saves queue up
            results = await asyncio.gather(*(
                store.save_chat(copy(chat, revision=chat.revision + 1),
                                list(chat.participants.values()),
                                [message(chat, 1 if n == 7 else 2, 1, f"second {n}")])
                for n, chat in enumerate(chats)), return_exceptions=True)
            await busy
        finally:
            SqliteStore._run_batch = staticmethod(run_batch)  # type: ignore[method-assign]
        assert batches[-1] == 20  # one batch behind the busy job
        failed = [n for n, r in enumerate(results) if isinstance(r, Exception)]
        assert failed == [7]  # index 1 of c7 was stored already
        for n in range(20):
            loaded = await store.load_chat(f"c{n}")
            assert loaded is not None
            assert [e.text for e in loaded.events] == (["a"] if n == 7 else ["a", f"second {n}"])
            assert loaded.revision == (1 if n == 7 else 2)
    finally:
        await store.close()


async def test_a_batch_of_saves_is_one_sqlite_statement_not_one_per_row(
        tmp_path: Path) -> None:
    """The writer thread hands the interpreter lock over at every statement step and waits
    for a busy event loop's switch interval to get it back, so a batch written row by row
    (``executemany``: 160 steps here) or table by table took tens to hundreds of
    milliseconds under load. 40 saves of four rows each (the chat, two participants, an
    event) are one statement, its own transaction, and all of them are stored."""
    store = SqliteStore(tmp_path / "webchat.sqlite3")
    await store.open()
    try:
        chats = [new_chat(f"c{n}", f"k{n}") for n in range(40)]
        traced: list[str] = []
        busy = store._run(lambda conn: (conn.set_trace_callback(traced.append),
                                        __import__("time").sleep(0.3)))
        await asyncio.sleep(0.05)  # the writer is in the busy job: the saves queue up
        await asyncio.gather(*(saved(store, chat, [message(chat, 1, 2, f"to {chat.chat_id}")])
                               for chat in chats))
        await busy
        await store._run(lambda conn: conn.set_trace_callback(None))
        # The busy job's end, the batch, the job that stops tracing (a savepoint each).
        assert traced[:2] == ["RELEASE job", "COMMIT"]
        assert traced[-2:] == ["BEGIN IMMEDIATE", "SAVEPOINT job"]
        # SQLite traces a statement again for each trigger program it runs: count texts.
        statements = {sql.split(" VALUES ")[0] for sql in traced[2:-2]}
        assert statements == {"INSERT INTO saved_rows"}  # not BEGIN, the tables, COMMIT
        for chat in (chats[0], chats[17], chats[39]):
            loaded = await store.load_chat(chat.chat_id)
            assert loaded is not None
            assert [e.text for e in loaded.events] == [f"to {chat.chat_id}"]
            assert loaded.participants == chat.participants
            assert loaded.revision == 1
    finally:
        await store.close()


async def test_saves_too_many_for_one_statement_are_one_transaction(tmp_path: Path) -> None:
    """A batch with more rows than one statement binds is written in several, inside one
    transaction: a save failing in the last one fails alone, as in a batch of one."""
    store = SqliteStore(tmp_path / "webchat.sqlite3")
    await store.open()
    try:
        chats = [await saved(store, new_chat(f"c{n}", f"k{n}"), [message(new_chat(), 1, 2, "a")])
                 for n in range(30)]
        busy = store._run(lambda conn: __import__("time").sleep(0.3))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*(
            store.save_chat(copy(chat, revision=chat.revision + 1),
                            list(chat.participants.values()),
                            [message(chat, 1 if n == 29 else i, 2, f"{n}.{i}")
                             for i in range(2, 42)])  # 30 x 43 rows: over 1,024
            for n, chat in enumerate(chats)), return_exceptions=True)
        await busy
        assert [n for n, r in enumerate(results) if isinstance(r, Exception)] == [29]
        for n in (0, 28, 29):
            loaded = await store.load_chat(f"c{n}")
            assert loaded is not None
            assert len(loaded.events) == (1 if n == 29 else 41)
    finally:
        await store.close()


async def test_sqlite_saves_are_checkpointed_off_the_writer(tmp_path: Path) -> None:
    """The write-ahead log is copied back into the database file by the checkpoint thread
    within about a second (not inside some later commit, once the log passes SQLite's 1,000
    pages), and is empty after a clean close."""
    path = tmp_path / "webchat.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        before = path.stat().st_size
        chats = [new_chat(f"c{n}", f"k{n}") for n in range(50)]
        for chat in chats:  # some 50 pages: far below the automatic checkpoint's threshold
            await saved(store, chat, [message(chat, i, 2, "x" * 200) for i in range(1, 11)])
        await eventually(lambda: path.stat().st_size > before,
                         "the saves reached the database file", timeout_s=10.0)
    finally:
        await store.close()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
