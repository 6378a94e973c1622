"""SQLite store: one file in WAL mode, driven by a single thread.

All statements run on one dedicated thread that owns the only connection, so there is never
write contention inside the process. The thread commits in groups: it takes every job queued
while the previous commit was running and commits them together, each inside its own savepoint
so that one failing job cannot take the others down. A job's future resolves only after the
commit that contains it, which is what lets the server promise durability before it replies.

Chat saves, nearly every job under load, are data rather than code (:class:`_Save`): a batch of
only saves is written as one statement that is its own transaction (:data:`_SAVED_ROWS` says
why: every statement step hands the interpreter lock to the busy event loop and waits to get
it back), falling back to one savepoint per job only if that fails.

Checkpoints (copying the write-ahead log back into the database file, with its fsyncs) are
not the writer's: SQLite's automatic checkpoint runs inside whichever commit crosses its
threshold, and there it held every save queued behind it (tens of milliseconds on this
machine's disk, the 10,000-chat benchmark's worst latencies). A second thread with a
connection of its own runs a passive checkpoint every :data:`CHECKPOINT_INTERVAL_S`, which
never blocks the writer; the log is reset and truncated to :data:`WAL_SIZE_LIMIT` as it is
caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from webchat.protocol.gms.models import Message
from webchat.store.migrations import migrations
from webchat.store.records import AgentRecord, ChatRecord, ChatStatus, FileRecord, ParticipantRecord

T = TypeVar("T")
Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]

_MAX_BATCH = 256
CHECKPOINT_INTERVAL_S = 1.0
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes the write-ahead log file is truncated to once checkpointed (``journal_size_limit``)."""
_CHAT_COLUMNS = ("chat_id, service, secure_key, user_id, alias, status, created_ms, queued_ms, "
                 "ended_ms, agent_id, target_agent, next_participant, customer_json, "
                 "user_data_json, revision, offered_to, offered_ms")
_WIDTH = len(_CHAT_COLUMNS.split(","))
"""Values in the widest row a save writes (a chat's)."""
_CHAT, _PARTICIPANT, _EVENT, _FILE = 1, 2, 3, 4
"""What a row of :data:`_SAVED_ROWS` is; 0 pads a statement to its size and writes nothing."""
_MAX_ROWS = 1024
"""The most rows one statement writes (fewer if SQLite's variable limit says so)."""


def _new(values: int) -> str:
    """The first ``values`` columns of the row a trigger of :data:`_SAVED_ROWS` handles."""
    return ", ".join(f"NEW.v{i}" for i in range(1, values + 1))


_SAVED_ROWS = (
    "CREATE TEMP VIEW saved_rows (kind, " + ", ".join(f"v{i}" for i in range(1, _WIDTH + 1))
    + ") AS SELECT " + ", ".join(["NULL"] * (_WIDTH + 1)) + " WHERE 0",
    f"""CREATE TEMP TRIGGER saved_chat INSTEAD OF INSERT ON saved_rows WHEN NEW.kind = {_CHAT}
    BEGIN
    INSERT INTO chats ({_CHAT_COLUMNS}) VALUES ({_new(_WIDTH)})
        ON CONFLICT (chat_id) DO UPDATE SET status=excluded.status,
            queued_ms=excluded.queued_ms, ended_ms=excluded.ended_ms,
            agent_id=excluded.agent_id, target_agent=excluded.target_agent,
            next_participant=excluded.next_participant, customer_json=excluded.customer_json,
            user_data_json=excluded.user_data_json, revision=excluded.revision,
            offered_to=excluded.offered_to, offered_ms=excluded.offered_ms;
    END""",
    f"""CREATE TEMP TRIGGER saved_participant INSTEAD OF INSERT ON saved_rows
    WHEN NEW.kind = {_PARTICIPANT} BEGIN
    INSERT INTO participants (chat_id, participant_id, type, nickname, agent_id, connected)
        VALUES ({_new(6)})
        ON CONFLICT DO UPDATE SET nickname=excluded.nickname, connected=excluded.connected,
            agent_id=excluded.agent_id;
    END""",
    f"""CREATE TEMP TRIGGER saved_event INSTEAD OF INSERT ON saved_rows WHEN NEW.kind = {_EVENT}
    BEGIN
    INSERT INTO events (chat_id, idx, message_json) VALUES ({_new(3)});
    END""",
    f"""CREATE TEMP TRIGGER saved_file INSTEAD OF INSERT ON saved_rows WHEN NEW.kind = {_FILE}
    BEGIN
    INSERT INTO files (file_id, chat_id, name, size, content_type, participant_id,
                       created_ms, description, deleted, downloads) VALUES ({_new(10)})
        ON CONFLICT (file_id) DO UPDATE SET deleted=excluded.deleted,
            downloads=excluded.downloads;
    END""")
