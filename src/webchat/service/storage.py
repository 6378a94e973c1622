"""Where the service keeps what it needs to find its chat again: the chat's identity and how far
the customer has read, so a new process (or page) can restore the chat without losing or
repeating a message.

The browser keeps this in cookies/localStorage like the original; a Python client chooses:
:class:`MemoryStorage` (one process), :class:`FileStorage` (survives a restart), or the
integrator's own ``async.getSessionData`` / ``async.setSessionData`` functions
(:class:`CallbackStorage`), which is how the original lets a site keep an asynchronous chat in
its own store. The names read backwards but are the original's: the service *calls*
``getSessionData(sessionData, Cookie, CookieOptions)`` to hand the data over (the site stores
it) and ``setSessionData(Open, Cookie, CookieOptions)`` to get it back (the site returns it, as
the object or its JSON text).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

SessionData = dict[str, Any]
"""``sessionID``, ``alias``, ``secureKey``, ``userId``, ``transcriptPosition``, ``savedAt``
(epoch ms of the last activity) and ``async``."""

REQUIRED = ("sessionID", "alias", "secureKey", "userId", "transcriptPosition", "savedAt")


class SessionStorage(Protocol):
    def load(self) -> SessionData | None: ...
    def save(self, data: SessionData) -> None: ...
    def clear(self) -> None: ...


def valid(data: object) -> SessionData | None:
    """The saved data if it has every field with a usable type, else None (never trust a
    store that another program or version could have written)."""
    if not isinstance(data, dict) or any(key not in data for key in REQUIRED):
        return None
    if not all(isinstance(data[k], str) and data[k] for k in ("sessionID", "secureKey", "userId")):
        return None
    if not isinstance(data["alias"], str):
        return None
    for key in ("transcriptPosition", "savedAt"):
        if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0:
            return None
    return data


class MemoryStorage:
    def __init__(self) -> None:
        self._data: SessionData | None = None

    def load(self) -> SessionData | None:
        return dict(self._data) if self._data is not None else None

    def save(self, data: SessionData) -> None:
        self._data = dict(data)

    def clear(self) -> None:
        self._data = None


class FileStorage:
    """One JSON file, written atomically (temp file + rename) and readable by its owner only:
    it holds the chat's secureKey."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> SessionData | None:
        try:
            return valid(json.loads(self.path.read_text("utf-8")))
        except (OSError, ValueError):
            return None

    def save(self, data: SessionData) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".webchat-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


MAX_COOKIE = 4096
"""Bytes a browser keeps of one cookie (name and value); the jar refuses more, as they do."""

MAX_RETURNED = 16_384
"""Characters of JSON text accepted back from ``setSessionData`` (the data is a few hundred)."""


class Cookies:
    """The ``Cookie`` helper handed to the async callbacks (``get``, ``set``, ``remove``, as
    the original's), for a process that has no browser: one jar per process, as a browser has
    one per profile, so a second service in the process reads what the first set. The options
    (``main.cookieOptions``) are accepted and not interpreted."""

    def __init__(self) -> None:
        self._jar: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self._jar.get(name)

    def set(self, name: str, value: object, options: Mapping[str, Any] | None = None) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        if len(name.encode()) + len(text.encode()) > MAX_COOKIE:
            raise ValueError(f"cookie {name!r} over {MAX_COOKIE} bytes")
        self._jar[name] = text

    def remove(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        self._jar.pop(name, None)


COOKIES = Cookies()

HandOver = Callable[[SessionData | None, Cookies, Mapping[str, Any]], Any]
"""``async.getSessionData(sessionData, Cookie, CookieOptions)``: store this (None: forget)."""
GetBack = Callable[[bool, Cookies, Mapping[str, Any]], Any]
"""``async.setSessionData(Open, Cookie, CookieOptions)``: return what was stored."""


class CallbackStorage:
    """The original's ``async.getSessionData`` (the site is handed the session data to keep;
    ``None`` when the chat is over) and ``async.setSessionData`` (the site returns it). ``Open``
    is not described by the reference ([U]); we pass True: the service asks in order to open
    the chat again."""

    def __init__(self, hand_over: HandOver, get_back: GetBack, *,
                 cookies: Cookies = COOKIES,
                 cookie_options: Mapping[str, Any] | None = None) -> None:
        self._hand_over = hand_over
        self._get_back = get_back
        self.cookies = cookies
        self.cookie_options = dict(cookie_options or {})

    def load(self) -> SessionData | None:
        data = self._get_back(True, self.cookies, dict(self.cookie_options))
        if isinstance(data, str):
            if len(data) > MAX_RETURNED:
                return None
            try:
                data = json.loads(data)
            except ValueError:
                return None
        return valid(data)

    def save(self, data: SessionData) -> None:
        self._hand_over(dict(data), self.cookies, dict(self.cookie_options))

    def clear(self) -> None:
        self._hand_over(None, self.cookies, dict(self.cookie_options))
