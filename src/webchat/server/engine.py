"""The chat domain: every state change of a chat happens here, and only here.

Both APIs (customer REST, agent REST/WebSocket) are thin adapters over :class:`ChatEngine`.
A change to a chat is made under that chat's lock, written to the store in one transaction, and
only then applied to the in-memory copy and announced on the broker. So a client that got a
reply can rely on its effect surviving a crash, and everybody sees a chat's events in index order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from webchat import locale
from webchat.broker.base import Broker
from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.models import EventType, Message, Participant, ParticipantType
from webchat.server import inactivity
from webchat.server.config import ServerConfig
from webchat.server.errors import AgentError, ChatError
from webchat.server.files import FileLimits, FileVault, check_upload, clean_name, limits_data
from webchat.server.routing import Offer, Router
from webchat.store.base import Store
from webchat.store.records import (
    AgentRecord,
    ChatRecord,
    ChatStatus,
    FileRecord,
    ParticipantRecord,
)

log = logging.getLogger(__name__)

CUSTOMER_ID = 1
SYSTEM_ID = 2


Clock = Callable[[], int]

#: Events written however full the transcript (with the server's own, see :meth:`Change.add`):
#: a full chat must still be answerable, transferable and closable. Each follows from a bounded
#: act (staff accepting or transferring, a silence, the end), never from what a client may
#: repeat at will.
_MEMBERSHIP = frozenset({EventType.PARTICIPANT_JOINED, EventType.PARTICIPANT_LEFT})


@dataclass(frozen=True)
class Room:
    """What a chat's transcript may still take (``Limits.max_chat_events``/``_bytes``)."""

    events: int
    bytes: int


def event_bytes(msg: Message) -> int:
    """An event's share of ``max_chat_bytes``: its JSON as every client receives it."""
    return len(msgspec.json.encode(msg))


@dataclass(frozen=True)
class Tally:
    """What the engine keeps of a transcript so that neither the sweep nor the size limit reads
    it again: folded from the events as they are committed."""

    seen: int = 0
    """How many of the chat's events are folded in."""
    quiet: inactivity.Quiet = field(default_factory=inactivity.Quiet)
    bytes: int = 0

    def fold(self, events: list[Message]) -> Tally:
        """This tally with ``events[self.seen:]`` folded in."""
        new = events[self.seen:]
        if not new:
            return self
        return Tally(len(events), inactivity.fold(self.quiet, new),
                     self.bytes + sum(event_bytes(m) for m in new))


def wall_clock() -> int:
    return time.time_ns() // 1_000_000


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
        self.participants[participant.participant_id] = participant
        return participant

    def join(self, type_: ParticipantType, nickname: str, agent_id: str | None = None
             ) -> ParticipantRecord:
        pid = self.chat.next_participant
        self.chat.next_participant += 1
        p = ParticipantRecord(pid, type_.value, nickname, agent_id, connected=True)
        self.chat.participants[pid] = p
        self.touch(p)
        return p


@dataclass(frozen=True)
class CustomerForm:
    nickname: str
    first_name: str
    last_name: str
    email: str
    subject: str
    user_data: dict[str, str]


