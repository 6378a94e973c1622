"""The chat domain's front door: wires the collaborators of :mod:`webchat.server.chat`.

Adapters (customer REST and CometD through :mod:`webchat.server.gms`, the agent API, accounts)
call the collaborator for their concern: :attr:`ChatEngine.customers`, :attr:`~ChatEngine.staff`
(agent operations), :attr:`~ChatEngine.supervision`, :attr:`~ChatEngine.files`. The engine
itself only starts and stops the domain and answers the few questions that span concerns, so
that no adapter needs the cache, the router or the store.
"""

from __future__ import annotations

from collections.abc import Callable

from webchat.broker.base import Broker, Unsubscribe
from webchat.broker.lease import Lease, LocalLease
from webchat.server.chat.agents import AgentOps
from webchat.server.chat.change import CUSTOMER_ID, SYSTEM_ID, Change, Changes
from webchat.server.chat.clock import AsyncioScheduler, Clock, Scheduler, wall_clock
from webchat.server.chat.customers import CustomerForm, CustomerOps
from webchat.server.chat.dispatch import Dispatcher
from webchat.server.chat.facts import ChatFacts
from webchat.server.chat.files import Files
from webchat.server.chat.notify import Notifier
from webchat.server.chat.registry import ChatRegistry
from webchat.server.chat.replica import Replica
from webchat.server.chat.supervision import Supervision
from webchat.server.chat.sweeper import Sweeper
from webchat.server.config import ServerConfig
from webchat.server.files import Vault, vault_for
from webchat.server.routing import Router
from webchat.store.base import Store
from webchat.store.records import AgentRecord, ChatRecord

__all__ = ["CUSTOMER_ID", "SYSTEM_ID", "Change", "ChatEngine", "Clock", "CustomerForm",
           "wall_clock"]


class ChatEngine:
    def __init__(self, store: Store, broker: Broker, config: ServerConfig,
                 clock: Clock = wall_clock, vault: Vault | None = None,
                 scheduler: Scheduler | None = None, *, cluster: Broker | None = None,
                 leadership: Lease | None = None, node: str = "") -> None:
        """``scheduler``: where timers run (real seconds on the event loop by default); its
        clock is the domain's, so pass :class:`~webchat.server.chat.clock.SimulatedTime` to
        run a chat on simulated time. ``cluster``: the broker shared with the other
        processes of a cluster (None: this process is alone), ``leadership`` whether this
        process leads it (routing, timers, sweeps: a lease of the engine's own, held from start
        to stop, when it is alone) and ``node`` its name there."""
        self.config = config
        self.scheduler = scheduler or AsyncioScheduler(clock)
        self.clock: Clock = self.scheduler.now
        self.registry = ChatRegistry(store, self.scheduler, config.ended_cache_s)
        self.notifier = Notifier(broker, cluster)
        self._own_lease = leadership is None
        self.leadership: Lease = leadership or LocalLease()
        self.facts = ChatFacts(config)
        self.changes = Changes(self.registry, store, self.clock, config.limits)
        self.dispatch = Dispatcher(Router(), self.registry, self.changes, self.notifier,
                                   self.facts, self.scheduler, config.offer_timeout_s,
                                   self.leadership)
        self.replica = None if cluster is None else Replica(
            cluster, node or config.node_id, self.changes, self.registry, store)
        self.sweeper = Sweeper(self.registry, self.changes, self.dispatch, self.notifier,
                               self.facts, config, self.scheduler, self.clock)
        self.changes.committed.append(self.notifier.announce)
        self.customers = CustomerOps(self.registry, self.changes, self.dispatch, self.notifier,
                                     self.facts, config, self.clock)
        self.staff = AgentOps(store, self.registry, self.changes, self.dispatch,
                              self.notifier, self.facts)
        if self.replica is not None:
            self.replica.resyncs.append(self.staff.load)
        self.supervision = Supervision(self.staff, self.changes, self.notifier)
        self.files = Files(vault or vault_for(store, config.data_dir), config.files,
                           self.changes, self.staff, self.clock)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.notifier.start()
        if self.replica is not None:
            self.replica.start()  # before loading: a commit made meanwhile is caught up
        chats = await self.registry.load_open()
        await self.staff.load()
        self.dispatch.router.rebuild(list(self.registry))
        if self._own_lease:
            await self.leadership.start()
        self.dispatch.start()
        self.sweeper.start(chats)

    async def stop(self) -> None:
        if self._own_lease:
            await self.leadership.stop()
        self.notifier.stop()
        if self.replica is not None:
            await self.replica.stop()
        self.sweeper.stop()
        self.dispatch.stop()
        self.registry.cancel_evictions()
        await self.scheduler.close()

    # ---- questions that span concerns ------------------------------------------------------

    def cached(self, chat_id: str) -> ChatRecord | None:
        """The chat if it is in memory: for pushes about a chat in progress."""
        return self.registry.cached(chat_id)

    def follow(self, chat_id: str, handler: Callable[[str, bytes], None]) -> Unsubscribe:
        """Hear the chat's committed events (see :meth:`Notifier.follow`)."""
        return self.notifier.follow(chat_id, handler)

    async def catch_up(self, chat: ChatRecord) -> ChatRecord:
        """The chat as stored, if another process may have changed it (else as it is)."""
        if self.replica is None:
            return chat
        return await self.replica.refresh(chat.chat_id) or chat

    def agent(self, agent_id: str) -> AgentRecord | None:
        return self.staff.agent(agent_id)

    async def find_agent(self, agent_id: str) -> AgentRecord | None:
        return await self.staff.find(agent_id)

    def has_agents(self) -> bool:
        return bool(self.staff.agents)

    async def save_agent(self, record: AgentRecord) -> None:
        await self.staff.save_agent(record)

    def health(self) -> dict[str, object]:
        """What ``/healthz`` reports: chats in memory and chats waiting."""
        return {"status": "ok", "chats": len(self.registry),
                "waiting": self.dispatch.router.waiting_count()}

    def summary(self, chat: ChatRecord) -> dict[str, object]:
        return self.dispatch.summary(chat)

    # ---- for tests and benchmarks: the state behind the collaborators ----------------------

    @property
    def chats(self) -> dict[str, ChatRecord]:
        return self.registry.chats

    @property
    def router(self) -> Router:
        return self.dispatch.router

    async def set_ready(self, agent_id: str, ready: bool, capacity: int) -> None:
        await self.staff.set_ready(agent_id, ready, capacity)

    def queued(self, service: str | None = None) -> list[ChatRecord]:
        return self.staff.queued(service)

    async def check_inactivity(self) -> None:
        await self.sweeper.check_inactivity()

    async def expire_typing(self) -> None:
        await self.sweeper.expire_typing()
