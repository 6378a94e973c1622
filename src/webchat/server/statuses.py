"""The HTTP status of every domain refusal: the one place the HTTP adapters (customer REST,
agent API, the error middleware) map :class:`ChatError` and :class:`AgentError` to HTTP."""

from __future__ import annotations

from webchat.protocol.gms.errors import ErrorCode
from webchat.server.config import HttpErrorMode
from webchat.server.errors import AgentError, ChatError, Refusal

_CHAT = {
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

_AGENT = {
    Refusal.INVALID: 400,
    Refusal.UNAUTHORIZED: 401,
    Refusal.FORBIDDEN: 403,
    Refusal.NOT_FOUND: 404,
    Refusal.CONFLICT: 409,
    Refusal.THROTTLED: 429,
    Refusal.INTERNAL: 500,
}


def chat_status(exc: ChatError) -> int:
    """The status of strict HTTP error mode (each kind of refusal its own 4xx/5xx)."""
    return _CHAT.get(exc.code, 400)


def http_status(exc: ChatError, mode: HttpErrorMode) -> int:
    """A customer refusal's status in the configured mode (see :class:`HttpErrorMode`)."""
    if mode is HttpErrorMode.GMS:
        return 400
    return 200 if mode is HttpErrorMode.LENIENT else chat_status(exc)


def agent_status(exc: AgentError) -> int:
    return _AGENT[exc.kind]
