"""The schema's history: one list of numbered migrations, written once per SQL dialect.

Each dialect has a folder of plain-SQL files ``NNN_name.sql`` (``sqlite/``, ``postgresql/``)
with the same numbers and names, so both stores stand at the same schema version after the
same migration and a store can be moved from one engine to the other by version. Reading the
folder is here, in one place; applying a migration is each store's (SQLite splits statements
itself, PostgreSQL runs the file as one script under a lock).
"""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple

DIALECTS = ("sqlite", "postgresql")


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


def migrations(dialect: str) -> list[Migration]:
    """The migrations shipped for ``dialect``, in version order."""
    if dialect not in DIALECTS:
        raise ValueError(f"no migrations for dialect {dialect!r}; known: {DIALECTS}")
    folder = resources.files(__name__).joinpath(dialect)
    found = []
    for entry in folder.iterdir():
        stem, dot, ext = entry.name.rpartition(".")
        if dot and ext == "sql":
            number, _, name = stem.partition("_")
            found.append(Migration(int(number), name, entry.read_text("utf-8")))
    found.sort()
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two {dialect} migrations share a version: {versions}")
    return found
