"""Customer operations: starting a chat, finding it by its keys, and what a customer adds to
it. Each returns the chat as committed, the snapshot a reply is built from."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.models import EventType, Message, ParticipantType
from webchat.server import inactivity
from webchat.server.chat.change import CUSTOMER_ID, SYSTEM_ID, Change, Changes
from webchat.server.chat.clock import Clock
from webchat.server.chat.dispatch import Dispatcher
from webchat.server.chat.facts import ChatFacts
from webchat.server.chat.notify import Notifier, connected_agents
from webchat.server.chat.registry import ChatRegistry
from webchat.server.config import ServerConfig
from webchat.server.errors import ChatError
from webchat.store.records import ChatRecord, ChatStatus


@dataclass(frozen=True)
class CustomerForm:
    nickname: str
    first_name: str
    last_name: str
    email: str
    subject: str
    user_data: dict[str, str]


def require_open(chat: ChatRecord) -> None:
    if chat.ended:
        raise ChatError(ErrorCode.CHAT_ENDED, "the chat has ended")


def check_position(chat: ChatRecord, position: int | None) -> None:
    """A client cannot have seen past the end: such a position is a bug or a replay."""
    if position is not None and position > chat.next_index:
        raise ChatError(ErrorCode.INVALID_POSITION,
                        f"transcriptPosition {position} is beyond the transcript "
                        f"(next position is {chat.next_index})")


def transcript(chat: ChatRecord, position: int | None) -> list[Message]:
    """Events with ``index >= position``; ``None`` or 0 means all of them (a copy)."""
    check_position(chat, position)
    if position is None or position <= 0:
        return list(chat.events)
    return chat.events[position - 1:]


class CustomerOps:
    def __init__(self, registry: ChatRegistry, changes: Changes, dispatcher: Dispatcher,
                 notifier: Notifier, facts: ChatFacts, config: ServerConfig, clock: Clock
                 ) -> None:
        self._registry = registry
        self._changes = changes
        self._dispatcher = dispatcher
        self._notifier = notifier
        self._facts = facts
        self._config = config
        self._clock = clock

    # ---- finding a chat by its keys --------------------------------------------------------

    async def customer_chat(self, service: str, chat_id: str, user_id: str, secure_key: str,
                            alias: str) -> ChatRecord:
        """The chat these credentials open, or CHAT_NOT_FOUND whatever was wrong, so that a
        caller cannot tell an unknown chat from a wrong key."""
        chat = await self._registry.get(chat_id)
        expected_key = chat.secure_key if chat is not None else "x" * 43
        key_ok = hmac.compare_digest(expected_key.encode(), secure_key.encode())
        if (chat is None or not key_ok or chat.service != service
                or not hmac.compare_digest(chat.user_id.encode(), user_id.encode())
                or chat.alias != alias):
            raise ChatError(ErrorCode.CHAT_NOT_FOUND,
                            "no chat matches this chatId, userId, alias and secureKey")
        return chat

    async def chat_by_key(self, service: str | None, secure_key: str,
                          user_id: str | None = None, alias: str | None = None) -> ChatRecord:
        """CometD operations carry the secureKey but no chatId (protocols.md §2.3); userId and
        alias, where given, must match. ``service`` None: the chat's own (the CometD file
        side door names none, protocols.md §2.5)."""
        chat_id = await self._registry.id_for_key(secure_key)
        chat = await self._registry.get(chat_id) if chat_id else None
        if service is None:
            service = chat.service if chat else ""
        return await self.customer_chat(
            service, chat_id or "", user_id if user_id is not None else
            (chat.user_id if chat else ""), secure_key,
            alias if alias is not None else (chat.alias if chat else ""))

    # ---- operations ------------------------------------------------------------------------

    def _check_user_data_total(self, user_data: dict[str, str]) -> None:
        """``Limits.max_user_data_total_chars``, checked here because every change of a chat's
        userData (start, updates) comes through these operations."""
        limit = self._config.limits.max_user_data_total_chars
        if sum(len(k) + len(v) for k, v in user_data.items()) > limit:
            raise ChatError(ErrorCode.TOO_LARGE,
                            f"userData of a chat is limited to {limit} characters in all")

    async def request_chat(self, service: str, form: CustomerForm) -> ChatRecord:
        router = self._dispatcher.router
        if router.waiting_count(service) >= self._config.limits.max_queue_per_service:
            raise ChatError(ErrorCode.CHAT_UNAVAILABLE, "the queue for this service is full")
        self._check_user_data_total(form.user_data)
        now = self._clock()
        customer = {"nickname": form.nickname, "firstName": form.first_name,
                    "lastName": form.last_name, "emailAddress": form.email,
                    "subject": form.subject}
        chat = ChatRecord(
            chat_id=secrets.token_hex(8).upper(), service=service,
            secure_key=secrets.token_urlsafe(32), user_id=secrets.token_hex(8).upper(),
            alias=self._config.alias, status=ChatStatus.QUEUED, created_ms=now, queued_ms=now,
            customer={k: v for k, v in customer.items() if v}, user_data=dict(form.user_data))
        async with self._changes.open(chat) as change:
            change.join(ParticipantType.CLIENT, form.nickname)
            change.join(ParticipantType.EXTERNAL, self._config.system_nickname)
            change.add(CUSTOMER_ID, EventType.PARTICIPANT_JOINED)
            position = router.waiting_count(service) + 1
            change.add(SYSTEM_ID, EventType.NOTICE,
                       self._facts.notice(chat, "queued", position=position))
        return change.chat

    async def event(self, chat: ChatRecord, type_: EventType, text: str | None = None,
                    message_type: str | None = None) -> ChatRecord:
        """Message, typing, custom notice or pushed URL from the customer."""
        require_open(chat)

        def edit(change: Change) -> None:
            require_open(change.chat)
            change.add(CUSTOMER_ID, type_, text, message_type=message_type)

        return await self._changes.apply(chat, edit)

    async def preview(self, chat: ChatRecord, preview: str) -> ChatRecord:
        """What the customer is typing, sent with a refresh: passed on only while they are
        typing and when it changed (see :mod:`inactivity`)."""
        if chat.ended or not inactivity.preview_is_new(chat, preview):
            return self._registry.current(chat)
        async with self._changes.open(chat) as change:
            # A full transcript takes no preview; the refresh that carried it still reads.
            if (not change.chat.ended and change.has_room()
                    and inactivity.preview_is_new(change.chat, preview)):
                change.add(CUSTOMER_ID, EventType.TYPING_STARTED, preview)
        return change.chat

    async def update_data(self, chat: ChatRecord, data: dict[str, str]) -> ChatRecord:
        require_open(chat)
        async with self._changes.open(chat) as change:
            require_open(change.chat)
            merged = {**change.chat.user_data, **data}
            if len(merged) > self._config.limits.max_user_data_keys:
                raise ChatError(ErrorCode.TOO_LARGE, "too many userData keys for this chat")
            self._check_user_data_total(merged)
            change.chat.user_data = merged
            change.touch(change.chat.participants[CUSTOMER_ID])
        chat = change.chat
        for agent_id in connected_agents(chat):
            self._notifier.agent(agent_id, {"type": "userData", "chatId": chat.chat_id,
                                            "userData": chat.user_data})
        return chat

    async def nickname(self, chat: ChatRecord, nickname: str) -> ChatRecord:
        require_open(chat)
        async with self._changes.open(chat) as change:
            require_open(change.chat)
            change.require_room()  # before the nickname changes in memory
            change.touch(change.chat.participants[CUSTOMER_ID]).nickname = nickname
            change.chat.customer["nickname"] = nickname
            change.add(CUSTOMER_ID, EventType.NICKNAME_UPDATED)
        return change.chat

    async def disconnect(self, chat: ChatRecord) -> ChatRecord:
        require_open(chat)
        async with self._changes.open(chat) as change:
            require_open(change.chat)
            customer = change.touch(change.chat.participants[CUSTOMER_ID])
            change.add(CUSTOMER_ID, EventType.PARTICIPANT_LEFT)
            customer.connected = False
            self._dispatcher.end(change)
        return change.chat
