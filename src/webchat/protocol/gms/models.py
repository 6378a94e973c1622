"""GMS Chat v2 wire models (protocols.md §1.5, §1.7, §1.8).

One ``ChatResponse`` shape serves every reply, success or error, so clients decode a single
type. Fields that GMS omits when empty are omitted here too (``omit_defaults``), which keeps
replies byte-compatible with the spec's examples.
"""

from __future__ import annotations

import enum

import msgspec


class ParticipantType(enum.StrEnum):
    CLIENT = "Client"
    AGENT = "Agent"
    SUPERVISOR = "Supervisor"
    EXTERNAL = "External"


class EventType(enum.StrEnum):
    PARTICIPANT_JOINED = "ParticipantJoined"
    PARTICIPANT_LEFT = "ParticipantLeft"
    MESSAGE = "Message"
    TYPING_STARTED = "TypingStarted"
    TYPING_STOPPED = "TypingStopped"
    PUSH_URL = "PushUrl"
    NICKNAME_UPDATED = "NicknameUpdated"
    FILE_UPLOADED = "FileUploaded"
    FILE_DELETED = "FileDeleted"
    CUSTOM_NOTICE = "CustomNotice"
    NOTICE = "Notice"
    IDLE_ALERT = "IdleAlert"
    IDLE_CLOSE = "IdleClose"


class Participant(msgspec.Struct, frozen=True):
    """The ``from`` object of a transcript event."""

    nickname: str
    participantId: int
    type: str


class Message(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True, gc=False):
    """One transcript event. ``index`` is 1-based, dense and per chat; old GMS servers may
    omit it (protocols.md §1.6), hence the 0 default, which is never sent.

    Untracked by the garbage collector (``gc=False``): a server holds every open chat's
    transcript, and what an event holds (strings, a frozen participant, a string map) can
    never lead back to it, so no cycle is possible and walking them would be pure cost
    (:mod:`webchat.server.gc_policy`)."""

    from_: Participant = msgspec.field(name="from")
    type: str
    utcTime: int
    index: int = 0
    text: str | None = None
    messageType: str | None = None
    userData: dict[str, str] | None = None


class ErrorEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    code: int
    advice: str = ""


class ChatResponse(msgspec.Struct, omit_defaults=True):
    """Every JSON reply of the chat API. ``statusCode`` 0 is success; anything else an error."""

    statusCode: int
    chatId: str | None = None
    alias: str | None = None
    userId: str | None = None
    secureKey: str | None = None
    chatEnded: bool | None = None
    nextPosition: int | None = None
    messages: list[Message] | None = None
    userData: dict[str, str] | None = None
    errors: list[ErrorEntry] | None = None

    @property
    def ok(self) -> bool:
        return self.statusCode == 0


_encoder = msgspec.json.Encoder()
_response_decoder = msgspec.json.Decoder(ChatResponse)


def encode(obj: object) -> bytes:
    return _encoder.encode(obj)


def decode_response(data: bytes | str) -> ChatResponse:
    """Decode a chat response; raises ``msgspec.DecodeError`` on anything else."""
    return _response_decoder.decode(data)
