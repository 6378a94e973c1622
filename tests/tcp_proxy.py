"""A loopback TCP forwarder in front of a real server, so that a test can take that server
away from one client without touching the server itself (other test runs share it):

* :meth:`TcpProxy.cut`: every connection is closed and new ones are refused (the server
  went down, or the network between);
* :meth:`TcpProxy.freeze`: connections stay open but nothing goes through (a stalled
  network: requests are neither answered nor refused) until :meth:`TcpProxy.thaw`.

With ``fallbacks`` it is also a front that keeps a client on one server while that server
lives and moves it on when it does not: each new connection goes to the current target, and
when that refuses, to the next fallback, which stays the target from then on (what a load
balancer pinning a client to a server does; tests/test_cluster_chaos.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


class TcpProxy:
    def __init__(self, target_url: str, fallbacks: Sequence[str] = ()) -> None:
        parts = urlsplit(target_url)
        self._target_url = parts
        self._targets = [_address(url) for url in (target_url, *fallbacks)]
        self._target = self._targets[0]
        self.moves = 0
        """How often the target changed because it refused a connection."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    @property
    def url(self) -> str:
        """The target URL with the proxy's address in place of the server's."""
        netloc = f"127.0.0.1:{self.port}"
        if self._target_url.username:
            netloc = self._target_url.netloc.rsplit("@", 1)[0] + "@" + netloc
        return urlunsplit(self._target_url._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        self._writers.clear()

    async def restore(self) -> None:
        """Listen again on the same port."""
        await self.start()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        """Cut without thawing first: what a frozen link holds back is dropped, never
        delivered after the test (and its cleanup) ended."""
        await self.cut()
        self.thaw()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the current target, else to the next one that takes it (which
        becomes the target); None when every one refuses."""
        start = self._targets.index(self._target)
        for step in range(len(self._targets)):
            target = self._targets[(start + step) % len(self._targets)]
            try:
                upstream = await asyncio.open_connection(*target)
            except OSError:
                continue
            if target != self._target:
                self._target = target
                self.moves += 1
            return upstream
        return None

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.close()
            self._writers.discard(dst)
