"""PostgreSQL store: the one every process of a cluster shares, on an asyncpg pool.

Why it is shaped as it is:

* A change holds its chat against every process with the chat row's lock
  (``SELECT ... FOR UPDATE``) for one transaction (:meth:`PostgresStore.lock_chat`). Together
  with the primary key ``(chat_id, idx)`` of ``events`` that is what gives transcript indexes
  with no gap and no duplicate: the holder computes the next index from a copy it knows is
  current (the lock hands over the stored chat when it is not), and a writer that computed a
  taken index anyway fails rather than writing a second event under it.
* A save is one statement: the chat row, and the participants, events and files the change
  carries, each written by a data-modifying CTE fed with arrays (``unnest``), so a save is
  one round trip whatever it carries, prepared once per connection (asyncpg's statement
  cache). Outside a lock that one statement is its own transaction; inside, the lock's. A
  locked change is four round trips: ``BEGIN``, the row lock, the save, ``COMMIT``;
  :meth:`PostgresStore.save_if_current` (messages) is one, the compare in the statement
  itself, and it is shared: the saves asked for while one is out leave together, one
  statement and one commit for many chats (:class:`_GroupCommit`, as SqliteStore's writer
  groups its jobs). Such a statement never waits for a row lock (``SKIP LOCKED``), so two
  processes' statements cannot deadlock over the chats they both write.
* A chat is read by one statement too, its participants, transcript and files coming back as
  arrays beside its row: loading 10,000 open chats at start-up is one query, not 30,001, and
  a statement reads one snapshot, so the parts of a chat always agree.
* Migrations run in one transaction under an advisory lock: N processes starting at once
  migrate exactly once; the others wait for it and find the schema current.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import asyncpg
import msgspec

from webchat.protocol.gms.models import Message
from webchat.store.migrations import migrations
from webchat.store.records import (
    AgentRecord,
    ChatRecord,
    ChatStatus,
    FileRecord,
    ParticipantRecord,
    new_file_id,
)

if TYPE_CHECKING:  # asyncpg's classes are generic in its stubs only
    Connection: TypeAlias = (asyncpg.Connection[asyncpg.Record]
                             | asyncpg.pool.PoolConnectionProxy[asyncpg.Record])

#: ``pg_advisory_xact_lock`` key serializing migrations (per database: other databases on the
#: same server migrate independently).
MIGRATION_LOCK = 0x7765626368617400  # "webchat\0"
CLOSE_TIMEOUT_S = 5.0
"""How long :meth:`PostgresStore.close` waits for connections still in use to come back
before it drops them: a stop must end even when a connection is stuck (a holder the server
cut off whose release never completes)."""

log = logging.getLogger(__name__)

_message_decoder = msgspec.json.Decoder(Message)
_map_decoder = msgspec.json.Decoder(dict[str, str])

_CHAT = ("chat_id, service, secure_key, user_id, alias, status, created_ms, queued_ms, "
         "ended_ms, agent_id, target_agent, next_participant, customer_json, user_data_json, "
         "revision, offered_to, offered_ms")
_PARTICIPANT = "participant_id, type, nickname, agent_id, connected"
_FILE = ("file_id, chat_id, name, size, content_type, participant_id, created_ms, description, "
         "deleted, downloads")

# The identity of a chat (service, key, user, alias, creation) is written once; everything
# else follows the caller's copy, as in the SQLite store.
_CHAT_COLUMNS = [column.strip() for column in _CHAT.split(",")]
_FOLLOWED = ("status", "queued_ms", "ended_ms", "agent_id", "target_agent", "next_participant",
             "customer_json", "user_data_json", "revision", "offered_to", "offered_ms")
_FOLLOWED_TYPES = ("text", "bigint", "bigint", "text", "text", "integer", "bytea", "bytea",
                   "integer", "text", "bigint")
_UPSERT_CHAT = f"""
    INSERT INTO chats ({_CHAT})
    VALUES ({", ".join(f"${n}" for n in range(1, len(_CHAT_COLUMNS) + 1))})
    ON CONFLICT (chat_id) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in _FOLLOWED)}"""
_CHAT_ARGS = len(_CHAT_COLUMNS)
_FOLLOWED_AT = [_CHAT_COLUMNS.index(c) for c in _FOLLOWED]
_REVISION_AT = _CHAT_COLUMNS.index("revision")


def _arrays(first: int, types: Sequence[str]) -> str:
    """``unnest``'s arguments: one array per column, numbered from ``first``."""
    return ", ".join(f"${first + k}::{t}[]" for k, t in enumerate(types))


