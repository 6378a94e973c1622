"""WebSocket frames a server writes straight to its transport.

aiohttp's writer builds each frame and then awaits the transport's flow control: an await and
bookkeeping per frame. On the delivery hot path (a CometD push, an agent's event) that was a
quarter of the server's CPU (profiled with ``benchmarks/cluster_chat.py``), so these paths
build the frame here and hand it to the transport in one synchronous call, which also keeps
each frame atomic between other writers. They fall back to aiohttp's awaited writer only when
the peer is not reading (the transport's buffer is past :data:`WRITE_BUFFER_HIGH`).
"""

from __future__ import annotations

WRITE_BUFFER_HIGH = 64 * 1024
"""Bytes waiting in a transport past which a writer waits for the peer instead."""


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload
