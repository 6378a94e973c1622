"""The client side of one GMS chat, as a pure state machine.

``ChatSession`` knows which request to make next and what a reply means, but never performs
I/O: callers ask it for an :class:`HttpRequest`, carry it over whatever transport they like, and
feed the decoded :class:`ChatResponse` back through :meth:`ChatSession.receive`, which returns the
things that happened (:class:`SessionEvent`). Transcript events are deduplicated by ``index``, so
a transport may replay or overlap refreshes after a reconnect without the user seeing a message
twice.

The browser runs the same machine, ``web/static/session.js``; both are driven through the same
cases, ``tests/fixtures/session/*.json`` (``tests/test_session.py`` here, ``tests/node/`` there),
so a rule changed on one side only fails a test. Each event's ``kind`` is the name the
JavaScript machine gives it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from webchat.protocol.gms.models import ChatResponse, EventType, Message, ParticipantType


class SessionState(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"
    ACTIVE = "active"
    ENDED = "ended"


class SessionError(RuntimeError):
    """A request that makes no sense in the session's current state."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A GMS call to make: POST ``{dataURL}{path}`` with ``fields`` form-encoded."""

    operation: str
    path: str
    fields: dict[str, str]


@dataclass(slots=True)
class ParticipantInfo:
    participant_id: int
    name: str
    type: str
    connected: bool = True
    joined: bool = False
    """Seen a ParticipantJoined: system senders that never join are not agents."""
    typing: bool = False
    """An agent or supervisor whose TypingStarted no TypingStopped, message or leaving ended."""
    connected_time: int | None = None
    disconnected_time: int | None = None

    def as_dict(self) -> dict[str, object]:
        """An entry of ``getAgents`` and of the connection events' ``agents``: ours (``type``,
        ``participantId``) and the original's (``supervisor``, ``connectedTime``,
        ``disconnectedTime``, false while connected)."""
        return {"name": self.name, "type": self.type, "connected": self.connected,
                "participantId": self.participant_id,
                "supervisor": self.type == ParticipantType.SUPERVISOR,
                "connectedTime": self.connected_time,
                "disconnectedTime": self.disconnected_time or False}


# Events the machine reports. The service turns them into bus events.

@dataclass(frozen=True, slots=True)
class Started:
    kind: ClassVar[str] = "started"
    response: ChatResponse


@dataclass(frozen=True, slots=True)
class MessagesReceived:
    """New transcript events in index order, all with the same ``restoring`` flag: true for
    what the customer had seen before a restore (below ``restoring_below``)."""

    kind: ClassVar[str] = "messages"
    messages: tuple[Message, ...]
    restoring: bool = False


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    kind: ClassVar[str] = "joined"
    message: Message
    participant: ParticipantInfo
    is_self: bool


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    kind: ClassVar[str] = "left"
    message: Message
    participant: ParticipantInfo
    is_self: bool


@dataclass(frozen=True, slots=True)
class TypingChanged:
    """An agent or supervisor started or stopped typing (also while restoring, as the
    original reports it: the replay ends on the typing state the agent is in now). A typing
    agent who sends a message, a URL or a notice, or leaves, has stopped too, as the original
    reports it (``message`` is then that event)."""

    kind: ClassVar[str] = "typing"
    message: Message
    participant: ParticipantInfo
    started: bool


@dataclass(frozen=True, slots=True)
class FileUploaded:
    """A file event that is news (not one replayed by a restore)."""

    kind: ClassVar[str] = "fileUploaded"
    message: Message


@dataclass(frozen=True, slots=True)
class Ended:
    kind: ClassVar[str] = "ended"


@dataclass(frozen=True, slots=True)
class ServerError:
    kind: ClassVar[str] = "error"
    operation: str
    response: ChatResponse


@dataclass(frozen=True, slots=True)
class Gap:
    """A push starts past the next position: events were missed, refresh before showing any
    (the push itself is not applied; the refresh brings it again)."""

    kind: ClassVar[str] = "gap"


SessionEvent = (Started | MessagesReceived | ParticipantJoined | ParticipantLeft | TypingChanged
                | FileUploaded | Ended | ServerError | Gap)