"""The writer connection's own view (``TEMP``: no schema of the database's) that takes every
row a save writes, whichever its table, so that a batch of saves is one statement.

``executemany`` steps its statement once per row, and the sqlite3 module hands the
interpreter lock over around every step; the writer thread taking it back from a busy event
loop waits for the loop's switch interval (5 ms). A batch of 256 saves written row by row took
most of a second beside a busy thread (idle: 0.8 ms), and a statement per table with a
``BEGIN`` and a ``COMMIT`` still six steps or more, 37 ms for 20 saves; the saves queued
behind it, and every delivery's latency with them (``benchmarks/cluster_chat.py``). One
``INSERT INTO saved_rows VALUES (...), (...)`` outside a transaction is its own transaction:
one step, 7 ms, with the rows' work and the commit done while the lock is free for the loop.
Statements are made for power-of-two row counts only, padded with rows of kind 0, so SQLite's
statement cache keeps the dozen it needs prepared. A trigger per kind, chosen by its ``WHEN``,
runs one insert per row (a padding row none): one trigger of four ``INSERT ... SELECT ...
WHERE NEW.kind = k`` ran all four for every row, a fifth more of the writer's CPU per save
(a message's save on a 10,000-chat database: 202-211 -> 162-193 µs here)."""

_statements: dict[int, str] = {}


def _statement(rows: int) -> str:
    """The ``INSERT INTO saved_rows`` of ``rows`` rows."""
    sql = _statements.get(rows)
    if sql is None:
        values = ",".join(["(" + ",".join("?" * (_WIDTH + 1)) + ")"] * rows)
        sql = _statements[rows] = f"INSERT INTO saved_rows VALUES {values}"
    return sql


_message_decoder = msgspec.json.Decoder(Message)
_map_decoder = msgspec.json.Decoder(dict[str, str])


