"""Exhaustion: what hostile or idle clients cost the server, and whether it comes back.

Each scenario runs against a fresh ``webchat serve`` on loopback and prints the server's RSS
before, at its peak (sampled every 100 ms) and after the clients are gone and the server's
own timeouts have run:

- ``idle``: ``--sessions`` CometD WebSocket sessions that handshake, hold a connect and idle;
- ``no-read``: a subscriber (with and without the ack extension) that never reads, while
  ``--publish-mb`` MB is published at it on a broadcast room;
- ``closed``: ``--closed`` WebSockets that handshake and send a malformed frame, so the server
  closes them;
- ``slow``: ``--slow`` connections sending a header line (or a body byte) every 5 s; how many
  the server still holds after its header/body timeouts.

Everything is bounded (counts, sizes, timeouts) and stops by itself:

    python -m benchmarks.exhaustion --sessions 2000 --closed 4000 --slow 300
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable

import aiohttp

from benchmarks.common import ServerProcess, start_server

HANDSHAKE = {"channel": "/meta/handshake", "version": "1.0",
             "supportedConnectionTypes": ["websocket"]}
MAX_INTERVAL_S = 10  # the server's default maxInterval: sessions of gone clients expire after it


class Rss:
    """Samples the server's RSS until stopped; keeps the peak."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.before = server.rss_mb()
        self.peak = self.before
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.server.rss_mb())
            await asyncio.sleep(0.1)

    def stop(self) -> dict[str, float]:
        self._task.cancel()
        return {"rss_before_mb": round(self.before, 1), "rss_peak_mb": round(self.peak, 1),
                "rss_after_mb": round(self.server.rss_mb(), 1)}


async def ws_session(http: aiohttp.ClientSession, url: str, ext: dict[str, object] | None = None
                     ) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(url)
    await ws.send_str(json.dumps([{"id": "1", **HANDSHAKE, **({"ext": ext} if ext else {})}]))
    cid = str(json.loads((await ws.receive()).data)[0]["clientId"])
    return ws, cid


async def idle(server: ServerProcess, args: argparse.Namespace) -> dict[str, float]:
    url = server.url.replace("http", "ws") + "/genesys/cometd"
    rss = Rss(server)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = []
        for batch in range(0, args.sessions, 100):
            opened = await asyncio.gather(*(ws_session(http, url) for _ in range(
                min(100, args.sessions - batch))))
            for ws, cid in opened:
                await ws.send_str(json.dumps([{"id": "2", "channel": "/meta/connect",
                                               "clientId": cid, "connectionType": "websocket",
                                               "advice": {"timeout": 0}}]))
                await ws.receive()
                await ws.send_str(json.dumps([{"id": "3", "channel": "/meta/connect",
                                               "clientId": cid,
                                               "connectionType": "websocket"}]))
            sockets.extend(ws for ws, _ in opened)
        await asyncio.sleep(3)
        held = server.rss_mb()
        for ws in sockets:
            await ws.close()
    await asyncio.sleep(MAX_INTERVAL_S + 3)
    return {**rss.stop(), "rss_with_sessions_mb": round(held, 1),
            "kb_per_session": round((held - rss.before) * 1024 / args.sessions, 1)}


