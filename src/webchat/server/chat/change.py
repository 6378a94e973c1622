"""The unit of work: one operation's change to one chat, made under the chat's lock, written to
the store in one transaction, and only then applied in memory and announced.

So a client that got a reply can rely on its effect surviving a crash, and everybody sees a
chat's events in index order. Every state change of a chat goes through :meth:`Changes.open`
(or :meth:`Changes.apply`, its one-round-trip form for a change that can be made again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.models import EventType, Message, Participant, ParticipantType
from webchat.server.chat.clock import Clock
from webchat.server.chat.registry import ChatRegistry
from webchat.server.config import Limits
from webchat.server.errors import AgentError, ChatError
from webchat.store.base import Store
from webchat.store.records import ChatRecord, FileRecord, ParticipantRecord, copy

log = logging.getLogger(__name__)

CUSTOMER_ID = 1
SYSTEM_ID = 2

#: Events written however full the transcript (with the server's own, see :meth:`Change.add`):
#: a full chat must still be answerable, transferable and closable. Each follows from a bounded
#: act (staff accepting or transferring, a silence, the end), never from what a client may
#: repeat at will.
_MEMBERSHIP = frozenset({EventType.PARTICIPANT_JOINED, EventType.PARTICIPANT_LEFT})

Committed = Callable[[ChatRecord, list[Message]], None]
"""Told of every commit, after memory was updated: the chat and the events it added."""
Saved = Callable[[float], None]
"""Told how long a commit's store write took, in seconds."""


class _Save(Protocol):
    """A store write of a change: :meth:`ChatLock.save` (None: written) or
    :meth:`Store.save_if_current` (whether written)."""

    def __call__(self, chat: ChatRecord, participants: Sequence[ParticipantRecord],
                 events: Sequence[Message], files: Sequence[FileRecord] = ()
                 ) -> Awaitable[bool | None]: ...


@dataclass(frozen=True)
class Room:
    """What a chat's transcript may still take (``Limits.max_chat_events``/``_bytes``)."""

    events: int
    bytes: int


@dataclass
class Change:
    """The events and participant updates one operation makes to one chat."""

    chat: ChatRecord
    now_ms: int
    events: list[Message] = field(default_factory=list)
    participants: dict[int, ParticipantRecord] = field(default_factory=dict)
    files: list[FileRecord] = field(default_factory=list)
    room: Room | None = None
    """None: unbounded (a new chat)."""
    marked: bool = False
    """The chat's own fields changed (an offer made or withdrawn) though no event was added."""

    @property
    def changed(self) -> bool:
        """Whether there is anything to write."""
        return bool(self.events or self.participants or self.files or self.marked)

    def mark(self) -> None:
        """Write the chat even if this change adds no event or participant."""
        self.marked = True

    def has_room(self) -> bool:
        """Whether a participant may still add to the transcript. Judged on the transcript
        before the event, so that operations that change state before they add their event can
        ask first (the last event may pass ``max_chat_bytes`` by its own size)."""
        return self.room is None or (len(self.events) < self.room.events
                                     and self.room.bytes > 0)

    def require_room(self) -> None:
        """Refuse what a participant would add to a full transcript (see :meth:`add`)."""
        if not self.has_room():
            raise ChatError(ErrorCode.TRANSCRIPT_FULL,
                            "this chat's transcript is full: no more can be added to it")

    def add(self, participant_id: int, type_: EventType, text: str | None = None, *,
            message_type: str | None = None, user_data: dict[str, str] | None = None,
            by_server: bool = False) -> Message:
        """Add an event. A participant's is refused when the transcript is full, unless it
        is membership (:data:`_MEMBERSHIP`); the server's own (``by_server``, or from the
        system participant) never are."""
        if not by_server and participant_id != SYSTEM_ID and type_ not in _MEMBERSHIP:
            self.require_room()
        p = self.chat.participants[participant_id]
        msg = Message(from_=Participant(p.nickname, p.participant_id, p.type),
                      index=self.chat.next_index + len(self.events), type=type_.value,
                      utcTime=self.now_ms, text=text, messageType=message_type or None,
                      userData=user_data or None)
        self.events.append(msg)
        return msg

    def touch(self, participant: ParticipantRecord) -> ParticipantRecord:
        """The copy of ``participant`` this change may edit (and will save): edit what this
        returns, never the record passed in, which the cached chat may still hold."""
        pid = participant.participant_id
        mine = self.participants.get(pid)
        if mine is None:
            mine = self.participants[pid] = self.chat.participants[pid] = copy(participant)
        return mine

    def join(self, type_: ParticipantType, nickname: str, agent_id: str | None = None
             ) -> ParticipantRecord:
        pid = self.chat.next_participant
        self.chat.next_participant += 1
        p = ParticipantRecord(pid, type_.value, nickname, agent_id, connected=True)
        self.chat.participants[pid] = self.participants[pid] = p
        return p


def _made(edit: Callable[[Change], None], change: Change) -> bool:
    """Whether ``edit`` was made on ``change``, or refused (a refusal on a copy that may be
    behind is no answer yet: see :meth:`Changes.apply`)."""
    try:
        edit(change)
    except (ChatError, AgentError):
        return False
    return True


def draft(chat: ChatRecord) -> ChatRecord:
    """The copy of ``chat`` a change works on, made current only once committed. Readers never
    wait for a chat's lock, and a change awaits its save: had it edited the cached copy, a
    reader in between would see what may never be committed, and half of it (an ended chat
    without the event that ended it: its events are appended after the save). What a change
    can edit is copied; the transcript is shared, since it only grows, after the save.
    Participants are copied when the change touches one (:meth:`Change.touch`), not here:
    copying every one on every message made the young objects the garbage collector walks
    (most commits are messages, which change no participant)."""
    return copy(chat, customer=dict(chat.customer), user_data=dict(chat.user_data),
                participants=dict(chat.participants),
                files={fid: copy(f) for fid, f in chat.files.items()})


class Changes:
    """Opens changes; see the module docstring."""

    def __init__(self, registry: ChatRegistry, store: Store, clock: Clock, limits: Limits
                 ) -> None:
        self._registry = registry
        self._store = store
        self._clock = clock
        self._limits = limits
        self.committed: list[Committed] = []
        """Told of every commit: this process's, and (see :meth:`replay`) other processes'."""
        self.published: list[Committed] = []
        """Told of this process's own commits only (after :attr:`committed`): replication."""
        self.saved: list[Saved] = []
        """Told how long each of this process's store writes took (metrics)."""

    @asynccontextmanager
    async def open(self, chat: ChatRecord) -> AsyncIterator[Change]:
        """A change of ``chat`` (its current cached copy), committed when the block ends
        without an error; nothing is written if the block changed nothing. The chat is held in
        this process (its lock) and, through the store, in every other one. The block edits
        ``change.chat``, a :func:`draft` that replaces the cached copy once committed."""
        async with self._registry.lock(chat.chat_id):
            # Another request may have replaced the cached copy while we waited.
            chat = self._registry.current(chat)
            async with self._store.lock_chat(chat.chat_id, chat.revision) as held:
                if held.fresh is not None:  # another process changed it: catch up first
                    chat = self.replay(chat, held.fresh)
                change = self._begin(chat)
                yield change
                if not change.changed:
                    return
                await self._write(change, held.save)
            self._commit(change)

    async def apply(self, chat: ChatRecord, edit: Callable[[Change], None]) -> ChatRecord:
        """The change ``edit`` makes to ``chat``, committed as by :meth:`open`, in one
        store round trip instead of a held lock's four (PostgreSQL: ``BEGIN``, the row lock,
        the save, ``COMMIT``): the change is made on the cached copy and saved only if that
        is still the stored one (:meth:`Store.save_if_current`). When another process saved
        the chat meanwhile, nothing was written, and ``edit`` is made again under the store's
        lock on the stored copy (:meth:`open`), so it must be synchronous and depend on
        nothing but the change: what a message, the commonest change, is. A refusal on the
        cached copy is judged again there too: the copy may be behind (an agent who joined at
        another process a moment ago is not in it yet), and only the stored chat may refuse.
        Returns the chat as committed."""
        async with self._registry.lock(chat.chat_id):
            chat = self._registry.current(chat)
            change = self._begin(chat)
            if _made(edit, change) and change.changed \
                    and await self._write(change, self._store.save_if_current):
                self._commit(change)
                return change.chat
        async with self.open(chat) as again:
            edit(again)
        return again.chat

    def _begin(self, chat: ChatRecord) -> Change:
        """A change of ``chat``, on a draft of it, bounded by what its transcript may take."""
        return Change(draft(chat), self._clock(), room=self._room(chat))

    async def _write(self, change: Change, save: _Save) -> bool:
        """Save the change's draft as the chat's next revision with ``save``; whether it was
        written (only :meth:`Store.save_if_current` may say no, and a store write that did
        not happen is not timed for :attr:`saved`). A failure forgets the chat here (it is
        read again from the store) and is the client's internal error."""
        chat = change.chat
        chat.revision += 1
        started = time.perf_counter()
        try:
            written = await save(chat, list(change.participants.values()), change.events,
                                 change.files) is not False
        except Exception as exc:
            self._registry.forget(chat.chat_id)
            log.exception("could not save chat %s", chat.chat_id)
            raise ChatError(ErrorCode.INTERNAL, "the chat could not be saved") from exc
        if written:
            for told in self.saved:
                told(time.perf_counter() - started)
        return written

    def _commit(self, change: Change) -> None:
        """The change is stored: make its draft the current copy and tell everyone."""
        chat = change.chat
        chat.events.extend(change.events)
        chat.files.update((f.file_id, f) for f in change.files)
        self.adopt(chat, change.events)
        for listener in self.published:
            listener(chat, change.events)

    def replay(self, old: ChatRecord | None, stored: ChatRecord) -> ChatRecord:
        """Adopt the stored copy of a chat another process changed (``old``: this process's
        copy, if any), telling the listeners of the events this process had not seen, as if
        it had committed them itself. Returns the copy now current."""
        if old is not None and stored.revision <= old.revision:
            return old
        missed = stored.events[len(old.events):] if old is not None else stored.events
        self.adopt(stored, list(missed))
        return stored

    def adopt(self, chat: ChatRecord, events: list[Message]) -> None:
        """Make ``chat`` (its transcript already ending with ``events``) the current copy and
        tell the listeners, as after a commit of this process's."""
        self._registry.tally(chat)
        self._registry.put(chat)
        for listener in self.committed:
            listener(chat, events)

    def _room(self, chat: ChatRecord) -> Room | None:
        if not chat.events:
            return None  # a new chat: its first events are the server's
        tally = self._registry.tally(chat)
        return Room(self._limits.max_chat_events - len(chat.events),
                    self._limits.max_chat_bytes - tally.bytes)
