"""Fixtures for tests that need the real PostgreSQL and Redis (imported by tests/conftest.py).

Where the services are: ``WEBCHAT_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``, an administrative connection that may create
databases) and ``WEBCHAT_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``).

Isolation, because other test runs share these servers at the same time:

- PostgreSQL: every test gets a database of its own, ``webchat_t_<pid>_<random>``, dropped
  afterwards (``WITH (FORCE)``). Measured here: creating one takes 30-60 ms and dropping it
  ~25 ms, less than truncating the tables of a shared database (80 ms for 20 tables), so a
  fresh database per test is also the cheap way. ``postgres_module_dsn`` shares one database
  across a module for tests that only read or that partition by ids themselves, and
  :meth:`PostgresServer.create_database` clones a template (a database migrated once) for
  suites that want the schema without migrating per test.
- Redis: every test gets a key and channel prefix of its own (``redis_prefix``); its keys are
  deleted afterwards. Pub/sub channels need no cleaning: they vanish with their subscribers.

When a service cannot be reached the test must not pass silently: with ``CI=true`` it FAILS
(CI starts the services, so an unreachable one is a broken run); elsewhere it SKIPS with the
reason and the command that starts the service, visible with ``pytest -rs``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import secrets
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.polling import eventually
from webchat.cli.serve import hidden_password

POSTGRES_ENV = "WEBCHAT_TEST_POSTGRES"
POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_ENV = "WEBCHAT_TEST_REDIS"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
REDIS_START = ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
               "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log")
CONNECT_TIMEOUT_S = 3.0
"""A refused connection answers at once; this bounds a host that does not answer at all."""
DATABASE_PREFIX = "webchat_t_"

T = TypeVar("T")


def in_ci() -> bool:
    """CI sets ``CI=true``: there, a service it should have started being absent is a failure."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


POSTGRES_URL = os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT)


def unavailable(service: str, url: str, error: BaseException, start: str, env: str) -> NoReturn:
    """Fail (under CI) or skip (elsewhere) the requesting test, saying why and what to do."""
    fail_or_skip(f"{service} not reachable at {url} ({type(error).__name__}: {error}); start "
                 f"it with: {start}  (or point {env} at one)", service)


