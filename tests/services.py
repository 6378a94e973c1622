"""Real PostgreSQL for tests that need it: a fresh database per test, dropped afterwards.

When PostgreSQL cannot be reached the test fails under CI (``CI=true``: a green run must
have exercised it) and is skipped elsewhere, with the reason and how to start it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

POSTGRES_URL = os.environ.get("WEBCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
POSTGRES_START = ("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")


def unavailable(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: tests needing it fail rather than skip)")
    pytest.skip(reason)


def with_database(url: str, database: str) -> str:
    """``url`` naming another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """The DSN of a new, empty database ``webchat_t_<random>`` (parallel runs never meet)."""
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL not reachable at {POSTGRES_URL} ({exc}); start it with "
                    f"{POSTGRES_START}, or point WEBCHAT_TEST_POSTGRES at one")
    name = f"webchat_t_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(POSTGRES_URL, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