# The chat rows of a group commit (:class:`_GroupCommit`), each updated only if its stored
# revision is the one the change was made on (``expected``) and nobody holds it. The rows are
# locked first with SKIP LOCKED, so that the statement never waits: two processes' statements
# each holding some of the other's chats would otherwise deadlock (PostgreSQL would break it
# after deadlock_timeout, a second), and a chat held by a change under lock_chat is written
# by that change. A skipped chat is a lost compare: its change is made again under the lock.
# The UPDATE compares again on the locked row (a commit between the statement's snapshot and
# the lock moves the row on).
_GIVEN = ("chat_id", "expected", *_FOLLOWED)
_WRITE_IF_CURRENT = f"""
    given AS (SELECT * FROM unnest({_arrays(1, ("text", "integer", *_FOLLOWED_TYPES))})
              AS g({", ".join(_GIVEN)})),
    held AS (SELECT c.chat_id FROM chats c JOIN given g ON c.chat_id = g.chat_id
             WHERE c.revision = g.expected FOR NO KEY UPDATE OF c SKIP LOCKED),
    chat AS (UPDATE chats c SET {", ".join(f"{col} = g.{col}" for col in _FOLLOWED)}
             FROM given g WHERE c.chat_id = g.chat_id AND c.revision = g.expected
             AND c.chat_id IN (SELECT chat_id FROM held) RETURNING c.chat_id)"""
_GIVEN_ARGS = len(_GIVEN)


class _Part(NamedTuple):
    """Rows a save may carry besides the chat's, each naming its chat (``chat_id``)."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    conflict: str
    """What an INSERT of a row already stored does."""

    def insert(self, first: int, written_only: bool) -> str:
        """An INSERT fed by ``unnest`` of arrays numbered from ``first``; ``written_only``:
        only the rows of the chats the statement's ``chat`` wrote (a group commit's)."""
        columns = ", ".join(self.columns)
        where = " WHERE p.chat_id IN (SELECT chat_id FROM chat)" if written_only else ""
        return (f"INSERT INTO {self.table} ({columns}) SELECT * FROM "
                f"unnest({_arrays(first, self.types)}) AS p({columns}){where} {self.conflict}")


_PARTS = (
    _Part("participants", ("chat_id", *(c.strip() for c in _PARTICIPANT.split(","))),
          ("text", "integer", "text", "text", "text", "boolean"),
          "ON CONFLICT (chat_id, participant_id) DO UPDATE SET nickname = excluded.nickname, "
          "connected = excluded.connected, agent_id = excluded.agent_id"),
    _Part("events", ("chat_id", "idx", "message_json"), ("text", "integer", "bytea"), ""),
    _Part("files", tuple(c.strip() for c in _FILE.split(",")),
          ("text", "text", "text", "bigint", "text", "integer", "bigint", "text", "boolean",
           "integer"),
          "ON CONFLICT (file_id) DO UPDATE SET deleted = excluded.deleted, "
          "downloads = excluded.downloads"),
)


@functools.cache
def _save_sql(carried: tuple[bool, ...], if_current: bool = False) -> str:
    """The one statement saving chat rows with the parts (:data:`_PARTS`) the changes carry,
    each a data-modifying CTE. A part no change carries is left out rather than fed empty
    arrays: a message's save (the chat and one event) then encodes far fewer arguments, and
    costs about a fifth less CPU (measured in the client).

    Plain: one chat, upserted (:data:`_UPSERT_CHAT`). ``if_current``: a group commit's
    chats, each written only if current and free (:data:`_WRITE_IF_CURRENT`), and each
    part's rows only for the chats written (the statements of one WITH see one snapshot, so
    the parts learn it from the update's RETURNING); the statement answers the chats it
    wrote."""
    n = 1 + (_GIVEN_ARGS if if_current else _CHAT_ARGS)
    parts = []
    for i, part in enumerate(_PARTS):
        if carried[i]:
            parts.append(f"part{i} AS ({part.insert(n, if_current)})")
            n += len(part.types)
    chat = _WRITE_IF_CURRENT if if_current else f"chat AS ({_UPSERT_CHAT})"
    answer = "SELECT chat_id FROM chat" if if_current else "SELECT 1"
    return "WITH " + ", ".join([chat, *parts]) + "\n" + answer


_LOAD = f"""
SELECT {", ".join("c." + column.strip() for column in _CHAT.split(","))},
    ARRAY(SELECT ROW({_PARTICIPANT}) FROM participants p
          WHERE p.chat_id = c.chat_id ORDER BY participant_id) AS participants,
    ARRAY(SELECT message_json FROM events e
          WHERE e.chat_id = c.chat_id ORDER BY idx) AS events,
    ARRAY(SELECT ROW({_FILE}) FROM files f
          WHERE f.chat_id = c.chat_id ORDER BY created_ms, file_id) AS files