_STAFF = (ParticipantType.AGENT, ParticipantType.SUPERVISOR)
_ENDS_TYPING = (EventType.MESSAGE, EventType.PUSH_URL, EventType.NOTICE)
"""What a typing agent sends that ends the typing, as the original reads it."""

MAX_EARLY_PUSHES = 64
"""Pushes held while a start's reply is awaited; past them the last is replaced by a gap, so
the session asks for the transcript once it has its chat."""

PUSH = HttpRequest("push", "", {})
"""The request a pushed (CometD) chat response answers: it covers no transcript position."""


@dataclass
class ChatSession:
    """State of one customer chat. ``data_path`` segments are URL-quoted like GMSLIB does."""

    state: SessionState = SessionState.IDLE
    chat_id: str | None = None
    user_id: str | None = None
    secure_key: str | None = None
    alias: str | None = None
    next_position: int = 1
    self_participant_id: int | None = None
    participants: dict[int, ParticipantInfo] = field(default_factory=dict)
    transcript: list[Message] = field(default_factory=list)
    restoring_below: int = 0
    """Events with a smaller index were shown before a restore: reported ``restoring``."""
    _seen_unindexed: set[tuple[int, str, int, str | None]] = field(default_factory=set)
    _early: list[ChatResponse | None] = field(default_factory=list)
    """Pushes that came before the start's reply (see :meth:`push`); None: some were dropped."""

    # ---- restoring -------------------------------------------------------------------------

    @classmethod
    def resume(cls, chat_id: str, user_id: str, secure_key: str, alias: str,
               next_position: int = 1, restoring_below: int = 0) -> ChatSession:
        """Re-attach to an existing chat (after a restart) from its saved identity; events
        below ``restoring_below`` are the ones the customer saw before."""
        return cls(state=SessionState.ACTIVE, chat_id=chat_id, user_id=user_id,
                   secure_key=secure_key, alias=alias, next_position=max(1, next_position),
                   restoring_below=restoring_below)

    @property
    def active(self) -> bool:
        return self.state in (SessionState.STARTING, SessionState.ACTIVE)

    def session_data(self) -> dict[str, object]:
        return {"sessionID": self.chat_id, "alias": self.alias, "secureKey": self.secure_key,
                "userId": self.user_id, "transcriptPosition": self.next_position}

    def agents(self) -> dict[str, dict[str, object]]:
        """Non-client participants keyed by participantId, as ``getAgents`` returns them."""
        return {str(pid): p.as_dict() for pid, p in self.participants.items()
                if p.type != ParticipantType.CLIENT and p.joined}

    def original_message(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """A transcript event (as JSON) the way the original's events and ``getTranscript``
        carry it: the event as the server sent it, plus the original's names for its parts
        (``from.id``, ``from.name``, ``timestamp``), ``restoring`` (shown before a restore),
        ``isTyping`` on typing events and ``fileDetails`` on file events. Sites written for
        the original read those; nothing of the server's event is left out."""
        out = dict(message)
        sender = message.get("from") or {}
        out["from"] = {**sender, "id": sender.get("participantId"),
                       "name": sender.get("nickname")}
        out["timestamp"] = message.get("utcTime")
        out["restoring"] = self.restored_index(message.get("index") or 0)
        kind = message.get("type")
        if kind in (EventType.TYPING_STARTED, EventType.TYPING_STOPPED):
            out["isTyping"] = kind == EventType.TYPING_STARTED
        elif kind == EventType.FILE_UPLOADED:
            out["fileDetails"] = message.get("userData") or {}
        return out

    def connected_agents(self) -> int:
        return sum(1 for p in self.participants.values()
                   if p.connected and p.type == ParticipantType.AGENT)

    # ---- requests --------------------------------------------------------------------------

    def request_chat(self, form: Mapping[str, str]) -> HttpRequest:
        if self.state is not SessionState.IDLE:
            raise SessionError("There is already an active chat session")
        self.state = SessionState.STARTING
        return HttpRequest("requestChat", "", dict(form))

    def refresh(self) -> HttpRequest:
        return self._call("refresh", "refresh", {"transcriptPosition": str(self.next_position)})

    def send_message(self, text: str, message_type: str | None = None) -> HttpRequest:
        fields = {"message": text, "transcriptPosition": str(self.next_position)}
        if message_type:
            fields["messageType"] = message_type
        return self._call("send", "send", fields)

    def start_typing(self, preview: str | None = None) -> HttpRequest:
        fields = {"message": preview} if preview else {}
        return self._call("startTyping", "startTyping", fields)

    def stop_typing(self) -> HttpRequest:
        return self._call("stopTyping", "stopTyping", {})

    def disconnect(self) -> HttpRequest:
        return self._call("disconnect", "disconnect",
                          {"transcriptPosition": str(self.next_position)})

    def custom_notice(self, text: str | None = None) -> HttpRequest:
        return self._call("customNotice", "customNotice", {"message": text} if text else {})

    def update_data(self, user_data: Mapping[str, str]) -> HttpRequest:
        return self._call("updateData", "updateData",
                          {f"userData[{k}]": v for k, v in user_data.items()})

    def push_url(self, url: str) -> HttpRequest:
        return self._call("pushUrl", "pushUrl", {"pushUrl": url})

    # ---- files (protocols.md §1.10) ---------------------------------------------------------

    def file_limits(self) -> HttpRequest:
        return self._call("fileLimits", "file/limits", {})

    def upload_file(self, description: str | None = None) -> HttpRequest:
        """The form fields of an upload; the transport adds the ``file`` part."""
        extra = {"userData[file-description]": description} if description else {}
        return self._call("fileUpload", "file", extra)

    def download_file(self, file_id: str) -> HttpRequest:
        """Also after the chat ended: its files stay readable (transcript review)."""
        return self._call("fileDownload", f"file/{quote(file_id, safe='')}/download", {},
                          ended_ok=True)

    def delete_file(self, file_id: str) -> HttpRequest:
        return self._call("fileDelete", f"file/{quote(file_id, safe='')}/delete", {})

    def _call(self, operation: str, suffix: str, extra: dict[str, str], *,
              ended_ok: bool = False) -> HttpRequest:
        usable = (SessionState.ACTIVE, SessionState.ENDED) if ended_ok else (SessionState.ACTIVE,)
        if self.state not in usable or self.chat_id is None:
            raise SessionError("There is no active chat session")
        fields = {"userId": self.user_id or "", "secureKey": self.secure_key or "",
                  "alias": self.alias or "", **extra}
        return HttpRequest(operation, f"/{quote(self.chat_id, safe='')}/{suffix}", fields)

    # ---- replies ---------------------------------------------------------------------------

    def fail_start(self) -> None:
        """The request-chat call failed before any reply: the session may be started again."""
        if self.state is SessionState.STARTING:
            self.state = SessionState.IDLE
            self._early.clear()

    def push(self, response: ChatResponse) -> list[SessionEvent]:
        """A chat response the server pushed (CometD): applied, unless it leaves a gap.

        A push can overtake the start's reply: over long-polling the reply comes on the
        publish's response and the push on the held connect's, two requests whose answers
        may arrive in either order. Applied before the reply it would be a gap the session
        cannot yet ask about (it has no chat), and the reply's ``nextPosition`` would then
        skip it, so it is held (up to :data:`MAX_EARLY_PUSHES`) and applied after the reply.
        """
        if self.state is SessionState.IDLE:
            return []  # no chat: a late push of a start given up on
        if self.state is SessionState.STARTING:
            if len(self._early) < MAX_EARLY_PUSHES:
                self._early.append(response)
            elif self._early[-1] is not None:
                self._early[-1] = None  # too many: ask for the transcript once started
            return []
        indexes = [m.index for m in response.messages or () if m.index]
        if indexes and min(indexes) > self.next_position:
            return [Gap()]
        return self.receive(PUSH, response)

    def receive(self, request: HttpRequest, response: ChatResponse) -> list[SessionEvent]:
        """Apply the reply to ``request``. ``nextPosition`` is trusted only when the request
        asked for the transcript from a position we had reached: otherwise the reply says how
        long the transcript is, not that we have seen it."""
        operation = request.operation
        if not response.ok:
            if operation == "requestChat":
                self.fail_start()
            return [ServerError(operation, response)]
        events: list[SessionEvent] = []
        if operation == "requestChat":
            if self.state is not SessionState.STARTING:
                return []
            self.chat_id = response.chatId
            self.user_id = response.userId
            self.secure_key = response.secureKey
            self.alias = response.alias
            self.state = SessionState.ACTIVE
            events.append(Started(response))
        raw_position = request.fields.get("transcriptPosition")
        covered = operation == "requestChat" or (
            raw_position is not None and raw_position.isdigit()
            and int(raw_position) <= self.next_position)
        events.extend(self._take_messages(response, covered))
        if response.chatEnded and self.state is SessionState.ACTIVE:
            self.state = SessionState.ENDED
            events.append(Ended())
        if operation == "requestChat":
            early, self._early = self._early, []
            for pushed in early:
                if pushed is None:
                    events.append(Gap())
                elif pushed.chatId in (None, self.chat_id):  # not an earlier start's chat
                    events.extend(self.push(pushed))
        return events

    def _take_messages(self, response: ChatResponse, covered: bool) -> list[SessionEvent]:
        fresh: list[Message] = []
        for msg in sorted(response.messages or (), key=lambda m: m.index):
            if msg.index:
                if msg.index < self.next_position:
                    continue  # already delivered: replayed or overlapping refresh
                self.next_position = msg.index + 1
            else:
                # Old GMS without fast refresh sends no index; dedupe on content instead.
                key = (msg.from_.participantId, msg.type, msg.utcTime, msg.text)
                if key in self._seen_unindexed:
                    continue
                self._seen_unindexed.add(key)
            fresh.append(msg)
        if covered and response.nextPosition and response.nextPosition > self.next_position:
            self.next_position = response.nextPosition
        if not fresh:
            return []
        self.transcript.extend(fresh)
        events: list[SessionEvent] = []
        for msg in fresh:
            restoring = self.restoring(msg)
            last = events[-1] if events else None
            if isinstance(last, MessagesReceived) and last.restoring == restoring:
                events[-1] = MessagesReceived((*last.messages, msg), restoring)
            else:
                events.append(MessagesReceived((msg,), restoring))
        for msg in fresh:
            events.extend(self._interpret(msg))
        return events

    def restoring(self, msg: Message) -> bool:
        return self.restored_index(msg.index)

    def restored_index(self, index: int) -> bool:
        """The event at ``index`` was shown before a restore."""
        return 0 < index < self.restoring_below

    def _interpret(self, msg: Message) -> list[SessionEvent]:
        sender = msg.from_
        info = self.participants.get(sender.participantId)
        if info is None:
            info = ParticipantInfo(sender.participantId, sender.nickname, sender.type,
                                   connected=False)
            self.participants[sender.participantId] = info
        info.name = sender.nickname or info.name
        if (self.self_participant_id is None and sender.type == ParticipantType.CLIENT
                and msg.type == EventType.PARTICIPANT_JOINED):
            self.self_participant_id = sender.participantId
        is_self = sender.participantId == self.self_participant_id
        staff = not is_self and sender.type in _STAFF
        if msg.type == EventType.PARTICIPANT_JOINED:
            info.connected = info.joined = True
            info.connected_time, info.disconnected_time = msg.utcTime, None
            return [ParticipantJoined(msg, info, is_self)]
        if msg.type == EventType.PARTICIPANT_LEFT:
            info.connected = False
            info.disconnected_time = msg.utcTime
            return [ParticipantLeft(msg, info, is_self), *self._stopped_typing(msg, info)]
        if msg.type in (EventType.TYPING_STARTED, EventType.TYPING_STOPPED) and staff:
            info.typing = msg.type == EventType.TYPING_STARTED
            return [TypingChanged(msg, info, info.typing)]
        if msg.type in _ENDS_TYPING and staff:
            return self._stopped_typing(msg, info)
        if msg.type == EventType.FILE_UPLOADED and not self.restoring(msg):
            return [FileUploaded(msg)]
        return []

    @staticmethod
    def _stopped_typing(msg: Message, info: ParticipantInfo) -> list[SessionEvent]:
        if not info.typing:
            return []
        info.typing = False
        return [TypingChanged(msg, info, started=False)]
