"""The storage interface the server is written against.

Every chat mutation goes through :meth:`Store.save_chat`, which writes the chat row, the
participants that changed and the new transcript events in one transaction: a reply is sent
to a client only after its effect is durable, so a restart never loses what a client was told
had happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from webchat.protocol.gms.models import Message
from webchat.store.records import AgentRecord, ChatRecord, FileRecord, ParticipantRecord


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def save_chat(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                        events: Sequence[Message], files: Sequence[FileRecord] = ()) -> None: ...

    async def load_chat(self, chat_id: str) -> ChatRecord | None: ...

    async def load_open_chats(self) -> list[ChatRecord]: ...

    async def chat_id_for_key(self, secure_key: str) -> str | None: ...

    async def put_agent(self, agent: AgentRecord) -> None: ...

    async def get_agent(self, agent_id: str) -> AgentRecord | None: ...

    async def list_agents(self) -> list[AgentRecord]: ...

    async def add_token(self, token_hash: str, agent_id: str, created_ms: int) -> None: ...

    async def agent_for_token(self, token_hash: str) -> str | None: ...

    async def delete_token(self, token_hash: str) -> None: ...
