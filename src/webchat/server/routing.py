"""Who gets which chat: per-service queues, agent presence and offers.

The router holds no durable state of its own. Queue order comes from each chat's persisted
``queued_ms`` and agent load from the persisted chat assignments, so after a restart
:meth:`Router.rebuild` recreates the same picture. Offers are deliberately not persisted: an
offer that was outstanding when the server stopped is simply made again.

Policy: the longest-waiting chat goes first; among ready agents with spare capacity the least
busy wins, ties broken by who was assigned least recently. An agent that let an offer lapse is
tried last for that chat, never excluded, so a chat cannot starve when only that agent is free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from webchat.store.records import ChatRecord, ChatStatus


@dataclass
class Presence:
    agent_id: str
    ready: bool = False
    capacity: int = 3
    active: set[str] = field(default_factory=set)
    offered: set[str] = field(default_factory=set)
    last_assigned_ms: int = 0

    @property
    def load(self) -> int:
        return len(self.active) + len(self.offered)


@dataclass
class Offer:
    chat_id: str
    agent_id: str
    made_ms: int


OfferSink = Callable[[Offer], None]


class Router:
    def __init__(self) -> None:
        self.queues: dict[str, dict[str, int]] = {}
        """service -> {chat_id: queued_ms}, kept in queue order."""
        self.agents: dict[str, Presence] = {}
        self.offers: dict[str, Offer] = {}
        self.lapsed: dict[str, set[str]] = {}
        self.targets: dict[str, str] = {}

    # ---- state -----------------------------------------------------------------------------

    def rebuild(self, chats: list[ChatRecord]) -> None:
        for chat in sorted(chats, key=lambda c: c.queued_ms):
            if chat.status is ChatStatus.QUEUED:
                self.enqueue(chat)
            elif chat.status is ChatStatus.ACTIVE and chat.agent_id:
                self.presence(chat.agent_id).active.add(chat.chat_id)

    def presence(self, agent_id: str) -> Presence:
        found = self.agents.get(agent_id)
        if found is None:
            found = self.agents[agent_id] = Presence(agent_id)
        return found

    def enqueue(self, chat: ChatRecord) -> None:
        queue = self.queues.setdefault(chat.service, {})
        queue[chat.chat_id] = chat.queued_ms
        if chat.target_agent:
            self.targets[chat.chat_id] = chat.target_agent
        if len(queue) > 1 and chat.queued_ms < max(queue.values()):
            self.queues[chat.service] = dict(sorted(queue.items(), key=lambda kv: kv[1]))

    def position(self, service: str, chat_id: str) -> int:
        for n, queued in enumerate(self.queues.get(service, {}), start=1):
            if queued == chat_id:
                return n
        return 0

    def waiting(self, service: str | None = None) -> list[str]:
        if service is not None:
            return list(self.queues.get(service, {}))
        return [cid for queue in self.queues.values() for cid in queue]

    def dequeue(self, chat_id: str) -> Offer | None:
        """The chat leaves the queue (accepted, ended). Returns an offer it had, now void."""
        for queue in self.queues.values():
            queue.pop(chat_id, None)
        self.lapsed.pop(chat_id, None)
        self.targets.pop(chat_id, None)
        return self._drop_offer(chat_id)

    def assign(self, chat_id: str, agent_id: str, now_ms: int) -> None:
        presence = self.presence(agent_id)
        presence.active.add(chat_id)
        presence.last_assigned_ms = now_ms

    def release(self, chat_id: str, agent_id: str | None) -> None:
        if agent_id is not None:
            self.presence(agent_id).active.discard(chat_id)

    def set_ready(self, agent_id: str, ready: bool, capacity: int) -> list[Offer]:
        """Change presence; returns offers withdrawn because the agent is no longer ready."""
        presence = self.presence(agent_id)
        presence.ready = ready
        presence.capacity = capacity
        if ready:
            return []
        return [offer for cid in list(presence.offered)
                if (offer := self._drop_offer(cid)) is not None]

    def lapse(self, chat_id: str, agent_id: str) -> Offer | None:
        """An offer timed out or was declined: the agent goes to the back of the line."""
        offer = self.offers.get(chat_id)
        if offer is None or offer.agent_id != agent_id:
            return None
        self.lapsed.setdefault(chat_id, set()).add(agent_id)
        return self._drop_offer(chat_id)

    def _drop_offer(self, chat_id: str) -> Offer | None:
        offer = self.offers.pop(chat_id, None)
        if offer is not None:
            self.presence(offer.agent_id).offered.discard(chat_id)
        return offer

    # ---- matching --------------------------------------------------------------------------

    def route(self, now_ms: int) -> list[Offer]:
        """Make every offer the current state allows; returns the new offers."""
        made: list[Offer] = []
        for queue in self.queues.values():
            for chat_id in queue:
                if chat_id in self.offers:
                    continue
                agent = self._pick(chat_id)
                if agent is None:
                    continue
                offer = Offer(chat_id, agent.agent_id, now_ms)
                self.offers[chat_id] = offer
                agent.offered.add(chat_id)
                made.append(offer)
        return made

    def _pick(self, chat_id: str) -> Presence | None:
        target = self.targets.get(chat_id)
        lapsed = self.lapsed.get(chat_id, set())
        best: tuple[bool, int, int, str] | None = None
        chosen = None
        for presence in self.agents.values():
            if not presence.ready or presence.load >= presence.capacity:
                continue
            if target is not None and presence.agent_id != target:
                continue
            key = (presence.agent_id in lapsed, presence.load, presence.last_assigned_ms,
                   presence.agent_id)
            if best is None or key < best:
                best, chosen = key, presence
        return chosen
