"""``webchat serve --workers N``: N server processes on one port, kept running by a parent.

Each worker is a whole server (its own event loop, store pool and broker connection) that binds
the port with ``SO_REUSEPORT``; the kernel spreads new connections over them, so one host uses
all its cores without a proxy in front. They share their state only through the store and the
broker, which is why more than one needs PostgreSQL and Redis (checked by the caller).

The parent serves nothing. It starts worker 0 first and waits for it to listen, so that one
process applies the migrations and creates the accounts (and prints a new password once);
then starts the rest. Afterwards it restarts a worker that dies unexpectedly — a crash or an
OOM kill must not silently take a core's share of the capacity away — but at most
:data:`MAX_RESTARTS` in :data:`RESTART_WINDOW_S`, beyond which something is wrong that
restarting will not fix (the database went away, the port is taken) and it stops everything
and exits non-zero. At start-up, a worker that dies before it listened is such a case at once.
SIGTERM or SIGINT is forwarded to every worker as SIGTERM; the parent waits for them to drain
and stop (at most :data:`STOP_GRACE_S`, then SIGKILL) and exits 0 when all stopped cleanly.
Each worker holds one end of a pipe whose other end only the parent has: it reports there that
it listens, and stops when the pipe closes, so a parent killed outright leaves no orphan
serving the port.

Workers are *spawned* (a fresh interpreter), not forked: nothing of the parent's state, its
signal handlers or a half-initialised library, leaks into them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger(__name__)

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
STARTUP_TIMEOUT_S = 60.0
"""How long a worker may take to listen (migrations, loading open chats) before the parent
gives up on the whole start."""
STOP_GRACE_S = 30.0
"""How long stopping workers may drain (held long-polls answered, WebSockets closed) before
they are killed."""

Target = Callable[[int, Connection], None]
"""What a worker runs: ``target(slot, lifeline)``. It sends its pid on ``lifeline`` once it
listens, stops when ``lifeline`` closes (the parent is gone) and returns (exit code 0) when
told to stop by a signal."""


@dataclass
class _Worker:
    slot: int
    process: BaseProcess
    lifeline: Connection
    """The parent's end: the worker's pid arrives on it once it listens; never written."""
    listening: bool = False


@dataclass
class Supervisor:
    """Runs ``count`` workers of ``target`` until told to stop (see the module's docstring)."""

    target: Target
    count: int
    on_ready: Callable[[list[int]], None] = lambda pids: None
    """Called once, with the workers' pids, when all of them listen for the first time."""
    max_restarts: int = MAX_RESTARTS
    restart_window_s: float = RESTART_WINDOW_S
    startup_timeout_s: float = STARTUP_TIMEOUT_S
    stop_grace_s: float = STOP_GRACE_S
    _workers: dict[int, _Worker] = field(default_factory=dict)
    _restarts: collections.deque[float] = field(default_factory=collections.deque)
    _context: SpawnContext = field(default_factory=lambda: multiprocessing.get_context("spawn"))

    def run(self) -> int:
        """Start, supervise and stop the workers; the exit status for the parent."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        received: list[int] = []

        def on_signal(signum: int, _: object) -> None:
            received.append(signum)
            with contextlib.suppress(BlockingIOError):  # the pipe is full of wake-ups
                os.write(wake_w, b"!")

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._supervise(wake_r, received)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)
            self._stop_all()

    def _supervise(self, wake_r: int, received: list[int]) -> int:
        self._start(0)
        started = False  # every slot has listened once
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if not started else None
            ready = wait(self._watched(wake_r), timeout)
            if received:
                log.info("signal %d: stopping %d workers", received[0], len(self._workers))
                return self._stop_all()
            if not ready and not started:
                log.error("workers did not all listen within %.0f s", self.startup_timeout_s)
                return 1
            for worker in list(self._workers.values()):
                if not worker.listening and worker.lifeline in ready:
                    self._mark_listening(worker)
                if worker.process.sentinel in ready:
                    worker.process.join()  # it is gone: reap it, for its exit code
                    if not started:
                        log.error("worker %d (pid %s) exited with code %s during start-up",
                                  worker.slot, worker.process.pid, worker.process.exitcode)
                        return 1
                    if not self._may_restart():
                        log.error("worker %d (pid %s) exited with code %s: more than %d "
                                  "restarts in %.0f s, giving up", worker.slot,
                                  worker.process.pid, worker.process.exitcode,
                                  self.max_restarts, self.restart_window_s)
                        return 1
                    log.warning("worker %d (pid %s) exited with code %s; restarting it",
                                worker.slot, worker.process.pid, worker.process.exitcode)
                    self._start(worker.slot)
            if not started and all(w.listening for w in self._workers.values()):
                if len(self._workers) < self.count:  # worker 0 listens: now the others
                    for slot in range(1, self.count):
                        self._start(slot)
                else:
                    started = True
                    self.on_ready([w.process.pid or 0 for w in self._workers.values()])

    def _watched(self, wake_r: int) -> list[Any]:
        watched: list[Any] = [wake_r]
        for worker in self._workers.values():
            watched.append(worker.process.sentinel)
            if not worker.listening:
                watched.append(worker.lifeline)
        return watched

    def _start(self, slot: int) -> None:
        old = self._workers.get(slot)
        if old is not None:
            old.lifeline.close()
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=self.target, args=(slot, theirs),
                                        name=f"webchat-worker-{slot}")
        process.start()
        theirs.close()  # the worker has its own copy now
        self._workers[slot] = _Worker(slot, process, ours)

    @staticmethod
    def _mark_listening(worker: _Worker) -> None:
        try:
            worker.lifeline.recv()
        except EOFError:  # it died instead; its sentinel tells
            return
        worker.listening = True

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > self.restart_window_s:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return False
        self._restarts.append(now)
        return True

    def _stop_all(self) -> int:
        """SIGTERM every live worker, wait for them (then SIGKILL); 0 if all exited 0."""
        workers = [w.process for w in self._workers.values()]
        lifelines = [w.lifeline for w in self._workers.values()]
        self._workers.clear()
        for process in workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %s did not stop within %.0f s: killing it", process.pid,
                          self.stop_grace_s)
                process.kill()
                process.join()
        for lifeline in lifelines:
            lifeline.close()
        return 0 if all(p.exitcode == 0 for p in workers) else 1
