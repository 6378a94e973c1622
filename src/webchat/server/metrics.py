"""Prometheus metrics at ``/metrics``, in the text exposition format, one registry per app.

Instrumentation stays out of the domain and the protocols: this module listens where the code
already tells what happened (where nothing did, a callback list was added, nothing more):

- ``Changes.published`` (this process's own commits, not those replayed from other
  processes, so a cluster's sum counts each once): events committed by type, and the queue
  wait of each chat an agent accepted;
- ``Changes.saved``: how long each store write took;
- ``CometdEndpoint.sent`` and ``ChatApi.answered``: transcript events handed to a customer's
  transport (a CometD WebSocket frame, a long-poll answer, a REST or chat-ntf answer):
  delivery latency;
- at scrape time, from the engine's own state (no count is kept in parallel, so none can
  drift): chats waiting and active per service, agents ready, Bayeux sessions per transport,
  and one store and one broker round trip (``/readyz``'s probes);
- from ``gc.callbacks`` (:mod:`webchat.server.gc_policy`): the garbage collector's pauses, the
  process's, not the app's, so two apps in one process show the same figures.

In a cluster every process's registry and router follow every commit (replication), so the
chat and agent gauges are the cluster's figures, the same at each process: aggregate them
with ``max``, not ``sum``. Counters, histograms and sessions are the process's own: ``sum``.

Labels are bounded by construction: services come from the configuration, event types from
``EventType``, transports are fixed names; never a chat id, an agent or an address.

Delivery latency is now minus the event's ``utcTime``, both in milliseconds from the domain
clock. ``utcTime`` is taken when the change opens, before the chat's lock and the store write,
so the figure is what the customer waits for: lock, write, broker, queueing and the write to
the socket. Across hosts it also carries their clocks' skew: exact when the processes share one
machine's clock, as here; with NTP-synchronised hosts, off by their offset (typically well
under a millisecond on one LAN). Each event is measured once per process, the first time it is
handed to a customer's transport (a high-water mark per chat), so a page reload that fetches a
transcript again does not count its old events as late; a client that resumes on another
process after a failover does count there, with the real wait.

Queries: messages per second ``rate(webchat_events_committed_total{type="Message"}[1m])``;
delivery p99 ``histogram_quantile(0.99, rate(webchat_delivery_latency_seconds_bucket[5m]))``.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric

from webchat.protocol.bayeux.messages import BayeuxMessage
from webchat.protocol.gms.models import ChatResponse, EventType, Message, ParticipantType
from webchat.server.chat_api import ChatApi
from webchat.server.cometd import CometdEndpoint
from webchat.server.engine import ChatEngine
from webchat.server.gc_policy import pauses
from webchat.server.ops import Readiness
from webchat.store.records import ChatRecord, ChatStatus

TRANSPORTS = ("websocket", "long-polling")
"""Bayeux transports (``ServerSession.transport``)."""
DELIVERY_TRANSPORTS = (*TRANSPORTS, "rest")
DELIVERY_BUCKETS = (.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
QUEUE_WAIT_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
SAVE_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5)
MAX_TRACKED_CHATS = 100_000
"""Chats whose delivery high-water mark is kept (a few MB). Past it, the marks of chats no
longer in memory go, or, if that is not enough, all: an old event fetched again may then be
measured once more."""


class _State:
    """Gauges computed at scrape time from what the engine and the endpoint hold."""

    def __init__(self, engine: ChatEngine, cometd: CometdEndpoint) -> None:
        self.engine = engine
        self.cometd = cometd

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        services = self.engine.config.services
        router = self.engine.dispatch.router
        waiting = GaugeMetricFamily("webchat_chats_waiting",
                                    "Chats waiting in the queue for an agent", labels=["service"])
        active = GaugeMetricFamily("webchat_chats_active",
                                   "Chats an agent has accepted that have not ended",
                                   labels=["service"])
        counts = Tally(c.service for c in self.engine.registry.chats.values()
                       if c.status is ChatStatus.ACTIVE)
        for service in services:
            waiting.add_metric([service], router.waiting_count(service))
            active.add_metric([service], counts[service])
        yield waiting
        yield active
        ready = sum(1 for p in router.agents.values() if p.ready)
        yield GaugeMetricFamily("webchat_agents_ready", "Agents ready to be offered chats",
                                value=ready)
        sessions = GaugeMetricFamily("webchat_bayeux_sessions",
                                     "CometD sessions by the transport they handshook on",
                                     labels=["transport"])
        by_transport = Tally(s.transport for s in self.cometd.bayeux.sessions.values())
        for transport in TRANSPORTS:
            sessions.add_metric([transport], by_transport[transport])
        yield sessions
        gc_pauses = HistogramMetricFamily(
            "webchat_gc_pause_seconds", "Pauses of this process's cyclic garbage collector, "
            "by generation (2: a full collection); see webchat.server.gc_policy",
            labels=["generation"])
        for generation in range(3):
            buckets, total = pauses().snapshot(generation)
            gc_pauses.add_metric([str(generation)], buckets, total)
        yield gc_pauses


class Metrics:
    """The app's registry and the listeners that feed it (see the module docstring)."""

    def __init__(self, engine: ChatEngine, cometd: CometdEndpoint, chat_api: ChatApi,
                 readiness: Readiness) -> None:
        # No ``*_created`` series (a process-wide switch of prometheus-client): they double
        # the series for a start time ``process_start_time_seconds``-style tooling ignores.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.engine = engine
        self.readiness = readiness
        self.registry = CollectorRegistry()
        r = self.registry
        committed = Counter("webchat_events_committed", "Transcript events committed by this "
                            "process, by type", ["type"], registry=r)
        self._committed = {t.value: committed.labels(t.value) for t in EventType}
        delivery = Histogram("webchat_delivery_latency_seconds",
                             "From an event's commit (its utcTime) to its hand-over to a "
                             "customer's transport", ["transport"], buckets=DELIVERY_BUCKETS,
                             registry=r)
        self._delivery = {t: delivery.labels(t) for t in DELIVERY_TRANSPORTS}
        queue_wait = Histogram("webchat_queue_wait_seconds",
                               "From a chat's (re)queueing to an agent accepting it",
                               ["service"], buckets=QUEUE_WAIT_BUCKETS, registry=r)
        self._queue_wait = {s: queue_wait.labels(s) for s in engine.config.services}
        self._save = Histogram("webchat_store_save_seconds",
                               "How long one chat change's store write took",
                               buckets=SAVE_BUCKETS, registry=r)
        self._up = Gauge("webchat_dependency_up", "Whether the store or the broker answered "
                         "its probe during this scrape", ["dependency"], registry=r)
        self._ping = Gauge("webchat_dependency_ping_seconds", "Round trip of this scrape's "
                           "probe of the store or the broker", ["dependency"], registry=r)
        self._draining = Gauge("webchat_draining", "1 while the process drains before it "
                               "stops", registry=r)
        r.register(_State(engine, cometd))
        self._delivered: dict[str, int] = {}
        """chat id -> the highest transcript index whose delivery was measured."""
        engine.changes.published.append(self._on_commit)
        engine.changes.saved.append(self._save.observe)
        cometd.sent.append(self._on_bayeux)
        chat_api.answered.append(lambda response: self._on_response("rest", response))

    # ---- listeners -------------------------------------------------------------------------

    def _on_commit(self, chat: ChatRecord, events: list[Message]) -> None:
        for event in events:
            counter = self._committed.get(event.type)
            if counter is not None:
                counter.inc()
            if event.type == EventType.PARTICIPANT_JOINED.value \
                    and event.from_.type == ParticipantType.AGENT.value \
                    and chat.status is ChatStatus.ACTIVE:
                waited = self._queue_wait.get(chat.service)
                if waited is not None:
                    waited.observe(max(0, event.utcTime - chat.queued_ms) / 1000)

    def _on_bayeux(self, transport: str, messages: list[BayeuxMessage]) -> None:
        for message in messages:
            if isinstance(message.data, ChatResponse):
                self._on_response(transport, message.data)

    def _on_response(self, transport: str, response: ChatResponse) -> None:
        events, chat_id = response.messages, response.chatId
        if not events or chat_id is None:
            return
        seen = self._delivered.get(chat_id, 0)
        fresh = [e for e in events if e.index > seen]
        if fresh:
            now = self.engine.clock()
            histogram = self._delivery[transport]
            for event in fresh:
                histogram.observe(max(0, now - event.utcTime) / 1000)
            if len(self._delivered) >= MAX_TRACKED_CHATS:
                self._prune()
            self._delivered[chat_id] = max(e.index for e in fresh)

    def _prune(self) -> None:
        """Forget the marks of chats no longer in memory (ended and evicted), or all."""
        cached = self.engine.cached
        self._delivered = {c: i for c, i in self._delivered.items() if cached(c) is not None}
        if len(self._delivered) >= MAX_TRACKED_CHATS:
            self._delivered.clear()

    # ---- /metrics --------------------------------------------------------------------------

    async def handle(self, _: web.Request) -> web.Response:
        for name, check in (await self.readiness.check()).items():
            self._up.labels(name).set(1 if check.ok else 0)
            self._ping.labels(name).set(check.ms / 1000)
        self._draining.set(1 if self.readiness.drain.draining else 0)
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


def install(app: web.Application, engine: ChatEngine, cometd: CometdEndpoint,
            chat_api: ChatApi, readiness: Readiness) -> Metrics:
    """``/metrics`` on ``app``, fed by this app's engine and endpoints only."""
    metrics = Metrics(engine, cometd, chat_api, readiness)
    app[METRICS] = metrics
    app.router.add_get("/metrics", metrics.handle)
    return metrics
