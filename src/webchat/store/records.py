"""What the server persists: chats with their participants and transcript, and agents.

The transcript is kept as wire :class:`~webchat.protocol.gms.models.Message` objects, so the
exact bytes a customer saw can be rebuilt after a restart.

Chats, their participants and files are structs the cyclic garbage collector never walks
(``gc=False``, as transcript events are): a commit replaces its chat's cached copy, which then
lives until the chat's next commit, seconds later, so at 10,000 chats every young collection
found some thousand of them, with their participant and file maps. They hold strings, numbers
and each other, never anything that refers back, so they cannot be part of a cycle.
Copies: :func:`copy` (``msgspec.structs.replace``).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from webchat.protocol.gms.models import Message

_R = TypeVar("_R", bound=msgspec.Struct)


def copy(record: _R, **changes: Any) -> _R:
    """A copy of ``record`` with ``changes`` (what ``dataclasses.replace`` did)."""
    return msgspec.structs.replace(record, **changes)


class ChatStatus(enum.StrEnum):
    QUEUED = "queued"
    ACTIVE = "active"
    ENDED = "ended"


class ParticipantRecord(msgspec.Struct, gc=False):
    participant_id: int
    type: str
    nickname: str
    agent_id: str | None = None
    connected: bool = True


def new_file_id() -> str:
    """A new file's id: random, never a name a client chose, so that it can name the file's
    bytes in any vault (a path on disk, a key in a table) without being checked for tricks."""
    return secrets.token_hex(16)


class FileRecord(msgspec.Struct, gc=False):
    """A file shared in a chat. The bytes live in the file vault under ``file_id``."""

    file_id: str
    chat_id: str
    name: str
    size: int
    content_type: str
    participant_id: int
    created_ms: int
    description: str = ""
    deleted: bool = False
    downloads: int = 0


class ChatRecord(msgspec.Struct, gc=False):
    chat_id: str
    service: str
    secure_key: str
    user_id: str
    alias: str
    status: ChatStatus
    created_ms: int
    queued_ms: int
    customer: dict[str, str]
    user_data: dict[str, str]
    ended_ms: int | None = None
    agent_id: str | None = None
    target_agent: str | None = None
    next_participant: int = 1
    revision: int = 0
    """How many changes were committed to the chat: a process whose copy is behind the
    store's learns so under the chat's lock (:meth:`Store.lock_chat`), or when a save that
    compares it writes nothing (:meth:`Store.save_if_current`), and reloads it."""
    offered_to: str | None = None
    """The agent a waiting chat is offered to, and since when (``offered_ms``): kept with the
    chat, so an offer holds for every process and outlives the one that made it."""
    offered_ms: int | None = None
    participants: dict[int, ParticipantRecord] = msgspec.field(default_factory=dict)
    events: list[Message] = msgspec.field(default_factory=list)
    files: dict[str, FileRecord] = msgspec.field(default_factory=dict)

    @property
    def next_index(self) -> int:
        return len(self.events) + 1

    @property
    def ended(self) -> bool:
        return self.status is ChatStatus.ENDED


@dataclass(slots=True)
class AgentRecord:
    agent_id: str
    nickname: str
    password_hash: str
    ready: bool = False
    capacity: int = 3
    supervisor: bool = False
