"""Files in chats: the limits GMS reports (protocols.md §1.10), what an upload must prove about
itself, and the vaults that keep the bytes (on disk for one node, in PostgreSQL for a cluster).

An upload is checked completely — size, count, chat total, extension, declared type and the
bytes themselves — before anything is written, so a refused file leaves no trace. The bytes
are written to the vault, durably, before the chat's ``FileUploaded`` event is committed; a
crash in between leaves an orphan blob, never an event pointing at nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

from webchat.protocol.gms.errors import ErrorCode
from webchat.server.errors import ChatError
from webchat.store.records import ChatRecord, new_file_id


def _text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c in "\t\n\r\f" or unicodedata.category(c) != "Cc" for c in text)


@dataclass(frozen=True)
class FileType:
    mime: tuple[str, ...]
    matches: Callable[[bytes], bool]


#: Extensions a server can be configured to accept: each with the MIME types a client may
#: declare for it and a check of the bytes (so ``evil.exe`` renamed ``cat.png`` is refused).
FILE_TYPES: dict[str, FileType] = {
    "png": FileType(("image/png",), lambda b: b.startswith(b"\x89PNG\r\n\x1a\n")),
    "jpg": FileType(("image/jpeg",), lambda b: b.startswith(b"\xff\xd8\xff")),
    "jpeg": FileType(("image/jpeg",), lambda b: b.startswith(b"\xff\xd8\xff")),
    "gif": FileType(("image/gif",), lambda b: b[:6] in (b"GIF87a", b"GIF89a")),
    "webp": FileType(("image/webp",), lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
    "pdf": FileType(("application/pdf",), lambda b: b.startswith(b"%PDF-")),
    "txt": FileType(("text/plain",), _text),
    "csv": FileType(("text/csv", "text/plain"), _text),
}
#: Declared by clients that do not know better; the bytes still have to match the extension.
GENERIC_TYPES = frozenset({"application/octet-stream", ""})


@dataclass(frozen=True)
class FileLimits:
    enabled: bool = True
    max_files: int = 5
    max_file_size: int = 10 * 1024 * 1024
    max_total_size: int = 50 * 1024 * 1024
    need_agent: bool = False
    """GMS's ``upload-need-agent``: refuse uploads until an agent has joined (GMS defaults to
    true; we default to false so a customer can attach a file while queued)."""
    file_types: tuple[str, ...] = ("jpg", "jpeg", "png", "gif", "pdf", "txt")
    download_attempts: int = 10
    delete_returns_quota: bool = True

    def __post_init__(self) -> None:
        unknown = [t for t in self.file_types if t not in FILE_TYPES]
        if unknown:
            raise ValueError(f"file types {unknown} cannot be checked; known: "
                             f"{sorted(FILE_TYPES)}")


def usage(chat: ChatRecord, limits: FileLimits) -> tuple[int, int]:
    """Files and bytes counted against the chat's quota."""
    counted = [f for f in chat.files.values()
               if not (f.deleted and limits.delete_returns_quota)]
    return len(counted), sum(f.size for f in counted)


def limits_data(chat: ChatRecord, limits: FileLimits) -> dict[str, str]:
    """The ``userData`` of the ``file-client-cfg-get`` notice: every value a string."""
    files, total = usage(chat, limits)
    downloads = sum(f.downloads for f in chat.files.values())
    return {
        "upload-max-files": str(limits.max_files if limits.enabled else 0),
        "upload-max-file-size": str(limits.max_file_size),
        "upload-max-total-size": str(limits.max_total_size),
        "upload-need-agent": "true" if limits.need_agent else "false",
        "upload-file-types": ":".join(limits.file_types),
        "used-upload-max-files": str(files),
        "used-upload-max-total-size": str(total),
        "download-attempts": str(limits.download_attempts),
        "used-download-attempts": str(downloads),
        "delete-file": "true" if limits.delete_returns_quota else "false",
    }


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def clean_name(raw: str) -> str:
    """The name a file is shown under: no path, no control or shell-special characters.
    Percent-escapes are decoded first (some clients escape ``/`` in multipart filenames)."""
    raw = unquote(raw)
    name = _UNSAFE.sub("_", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    if not name:
        raise ChatError(ErrorCode.MALFORMED_REQUEST, "the file has no usable name")
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:250 - len(ext)] + dot + ext) if dot else name[:255]
    return name