FROM chats c
"""
_LOAD_ONE = _LOAD + "WHERE c.chat_id = $1"
_LOAD_OPEN = _LOAD + "WHERE c.status <> 'ended'"  # unordered, as SQLite's: sorting the wide
# rows would spill to disk, and whoever needs an order (the router) sorts
_LOCK = "SELECT revision FROM chats WHERE chat_id = $1 FOR UPDATE"

_AGENT = "agent_id, nickname, password_hash, ready, capacity, supervisor"


async def migrate(conn: Connection) -> int:
    """Apply the migrations not yet recorded, all in one transaction (a failing one leaves
    the schema as it was) under :data:`MIGRATION_LOCK`; returns the schema version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current: int = await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM schema_version")
        for version, _, sql in migrations(PostgresStore.dialect):
            if version <= current:
                continue
            await conn.execute(sql)  # no arguments: the simple protocol runs the whole script
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            current = version
    return current


#: Set on every connection. JIT compiling pays off for long analytical queries, never for
#: these: it took half of the 0.4 s the start-up load of 10,000 chats needs.
_SESSION = {"application_name": "webchat", "jit": "off"}


async def _keep_session(conn: Connection) -> None:
    """What a connection going back to the pool needs undone, beyond the open transaction
    asyncpg always rolls back: nothing. The store sets no session state, holds no session
    locks, cursors or LISTENs, so asyncpg's default reset (``RESET ALL`` ...) would be a
    round trip per use of the pool for naught: a fifth of every save."""


class _Rows(NamedTuple):
    """A chat's save as rows: the chat's columns (:data:`_CHAT_COLUMNS`) and each part's."""

    chat: list[Any]
    parts: tuple[list[tuple[Any, ...]], ...]


def _rows(chat: ChatRecord, participants: Sequence[ParticipantRecord],
          events: Sequence[Message], files: Sequence[FileRecord]) -> _Rows:
    encode = msgspec.json.encode
    cid = chat.chat_id
    return _Rows(
        [cid, chat.service, chat.secure_key, chat.user_id, chat.alias, chat.status.value,
         chat.created_ms, chat.queued_ms, chat.ended_ms, chat.agent_id, chat.target_agent,
         chat.next_participant, encode(chat.customer), encode(chat.user_data), chat.revision,
         chat.offered_to, chat.offered_ms],
        ([(cid, p.participant_id, p.type, p.nickname, p.agent_id, p.connected)
          for p in participants],
         [(cid, m.index, encode(m)) for m in events],
         [(f.file_id, f.chat_id, f.name, f.size, f.content_type, f.participant_id,
           f.created_ms, f.description, f.deleted, f.downloads) for f in files]))


def _columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as ``unnest``'s arrays, one per column."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _statement(saves: Sequence[_Rows], if_current: bool) -> tuple[str, list[Any]]:
    """The save statement for ``saves`` (plain: one) and its arguments (``if_current``: see
    :func:`_save_sql`; the revision compared is the one before each chat's ``revision``)."""
    if if_current:
        given = ([r.chat[0], r.chat[_REVISION_AT] - 1, *(r.chat[i] for i in _FOLLOWED_AT)]
                 for r in saves)
        args: list[Any] = _columns(given, _GIVEN_ARGS)
    else:
        (only,) = saves
        args = list(only.chat)
    carried = []
    for i, part in enumerate(_PARTS):
        rows = [row for save in saves for row in save.parts[i]]
        carried.append(bool(rows))
        if rows:
            args.extend(_columns(rows, len(part.types)))
    return _save_sql(tuple(carried), if_current), args


