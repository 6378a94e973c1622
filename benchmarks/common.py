"""Helpers shared by the benchmarks: a server subprocess, percentiles, resource sampling."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil


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

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.data_dir.cleanup()


async def start_server(*args: str) -> ServerProcess:
    port = free_port()
    data = tempfile.TemporaryDirectory(prefix="webchat-bench-")
    proc = subprocess.Popen(  # noqa: ASYNC220 - one launch before measuring
        [sys.executable, "-m", "webchat", "serve", "--port", str(port), "--data-dir",
         data.name, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return ServerProcess(proc, url, data)
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def start_bot(url: str, user: str, password: str, capacity: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "webchat", "bot", "--url", url, "--user", user, "--password",
         password, "--capacity", str(capacity), "--greeting", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
