"""Storage behind one interface: :class:`Store`. SQLite is the embedded default."""

from webchat.store.base import Store
from webchat.store.records import AgentRecord, ChatRecord, ChatStatus, ParticipantRecord

__all__ = ["AgentRecord", "ChatRecord", "ChatStatus", "ParticipantRecord", "Store"]
