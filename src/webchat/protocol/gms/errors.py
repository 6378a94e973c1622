"""Error codes carried in ``errors[].code`` (protocols.md §1.9).

Codes below 1000 are the ones the Genesys widgets know by number (their i18n ``Errors`` table);
codes from 1000 up are ours, for conditions GMS never documented.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    FIRST_NAME_REQUIRED = 102
    LAST_NAME_REQUIRED = 103
    NAME_REQUIRED = 161
    MAX_FILES_EXCEEDED = 201
    MAX_TOTAL_SIZE_EXCEEDED = 202
    FILE_TYPE_NOT_ALLOWED = 203
    MESSAGE_TOO_LONG = 204
    CHAT_UNAVAILABLE = 240
    INVALID_EMAIL = 364

    # Our own codes.
    CHAT_NOT_FOUND = 1001
    """Unknown chat, or credentials that do not match it: one code, so nothing leaks."""
    CHAT_ENDED = 1002
    MISSING_FIELD = 1003
    FIELD_TOO_LONG = 1004
    MALFORMED_REQUEST = 1005
    INVALID_POSITION = 1006
    RATE_LIMITED = 1007
    UNKNOWN_SERVICE = 1008
    INVALID_API_KEY = 1009
    TOO_LARGE = 1010
    UNSUPPORTED_MEDIA_TYPE = 1011
    UNKNOWN_OPERATION = 1012
    FILE_TOO_LARGE = 1013
    """One file over ``upload-max-file-size`` (the widgets check it client-side too)."""
    FILE_NOT_FOUND = 1014
    UPLOAD_NOT_ALLOWED = 1015
    """Uploads are off, or ``upload-need-agent`` and no agent has joined yet."""
    DOWNLOAD_LIMIT = 1016
    TRANSCRIPT_FULL = 1017
    """The chat holds ``max_chat_events`` events or ``max_chat_bytes`` of them."""
    INTERNAL = 1099


#: ``statusCode`` values of the GMS "API Responses" reference: 0 success; 1 an error the client
#: may retry until it gets 0 (the Genesys widgets count these towards ``chatServerWentOffline``
#: and answer a failed start with "chat unavailable"); 2 an error that repeating will not cure.
RETRYABLE_STATUS_CODE = 1
ERROR_STATUS_CODE = 2

#: Refusals that go away by themselves: load, limits that refill, a server-side failure.
RETRYABLE = frozenset({ErrorCode.CHAT_UNAVAILABLE, ErrorCode.RATE_LIMITED,
                       ErrorCode.INTERNAL})


def status_code(code: int) -> int:
    """The ``statusCode`` of a reply refusing with ``code``."""
    return RETRYABLE_STATUS_CODE if code in RETRYABLE else ERROR_STATUS_CODE
