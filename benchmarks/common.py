"""Helpers shared by the benchmarks: a server subprocess, percentiles, resource sampling,
scratch PostgreSQL databases and the CPU of the services a benchmark drives."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import redis

POSTGRES_ADMIN = os.environ.get("WEBCHAT_TEST_POSTGRES",
                                "postgresql://postgres@127.0.0.1:5432/test")
"""An administrative connection that may create databases (as the tests' fixtures use)."""
REDIS_URL = os.environ.get("WEBCHAT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: tempfile.TemporaryDirectory[str]
    log: Path
    """The server's output (outside its data directory, so it outlives the run)."""

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output: why a run failed is usually there."""
        return tail_of(self.log, lines)

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def tree(self) -> list[psutil.Process]:
        """The server and its children: with ``--workers`` the supervisor does no serving,
        its workers do, and both are the server's cost. Empty once the server has exited."""
        try:
            ps = self.ps
            return [ps, *ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        return sum(cpu_by_pid(self.tree()).values())

    def serving(self) -> dict[int, int]:
        """Which of the server's processes holds each client connection: the client's local
        port -> the pid of the process whose socket it is connected to (with ``--workers``
        the kernel spreads connections over the workers; this reads where each landed)."""
        port = int(self.url.rsplit(":", 1)[1])
        found: dict[int, int] = {}
        for proc in self.tree():
            try:
                connections = proc.net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            for conn in connections:
                if conn.laddr and conn.laddr.port == port and conn.raddr:
                    found[conn.raddr.port] = proc.pid
        return found

    def rss_mb(self) -> float:
        total = 0
        for proc in self.tree():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20

    def stop(self, grace_s: float = 35.0) -> None:
        """Terminate the server (with ``--workers`` the supervisor stops its workers, each
        given 30 s to drain) and kill whatever of its tree outlives ``grace_s``."""
        tree = self.tree()
        self.proc.terminate()
        _, alive = psutil.wait_procs(tree, timeout=grace_s)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.proc.wait()
        self.data_dir.cleanup()
        self.log.unlink(missing_ok=True)


def tail_of(log: Path, lines: int) -> str:
    """The last ``lines`` lines of a server's output."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no server log: {exc})"


async def start_server(*args: str) -> ServerProcess:
    port = free_port()
    data = tempfile.TemporaryDirectory(prefix="webchat-bench-")
    log = Path(tempfile.gettempdir()) / f"webchat-bench-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - one launch before measuring
            [sys.executable, "-m", "webchat", "serve", "--port", str(port), "--data-dir",
             data.name, *args], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return ServerProcess(proc, url, data, log)
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start; its output ({log}) ends:\n"
                       f"{tail_of(log, 40)}")


def start_bot(url: str, user: str, password: str, capacity: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "webchat", "bot", "--url", url, "--user", user, "--password",
         password, "--capacity", str(capacity), "--greeting", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def cpu_by_pid(processes: Iterable[psutil.Process]) -> dict[int, float]:
    """CPU seconds (user + system) so far of each process still alive."""
    found = {}
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        found[proc.pid] = float(times.user + times.system)
    return found


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two :func:`cpu_by_pid` samples; a process that appeared in between
    counts from its start, one that ended in between is lost (its share cannot be read)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


@asynccontextmanager
async def scratch_database(prefix: str = "webchat_bench_") -> AsyncIterator[str]:
    """A new, empty database on :data:`POSTGRES_ADMIN`'s server (its DSN), dropped afterwards:
    other runs share the server, and a database per run keeps them apart."""
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    name = f"{prefix}{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def postgres_backends(conn: asyncpg.Connection[asyncpg.Record]
                            | asyncpg.pool.PoolConnectionProxy[asyncpg.Record], database: str
                            ) -> list[psutil.Process]:
    """The PostgreSQL server processes serving ``database``: ours alone, whoever else shares
    the server (its WAL writer's and checkpointer's share of our commits is not counted; they
    serve every database). Empty when the server runs on another machine."""
    rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    found = []
    for row in rows:
        try:
            found.append(psutil.Process(row[0]))
        except psutil.Error:
            continue
    return found


def redis_process(url: str) -> psutil.Process | None:
    """The redis-server process, if it runs on this machine (its CPU is part of the cost)."""
    client = redis.Redis.from_url(url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None
