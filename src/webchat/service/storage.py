"""Where the service keeps what it needs to find its chat again: the chat's identity and how far
the customer has read, so a new process (or page) can restore the chat without losing or
repeating a message.

The browser keeps this in cookies/localStorage like the original; a Python client chooses:
:class:`MemoryStorage` (one process), :class:`FileStorage` (survives a restart), or the
integrator's own ``async.getSessionData`` / ``async.setSessionData`` functions
(:class:`CallbackStorage`), which is how the original lets a site keep an asynchronous chat in
its own store.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
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


class CallbackStorage:
    """The original's ``async.getSessionData`` / ``async.setSessionData``: the integrator stores
    the session data; clearing saves ``None``."""

    def __init__(self, get: Callable[[], Any], set_: Callable[[SessionData | None], Any]) -> None:
        self._get = get
        self._set = set_

    def load(self) -> SessionData | None:
        return valid(self._get())

    def save(self, data: SessionData) -> None:
        self._set(dict(data))

    def clear(self) -> None:
        self._set(None)
