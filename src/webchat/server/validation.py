"""Validation of customer input against the configured limits.

Each check raises :class:`ChatError` with the GMS code the widgets know where one exists
(names 102/103/161, message length 204, e-mail 364) and one of ours otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.forms import FormError, unflatten_map
from webchat.server.chat.customers import CustomerForm
from webchat.server.config import Limits
from webchat.server.errors import ChatError

_EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")
IDENTITY = frozenset({"userId", "secureKey", "alias"})

#: Fields each operation knows besides the identity triple (userData travels apart: see
#: ``gms.operations.UserData``). What the real clients send belongs here: the Genesys widgets
#: 8.5 send ``text`` and a blank identity triple with requestChat, the typing preview
#: ``message`` with every refresh (over CometD with requestNotifications), and ``chatId``
#: with every CometD operation (see :data:`CHANNEL_FIELDS`).
FIELDS: dict[str, frozenset[str]] = {
    "requestChat": frozenset({"firstName", "lastName", "nickname", "emailAddress", "subject",
                              "text"}),
    "send": frozenset({"message", "messageType", "transcriptPosition"}),
    "refresh": frozenset({"message", "transcriptPosition"}),
    "startTyping": frozenset({"message", "transcriptPosition"}),
    "stopTyping": frozenset({"message", "transcriptPosition"}),
    "disconnect": frozenset({"transcriptPosition"}),
    "pushUrl": frozenset({"pushUrl", "transcriptPosition"}),
    "customNotice": frozenset({"message", "transcriptPosition"}),
    "updateNickname": frozenset({"nickname", "transcriptPosition"}),
    "updateData": frozenset({"transcriptPosition"}),
    "file/limits": frozenset({"transcriptPosition"}),
    "file/upload": frozenset(),
    "file/download": frozenset(),
    "file/delete": frozenset(),
}
CHANNEL_FIELDS = frozenset({"chatId"})
"""Known on every CometD operation: the chat the client believes it is in (blank at first)."""


@dataclass(frozen=True)
class FieldPolicy:
    """What happens to a field an operation does not know: GMS ignores it, and so do we by
    default; ``strict`` refuses it (1005), for developing clients. Either way every value is
    bounded and free of NUL, so tolerance of real clients' extras is no tolerance of garbage."""

    strict: bool = False
    max_ignored_chars: int = 4096

    def check(self, operation: str, form: Mapping[str, str],
              extra: frozenset[str] = frozenset()) -> None:
        known = FIELDS[operation] | IDENTITY | extra
        for key, value in form.items():
            if "\x00" in key or "\x00" in value:
                raise ChatError(ErrorCode.MALFORMED_REQUEST,
                                f"field {key[:64]!r} contains NUL")
            if key in known:
                continue
            if self.strict:
                raise ChatError(ErrorCode.MALFORMED_REQUEST,
                                f"unknown field {key[:64]!r} for {operation}")
            if len(value) > self.max_ignored_chars:
                raise ChatError(ErrorCode.FIELD_TOO_LONG,
                                f"field {key[:64]!r} is longer than {self.max_ignored_chars} "
                                "characters")


def text(form: Mapping[str, str], key: str, limit: int, *, required: bool = False,
         code: ErrorCode = ErrorCode.FIELD_TOO_LONG) -> str:
    value = form.get(key, "")
    if required and not value.strip():
        raise ChatError(ErrorCode.MISSING_FIELD, f"{key} is required")
    if len(value) > limit:
        raise ChatError(code, f"{key} is longer than {limit} characters")
    return value


def position(form: Mapping[str, str]) -> int | None:
    raw = form.get("transcriptPosition")
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise ChatError(ErrorCode.INVALID_POSITION,
                        "transcriptPosition must be a non-negative integer")
    return int(raw)


def user_data(data: Mapping[str, str], limits: Limits) -> dict[str, str]:
    """A request's userData within the limits (keys, key and value lengths)."""
    if len(data) > limits.max_user_data_keys:
        raise ChatError(ErrorCode.TOO_LARGE,
                        f"more than {limits.max_user_data_keys} userData keys")
    for key, value in data.items():
        if not key:
            raise ChatError(ErrorCode.MALFORMED_REQUEST, "empty userData key")
        if "\x00" in key or "\x00" in value:
            raise ChatError(ErrorCode.MALFORMED_REQUEST, "userData contains NUL")
        if len(key) > limits.max_user_data_key_chars:
            raise ChatError(ErrorCode.FIELD_TOO_LONG, f"userData key {key[:32]!r}… is too long")
        if len(value) > limits.max_user_data_value_chars:
            raise ChatError(ErrorCode.FIELD_TOO_LONG, f"userData[{key[:32]}] is too long")
    return dict(data)


def form_user_data(form: Mapping[str, str]) -> dict[str, str] | None:
    """REST flattens userData into ``userData[key]`` fields; ``None`` when there are none."""
    if not any(key.startswith("userData[") for key in form):
        return None
    try:
        return unflatten_map(form, "userData")
    except FormError as exc:
        raise ChatError(ErrorCode.MALFORMED_REQUEST, str(exc)) from None


def scalar_fields(form: Mapping[str, str]) -> dict[str, str]:
    """A form without its ``userData[...]`` fields."""
    return {k: val for k, val in form.items() if not k.startswith("userData[")}


def customer_form(form: Mapping[str, str], data: Mapping[str, str] | None,
                  limits: Limits) -> CustomerForm:
    """The request-chat form (fields already checked by :class:`FieldPolicy`)."""
    first = text(form, "firstName", limits.max_name_chars).strip()
    last = text(form, "lastName", limits.max_name_chars).strip()
    nickname = text(form, "nickname", limits.max_name_chars).strip()
    if not nickname:
        if not first and not last:
            raise ChatError(ErrorCode.NAME_REQUIRED, "nickname or firstName and lastName required")
        if not first:
            raise ChatError(ErrorCode.FIRST_NAME_REQUIRED, "firstName is required")
        if not last:
            raise ChatError(ErrorCode.LAST_NAME_REQUIRED, "lastName is required")
        nickname = f"{first} {last}"
    email = text(form, "emailAddress", limits.max_email_chars).strip()
    if email and not _EMAIL.match(email):
        raise ChatError(ErrorCode.INVALID_EMAIL, "emailAddress is not a valid e-mail address")
    subject = text(form, "subject", limits.max_subject_chars)
    return CustomerForm(nickname, first, last, email, subject, user_data(data or {}, limits))


def push_url(form: Mapping[str, str], limits: Limits) -> str:
    url = text(form, "pushUrl", limits.max_url_chars, required=True).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ChatError(ErrorCode.MALFORMED_REQUEST, "pushUrl must be an http(s) URL")
    return url
