"""GMS Chat API v2: wire models, form encoding, error codes and the client session machine."""

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.models import (
    ChatResponse,
    ErrorEntry,
    EventType,
    Message,
    Participant,
    ParticipantType,
)
from webchat.protocol.gms.session import ChatSession, HttpRequest

__all__ = [
    "ChatResponse",
    "ChatSession",
    "ErrorCode",
    "ErrorEntry",
    "EventType",
    "HttpRequest",
    "Message",
    "Participant",
    "ParticipantType",
]
