"""WebSocket frames a server writes straight to its transport.

aiohttp's writer builds each frame and then awaits the transport's flow control: an await and
bookkeeping per frame. On the delivery hot path (a CometD push, an agent's event) that was a
quarter of the server's CPU (profiled with ``benchmarks/cluster_chat.py``), so these paths
build the frame here and hand it to the transport in one synchronous call, which also keeps
each frame atomic between other writers. They fall back to aiohttp's awaited writer only when
the peer is not reading (the transport's buffer is past :data:`WRITE_BUFFER_HIGH`).
"""

from __future__ import annotations

from typing import Protocol

WRITE_BUFFER_HIGH = 64 * 1024
"""Bytes waiting in a transport past which a writer waits for the peer instead."""


class Direct(Protocol):
    """What a transport needs for frames to be written to it directly."""

    def write(self, data: bytes) -> None: ...  # pragma: no cover - a protocol
    def is_closing(self) -> bool: ...  # pragma: no cover
    def get_write_buffer_size(self) -> int: ...  # pragma: no cover
    def abort(self) -> None: ...  # pragma: no cover


def direct(transport: object) -> Direct | None:
    """``transport`` if frames can be written to it directly, by what it does rather than
    what it is: uvloop's transports, which ``webchat serve`` runs on, are not subclasses of
    ``asyncio.WriteTransport``, and a check of that class sent every frame of every socket
    the slow way (a task and an await each) in production while the tests, on asyncio's
    loop, took the direct path."""
    if all(callable(getattr(transport, name, None))
           for name in ("write", "is_closing", "get_write_buffer_size", "abort")):
        return transport  # type: ignore[return-value]
    return None


def writable_now(transport: Direct | None) -> bool:
    """Whether a frame may be written to ``transport`` now: it is open and its peer keeps up
    (no more than :data:`WRITE_BUFFER_HIGH` waits in it)."""
    return (transport is not None and not transport.is_closing()
            and transport.get_write_buffer_size() <= WRITE_BUFFER_HIGH)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload
