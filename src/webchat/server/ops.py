"""Operations: ``/readyz`` (should this process get work?) and the drain that precedes a stop.

``/healthz`` says the process lives. ``/readyz`` says whether it should be sent work: its store
and its broker each answered a trivial round trip within :data:`PROBE_TIMEOUT_S`, and it is not
shutting down. A load balancer or orchestrator that polls it stops sending work to a process
that cannot reach PostgreSQL or Redis, or that drains; ``/healthz`` stays 200 meanwhile, so
nothing restarts a process for a database outage it cannot fix.

A stop (SIGTERM to ``webchat serve``, or ``cleanup()`` of the runner :func:`make_runner`
builds) drains before it cuts connections (:class:`DrainingRunner`), all within one budget,
``drain_timeout_s`` (``--drain-timeout``, 10 s by default):

1. ``/readyz`` answers 503 ``draining``, and every response closes its connection;
2. the listening sockets close: new connections go to the other processes;
3. the drain's parts run (CometD: every client is told to reconnect, and nothing queued for a
   session is dropped, see :meth:`CometdEndpoint.begin_drain`);
4. requests in flight (REST, chat-ntf: short ones) get what is left of the budget to finish;
5. aiohttp's own shutdown (what still runs is cancelled once the budget is spent), then the
   application's cleanup closes the engine, broker and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from webchat.broker.base import Broker, Pingable
from webchat.store.base import Store

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.0
"""How long the store and the broker each have to answer a ``/readyz`` probe."""


class Drainable(Protocol):
    """Something a stop drains (the CometD endpoint)."""

    def begin_drain(self) -> None:
        """The stop began: hold nothing open any longer (synchronous, so that whatever is
        answered from this moment on already says so)."""
        ...

    async def drain(self, within_s: float) -> None:
        """Finish within ``within_s`` seconds: clients told to go, what they owe collected."""
        ...


@dataclass(frozen=True)
class Check:
    """One dependency's answer to a probe."""

    ok: bool
    ms: float
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"ok": self.ok, "ms": round(self.ms, 3)}
        if self.error is not None:
            body["error"] = self.error
        return body


async def probe(ping: Callable[[], Awaitable[None]], timeout_s: float) -> Check:
    """Time one round trip, bounded by ``timeout_s``. The error named is the exception's kind
    only: ``/readyz`` is unauthenticated, and a driver's message can name hosts and users."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await ping()
    except TimeoutError:
        return Check(False, _ms_since(started), f"no answer within {timeout_s:g} s")
    except Exception as exc:
        log.warning("readiness probe failed: %r", exc)
        return Check(False, _ms_since(started), type(exc).__name__)
    return Check(True, _ms_since(started))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def _reachable() -> None:
    """The probe of a broker without ``ping``: it lives in the process."""


class Drain:
    """What a stop does before connections are cut, within one time budget."""

    def __init__(self, timeout_s: float, parts: list[Drainable] | None = None) -> None:
        self.timeout_s = timeout_s
        self.parts: list[Drainable] = list(parts or ())
        self.draining = False
        self._deadline = 0.0
        self._run: asyncio.Task[None] | None = None
        self.in_flight = 0
        """Requests being handled now, WebSockets apart (their owners close them)."""
        self._quiet = asyncio.Event()

    def begin(self) -> None:
        """From now on ``/readyz`` says ``draining``, responses close their connection and
        every part holds nothing open; the budget starts. Idempotent."""
        if self.draining:
            return
        self.draining = True
        self._deadline = time.monotonic() + self.timeout_s
        for part in self.parts:
            part.begin_drain()

    def left(self) -> float:
        """Seconds left of the budget (the whole budget before it began)."""
        if not self.draining:
            return self.timeout_s
        return max(0.0, self._deadline - time.monotonic())

    async def run(self, *, requests: bool = True) -> None:
        """Drain every part, each with what is left of the budget, then (``requests``) wait
        for the requests in flight. A second call waits for the first."""
        self.begin()
        if self._run is None:
            self._run = asyncio.create_task(self._parts(requests))
        await asyncio.shield(self._run)

    async def _parts(self, requests: bool) -> None:
        for part in self.parts:
            try:
                await part.drain(self.left())
            except Exception:
                log.exception("draining %r failed; going on with the stop", part)
        # Before aiohttp's own shutdown, which stops reading: a body still arriving would be
        # dropped, and its request never answered.
        while requests and self.in_flight and self.left() > 0:
            self._quiet.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), self.left())

    @web.middleware
    async def track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count the requests in flight, for the drain to wait for."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)
        self.in_flight += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._quiet.set()

    async def close_connection(self, _: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: while draining, a response ends its connection, so the
        client's next request opens a new one, to a process that stays."""
        if self.draining and not isinstance(response, web.WebSocketResponse):
            response.force_close()
            response.headers["Connection"] = "close"


class Readiness:
    """``/readyz``: the store and the broker probed concurrently; probes that arrive while
    one runs share it, so a load balancer polling hard costs one round trip at a time."""

    def __init__(self, store: Store, broker: Broker, drain: Drain,
                 timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.store = store
        self.broker = broker
        self.drain = drain
        self.timeout_s = timeout_s
        self._running: asyncio.Future[dict[str, Check]] | None = None

    async def check(self) -> dict[str, Check]:
        """``{"store": Check, "broker": Check}``."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._running)

    async def _check(self) -> dict[str, Check]:
        broker_ping = self.broker.ping if isinstance(self.broker, Pingable) else _reachable
        store, broker = await asyncio.gather(probe(self.store.ping, self.timeout_s),
                                             probe(broker_ping, self.timeout_s))
        return {"store": store, "broker": broker}

    async def handle(self, _: web.Request) -> web.Response:
        if self.drain.draining:
            return web.json_response({"status": "draining"}, status=503)
        checks = await self.check()
        ready = all(c.ok for c in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "unready"}
        body.update((name, c.as_json()) for name, c in checks.items())
        return web.json_response(body, status=200 if ready else 503)


DRAIN: web.AppKey[Drain] = web.AppKey("drain", Drain)
READINESS: web.AppKey[Readiness] = web.AppKey("readiness", Readiness)


def install(app: web.Application, store: Store, broker: Broker, drain_timeout_s: float,
            parts: list[Drainable]) -> Readiness:
    """``/readyz`` and the drain on ``app``. Under a plain ``web.AppRunner`` (not
    :class:`DrainingRunner`) the drain still runs, at ``on_shutdown``: later, once aiohttp
    has closed idle connections and stopped reading (so requests in flight are left to its
    own shutdown), but held long-polls and WebSockets are still told."""
    drain = Drain(drain_timeout_s, parts)
    readiness = Readiness(store, broker, drain)
    app[DRAIN] = drain
    app[READINESS] = readiness
    app.router.add_get("/readyz", readiness.handle)
    app.middlewares.append(drain.track)
    app.on_response_prepare.append(drain.close_connection)
    app.on_shutdown.insert(0, lambda _: drain.run(requests=False))
    return readiness


class DrainingRunner(web.AppRunner):
    """An ``AppRunner`` whose ``cleanup()`` drains first (steps 1-4 of the module docstring)
    and gives aiohttp's shutdown what is left of the budget."""

    async def cleanup(self) -> None:
        drain = self.app.get(DRAIN)
        if drain is not None:
            drain.begin()
            for site in list(self.sites):
                await site.stop()
            await drain.run()
            # aiohttp waits this long for handlers still running (0 would mean forever).
            self._shutdown_timeout = max(drain.left(), 0.01)
        await super().cleanup()