def _save(chat: ChatRecord, participants: Sequence[ParticipantRecord],
          events: Sequence[Message], files: Sequence[FileRecord]) -> tuple[str, list[Any]]:
    """The plain save statement of one chat, and its arguments."""
    return _statement([_rows(chat, participants, events, files)], if_current=False)


def _chat(r: asyncpg.Record) -> ChatRecord:
    chat = ChatRecord(
        chat_id=r[0], service=r[1], secure_key=r[2], user_id=r[3], alias=r[4],
        status=ChatStatus(r[5]), created_ms=r[6], queued_ms=r[7], ended_ms=r[8],
        agent_id=r[9], target_agent=r[10], next_participant=r[11],
        customer=_map_decoder.decode(r[12]), user_data=_map_decoder.decode(r[13]),
        revision=r[14], offered_to=r[15], offered_ms=r[16])
    chat.participants = {p[0]: ParticipantRecord(*p) for p in r[17]}
    chat.events = [_message_decoder.decode(e) for e in r[18]]
    chat.files = {f[0]: FileRecord(*f) for f in r[19]}
    return chat


def _agents(rows: Iterable[asyncpg.Record]) -> list[AgentRecord]:
    return [AgentRecord(*r) for r in rows]


def _opened(pool: asyncpg.Pool[asyncpg.Record] | None) -> asyncpg.Pool[asyncpg.Record]:
    if pool is None:
        raise RuntimeError("store is not open")
    return pool


class _Lock:
    """A chat held by one transaction (see :meth:`PostgresStore.lock_chat`)."""

    def __init__(self, conn: Connection, fresh: ChatRecord | None) -> None:
        self._conn = conn
        self.fresh = fresh

    async def save(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                   events: Sequence[Message], files: Sequence[FileRecord] = ()) -> None:
        sql, args = _save(chat, participants, events, files)
        await self._conn.execute(sql, *args)


_ONE_BAD = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)
"""What PostgreSQL refuses a statement for because of a row it was given (a duplicate key, a
value out of range): the statement rolled back, and the other saves with it are good."""


class _Waiting(NamedTuple):
    rows: _Rows
    written: asyncio.Future[bool]


def _fail(batch: Iterable[_Waiting], exc: BaseException) -> None:
    """``exc`` to every caller of ``batch`` still waiting."""
    for w in batch:
        if not w.written.done():
            w.written.set_exception(exc)


class _GroupCommit:
    """:meth:`PostgresStore.save_if_current` calls gathered into statements, as SqliteStore's
    writer thread gathers its jobs: the saves asked for while the statements in flight are
    out (at most ``in_flight`` at once; one makes the largest groups, and measured cheapest)
    leave together in the next one, one round trip and one commit (one WAL flush) for them
    all. Under load the groups grow with the load; alone, a save leaves at once (on the next
    turn of the event loop, which also gathers the saves made in the same turn: a socket's
    frames for many chats).

    A chat is in one statement at most once (this process saves a chat one change at a time,
    :meth:`~webchat.server.chat.change.Changes.apply`, but a second would wait for the next
    statement rather than make the UPDATE's join ambiguous). A save whose caller gave up
    before its statement left is not written (a change cancelled at shutdown must not be
    stored unannounced). When PostgreSQL refused a statement of several for a row it was
    given (:data:`_ONE_BAD`: it rolled back), its saves are tried again each alone, so that
    one bad save fails only its own caller; any other failure (the connection lost, the
    commit's outcome unknown) is every caller's: tried again, a save that was in fact
    written would lose its compare, and its caller would make the change a second time."""

    def __init__(self, pool: Callable[[], asyncpg.Pool[asyncpg.Record]], in_flight: int,
                 most: int) -> None:
        self._pool = pool
        self._in_flight = in_flight
        self._most = most
        self._waiting: list[_Waiting] = []
        self._due = False
        self._tasks: dict[asyncio.Task[None], list[_Waiting]] = {}

    def save(self, rows: _Rows) -> asyncio.Future[bool]:
        written = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(rows, written))
        self._next()
        return written

    def _next(self) -> None:
        """Send the next statement on the next turn of the loop, if one may leave."""
        if self._waiting and not self._due and len(self._tasks) < self._in_flight:
            self._due = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._due = False
        batch: list[_Waiting] = []
        later: list[_Waiting] = []
        chats: set[str] = set()
        for w in self._waiting:
            if w.written.done():  # its caller gave up
                continue
            if len(batch) < self._most and w.rows.chat[0] not in chats:
                chats.add(w.rows.chat[0])
                batch.append(w)
            else:
                later.append(w)
        self._waiting = later
        if batch:
            task = asyncio.create_task(self._write(batch))
            self._tasks[task] = batch
            task.add_done_callback(self._landed)
        self._next()

    def _landed(self, task: asyncio.Task[None]) -> None:
        """A statement's task ended (however: even cancelled before it ran): no caller of it
        is left waiting, and the next statement may leave."""
        _fail(self._tasks.pop(task), asyncio.CancelledError() if task.cancelled()
              else RuntimeError("the save was not answered"))
        self._next()

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            await self._written(batch)
        except _ONE_BAD as exc:
            if len(batch) == 1:
                _fail(batch, exc)
            else:  # rolled back: each again on its own (at once: the others wait behind)
                await asyncio.gather(*(self._write([w]) for w in batch if not w.written.done()))
        except Exception as exc:
            _fail(batch, exc)

    async def _written(self, batch: list[_Waiting]) -> None:
        sql, args = _statement([w.rows for w in batch], if_current=True)
        written = {r[0] for r in await self._pool().fetch(sql, *args)}
        for w in batch:
            if not w.written.done():
                w.written.set_result(w.rows.chat[0] in written)

    async def drain(self) -> None:
        """Wait until every save asked for was answered (the statements in flight, and
        those still to leave)."""
        while self._tasks or self._waiting or self._due:
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            else:
                await asyncio.sleep(0)  # the statement due leaves on this turn


