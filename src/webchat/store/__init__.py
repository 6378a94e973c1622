"""Storage behind one interface: :class:`Store`. SQLite is the embedded default."""

from __future__ import annotations

import importlib
from pathlib import Path
from urllib.parse import unquote, urlsplit

from webchat.store.base import Store
from webchat.store.records import AgentRecord, ChatRecord, ChatStatus, ParticipantRecord

SQLITE_FILE = "webchat.sqlite3"


def from_url(url: str | None, data_dir: str) -> Store:
    """The store a URL names: None (or ``sqlite:``) is SQLite in ``<data_dir>/webchat.sqlite3``,
    ``sqlite:///path/file.sqlite3`` a SQLite file elsewhere, ``postgresql://...`` (or
    ``postgres://``) PostgreSQL. PostgreSQL's driver is imported only when one is asked for, so
    the embedded default needs nothing more."""
    if url is None or url in ("sqlite", "sqlite:", "sqlite://"):
        from webchat.store.sqlite import SqliteStore

        return SqliteStore(Path(data_dir) / SQLITE_FILE)
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from webchat.store.sqlite import SqliteStore

        path = unquote(urlsplit(url).path)
        if not path:
            raise ValueError(f"no file in the SQLite URL {url!r} (sqlite:///path/file)")
        return SqliteStore(path)
    if scheme in ("postgresql", "postgres"):
        # Imported by name: asyncpg loads only when a PostgreSQL store is asked for.
        store: Store = importlib.import_module("webchat.store.postgres").PostgresStore(url)
        return store
    raise ValueError(f"unknown store {url!r}: expected sqlite:///path or postgresql://...")


__all__ = ["AgentRecord", "ChatRecord", "ChatStatus", "ParticipantRecord", "Store", "from_url"]
