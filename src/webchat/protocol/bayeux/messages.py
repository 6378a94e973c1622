"""The Bayeux message model and its error strings (protocols.md §3.2, §3.5)."""

from __future__ import annotations

import enum
import re
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType


class BayeuxMessage(msgspec.Struct, omit_defaults=True):
    """One Bayeux message. Absent fields are ``UNSET`` and never encoded, so a publish ack
    can never grow a ``data`` field by accident (clients tell acks from deliveries by it)."""

    channel: str | UnsetType = UNSET
    id: str | int | UnsetType = UNSET
    clientId: str | UnsetType = UNSET
    data: Any | UnsetType = UNSET
    successful: bool | UnsetType = UNSET
    error: str | UnsetType = UNSET
    advice: dict[str, Any] | UnsetType = UNSET
    ext: dict[str, Any] | UnsetType = UNSET
    subscription: str | list[str] | UnsetType = UNSET
    connectionType: str | UnsetType = UNSET
    version: str | UnsetType = UNSET
    minimumVersion: str | UnsetType = UNSET
    supportedConnectionTypes: list[str] | UnsetType = UNSET
    timestamp: str | UnsetType = UNSET


class ErrorStyle(enum.Enum):
    """Which CometD release's error spellings to send. Clients switch on the number only."""

    COMETD5 = "5"
    COMETD3 = "3"


_ERRORS = {
    ErrorStyle.COMETD5: {"unknown": "402::session_unknown", "channel_missing":
                         "400::channel_missing", "channel_invalid": "405::channel_invalid",
                         "id_invalid": "405::message_id_invalid",
                         "handshake_denied": "403::handshake_denied"},
    ErrorStyle.COMETD3: {"unknown": "402::Unknown client", "channel_missing":
                         "400::channel missing", "channel_invalid": "405::invalid_channel",
                         "id_invalid": "405::invalid_id",
                         "handshake_denied": "403::Handshake denied"},
}


def error_text(style: ErrorStyle, key: str) -> str:
    return _ERRORS[style].get(key, key)


class DecodeError(ValueError):
    """The body is not a JSON Bayeux message or array of messages."""


class TooLarge(DecodeError):
    """The body is over the size or nesting bound (checked before any JSON is decoded)."""


MAX_BYTES = 256 * 1024
"""Default bound on one long-polling body or WebSocket frame (the server passes its own)."""
MAX_DEPTH = 32
"""Default bound on JSON nesting. A Bayeux message is 3 levels deep, GMS data ``userData`` 2
more; the decoder itself recurses and fails (RecursionError) near 1,000, so the bound must be
checked before decoding, not by it."""

_many = msgspec.json.Decoder(list[BayeuxMessage])
_one = msgspec.json.Decoder(BayeuxMessage)
_encoder = msgspec.json.Encoder()
# Strings (escapes included) are removed first, so brackets inside them do not count.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = b"[{"
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")


def check_bounds(body: bytes, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a body larger than ``max_bytes`` or nested deeper than ``max_depth``, in time
    linear in its size and without recursion (one bound for long-polling and WebSocket)."""
    if len(body) > max_bytes:
        raise TooLarge(f"body larger than {max_bytes} bytes")
    brackets = _STRING.sub(b"", body).translate(None, _BRACKETS)
    if len(brackets) <= 2 * max_depth:
        return  # cannot be deeper than the bound: the common case, no loop at all
    depth = 0
    for byte in brackets:
        if byte in _OPEN:
            depth += 1
            if depth > max_depth:
                raise TooLarge(f"JSON nested deeper than {max_depth} levels")
        else:
            depth -= 1


def decode_messages(body: bytes | str, *, max_bytes: int = MAX_BYTES,
                    max_depth: int = MAX_DEPTH) -> list[BayeuxMessage]:
    """Accept an array (the norm) or a single object (CometD accepts both, §3.2), within the
    size and depth bounds (:class:`TooLarge` otherwise)."""
    text = body.strip() if isinstance(body, bytes) else body.strip().encode()
    check_bounds(text, max_bytes, max_depth)
    try:
        if text.startswith(b"["):
            return _many.decode(text)
        return [_one.decode(text)]
    except msgspec.DecodeError as exc:
        raise DecodeError(str(exc)) from None


def encode_messages(messages: list[BayeuxMessage]) -> bytes:
    return _encoder.encode(messages)


def message_size(message: BayeuxMessage) -> int:
    """Encoded length of one message: what it costs while queued."""
    return len(_encoder.encode(message))
