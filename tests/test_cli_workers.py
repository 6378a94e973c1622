"""``webchat serve --workers N``: the supervisor (with stand-in workers) and the real thing (two
server processes on one port with PostgreSQL and Redis)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from pathlib import Path

import msgspec
import psutil
import pytest

from tests.conftest import free_port
from webchat.cli.workers import Supervisor

ROOT = Path(__file__).resolve().parents[1]
WITHIN_S = 30.0
"""Bound on anything the tests wait for (a spawned worker starts in about a second here)."""


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def eventually(check: Callable[[], bool], what: str, within_s: float = WITHIN_S) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        time.sleep(0.05)


# ---- the supervisor, with stand-in workers --------------------------------------------------


def stand_in_worker(slot: int, lifeline: Connection) -> None:
    """A worker that marks ``<slot>-<pid>`` in WEBCHAT_TEST_MARKS, reports that it listens,
    and lives until SIGTERM or its parent is gone. WEBCHAT_TEST_MODE=exit-at-start dies
    before listening; a ``crash`` file in the marks makes every worker exit with 4."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    marks = Path(os.environ["WEBCHAT_TEST_MARKS"])
    (marks / f"{slot}-{os.getpid()}").touch()
    if os.environ.get("WEBCHAT_TEST_MODE") == "exit-at-start":
        sys.exit(3)
    lifeline.send(os.getpid())
    while not wait([lifeline], 0.05):
        if (marks / "crash").exists():
            sys.exit(4)


def supervise() -> None:
    """The parent of the stand-ins (run as its own process: it takes SIGTERM and SIGINT)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    supervisor = Supervisor(stand_in_worker, 2, max_restarts=2, stop_grace_s=10,
                            on_ready=lambda pids: print("ready", *pids, flush=True))
    sys.exit(supervisor.run())


@contextmanager
def supervisor_process(marks: Path, mode: str = "") -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "WEBCHAT_TEST_MARKS": str(marks), "WEBCHAT_TEST_MODE": mode,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tests.test_cli_workers import supervise; supervise()"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for mark in marks.glob("*-*"):  # no stand-in outlives its test
            pid = int(mark.name.split("-")[1])
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def pids_of(marks: Path, slot: int) -> list[int]:
    return sorted(int(m.name.split("-")[1]) for m in marks.glob(f"{slot}-*"))


def test_a_killed_worker_is_restarted_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    with supervisor_process(tmp_path) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[0] == "ready" and len(set(first[1:])) == 2, first
        pids = [int(p) for p in first[1:]]
        os.kill(pids[1], signal.SIGKILL)
        eventually(lambda: len(pids_of(tmp_path, 1)) == 2, "worker 1 restarted")
        restarted = next(p for p in pids_of(tmp_path, 1) if p != pids[1])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WITHIN_S) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
        assert f"worker 1 (pid {pids[1]}) exited with code -9; restarting it" in log, log
        assert all(gone(pid) for pid in [*pids, restarted])


def test_sigint_stops_them_all_too(tmp_path: Path) -> None:
    with supervisor_process(tmp_path) as proc:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()[1:]]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WITHIN_S) == 0
        assert all(gone(pid) for pid in pids)


def test_a_worker_that_dies_before_listening_stops_the_start(tmp_path: Path) -> None:
    with supervisor_process(tmp_path, "exit-at-start") as proc:
        assert proc.wait(WITHIN_S) == 1
        assert proc.stderr is not None
        assert "worker 0 (pid " in (log := proc.stderr.read())
        assert "exited with code 3 during start-up" in log, log
        assert pids_of(tmp_path, 1) == []  # the others are not even started


def test_a_crash_loop_is_given_up_after_the_restart_bound(tmp_path: Path) -> None:
    with supervisor_process(tmp_path) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        (tmp_path / "crash").touch()
        assert proc.wait(WITHIN_S) == 1
        assert proc.stderr is not None
        log = proc.stderr.read()
        assert log.count("restarting it") == 2, log  # max_restarts=2
        assert "more than 2 restarts in 60 s, giving up" in log, log
    assert all(gone(pid) for slot in (0, 1) for pid in pids_of(tmp_path, slot))


def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    with supervisor_process(tmp_path) as proc:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()[1:]]
        proc.kill()
        proc.wait()
        eventually(lambda: all(gone(pid) for pid in pids), "orphaned workers stopped", 10)


# ---- webchat serve --workers 2 on PostgreSQL and Redis --------------------------------------


def healthz(port: int) -> dict[str, object]:
    """One /healthz on a new connection (the kernel picks the worker per connection)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        return msgspec.json.decode(resp.read(), type=dict[str, object])


