"""The refusals of the domain: GMS error codes for customers, agent API codes for agents.

They say what was wrong, never which HTTP status that is: each adapter maps them to its wire
form (:mod:`webchat.server.statuses` for HTTP, :meth:`ChatError.response` for GMS replies on
REST and CometD alike, Bayeux errors in :mod:`webchat.server.cometd_chat`)."""

from __future__ import annotations

import enum

from webchat.protocol.gms.errors import ErrorCode, status_code
from webchat.protocol.gms.models import ChatResponse, ErrorEntry


class ChatError(Exception):
    """A request the server refuses, with the GMS error code and advice the client gets."""

    def __init__(self, code: ErrorCode, advice: str) -> None:
        super().__init__(advice)
        self.code = code
        self.advice = advice

    def response(self, chat_id: str | None = None) -> ChatResponse:
        """The GMS reply refusing the request: the same on REST and CometD."""
        return ChatResponse(statusCode=status_code(self.code), chatId=chat_id,
                            errors=[ErrorEntry(int(self.code), self.advice)])


class Refusal(enum.Enum):
    """The kind of an agent refusal (which the adapter turns into a status)."""

    INVALID = "invalid"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    THROTTLED = "throttled"
    INTERNAL = "internal"


class AgentError(Exception):
    """A refused agent API call: its kind, a short machine code and a human message."""

    def __init__(self, kind: Refusal, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