def fail_or_skip(message: str, service: str = "it") -> NoReturn:
    """The rule for a missing service: a failure under CI, a visible skip elsewhere."""
    if in_ci():
        pytest.fail(f"{message} [CI=true: a test needing {service} fails, never skips]",
                    pytrace=False)
    pytest.skip(message)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a loop of its own in another thread: sync fixtures of any
    scope can talk asyncpg without touching the event loop that pytest-asyncio gives tests."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# ---- PostgreSQL -----------------------------------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` instead (same server, user and options)."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def database_of(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


@dataclass(frozen=True)
class PostgresServer:
    """A reachable PostgreSQL, through an administrative DSN, that makes test databases."""

    admin_dsn: str

    def create_database(self, *, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``, a database nobody is connected
        to) and its DSN. Its name carries this process's id so that :meth:`sweep` can tell a
        database left by a killed test run from one a running test run still uses."""
        name = f"{DATABASE_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        sql = f'CREATE DATABASE "{name}"'
        if template is not None:
            sql += f' TEMPLATE "{template}"'
        run_async(self._execute(sql))
        return with_database(self.admin_dsn, name)

    @contextmanager
    def database(self, *, template: str | None = None) -> Iterator[str]:
        """:meth:`create_database` for the block, dropped after it."""
        dsn = self.create_database(template=template)
        try:
            yield dsn
        finally:
            self.drop_database(dsn)

    def drop_database(self, dsn: str) -> None:
        """Drop the database of ``dsn``, disconnecting whoever is still connected."""
        run_async(self._execute(f'DROP DATABASE IF EXISTS "{database_of(dsn)}" WITH (FORCE)'))

    def sweep(self) -> list[str]:
        """Drop the test databases whose creating process is gone (a run killed before its
        teardown), on a PostgreSQL of this machine only: a process id means nothing on
        another host. Returns the names dropped."""
        if urlsplit(self.admin_dsn).hostname not in ("127.0.0.1", "localhost", "::1", None):
            return []
        dropped = []
        for name in run_async(self._fetch_names()):
            match = re.fullmatch(rf"{DATABASE_PREFIX}(\d+)_[0-9a-f]+", name)
            if match and not _alive(int(match.group(1))):
                self.drop_database(with_database(self.admin_dsn, name))
                dropped.append(name)
        return dropped

    async def _execute(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn, timeout=CONNECT_TIMEOUT_S)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def _fetch_names(self) -> list[str]:
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn, timeout=CONNECT_TIMEOUT_S)
        try:
            rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1",
                                    DATABASE_PREFIX + "%")
        finally:
            await conn.close()
        return [str(row["datname"]) for row in rows]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """The PostgreSQL of ``WEBCHAT_TEST_POSTGRES``, checked once per session (pytest keeps a
    session fixture's skip or failure too, so later tests report it at once, without waiting
    for the server again). Also drops databases that killed runs left behind."""
    server = PostgresServer(os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT))
    try:
        server.sweep()
    except Exception as exc:  # OSError, asyncpg errors, timeouts: all mean "not there"
        unavailable("PostgreSQL", hidden_password(server.admin_dsn), exc, POSTGRES_START,
                    POSTGRES_ENV)
    return server


@pytest.fixture
def postgres_dsn(postgres: PostgresServer) -> Iterator[str]:
    """The DSN of a fresh, empty database for this test alone, dropped afterwards."""
    with postgres.database() as dsn:
        yield dsn


@pytest.fixture(scope="module")
def postgres_module_dsn(postgres: PostgresServer) -> Iterator[str]:
    """One fresh database shared by the tests of a module, dropped after the last one."""
    with postgres.database() as dsn:
        yield dsn


async def wait_for_lock_waiter(conn: Any, timeout_s: float = 10.0) -> None:
    """Return once a backend of ``conn``'s database waits for a lock: a test that holds a
    lock learns that the server's statement reached it (and is held up there)."""
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
           "AND wait_event_type = 'Lock'")
    await eventually(lambda: conn.fetchval(sql), "a statement waiting for a lock", timeout_s)


# ---- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """The Redis of ``WEBCHAT_TEST_REDIS``, checked once per session."""
    import redis

    url = os.environ.get(REDIS_ENV, REDIS_DEFAULT)
    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                  socket_timeout=CONNECT_TIMEOUT_S)
    try:
        client.ping()
    except Exception as exc:  # ConnectionError, TimeoutError, AuthenticationError...
        unavailable("Redis", hidden_password(url), exc, REDIS_START, REDIS_ENV)
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_server_url: str) -> Iterator[str]:
    """A key and channel prefix for this test alone (``webchat-t-<random>:``); the keys under
    it are deleted afterwards. Give it to whatever names keys or channels (``RedisBroker(url,
    prefix=redis_prefix)``) so that parallel runs never see each other."""
    prefix = f"webchat-t-{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        delete_keys(redis_server_url, prefix)


@pytest.fixture
def redis_url(redis_server_url: str, redis_prefix: str) -> str:
    """The Redis URL for this test; use it with :func:`redis_prefix` (requesting this fixture
    already sets that prefix up, and its cleanup)."""
    return redis_server_url


def delete_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix``; returns how many there were."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        keys = list(client.scan_iter(match=_glob_escape(prefix) + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start:start + 1000])
        return len(keys)
    finally:
        client.close()


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


__all__ = [
    "PostgresServer",
    "delete_keys",
    "hidden_password",
    "in_ci",
    "postgres",
    "postgres_dsn",
    "postgres_module_dsn",
    "redis_prefix",
    "redis_server_url",
    "redis_url",
    "run_async",
    "wait_for_lock_waiter",
    "with_database",
]