def answering(port: int, want: set[int] | None = None, tries: int = 400) -> dict[int, str]:
    """pid -> node of the workers seen answering ``tries`` requests, or until all of ``want``
    have answered."""
    seen: dict[int, str] = {}
    for _ in range(tries):
        try:
            health = healthz(port)
        except OSError:  # a worker being restarted: its socket just closed
            continue
        seen[int(str(health["pid"]))] = str(health["node"])
        if want is not None and want <= seen.keys():
            break
    return seen


@contextmanager
def serve_workers(tmp_path: Path, postgres_dsn: str, redis_url: str, redis_prefix: str
                  ) -> Iterator[tuple[subprocess.Popen[str], int, list[int], list[str]]]:
    """``webchat serve --workers 2`` until its banner is out: (process, port, pids, banner)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "webchat", "serve", "--workers", "2", "--port", str(port),
         "--data-dir", str(tmp_path), "--store", postgres_dsn,
         "--broker", f"{redis_url}?prefix={redis_prefix}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    banner: list[str] = []
    pids: list[int] = []
    try:
        while not banner or not banner[-1].startswith("chat with it"):
            line = proc.stdout.readline()
            if not line:
                assert proc.stderr is not None
                pytest.fail(f"serve exited early: {banner}\n{proc.stderr.read()[-3000:]}")
            banner.append(line.rstrip())
        workers = next(line for line in banner if line.startswith("workers"))
        pids = [int(p) for p in workers.split("(pids ")[1].rstrip(")").split()]
        yield proc, port, pids, banner
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_two_workers_answer_on_one_port_and_sigterm_stops_both(
        tmp_path: Path, postgres_dsn: str, redis_url: str, redis_prefix: str) -> None:
    with serve_workers(tmp_path, postgres_dsn, redis_url, redis_prefix) as (proc, port, pids,
                                                                             banner):
        text = "\n".join(banner)
        assert f"workers     2 processes sharing port {port}" in text, text
        assert "store       postgresql://" in text, text
        assert text.count("created agent account agent with password") == 1, text
        seen = answering(port, set(pids))
        assert seen.keys() == set(pids), (seen, pids)
        assert len(set(seen.values())) == 2  # each names itself: <host>-<pid>
        assert all(node.endswith(f"-{pid}") for pid, node in seen.items()), seen

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WITHIN_S) == 0
        assert all(gone(pid) for pid in pids)
        with pytest.raises(OSError):
            healthz(port)


def test_a_killed_worker_comes_back_on_the_same_port(
        tmp_path: Path, postgres_dsn: str, redis_url: str, redis_prefix: str) -> None:
    with serve_workers(tmp_path, postgres_dsn, redis_url, redis_prefix) as (proc, port, pids,
                                                                             _):
        os.kill(pids[0], signal.SIGKILL)
        replacement: list[int] = []

        def back() -> bool:
            seen = answering(port, tries=20)
            replacement.extend(p for p in seen if p not in pids)
            return bool(replacement)

        eventually(back, "a new worker answering")
        assert pids[1] in answering(port, {pids[1], replacement[0]})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WITHIN_S) == 0
        assert gone(replacement[0]) and gone(pids[1])


def test_workers_of_a_killed_parent_let_go_of_the_port(
        tmp_path: Path, postgres_dsn: str, redis_url: str, redis_prefix: str) -> None:
    with serve_workers(tmp_path, postgres_dsn, redis_url, redis_prefix) as (proc, port, pids,
                                                                             _):
        proc.kill()
        proc.wait()
        eventually(lambda: all(gone(pid) for pid in pids), "orphaned workers stopped", 15)
        with pytest.raises(OSError):
            healthz(port)