def raw_subscriber(port: int, ext: dict[str, object] | None) -> socket.socket:
    """A WebSocket subscriber on /rooms/r with a 4 kB receive buffer, which then never reads."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /genesys/cometd HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    buf = buf.split(b"\r\n\r\n", 1)[1]

    def send(messages: list[dict[str, object]]) -> None:
        payload, mask = json.dumps(messages).encode(), os.urandom(4)
        n = len(payload)
        head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
        sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def frame() -> list[dict[str, object]]:
        nonlocal buf
        while True:
            if len(buf) >= 2:
                n, at = buf[1] & 0x7F, 2
                if n == 126:
                    n, at = int.from_bytes(buf[2:4], "big"), 4
                if len(buf) >= at + n:
                    payload, buf = buf[at:at + n], buf[at + n:]
                    return list(json.loads(payload))
            buf += sock.recv(65536)

    send([{"id": "1", **HANDSHAKE, **({"ext": ext} if ext else {})}])
    cid = frame()[0]["clientId"]
    send([{"id": "2", "channel": "/meta/connect", "clientId": cid, "connectionType": "websocket",
           "advice": {"timeout": 0}},
          {"id": "3", "channel": "/meta/subscribe", "clientId": cid, "subscription": "/rooms/r"},
          {"id": "4", "channel": "/meta/connect", "clientId": cid, "connectionType": "websocket",
           "ext": {"ack": 1}}])
    seen: list[dict[str, object]] = []
    while not any(m.get("channel") == "/meta/subscribe" for m in seen):
        seen.extend(frame())
    return sock


async def no_read(server: ServerProcess, args: argparse.Namespace, ack: bool
                  ) -> dict[str, float]:
    port = int(server.url.rsplit(":", 1)[1])
    url = server.url.replace("http", "ws") + "/genesys/cometd"
    reader = await asyncio.to_thread(raw_subscriber, port, {"ack": True} if ack else None)
    rss = Rss(server)
    size = 64 * 1024
    count = args.publish_mb * 1024 * 1024 // size
    pad = "x" * size
    async with aiohttp.ClientSession() as http:
        ws, cid = await ws_session(http, url)
        for n in range(count):
            await ws.send_str(json.dumps([{"id": str(n), "channel": "/rooms/r",
                                           "clientId": cid, "data": {"n": n, "pad": pad}}]))
            if n % 50 == 49:  # keep the publisher itself in step
                await ws.receive()
        await ws.close()
    await asyncio.sleep(2)
    reader.close()
    await asyncio.sleep(MAX_INTERVAL_S + 3)
    return {**rss.stop(), "published_mb": args.publish_mb}


async def closed(server: ServerProcess, args: argparse.Namespace) -> dict[str, float]:
    url = server.url.replace("http", "ws") + "/genesys/cometd"
    rss = Rss(server)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one() -> None:
            ws, _ = await ws_session(http, url)
            await ws.send_str("{malformed")
            await ws.receive()
            await ws.close()

        for batch in range(0, args.closed, 200):
            await asyncio.gather(*(one() for _ in range(min(200, args.closed - batch))))
    await asyncio.sleep(3)
    return {**rss.stop(), "sockets": args.closed}


async def slow(server: ServerProcess, args: argparse.Namespace) -> dict[str, float]:
    port = int(server.url.rsplit(":", 1)[1])
    rss = Rss(server)
    held = {"head": 0, "body": 0}

    async def trickle(kind: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            if kind == "body":
                writer.write(b"POST /genesys/cometd HTTP/1.1\r\nHost: x\r\nContent-Type: "
                             b"application/json\r\nContent-Length: 100000\r\n\r\n")
            else:
                writer.write(b"POST /genesys/cometd HTTP/1.1\r\n")
            deadline = asyncio.get_running_loop().time() + args.slow_wait
            while asyncio.get_running_loop().time() < deadline:
                writer.write(b"x" if kind == "body" else b"X-Slow: 1\r\n")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(65536), 5) == b"":
                        return  # closed by the server
            held[kind] += 1
        except ConnectionError:
            return
        finally:
            writer.close()

    half = args.slow // 2
    await asyncio.gather(*(trickle("head") for _ in range(half)),
                         *(trickle("body") for _ in range(args.slow - half)))
    return {**rss.stop(), "connections": args.slow, "wait_s": args.slow_wait,
            "heads_still_held": held["head"], "bodies_still_held": held["body"]}


async def main(args: argparse.Namespace) -> None:
    scenarios: dict[str, Callable[[ServerProcess], Awaitable[dict[str, float]]]] = {
        "idle": lambda s: idle(s, args),
        "no-read (no ack)": lambda s: no_read(s, args, ack=False),
        "no-read (ack)": lambda s: no_read(s, args, ack=True),
        "closed": lambda s: closed(s, args),
        "slow": lambda s: slow(s, args),
    }
    for name, run in scenarios.items():
        if args.only and not name.startswith(args.only):
            continue
        server = await start_server("--cometd-broadcast", "--cometd-handshake-rate",
                                    "100000:100000")
        try:
            result = await run(server)
        finally:
            server.stop()
        print(json.dumps({"scenario": name, **result}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--publish-mb", type=int, default=300)
    parser.add_argument("--closed", type=int, default=4000)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--slow-wait", type=float, default=45.0,
                        help="How long slow clients keep trickling (past the server's 10 s "
                             "head and 30 s body timeouts).")
    parser.add_argument("--only", default="", help="Run the scenarios whose name starts so.")
    asyncio.run(main(parser.parse_args()))
