"""The Bayeux message model and its error strings (protocols.md §3.2, §3.5)."""

from __future__ import annotations

import enum
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


_many = msgspec.json.Decoder(list[BayeuxMessage])
_one = msgspec.json.Decoder(BayeuxMessage)
_encoder = msgspec.json.Encoder()


def decode_messages(body: bytes | str) -> list[BayeuxMessage]:
    """Accept an array (the norm) or a single object (CometD accepts both, §3.2)."""
    text = body.strip() if isinstance(body, bytes) else body.strip().encode()
    try:
        if text.startswith(b"["):
            return _many.decode(text)
        return [_one.decode(text)]
    except msgspec.DecodeError as exc:
        raise DecodeError(str(exc)) from None


def encode_messages(messages: list[BayeuxMessage]) -> bytes:
    return _encoder.encode(messages)
