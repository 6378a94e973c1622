"""Storage behind one interface: :class:`Store`. SQLite is the embedded default, PostgreSQL
the store a cluster of processes shares; :func:`from_url` picks one from a URL."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from webchat.store.base import Store
from webchat.store.records import AgentRecord, ChatRecord, ChatStatus, ParticipantRecord
from webchat.store.sqlite import SqliteStore

__all__ = ["AgentRecord", "ChatRecord", "ChatStatus", "ParticipantRecord", "Store",
           "from_url"]

SQLITE_FILE = "webchat.sqlite3"


def from_url(url: str | None, data_dir: str | os.PathLike[str]) -> Store:
    """The store a URL names:

    * None, ``sqlite://`` or ``sqlite:`` — SQLite in ``<data_dir>/webchat.sqlite3``;
    * ``sqlite:///abs/path.db`` (an absolute path), ``sqlite:relative/path.db`` — that file;
    * ``postgresql://user@host:port/db?...`` or ``postgres://...`` — PostgreSQL (the URL is
      asyncpg's DSN as it stands: host, port, user, password, database, ``sslmode`` ...).

    The PostgreSQL driver is imported only when one is asked for."""
    if url is None:
        return SqliteStore(Path(data_dir) / SQLITE_FILE)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc:
            raise ValueError(f"a sqlite URL names a file, not a host: {url!r} "
                             "(write sqlite:///abs/path.db or sqlite:rel/path.db)")
        return SqliteStore(Path(parts.path) if parts.path else Path(data_dir) / SQLITE_FILE)
    if scheme in ("postgresql", "postgres"):
        from webchat.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unknown store {url!r}: expected sqlite:///path or postgresql://...")
