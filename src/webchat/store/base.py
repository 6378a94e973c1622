"""The storage interface the server is written against.

Every chat mutation goes through :meth:`Store.save_chat`, which writes the chat row, the
participants that changed and the new transcript events in one transaction: a reply is sent
to a client only after its effect is durable, so a restart never loses what a client was told
had happened.

Several processes may share one store (PostgreSQL): :meth:`Store.lock_chat` is how a change
is made safely among them. It holds the chat against every other writer until the change is
saved, and hands back the stored chat when the caller's copy is behind, so no process writes
on a stale copy and transcript indexes are never given twice. :meth:`Store.save_if_current` is
the one-step alternative: the revision is compared in the save itself, which writes nothing
when the copy is behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from webchat.protocol.gms.models import Message
from webchat.store.records import AgentRecord, ChatRecord, FileRecord, ParticipantRecord


class ChatLock(Protocol):
    """One chat held for one change (see :meth:`Store.lock_chat`)."""

    fresh: ChatRecord | None
    """The chat as stored, when the caller's ``revision`` was not the stored one; else None."""

    async def save(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                   events: Sequence[Message], files: Sequence[FileRecord] = ()) -> None:
        """:meth:`Store.save_chat`, inside the lock: durable when it returns."""
        ...


class Store(Protocol):
    dialect: str
    """``sqlite`` or ``postgresql``: which migrations apply, and whether processes share it."""
    schema_version: int
    """The last migration applied, once :meth:`open` has brought the schema up to date."""

    async def open(self) -> None: ...

    async def ping(self) -> None:
        """Raise unless the store answers a trivial query (``/readyz``)."""
        ...

    def lock_chat(self, chat_id: str, revision: int) -> AbstractAsyncContextManager[ChatLock]:
        """Hold the chat against writers in every process until the block ends. ``revision``
        is the caller's copy's; the lock's ``fresh`` is the stored chat if that differs. A
        chat not yet stored is not held (its id is new: nobody else can write it)."""
        ...

    async def close(self) -> None: ...

    async def save_chat(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                        events: Sequence[Message], files: Sequence[FileRecord] = ()) -> None: ...

    async def save_if_current(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                              events: Sequence[Message], files: Sequence[FileRecord] = ()
                              ) -> bool:
        """:meth:`save_chat`, only if the stored chat is still the copy the change was made
        on (stored revision ``chat.revision - 1``); False, with nothing written, if another
        writer saved it meanwhile or holds it now (:meth:`lock_chat` in another process).
        The one-step alternative to :meth:`lock_chat` for a change that can be made again on
        the stored copy when it loses."""
        ...

    async def load_chat(self, chat_id: str) -> ChatRecord | None: ...

    async def load_open_chats(self) -> list[ChatRecord]: ...

    async def chat_id_for_key(self, secure_key: str) -> str | None: ...

    async def put_agent(self, agent: AgentRecord) -> None: ...

    async def get_agent(self, agent_id: str) -> AgentRecord | None: ...

    async def list_agents(self) -> list[AgentRecord]: ...

    async def add_token(self, token_hash: str, agent_id: str, created_ms: int) -> None: ...

    async def agent_for_token(self, token_hash: str) -> str | None: ...

    async def delete_token(self, token_hash: str) -> None: ...