class PostgresStore:
    dialect = "postgresql"

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 10,
                 blob_connections: int = 4, hold_timeout_s: float = 30.0,
                 group_in_flight: int = 1, group_most: int = 256) -> None:
        """``min_size``/``max_size``: the pool for chats, agents and tokens (10: every process
        of a cluster has one, and PostgreSQL's default ``max_connections`` is 100 for all of
        them; a locked change holds a connection ~1 ms, so 10 carry thousands a second);
        ``blob_connections``: at most so many more for file bytes (:class:`PostgresVault`),
        opened when first needed. ``hold_timeout_s``: how long a transaction may sit idle
        before PostgreSQL ends its session (``idle_in_transaction_session_timeout``), so
        that a process that froze, or whose host vanished without closing its connections,
        holding a chat (a change takes milliseconds) does not hold it from every other
        process for good; the frozen one's save then fails instead of writing late."""
        self.dsn = dsn
        self.hold_timeout_s = hold_timeout_s
        self.min_size = min_size
        self.max_size = max_size
        self.blob_connections = blob_connections
        self.schema_version = 0
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._blobs: asyncpg.Pool[asyncpg.Record] | None = None
        self._group = _GroupCommit(lambda: self.pool, group_in_flight, group_most)

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        pools = []
        try:
            for min_size, max_size in ((self.min_size, self.max_size),
                                       (0, self.blob_connections)):
                pools.append(await asyncpg.create_pool(
                    self.dsn, min_size=min_size, max_size=max_size, reset=_keep_session,
                    server_settings={**_SESSION, "idle_in_transaction_session_timeout":
                                     f"{round(self.hold_timeout_s * 1000)}ms"}))
            async with pools[0].acquire() as conn:
                self.schema_version = await migrate(conn)
        except BaseException:
            for pool in pools:
                await pool.close()
            raise
        self._pool, self._blobs = pools

    async def close(self) -> None:
        await self._group.drain()
        pools = [p for p in (self._pool, self._blobs) if p is not None]
        self._pool = self._blobs = None
        for pool in pools:
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                log.warning("PostgreSQL connections still in use after %.0f s: dropped",
                            CLOSE_TIMEOUT_S)
                pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        """Connections for chats, agents and tokens."""
        return _opened(self._pool)

    @property
    def blob_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        """Connections for file bytes, apart from :attr:`pool`: an upload writes its bytes
        while its chat is held (before the event announcing it is committed), so on one pool
        as many uploads as it has connections would each hold one and wait for another."""
        return _opened(self._blobs)

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    def vault(self) -> PostgresVault:
        """The bytes of files, in this database beside their records."""
        return PostgresVault(self)

    @asynccontextmanager
    async def lock_chat(self, chat_id: str, revision: int) -> AsyncIterator[_Lock]:
        """The chat's row locked by a transaction that commits when the block ends normally
        (saved or not) and rolls back on an error. Waits while another process holds it."""
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchval(_LOCK, chat_id)
            row = None
            if stored is not None and stored != revision:
                # READ COMMITTED: this statement sees the commit we waited for (and the row,
                # locked, cannot have gone).
                row = await conn.fetchrow(_LOAD_ONE, chat_id)
            yield _Lock(conn, None if row is None else _chat(row))

    # ---- chats -----------------------------------------------------------------------------

    async def save_chat(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                        events: Sequence[Message], files: Sequence[FileRecord] = ()) -> None:
        sql, args = _save(chat, participants, events, files)
        await self.pool.execute(sql, *args)

    async def save_if_current(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                              events: Sequence[Message], files: Sequence[FileRecord] = ()
                              ) -> bool:
        """Compare and save in one statement, its own transaction, shared with the other
        saves made meanwhile (:class:`_GroupCommit`): one round trip, and one commit for
        many, where a change under :meth:`lock_chat` takes four round trips (``BEGIN``, the
        row lock, the save, ``COMMIT``). A chat another transaction holds counts as changed
        (nothing is written; the caller takes the lock and waits there)."""
        return await self._group.save(_rows(chat, participants, events, files))

    async def load_chat(self, chat_id: str) -> ChatRecord | None:
        row = await self.pool.fetchrow(_LOAD_ONE, chat_id)
        return None if row is None else _chat(row)

    async def load_open_chats(self) -> list[ChatRecord]:
        return [_chat(r) for r in await self.pool.fetch(_LOAD_OPEN)]

    async def chat_id_for_key(self, secure_key: str) -> str | None:
        chat_id: str | None = await self.pool.fetchval(
            "SELECT chat_id FROM chats WHERE secure_key = $1", secure_key)
        return chat_id

    # ---- agents ----------------------------------------------------------------------------

    async def put_agent(self, agent: AgentRecord) -> None:
        await self.pool.execute(
            f"INSERT INTO agents ({_AGENT}) VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (agent_id) DO UPDATE SET nickname = excluded.nickname, "
            "password_hash = excluded.password_hash, ready = excluded.ready, "
            "capacity = excluded.capacity, supervisor = excluded.supervisor",
            agent.agent_id, agent.nickname, agent.password_hash, agent.ready, agent.capacity,
            agent.supervisor)

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        agents = _agents(await self.pool.fetch(
            f"SELECT {_AGENT} FROM agents WHERE agent_id = $1", agent_id))
        return agents[0] if agents else None

    async def list_agents(self) -> list[AgentRecord]:
        return _agents(await self.pool.fetch(f"SELECT {_AGENT} FROM agents ORDER BY agent_id"))

    async def add_token(self, token_hash: str, agent_id: str, created_ms: int) -> None:
        await self.pool.execute(
            "INSERT INTO agent_tokens (token_hash, agent_id, created_ms) VALUES ($1, $2, $3)",
            token_hash, agent_id, created_ms)

    async def agent_for_token(self, token_hash: str) -> str | None:
        agent_id: str | None = await self.pool.fetchval(
            "SELECT agent_id FROM agent_tokens WHERE token_hash = $1", token_hash)
        return agent_id

    async def delete_token(self, token_hash: str) -> None:
        await self.pool.execute("DELETE FROM agent_tokens WHERE token_hash = $1", token_hash)


class PostgresVault:
    """File bytes in the ``file_blobs`` table: every process serves every upload, and a
    backup of the database is a backup of the files. Each call is one statement in its own
    transaction, durable when it returns, on the store's :attr:`~PostgresStore.blob_pool`."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store  # its pool opens after the server is wired

    @staticmethod
    def new_id() -> str:
        return new_file_id()

    async def write(self, file_id: str, data: bytes) -> None:
        await self._store.blob_pool.execute(
            "INSERT INTO file_blobs (file_id, data) VALUES ($1, $2) "
            "ON CONFLICT (file_id) DO UPDATE SET data = excluded.data", file_id, data)

    async def read(self, file_id: str) -> bytes | None:
        data: bytes | None = await self._store.blob_pool.fetchval(
            "SELECT data FROM file_blobs WHERE file_id = $1", file_id)
        return data

    async def delete(self, file_id: str) -> None:
        await self._store.blob_pool.execute("DELETE FROM file_blobs WHERE file_id = $1", file_id)
