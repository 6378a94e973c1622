"""Errors the server reports, and the HTTP status each maps to in strict mode."""

from __future__ import annotations

from webchat.protocol.gms.errors import ErrorCode, status_code
from webchat.protocol.gms.models import ChatResponse, ErrorEntry

_STATUS = {
    ErrorCode.CHAT_NOT_FOUND: 403,
    ErrorCode.INVALID_API_KEY: 401,
    ErrorCode.CHAT_ENDED: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNKNOWN_SERVICE: 404,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.FILE_TOO_LARGE: 413,
    ErrorCode.MAX_TOTAL_SIZE_EXCEEDED: 413,
    ErrorCode.FILE_NOT_FOUND: 404,
    ErrorCode.UPLOAD_NOT_ALLOWED: 403,
    ErrorCode.DOWNLOAD_LIMIT: 429,
    ErrorCode.TRANSCRIPT_FULL: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.CHAT_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


class ChatError(Exception):
    """A request the server refuses, with the GMS error code and advice the client gets."""

    def __init__(self, code: ErrorCode, advice: str) -> None:
        super().__init__(advice)
        self.code = code
        self.advice = advice

    @property
    def http_status(self) -> int:
        """The status of strict HTTP error mode (each kind of refusal its own 4xx/5xx)."""
        return _STATUS.get(self.code, 400)

    def response(self, chat_id: str | None = None) -> ChatResponse:
        """The GMS reply refusing the request: the same on REST and CometD."""
        return ChatResponse(statusCode=status_code(self.code), chatId=chat_id,
                            errors=[ErrorEntry(int(self.code), self.advice)])


class AgentError(Exception):
    """A refused agent API call: a short machine code, a human message and an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