def split_statements(sql: str) -> list[str]:
    """Split a script into statements, respecting comments and quotes (unlike ``;``)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
            part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer!r}")
    return statements


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations not yet recorded. Runs inside the caller's transaction, so a
    failing migration leaves the schema as it was."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] or 0
    for version, _, sql in migrations(SqliteStore.dialect):
        if version <= current:
            continue
        for statement in split_statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        current = version
    return int(current)


class _Save:
    """One chat save as rows: run alone (``save(conn)``), or merged with the other saves of a
    batch (:func:`_save_all`)."""

    __slots__ = ("events", "files", "participants", "row")

    def __init__(self, row: tuple[Any, ...], participants: list[tuple[Any, ...]],
                 events: list[tuple[Any, ...]], files: list[tuple[Any, ...]]) -> None:
        self.row = row
        self.participants = participants
        self.events = events
        self.files = files

    def __call__(self, conn: sqlite3.Connection) -> None:
        _save_all(conn, [self])


def _rows_of(saves: Sequence[_Save]) -> list[tuple[Any, ...]]:
    """The rows of ``saves`` as :data:`_SAVED_ROWS` takes them, each kind and padded to the
    widest, in an order the foreign keys accept (chats first)."""
    rows: list[tuple[Any, ...]] = []
    for kind, part in ((_CHAT, [save.row for save in saves]),
                       (_PARTICIPANT, [r for save in saves for r in save.participants]),
                       (_EVENT, [r for save in saves for r in save.events]),
                       (_FILE, [r for save in saves for r in save.files])):
        rows.extend((kind, *row) + (None,) * (_WIDTH - len(row)) for row in part)
    return rows


def _most_rows(conn: sqlite3.Connection) -> int:
    """The most rows, a power of two, that one statement of :func:`_statement` may bind."""
    fit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // (_WIDTH + 1)
    return min(_MAX_ROWS, 1 << (fit.bit_length() - 1))


def _save_all(conn: sqlite3.Connection, saves: Sequence[_Save]) -> None:
    """Write every row of ``saves``: one statement, and so one step, when they fit in one
    (outside a transaction it is its own), else several inside one transaction."""
    rows = _rows_of(saves)
    most = _most_rows(conn)
    opened = len(rows) > most and not conn.in_transaction
    if opened:
        conn.execute("BEGIN IMMEDIATE")
    try:
        for start in range(0, len(rows), most):
            chunk = rows[start:start + most]
            size = 1 << (len(chunk) - 1).bit_length()
            chunk.extend([(0,) + (None,) * _WIDTH] * (size - len(chunk)))
            conn.execute(_statement(size), list(itertools.chain.from_iterable(chunk)))
    except BaseException:
        if opened and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if opened:
        conn.execute("COMMIT")


class _Lock:
    """SQLite is one process's store: its cache is never behind, and the process's own chat
    lock already serializes writers, so the lock only forwards saves to the writer thread."""

    fresh: ChatRecord | None = None

    def __init__(self, store: SqliteStore) -> None:
        self.save = store.save_chat


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self.schema_version = 0

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True,
                                        name="webchat-sqlite")
        self._thread.start()
        await ready
        self.schema_version = await self._run(migrate)
        await self._run(lambda conn: [conn.execute(sql) for sql in _SAVED_ROWS])
        self._stopping.clear()
        self._checkpointer = threading.Thread(target=self._checkpoints, daemon=True,
                                              name="webchat-sqlite-checkpoint")
        self._checkpointer.start()

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._stopping.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def _checkpoints(self) -> None:
        """Passive checkpoints on a connection of their own until the store closes: they
        copy what the log holds without waiting for, or blocking, the writer."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopping.wait(CHECKPOINT_INTERVAL_S):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:  # busy or locked for a moment: the next round catches up
                    continue
        finally:
            conn.close()

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    @asynccontextmanager
    async def lock_chat(self, chat_id: str, revision: int) -> AsyncIterator[_Lock]:
        yield _Lock(self)

    def _main(self, ready: asyncio.Future[None]) -> None:
        loop = ready.get_loop()
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread's work
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        except Exception as exc:
            loop.call_soon_threadsafe(ready.set_exception, exc)
            return
        loop.call_soon_threadsafe(ready.set_result, None)
        try:
            self._serve(conn)
        finally:
            with contextlib.suppress(sqlite3.Error):  # a short log for the next start
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._run_batch(conn, batch)
            if stop:
                return

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, batch: list[Job]) -> None:
        outcomes = SqliteStore._saves_at_once(conn, batch)
        if outcomes is None:
            outcomes = SqliteStore._jobs_in_savepoints(conn, batch)
        # One wake-up of each event loop per batch, not one per job: at 2,000 saves a second
        # the loop's self-pipe writes and callbacks were a measurable share of its time.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, fut, loop), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)

    @staticmethod
    def _saves_at_once(conn: sqlite3.Connection, batch: list[Job]
                       ) -> list[tuple[bool, Any]] | None:
        """A batch of only chat saves as one statement (:func:`_save_all`); None
        if it is not one, or if it failed (rolled back: the caller runs it job by job, so
        that only the failing save fails)."""
        saves = [fn for fn, _, _ in batch if isinstance(fn, _Save)]
        if len(saves) < 2 or len(saves) != len(batch):
            return None
        try:
            _save_all(conn, saves)
        except Exception:
            return None
        return [(True, None)] * len(batch)

    @staticmethod
    def _jobs_in_savepoints(conn: sqlite3.Connection, batch: list[Job]
                            ) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _, _ in batch:
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, fn(conn)))
                    conn.execute("RELEASE job")
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
        except Exception as exc:  # the commit itself failed: nothing in the batch is durable
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(batch)
        return outcomes

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self._thread is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, fut, loop))
        return fut

    # ---- chats -----------------------------------------------------------------------------

    async def save_if_current(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                              events: Sequence[Message], files: Sequence[FileRecord] = ()
                              ) -> bool:
        """Always saves: one process writes this file, and its chats' locks (which
        :meth:`lock_chat` leaves to it, as here) keep its copies current."""
        await self.save_chat(chat, participants, events, files)
        return True

    async def save_chat(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                        events: Sequence[Message], files: Sequence[FileRecord] = ()) -> None:
        row = (chat.chat_id, chat.service, chat.secure_key, chat.user_id, chat.alias,
               chat.status.value, chat.created_ms, chat.queued_ms, chat.ended_ms, chat.agent_id,
               chat.target_agent, chat.next_participant, msgspec.json.encode(chat.customer),
               msgspec.json.encode(chat.user_data), chat.revision, chat.offered_to,
               chat.offered_ms)
        prows = [(chat.chat_id, p.participant_id, p.type, p.nickname, p.agent_id,
                  int(p.connected)) for p in participants]
        erows = [(chat.chat_id, m.index, msgspec.json.encode(m)) for m in events]
        frows = [(f.file_id, f.chat_id, f.name, f.size, f.content_type, f.participant_id,
                  f.created_ms, f.description, int(f.deleted), f.downloads) for f in files]

        await self._run(_Save(row, prows, erows, frows))

    async def load_chat(self, chat_id: str) -> ChatRecord | None:
        def read(conn: sqlite3.Connection) -> ChatRecord | None:
            rows = _read_chats(conn, "WHERE chat_id = ?", (chat_id,))
            return rows[0] if rows else None

        return await self._run(read)

    async def load_open_chats(self) -> list[ChatRecord]:
        return await self._run(lambda conn: _read_chats(conn, "WHERE status <> 'ended'", ()))

    async def chat_id_for_key(self, secure_key: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT chat_id FROM chats WHERE secure_key = ?",
                               (secure_key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(read)

    # ---- agents ----------------------------------------------------------------------------

    async def put_agent(self, agent: AgentRecord) -> None:
        row = (agent.agent_id, agent.nickname, agent.password_hash, int(agent.ready),
               agent.capacity, int(agent.supervisor))
        await self._run(lambda conn: conn.execute(
            "INSERT INTO agents (agent_id, nickname, password_hash, ready, capacity, supervisor)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (agent_id) DO UPDATE SET "
            "nickname=excluded.nickname, password_hash=excluded.password_hash, "
            "ready=excluded.ready, capacity=excluded.capacity, supervisor=excluded.supervisor",
            row))

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        agents = await self._run(lambda conn: _read_agents(conn, "WHERE agent_id = ?",
                                                           (agent_id,)))
        return agents[0] if agents else None

    async def list_agents(self) -> list[AgentRecord]:
        return await self._run(lambda conn: _read_agents(conn, "", ()))

    async def add_token(self, token_hash: str, agent_id: str, created_ms: int) -> None:
        await self._run(lambda conn: conn.execute(
            "INSERT INTO agent_tokens VALUES (?,?,?)", (token_hash, agent_id, created_ms)))

    async def agent_for_token(self, token_hash: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT agent_id FROM agent_tokens WHERE token_hash = ?",
                               (token_hash,)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(read)

    async def delete_token(self, token_hash: str) -> None:
        await self._run(lambda conn: conn.execute(
            "DELETE FROM agent_tokens WHERE token_hash = ?", (token_hash,)))


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in settled:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _read_agents(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]
                 ) -> list[AgentRecord]:
    rows = conn.execute(
        f"SELECT agent_id, nickname, password_hash, ready, capacity, supervisor FROM agents "
        f"{where} ORDER BY agent_id", args).fetchall()
    return [AgentRecord(r[0], r[1], r[2], bool(r[3]), int(r[4]), bool(r[5])) for r in rows]


def _read_chats(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]
                ) -> list[ChatRecord]:
    chats: dict[str, ChatRecord] = {}
    for r in conn.execute(
            "SELECT chat_id, service, secure_key, user_id, alias, status, created_ms, queued_ms,"
            " ended_ms, agent_id, target_agent, next_participant, customer_json, user_data_json,"
            f" revision, offered_to, offered_ms FROM chats {where}", args):
        chats[r[0]] = ChatRecord(
            chat_id=r[0], service=r[1], secure_key=r[2], user_id=r[3], alias=r[4],
            status=ChatStatus(r[5]), created_ms=r[6], queued_ms=r[7], ended_ms=r[8],
            agent_id=r[9], target_agent=r[10], next_participant=r[11],
            customer=_map_decoder.decode(r[12]), user_data=_map_decoder.decode(r[13]),
            revision=r[14], offered_to=r[15], offered_ms=r[16])
    for chat in chats.values():
        for p in conn.execute(
                "SELECT participant_id, type, nickname, agent_id, connected FROM participants "
                "WHERE chat_id = ? ORDER BY participant_id", (chat.chat_id,)):
            chat.participants[p[0]] = ParticipantRecord(p[0], p[1], p[2], p[3], bool(p[4]))
        chat.events = [_message_decoder.decode(e[0]) for e in conn.execute(
            "SELECT message_json FROM events WHERE chat_id = ? ORDER BY idx", (chat.chat_id,))]
        for f in conn.execute(
                "SELECT file_id, chat_id, name, size, content_type, participant_id, created_ms, "
                "description, deleted, downloads FROM files WHERE chat_id = ? "
                "ORDER BY created_ms, file_id", (chat.chat_id,)):
            chat.files[f[0]] = FileRecord(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7],
                                          bool(f[8]), f[9])
    return list(chats.values())