def check_upload(chat: ChatRecord, limits: FileLimits, name: str, declared: str,
                 data: bytes, *, agent_present: bool) -> str:
    """Everything an upload must satisfy; returns the content type to store."""
    if not limits.enabled:
        raise ChatError(ErrorCode.UPLOAD_NOT_ALLOWED, "file uploads are disabled")
    if limits.need_agent and not agent_present:
        raise ChatError(ErrorCode.UPLOAD_NOT_ALLOWED, "files can be sent once an agent joined")
    if len(data) > limits.max_file_size:
        raise ChatError(ErrorCode.FILE_TOO_LARGE,
                        f"the file is larger than {limits.max_file_size} bytes")
    if not data:
        raise ChatError(ErrorCode.MALFORMED_REQUEST, "the file is empty")
    files, total = usage(chat, limits)
    if files + 1 > limits.max_files:
        # The advice is the bare limit: the widgets put it into their own sentence.
        raise ChatError(ErrorCode.MAX_FILES_EXCEEDED, str(limits.max_files))
    if total + len(data) > limits.max_total_size:
        raise ChatError(ErrorCode.MAX_TOTAL_SIZE_EXCEEDED, str(limits.max_total_size))
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    if ext not in limits.file_types:
        raise ChatError(ErrorCode.FILE_TYPE_NOT_ALLOWED,
                        f"file type {ext or '(none)'!r} is not allowed; allowed: "
                        f"{', '.join(limits.file_types)}")
    kind = FILE_TYPES[ext]
    declared = declared.split(";")[0].strip().lower()
    if declared not in GENERIC_TYPES and declared not in kind.mime:
        raise ChatError(ErrorCode.FILE_TYPE_NOT_ALLOWED,
                        f"declared type {declared[:64]!r} does not match .{ext}")
    if not kind.matches(data):
        raise ChatError(ErrorCode.FILE_TYPE_NOT_ALLOWED,
                        f"the content is not a .{ext} file")
    return kind.mime[0]


class Vault(Protocol):
    """Where the bytes of uploads live, by file id. Async, so that a database vault needs no
    thread and a disk vault keeps its blocking I/O off the event loop."""

    def new_id(self) -> str:
        """An id for a new file's bytes (:func:`~webchat.store.records.new_file_id`)."""
        ...

    async def write(self, file_id: str, data: bytes) -> None:
        """Durable when it returns: the event announcing the file is committed after it."""
        ...

    async def read(self, file_id: str) -> bytes | None:
        """The bytes, or None if the vault has none under that id."""
        ...

    async def delete(self, file_id: str) -> None:
        """Forget the bytes; nothing happens if there are none."""
        ...


@runtime_checkable
class KeepsFiles(Protocol):
    """A store with a vault of its own (PostgreSQL), which every process shares."""

    def vault(self) -> Vault: ...


def vault_for(store: object, data_dir: str | os.PathLike[str]) -> Vault:
    """The store's own vault where it has one, so that every process of a cluster serves
    every upload; else (SQLite, one node) files in the data directory."""
    if isinstance(store, KeepsFiles):
        return store.vault()
    return DiskVault(Path(data_dir) / "files")


class DiskVault:
    """Blobs on disk under ``root/<first two chars>/<file id>``. Only ids of the form
    :func:`~webchat.store.records.new_file_id` makes name a path, so no id a client sends can
    reach elsewhere in the filesystem."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @staticmethod
    def new_id() -> str:
        return new_file_id()

    def _path(self, file_id: str) -> Path | None:
        if not re.fullmatch(r"[0-9a-f]{32}", file_id):
            return None
        return self.root / file_id[:2] / file_id

    async def write(self, file_id: str, data: bytes) -> None:
        target = self._path(file_id)
        if target is None:
            raise ValueError(f"not a file id: {file_id!r}")
        await asyncio.to_thread(_write_file, target, data)

    async def read(self, file_id: str) -> bytes | None:
        path = self._path(file_id)
        if path is None:
            return None
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def delete(self, file_id: str) -> None:
        path = self._path(file_id)
        if path is not None:
            await asyncio.to_thread(path.unlink, missing_ok=True)


def _write_file(target: Path, data: bytes) -> None:
    """Temp file, fsync, rename: a reader sees the whole file or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
