"""A ``webchat serve`` process for the fuzz tests: started, reached, measured, stopped.

The fuzz tests talk to a real server process so that what they check is what a deployment
would show: no 5xx, no reply later than :data:`TIMEOUT_S`, no traceback in the log, and the
process's RSS back near where it started once the fuzzing is over.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil

from tests.conftest import free_port

TIMEOUT_S = 5.0
"""A reply later than this is a hang (every refusal the fuzzers provoke is immediate)."""


class LiveServer:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.proc = proc
        self.log = log
        self.rss_start = 0

    def post(self, path: str, body: bytes, content_type: str | None) -> tuple[int, bytes]:
        """One request on its own connection; a reply later than TIMEOUT_S fails the test."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        try:
            headers = {"Content-Type": content_type} if content_type is not None else {}
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def mark_start(self) -> None:
        """Where memory starts, after the caller has warmed every kind of request once (code
        loaded on first use is no growth)."""
        self.rss_start = self.rss()

    def assert_clean_and_memory_back(self, *log_markers: str, within_s: float = 4.0) -> None:
        """No traceback (nor any of ``log_markers``) in the log, and RSS back within 10% of
        :meth:`mark_start` (closed sockets and sessions may take a sweep to be let go of)."""
        log = self.log.read_text(errors="replace")
        for marker in ("Traceback", *log_markers):
            assert marker not in log, log[-4000:]
        deadline = time.monotonic() + within_s
        rss = self.rss()
        while rss > self.rss_start * 1.10 and time.monotonic() < deadline:
            time.sleep(0.1)
            rss = self.rss()
        print(f"server RSS {self.rss_start / 2**20:.1f} MB before, {rss / 2**20:.1f} MB after")
        assert rss <= self.rss_start * 1.10, (self.rss_start, rss)


Server = TypeVar("Server", bound=LiveServer)


@contextmanager
def live_server(kind: type[Server], data: Path, *options: str,
                webchat: Sequence[str] = (sys.executable, "-m", "webchat"),
                env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """``webchat serve`` on a free loopback port with its data and log in ``data``, as a
    ``kind`` (a :class:`LiveServer` with what the caller's tests need); ``webchat`` is the
    command that runs the CLI (another installation's ``bin/webchat``), ``env`` its
    environment."""
    port = free_port()
    log = data / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*webchat, "serve", "--port", str(port), "--data-dir", str(data), *options],
            stdout=subprocess.DEVNULL, stderr=out, env=env)
    server = kind(port, proc, log)
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)