class ChatEngine:
    def __init__(self, store: Store, broker: Broker, config: ServerConfig,
                 clock: Clock = wall_clock, vault: FileVault | None = None) -> None:
        self.store = store
        self.vault = vault or FileVault(Path(config.data_dir) / "files")
        self.broker = broker
        self.config = config
        self.clock = clock
        self.router = Router()
        self.chats: dict[str, ChatRecord] = {}
        self.agents: dict[str, AgentRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._evictions: dict[str, asyncio.TimerHandle] = {}
        self._by_key: dict[str, str] = {}
        self._reminded: dict[str, int] = {}
        """chat id -> when its agent was last reminded of an unanswered customer."""
        self._typing: set[str] = set()
        """Chats whose customer may be typing: the ones the typing timeout looks at."""
        self._tallies: dict[str, Tally] = {}
        """chat id -> its transcript folded (see :class:`Tally`), kept up to date on commit."""
        self._sweeper: asyncio.Task[None] | None = None
        self.monitors: dict[str, set[str]] = {}
        """chat id -> supervisors watching it silently (a live view, not persisted)."""

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        for chat in await self.store.load_open_chats():
            self.chats[chat.chat_id] = chat
            self._by_key[chat.secure_key] = chat.chat_id
            if inactivity.customer_typing(chat) is not None:
                self._typing.add(chat.chat_id)
        for agent in await self.store.list_agents():
            self.agents[agent.agent_id] = agent
            self.router.set_ready(agent.agent_id, agent.ready, agent.capacity)
        self.router.rebuild(list(self.chats.values()))
        self._route()
        self._sweeper = asyncio.create_task(self._sweep_inactivity())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for handle in [*self._timers.values(), *self._evictions.values()]:
            handle.cancel()
        self._timers.clear()
        self._evictions.clear()

    # ---- system messages -------------------------------------------------------------------

    def language(self, chat: ChatRecord) -> str:
        """The chat's language: what the customer asked for in userData, else the default."""
        requested = chat.user_data.get(self.config.language_user_data_key)
        return locale.negotiate(requested or self.config.default_language)

    def notice(self, chat: ChatRecord, key: str, **params: object) -> str:
        return locale.text(self.language(chat), f"server.{key}", **params)

    # ---- lookup and auth -------------------------------------------------------------------

    async def get_chat(self, chat_id: str) -> ChatRecord | None:
        chat = self.chats.get(chat_id)
        if chat is None and 0 < len(chat_id) <= 64:
            chat = await self.store.load_chat(chat_id)
            if chat is not None:
                self.chats[chat_id] = chat
                self._by_key[chat.secure_key] = chat_id
                if chat.ended:
                    self._schedule_eviction(chat_id)
        return chat

    async def chat_by_key(self, service: str, secure_key: str, user_id: str | None = None,
                          alias: str | None = None) -> ChatRecord:
        """CometD operations carry the secureKey but no chatId (protocols.md §2.3)."""
        chat_id = None
        if 0 < len(secure_key) <= 256:
            chat_id = self._by_key.get(secure_key) or await self.store.chat_id_for_key(secure_key)
        chat = await self.get_chat(chat_id) if chat_id else None
        return await self.customer_chat(
            service, chat_id or "", user_id if user_id is not None else
            (chat.user_id if chat else ""), secure_key,
            alias if alias is not None else (chat.alias if chat else ""))

    async def chat_for_key(self, secure_key: str, user_id: str | None = None,
                           alias: str | None = None) -> ChatRecord:
        """Like :meth:`chat_by_key` for callers that do not name the service (the CometD
        file side door, protocols.md §2.5)."""
        chat_id = None
        if 0 < len(secure_key) <= 256:
            chat_id = self._by_key.get(secure_key) or await self.store.chat_id_for_key(secure_key)
        chat = await self.get_chat(chat_id) if chat_id else None
        return await self.chat_by_key(chat.service if chat else "", secure_key, user_id, alias)

    async def customer_chat(self, service: str, chat_id: str, user_id: str, secure_key: str,
                            alias: str) -> ChatRecord:
        """The chat these credentials open, or CHAT_NOT_FOUND whatever was wrong, so that a
        caller cannot tell an unknown chat from a wrong key."""
        chat = await self.get_chat(chat_id)
        expected_key = chat.secure_key if chat is not None else "x" * 43
        key_ok = hmac.compare_digest(expected_key.encode(), secure_key.encode())
        if (chat is None or not key_ok or chat.service != service
                or not hmac.compare_digest(chat.user_id.encode(), user_id.encode())
                or chat.alias != alias):
            raise ChatError(ErrorCode.CHAT_NOT_FOUND,
                            "no chat matches this chatId, userId, alias and secureKey")
        return chat

    def _lock(self, chat_id: str) -> asyncio.Lock:
        lock = self._locks.get(chat_id)
        if lock is None:
            lock = self._locks[chat_id] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def _change(self, chat: ChatRecord) -> AsyncIterator[Change]:
        """Make a change under the chat's lock and commit it; see the module docstring."""
        async with self._lock(chat.chat_id):
            # Another request may have replaced the cached copy while we waited.
            chat = self.chats.get(chat.chat_id, chat)
            change = Change(chat, self.clock(), room=self._room(chat))
            yield change
            if not change.events and not change.participants and not change.files:
                return
            try:
                await self.store.save_chat(chat, list(change.participants.values()),
                                           change.events, change.files)
            except Exception as exc:
                # Memory may now be ahead of disk: forget it, disk is the truth.
                self.chats.pop(chat.chat_id, None)
                self._tallies.pop(chat.chat_id, None)
                log.exception("could not save chat %s", chat.chat_id)
                raise ChatError(ErrorCode.INTERNAL, "the chat could not be saved") from exc
            chat.events.extend(change.events)
            self._tally(chat)
            chat.files.update((f.file_id, f) for f in change.files)
            if any(m.type == EventType.TYPING_STARTED and m.from_.participantId == CUSTOMER_ID
                   for m in change.events):
                self._typing.add(chat.chat_id)
            self.chats[chat.chat_id] = chat
            self._announce(chat, change.events)

    def _tally(self, chat: ChatRecord) -> Tally:
        """The chat's tally, folding in only the events committed since it was last asked."""
        tally = self._tallies.get(chat.chat_id)
        if tally is None or tally.seen > len(chat.events):
            tally = Tally()
        tally = self._tallies[chat.chat_id] = tally.fold(chat.events)
        return tally

    def _room(self, chat: ChatRecord) -> Room | None:
        if not chat.events:
            return None  # a new chat: its first events are the server's
        limits, tally = self.config.limits, self._tally(chat)
        return Room(limits.max_chat_events - len(chat.events),
                    limits.max_chat_bytes - tally.bytes)

    # ---- customer operations ---------------------------------------------------------------

    def _check_user_data_total(self, user_data: dict[str, str]) -> None:
        """``Limits.max_user_data_total_chars``, checked here because every change of a chat's
        userData (start, updates) comes through this engine."""
        limit = self.config.limits.max_user_data_total_chars
        if sum(len(k) + len(v) for k, v in user_data.items()) > limit:
            raise ChatError(ErrorCode.TOO_LARGE,
                            f"userData of a chat is limited to {limit} characters in all")

    async def request_chat(self, service: str, form: CustomerForm) -> ChatRecord:
        if self.router.waiting_count(service) >= self.config.limits.max_queue_per_service:
            raise ChatError(ErrorCode.CHAT_UNAVAILABLE, "the queue for this service is full")
        self._check_user_data_total(form.user_data)
        now = self.clock()
        customer = {"nickname": form.nickname, "firstName": form.first_name,
                    "lastName": form.last_name, "emailAddress": form.email,
                    "subject": form.subject}
        chat = ChatRecord(
            chat_id=secrets.token_hex(8).upper(), service=service,
            secure_key=secrets.token_urlsafe(32), user_id=secrets.token_hex(8).upper(),
            alias=self.config.alias, status=ChatStatus.QUEUED, created_ms=now, queued_ms=now,
            customer={k: v for k, v in customer.items() if v}, user_data=dict(form.user_data))
        async with self._change(chat) as change:
            change.join(ParticipantType.CLIENT, form.nickname)
            change.join(ParticipantType.EXTERNAL, self.config.system_nickname)
            change.add(CUSTOMER_ID, EventType.PARTICIPANT_JOINED)
            position = self.router.waiting_count(service) + 1
            change.add(SYSTEM_ID, EventType.NOTICE,
                       self.notice(chat, "queued", position=position))
        self._by_key[chat.secure_key] = chat.chat_id
        self.router.enqueue(chat)
        self._route()
        return chat

    @staticmethod
    def check_position(chat: ChatRecord, position: int | None) -> None:
        """A client cannot have seen past the end: such a position is a bug or a replay."""
        if position is not None and position > chat.next_index:
            raise ChatError(ErrorCode.INVALID_POSITION,
                            f"transcriptPosition {position} is beyond the transcript "
                            f"(next position is {chat.next_index})")

    def transcript(self, chat: ChatRecord, position: int | None) -> list[Message]:
        """Events with ``index >= position``; ``None`` or 0 means all of them."""
        self.check_position(chat, position)
        if position is None or position <= 0:
            return list(chat.events)
        return chat.events[position - 1:]

    def _require_open(self, chat: ChatRecord) -> None:
        if chat.ended:
            raise ChatError(ErrorCode.CHAT_ENDED, "the chat has ended")

    async def customer_event(self, chat: ChatRecord, type_: EventType, text: str | None = None,
                             message_type: str | None = None) -> None:
        """Message, typing, custom notice or pushed URL from the customer."""
        self._require_open(chat)
        async with self._change(chat) as change:
            self._require_open(change.chat)
            change.add(CUSTOMER_ID, type_, text, message_type=message_type)

    async def customer_preview(self, chat: ChatRecord, preview: str) -> None:
        """What the customer is typing, sent with a refresh: passed on only while they are
        typing and when it changed (see :mod:`inactivity`)."""
        if chat.ended or not inactivity.preview_is_new(chat, preview):
            return
        async with self._change(chat) as change:
            # A full transcript takes no preview; the refresh that carried it still reads.
            if (not change.chat.ended and change.has_room()
                    and inactivity.preview_is_new(change.chat, preview)):
                change.add(CUSTOMER_ID, EventType.TYPING_STARTED, preview)

    async def customer_update_data(self, chat: ChatRecord, data: dict[str, str]) -> None:
        self._require_open(chat)
        async with self._change(chat) as change:
            self._require_open(change.chat)
            merged = {**change.chat.user_data, **data}
            if len(merged) > self.config.limits.max_user_data_keys:
                raise ChatError(ErrorCode.TOO_LARGE, "too many userData keys for this chat")
            self._check_user_data_total(merged)
            change.chat.user_data = merged
            change.touch(change.chat.participants[CUSTOMER_ID])
        for agent_id in self._connected_agents(chat):
            self._notify_agent(agent_id, {"type": "userData", "chatId": chat.chat_id,
                                          "userData": chat.user_data})

    async def customer_nickname(self, chat: ChatRecord, nickname: str) -> None:
        self._require_open(chat)
        async with self._change(chat) as change:
            self._require_open(change.chat)
            change.require_room()  # before the nickname changes in memory
            change.touch(change.chat.participants[CUSTOMER_ID]).nickname = nickname
            change.chat.customer["nickname"] = nickname
            change.add(CUSTOMER_ID, EventType.NICKNAME_UPDATED)

    async def customer_disconnect(self, chat: ChatRecord) -> None:
        self._require_open(chat)
        async with self._change(chat) as change:
            self._require_open(change.chat)
            customer = change.touch(change.chat.participants[CUSTOMER_ID])
            change.add(CUSTOMER_ID, EventType.PARTICIPANT_LEFT)
            customer.connected = False
            self._end(change)

    def _end(self, change: Change) -> None:
        chat = change.chat
        for p in chat.participants.values():
            if p.connected and p.type in (ParticipantType.AGENT, ParticipantType.SUPERVISOR):
                change.touch(p)
                change.add(p.participant_id, EventType.PARTICIPANT_LEFT)
                p.connected = False
        old_agent = chat.agent_id
        chat.status = ChatStatus.ENDED
        chat.ended_ms = change.now_ms
        chat.agent_id = None
        voided = self.router.dequeue(chat.chat_id)
        self.router.release(chat.chat_id, old_agent)
        if voided is not None:
            self._revoke(voided)
        self._schedule_eviction(chat.chat_id)
        asyncio.get_running_loop().call_soon(self._route)

    # ---- files (customers and agents) ------------------------------------------------------

    @property
    def file_limits(self) -> FileLimits:
        return self.config.files

    def file_limits_notice(self, chat: ChatRecord) -> Message:
        """The ``file-client-cfg-get`` notice a limits request is answered with. It is a reply,
        not a transcript event, so it has no index and changes no position."""
        system = chat.participants[SYSTEM_ID]
        return Message(from_=Participant(system.nickname, SYSTEM_ID, system.type), index=0,
                       type=EventType.NOTICE.value, utcTime=self.clock(),
                       text="file-client-cfg-get", userData=limits_data(chat, self.file_limits))

    async def upload_file(self, chat: ChatRecord, participant_id: int, name: str,
                          declared_type: str, data: bytes, description: str = "") -> FileRecord:
        self._require_open(chat)
        name = clean_name(name)
        async with self._change(chat) as change:
            self._require_open(change.chat)
            agent_present = any(p.type == ParticipantType.AGENT and p.connected
                                for p in change.chat.participants.values())
            content_type = check_upload(change.chat, self.file_limits, name, declared_type,
                                        data, agent_present=agent_present)
            change.require_room()  # before the file is written
            record = FileRecord(self.vault.new_id(), chat.chat_id, name, len(data),
                                content_type, participant_id, change.now_ms, description)
            await asyncio.to_thread(self.vault.write, record.file_id, data)
            change.files.append(record)
            meta = {"file-id": record.file_id, "file-name": name, "file-size": str(len(data)),
                    "file-type": content_type}
            if description:
                meta["file-description"] = description
            change.add(participant_id, EventType.FILE_UPLOADED, record.file_id, user_data=meta)
        return record

    def _file(self, chat: ChatRecord, file_id: str) -> FileRecord:
        record = chat.files.get(file_id)
        if record is None or record.deleted:
            raise ChatError(ErrorCode.FILE_NOT_FOUND, "no such file in this chat")
        return record

    async def download_file(self, chat: ChatRecord, file_id: str, *, counted: bool
                            ) -> tuple[FileRecord, bytes]:
        """The file's bytes. Customer downloads count against ``download-attempts``."""
        record = self._file(chat, file_id)
        if counted:
            async with self._change(chat) as change:
                used = sum(f.downloads for f in change.chat.files.values())
                if used >= self.file_limits.download_attempts:
                    raise ChatError(ErrorCode.DOWNLOAD_LIMIT,
                                    "no download attempts left for this chat")
                record = self._file(change.chat, file_id)
                record.downloads += 1
                change.files.append(record)
        return record, await asyncio.to_thread(self.vault.read, record.file_id)

    async def delete_file(self, chat: ChatRecord, file_id: str, participant_id: int) -> None:
        """Only whoever uploaded a file may delete it."""
        self._require_open(chat)
        async with self._change(chat) as change:
            record = self._file(change.chat, file_id)
            if record.participant_id != participant_id:
                raise ChatError(ErrorCode.FILE_NOT_FOUND, "no such file of yours in this chat")
            record.deleted = True
            change.files.append(record)
            change.add(participant_id, EventType.FILE_DELETED, file_id)
        await asyncio.to_thread(self.vault.delete, file_id)

    async def agent_upload(self, agent_id: str, chat_id: str, name: str, declared_type: str,
                           data: bytes, description: str = "") -> FileRecord:
        chat = await self.agent_chat(agent_id, chat_id)
        p = self._agent_participant(agent_id, chat)
        return await self.upload_file(chat, p.participant_id, name, declared_type, data,
                                      description)

    # ---- agent operations ------------------------------------------------------------------

    async def agent_chat(self, agent_id: str, chat_id: str, *, claim: bool = False
                         ) -> ChatRecord:
        """The chat, if this agent may have it (:meth:`agent_may_see`). ``claim``: any waiting
        chat too, for :meth:`accept`, which checks offers and reservations itself."""
        chat = await self.get_chat(chat_id)
        if chat is None or not (self.agent_may_see(agent_id, chat)
                                or (claim and chat.status is ChatStatus.QUEUED)):
            raise AgentError(404, "chat_not_found", "no such chat for this agent")
        return chat

    def agent_may_see(self, agent_id: str, chat: ChatRecord) -> bool:
        """Who may read a chat and download its files. A supervisor, by role; otherwise the
        chat's state decides: while it waits, the agent it is offered or reserved to; while
        it is active, the agents connected to it; once it ended, those who took part (their
        own history). Not a bystander, and not an agent who handed it over while it goes on
        without them (the queue lists waiting chats, their transcripts stay private)."""
        if self.is_supervisor(agent_id):
            return True
        if chat.status is ChatStatus.QUEUED:
            offer = self.router.offers.get(chat.chat_id)
            return chat.target_agent == agent_id or (offer is not None
                                                     and offer.agent_id == agent_id)
        if chat.status is ChatStatus.ACTIVE:
            return chat.agent_id == agent_id or any(
                p.agent_id == agent_id and p.connected for p in chat.participants.values())
        return any(p.agent_id == agent_id for p in chat.participants.values())

    def is_supervisor(self, agent_id: str) -> bool:
        agent = self.agents.get(agent_id)
        return agent is not None and agent.supervisor

    # ---- supervisors ----------------------------------------------------------------------

    def _require_supervisor(self, agent_id: str) -> None:
        if not self.is_supervisor(agent_id):
            raise AgentError(403, "not_supervisor", "only supervisors may do this")

    async def monitor(self, agent_id: str, chat_id: str) -> ChatRecord:
        """Watch a chat without joining it: its events reach the supervisor's stream, the
        customer sees nothing."""
        self._require_supervisor(agent_id)
        chat = await self.agent_chat(agent_id, chat_id)
        if chat.ended:
            raise AgentError(409, "chat_ended", "the chat has ended")
        self.monitors.setdefault(chat_id, set()).add(agent_id)
        return chat

    def unmonitor(self, agent_id: str, chat_id: str) -> None:
        watchers = self.monitors.get(chat_id)
        if watchers is not None:
            watchers.discard(agent_id)
            if not watchers:
                del self.monitors[chat_id]

    async def barge_in(self, agent_id: str, chat_id: str) -> ChatRecord:
        """Join a chat openly as a Supervisor participant (the customer is told)."""
        self._require_supervisor(agent_id)
        chat = await self.agent_chat(agent_id, chat_id)
        self._require_open(chat)
        async with self._change(chat) as change:
            self._require_open(change.chat)
            if any(p.agent_id == agent_id and p.connected
                   for p in change.chat.participants.values()):
                raise AgentError(409, "already_in_chat", "already a participant of this chat")
            nickname = self.agents[agent_id].nickname
            p = change.join(ParticipantType.SUPERVISOR, nickname, agent_id)
            change.add(p.participant_id, EventType.PARTICIPANT_JOINED)
        self.unmonitor(agent_id, chat_id)
        return self.chats.get(chat_id, chat)

    async def leave(self, agent_id: str, chat_id: str) -> None:
        """A supervisor who barged in leaves; the chat goes on with its agent."""
        chat = await self.agent_chat(agent_id, chat_id)
        async with self._change(chat) as change:
            p = self._agent_participant(agent_id, change.chat)
            if p.type != ParticipantType.SUPERVISOR:
                raise AgentError(409, "not_supervisor", "agents end or transfer chats instead")
            change.touch(p)
            change.add(p.participant_id, EventType.PARTICIPANT_LEFT)
            p.connected = False

    def _agent_participant(self, agent_id: str, chat: ChatRecord) -> ParticipantRecord:
        for p in chat.participants.values():
            if p.agent_id == agent_id and p.connected:
                return p
        if chat.ended:
            raise AgentError(409, "chat_ended", "the chat has ended")
        raise AgentError(409, "not_in_chat", "the agent is not connected to this chat")

    async def accept(self, agent_id: str, chat_id: str) -> ChatRecord:
        chat = await self.agent_chat(agent_id, chat_id, claim=True)
        async with self._change(chat) as change:
            chat = change.chat
            if chat.status is not ChatStatus.QUEUED:
                raise AgentError(409, "not_waiting", "the chat is not waiting for an agent")
            offer = self.router.offers.get(chat_id)
            if offer is not None and offer.agent_id != agent_id:
                raise AgentError(409, "offered_elsewhere", "the chat is offered to another agent")
            if chat.target_agent not in (None, agent_id):
                raise AgentError(409, "offered_elsewhere", "the chat is reserved for another agent")
            agent = self.agents[agent_id]
            chat.status = ChatStatus.ACTIVE
            chat.agent_id = agent_id
            chat.target_agent = None
            change.join(ParticipantType.AGENT, agent.nickname, agent_id)
            change.add(chat.next_participant - 1, EventType.PARTICIPANT_JOINED)
            self.router.dequeue(chat_id)
            self._cancel_timer(chat_id)
            self.router.assign(chat_id, agent_id, change.now_ms)
        return chat

    async def decline(self, agent_id: str, chat_id: str) -> None:
        offer = self.router.lapse(chat_id, agent_id)
        if offer is None:
            raise AgentError(409, "no_offer", "this chat is not offered to this agent")
        self._cancel_timer(chat_id)
        self._revoke(offer)
        self._route()

    async def agent_event(self, agent_id: str, chat_id: str, type_: EventType,
                          text: str | None = None, message_type: str | None = None) -> None:
        chat = await self.agent_chat(agent_id, chat_id)
        async with self._change(chat) as change:
            p = self._agent_participant(agent_id, change.chat)
            change.add(p.participant_id, type_, text, message_type=message_type)

    async def agent_end(self, agent_id: str, chat_id: str) -> None:
        chat = await self.agent_chat(agent_id, chat_id)
        async with self._change(chat) as change:
            self._agent_participant(agent_id, change.chat)
            self._end(change)

    async def transfer(self, agent_id: str, chat_id: str, to_agent: str | None) -> None:
        """Hand the chat to another agent (reserved for them) or back to the queue."""
        if to_agent is not None and to_agent not in self.agents:
            raise AgentError(404, "agent_not_found", f"no agent {to_agent!r}")
        if to_agent == agent_id:
            raise AgentError(400, "bad_request", "cannot transfer a chat to oneself")
        chat = await self.agent_chat(agent_id, chat_id)
        async with self._change(chat) as change:
            p = self._agent_participant(agent_id, change.chat)
            if to_agent is None:
                notice = self.notice(change.chat, "transfer_queue")
            else:
                notice = self.notice(change.chat, "transfer_agent",
                                     agent=self.agents[to_agent].nickname)
            self._requeue(change, p, to_agent, notice)
        self._route()

    def _requeue(self, change: Change, p: ParticipantRecord, to_agent: str | None,
                 notice: str) -> None:
        """The agent leaves and the chat waits in the queue again (for ``to_agent`` if set)."""
        chat = change.chat
        change.touch(p)
        change.add(SYSTEM_ID, EventType.NOTICE, notice)
        change.add(p.participant_id, EventType.PARTICIPANT_LEFT)
        p.connected = False
        old_agent = chat.agent_id
        chat.status = ChatStatus.QUEUED
        chat.agent_id = None
        chat.target_agent = to_agent
        chat.queued_ms = change.now_ms
        if old_agent is not None:
            self.router.release(chat.chat_id, old_agent)
        self.router.enqueue(chat)

    # ---- inactivity ------------------------------------------------------------------------

    def is_async(self, chat: ChatRecord) -> bool:
        return chat.user_data.get(self.config.async_user_data_key, "").lower() == "true"

    async def _sweep_inactivity(self) -> None:
        while True:
            await asyncio.sleep(self.config.inactivity.sweep_s)
            try:
                await self.check_inactivity()
            except Exception:
                log.exception("inactivity sweep failed")

    async def check_inactivity(self) -> None:
        """Alert, close or requeue chats that went quiet (see :mod:`inactivity`)."""
        await self.expire_typing()
        config = self.config.inactivity
        for chat in [c for c in self.chats.values() if not c.ended]:
            action = inactivity.due(chat, self._tally(chat).quiet, self.clock(), config,
                                    asynchronous=self.is_async(chat),
                                    agent_reminded_since=self._reminded.get(chat.chat_id))
            if action is None:
                continue
            if action is inactivity.Action.AGENT_ALERT:
                self._reminded[chat.chat_id] = self.clock()
                if chat.agent_id is not None:
                    self._notify_agent(chat.agent_id, {
                        "type": "idle", "chatId": chat.chat_id,
                        "waitingSinceMs": self._tally(chat).quiet.unanswered_since})
                continue
            async with self._change(chat) as change:
                # Re-decide under the lock: the customer may have written meanwhile.
                now_due = inactivity.due(change.chat, self._tally(change.chat).quiet,
                                         change.now_ms, config,
                                         asynchronous=self.is_async(change.chat),
                                         agent_reminded_since=self._reminded.get(chat.chat_id))
                if now_due is not action:
                    continue
                self._apply_idle(change, action)
            self._route()

    async def expire_typing(self) -> None:
        """End the typing of customers who sent nothing for ``typing_timeout_s``."""
        timeout = self.config.typing_timeout_s
        for chat_id in list(self._typing):
            chat = self.chats.get(chat_id)
            if chat is None or chat.ended or inactivity.customer_typing(chat) is None:
                self._typing.discard(chat_id)
                continue
            if not inactivity.typing_expired(chat, self.clock(), timeout):
                continue
            self._typing.discard(chat_id)
            async with self._change(chat) as change:
                if not change.chat.ended and inactivity.typing_expired(
                        change.chat, change.now_ms, timeout):
                    change.add(CUSTOMER_ID, EventType.TYPING_STOPPED, by_server=True)

    def _apply_idle(self, change: Change, action: inactivity.Action) -> None:
        chat = change.chat
        if action is inactivity.Action.CUSTOMER_ALERT:
            alert_s, close_s = self.config.inactivity.customer_limits(chat.status)
            left = math.ceil((close_s or 0) - (alert_s or 0))
            change.add(SYSTEM_ID, EventType.IDLE_ALERT,
                       self.notice(chat, "idle_alert", seconds=left),
                       user_data={"idle": "customer", "closeInS": str(left)})
        elif action is inactivity.Action.CUSTOMER_CLOSE:
            change.add(SYSTEM_ID, EventType.IDLE_CLOSE, self.notice(chat, "idle_close"),
                       user_data={"idle": "customer"})
            customer = change.touch(chat.participants[CUSTOMER_ID])
            change.add(CUSTOMER_ID, EventType.PARTICIPANT_LEFT)
            customer.connected = False
            self._end(change)
        elif action is inactivity.Action.AGENT_REQUEUE and chat.agent_id is not None:
            p = self._agent_participant(chat.agent_id, chat)
            self._requeue(change, p, None, self.notice(chat, "agent_idle_requeue"))
            self._reminded.pop(chat.chat_id, None)

    # ---- agents ----------------------------------------------------------------------------

    async def set_ready(self, agent_id: str, ready: bool, capacity: int) -> None:
        agent = self.agents[agent_id]
        agent.ready, agent.capacity = ready, capacity
        await self.store.put_agent(agent)
        for offer in self.router.set_ready(agent_id, ready, capacity):
            self._cancel_timer(offer.chat_id)
            self._revoke(offer)
        self._route()

    def agent_chats(self, agent_id: str) -> list[ChatRecord]:
        presence = self.router.presence(agent_id)
        ids = presence.active | presence.offered
        ids |= {cid for cid, watchers in self.monitors.items() if agent_id in watchers}
        ids |= {c.chat_id for c in self.chats.values() if not c.ended and any(
            p.agent_id == agent_id and p.connected and p.type == ParticipantType.SUPERVISOR
            for p in c.participants.values())}
        return [self.chats[cid] for cid in sorted(ids) if cid in self.chats]

    def open_chats(self) -> list[ChatRecord]:
        """Every chat not ended (what a supervisor can choose to monitor)."""
        return sorted((c for c in self.chats.values() if not c.ended),
                      key=lambda c: c.created_ms)

    def queued(self, service: str | None = None) -> list[ChatRecord]:
        return [self.chats[cid] for cid in self.router.waiting(service) if cid in self.chats]

    def queued_page(self, service: str | None, offset: int, limit: int
                    ) -> tuple[list[ChatRecord], int]:
        """``limit`` waiting chats from ``offset`` in queue order, and how many wait in all."""
        waiting = self.router.waiting(service)
        page = waiting[offset:offset + limit]
        return [self.chats[cid] for cid in page if cid in self.chats], len(waiting)

    def summary(self, chat: ChatRecord) -> dict[str, object]:
        offer = self.router.offers.get(chat.chat_id)
        return {
            "chatId": chat.chat_id, "service": chat.service, "status": chat.status.value,
            "createdMs": chat.created_ms, "queuedMs": chat.queued_ms, "endedMs": chat.ended_ms,
            "agentId": chat.agent_id, "targetAgent": chat.target_agent,
            "offeredTo": offer.agent_id if offer else None,
            "position": self.router.position(chat.service, chat.chat_id) or None,
            "customer": chat.customer, "userData": chat.user_data,
            "nextPosition": chat.next_index, "async": self.is_async(chat),
            "waitingForReply": inactivity.unanswered_since(chat) is not None,
        }

    # ---- routing and notifications ---------------------------------------------------------

    def _route(self) -> None:
        for offer in self.router.route(self.clock()):
            chat = self.chats.get(offer.chat_id)
            if chat is None:
                continue
            self._timers[offer.chat_id] = asyncio.get_running_loop().call_later(
                self.config.offer_timeout_s, self._offer_lapsed, offer)
            self._notify_agent(offer.agent_id, {"type": "offer", "chat": self.summary(chat)})
        self._publish_queue()

    def _offer_lapsed(self, offer: Offer) -> None:
        self._timers.pop(offer.chat_id, None)
        if self.router.lapse(offer.chat_id, offer.agent_id) is not None:
            self._revoke(offer)
            self._route()

    def _revoke(self, offer: Offer) -> None:
        self._notify_agent(offer.agent_id, {"type": "offerRevoked", "chatId": offer.chat_id})

    def _cancel_timer(self, chat_id: str) -> None:
        handle = self._timers.pop(chat_id, None)
        if handle is not None:
            handle.cancel()

    def _schedule_eviction(self, chat_id: str) -> None:
        old = self._evictions.pop(chat_id, None)
        if old is not None:
            old.cancel()

        def evict() -> None:
            self._evictions.pop(chat_id, None)
            chat = self.chats.get(chat_id)
            if chat is not None and chat.ended:
                self.chats.pop(chat_id, None)
                self._tallies.pop(chat_id, None)
                self._locks.pop(chat_id, None)
                self._by_key.pop(chat.secure_key, None)

        self._evictions[chat_id] = asyncio.get_running_loop().call_later(
            self.config.ended_cache_s, evict)

    def _announce(self, chat: ChatRecord, events: list[Message]) -> None:
        if not events:
            return
        topic = f"chat.{chat.chat_id}"
        for msg in events:
            self.broker.publish(topic, msgspec.json.encode(msg))
        senders = {msg.from_.participantId for msg in events}
        agents = {p.agent_id for p in chat.participants.values()
                  if p.agent_id and (p.connected or p.participant_id in senders)}
        agents |= self.monitors.get(chat.chat_id, set())
        if chat.ended:
            self.monitors.pop(chat.chat_id, None)
        for agent_id in agents:
            for msg in events:
                self._notify_agent(agent_id, {"type": "message", "chatId": chat.chat_id,
                                              "chatEnded": chat.ended, "message": msg})

    @staticmethod
    def _connected_agents(chat: ChatRecord) -> set[str]:
        return {p.agent_id for p in chat.participants.values() if p.agent_id and p.connected}

    def _notify_agent(self, agent_id: str, payload: dict[str, object]) -> None:
        self.broker.publish(f"agent.{agent_id}", msgspec.json.encode(payload))

    def _publish_queue(self) -> None:
        waiting = {service: len(queue) for service, queue in self.router.queues.items()}
        self.broker.publish("agents", msgspec.json.encode({"type": "queue", "waiting": waiting}))

    def iter_chats(self) -> Iterator[ChatRecord]:
        return iter(self.chats.values())
