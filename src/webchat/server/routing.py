"""Who gets which chat: per-service queues, agent presence and offers.

The router holds no durable state of its own: its picture is a function of the chats, kept
by :meth:`Router.sync` after every commit — queue order from each chat's ``queued_ms``, agent
load from its assignment, offers from its ``offered_to`` — so every process of a cluster (each
sees every commit) and a restarted one hold the same picture. Only presence comes from
elsewhere (the agents' own settings). :meth:`Router.route` proposes offers; they hold once
committed to their chats, which is what makes an offer exclusive across processes.

Policy: the longest-waiting chat goes first; among ready agents with spare capacity the least
busy wins, ties broken by who was assigned least recently. An agent that let an offer lapse is
tried last for that chat, never excluded, so a chat cannot starve when only that agent is free.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator
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

_Key = tuple[int, int, str]
"""(queued_ms, arrival, chat_id): the queue order, ties in the order chats were enqueued."""


class ServiceQueue:
    """One service's waiting chats in queue order, kept as a sorted list of keys.

    A chat's position is a binary search (it was a scan: with 10,000 waiting chats a queue
    listing, one position per chat, took 1.7 s). Adding or removing moves the list's tail in
    one memmove, far below what a dict re-sort or a scan per chat cost.
    """

    def __init__(self) -> None:
        self._keys: list[_Key] = []
        self._key_of: dict[str, _Key] = {}

    def add(self, chat_id: str, queued_ms: int, arrival: int) -> None:
        self.remove(chat_id)
        key = (queued_ms, arrival, chat_id)
        bisect.insort(self._keys, key)
        self._key_of[chat_id] = key

    def key(self, chat_id: str) -> _Key | None:
        return self._key_of.get(chat_id)

    def remove(self, chat_id: str) -> None:
        key = self._key_of.pop(chat_id, None)
        if key is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]

    def position(self, chat_id: str) -> int:
        """1 for the chat waiting longest, 0 for a chat not in this queue."""
        key = self._key_of.get(chat_id)
        return 0 if key is None else bisect.bisect_left(self._keys, key) + 1

    def __contains__(self, chat_id: object) -> bool:
        return chat_id in self._key_of

    def __iter__(self) -> Iterator[str]:
        return (key[2] for key in self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class Router:
    def __init__(self) -> None:
        self.queues: dict[str, ServiceQueue] = {}
        """service -> its waiting chats in queue order."""
        self._arrivals = itertools.count()
        self.agents: dict[str, Presence] = {}
        self.offers: dict[str, Offer] = {}
        self.lapsed: dict[str, set[str]] = {}
        self.targets: dict[str, str] = {}
        self._assigned: dict[str, set[str]] = {}
        """chat id -> the agent :meth:`sync` last saw it assigned to."""

    # ---- state -----------------------------------------------------------------------------

    def rebuild(self, chats: list[ChatRecord]) -> None:
        for chat in sorted(chats, key=lambda c: c.queued_ms):
            self.sync(chat)

    def sync(self, chat: ChatRecord) -> None:
        """Make the picture of ``chat`` match the chat as committed: in its queue (at its
        ``queued_ms``) or not, assigned to its agent or not, offered as its row says. An offer
        that went while the chat still waits lapsed (declined, timed out, withdrawn): that
        agent is tried last for it."""
        cid = chat.chat_id
        waiting = chat.status is ChatStatus.QUEUED
        queue = self.queues.get(chat.service)
        key = None if queue is None else queue.key(cid)
        if not waiting:
            self.dequeue(cid)
        elif key is None or key[0] != chat.queued_ms:
            self.targets.pop(cid, None)
            self.enqueue(chat)
        assigned = chat.agent_id if chat.status is ChatStatus.ACTIVE else None
        for agent_id in self._assigned.pop(cid, set()) - {assigned}:
            self.presence(agent_id).active.discard(cid)
        if assigned is not None:
            self._assigned[cid] = {assigned}
            if cid not in self.presence(assigned).active:
                self.assign(cid, assigned, chat.events[-1].utcTime if chat.events
                            else chat.queued_ms)
        offered = chat.offered_to if waiting else None
        current = self.offers.get(cid)
        if current is not None and current.agent_id != offered:
            self.lapse(cid, current.agent_id)
            current = None
        if offered is not None and (current is None or current.made_ms != chat.offered_ms):
            # New, or the proposal :meth:`route` made, now with the time it was committed at.
            self.offers[cid] = Offer(cid, offered, chat.offered_ms or 0)
            self.presence(offered).offered.add(cid)

    def presence(self, agent_id: str) -> Presence:
        found = self.agents.get(agent_id)
        if found is None:
            found = self.agents[agent_id] = Presence(agent_id)
        return found

    def enqueue(self, chat: ChatRecord) -> None:
        queue = self.queues.get(chat.service)
        if queue is None:
            queue = self.queues[chat.service] = ServiceQueue()
        queue.add(chat.chat_id, chat.queued_ms, next(self._arrivals))
        if chat.target_agent:
            self.targets[chat.chat_id] = chat.target_agent

    def position(self, service: str, chat_id: str) -> int:
        """The chat's place in its service's queue (1 = next), 0 if it is not waiting."""
        queue = self.queues.get(service)
        return 0 if queue is None else queue.position(chat_id)

    def waiting(self, service: str | None = None) -> list[str]:
        if service is not None:
            return list(self.queues.get(service, ()))
        return [cid for queue in self.queues.values() for cid in queue]

    def waiting_count(self, service: str | None = None) -> int:
        """How many chats wait (in ``service``, or in all), without listing them."""
        if service is not None:
            queue = self.queues.get(service)
            return 0 if queue is None else len(queue)
        return sum(len(queue) for queue in self.queues.values())

    def dequeue(self, chat_id: str) -> Offer | None:
        """The chat leaves the queue (accepted, ended). Returns an offer it had, now void."""
        for queue in self.queues.values():
            queue.remove(chat_id)
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
                if not self._anyone_free():
                    return made  # the rest of a long queue cannot be offered to anyone
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

    def _anyone_free(self) -> bool:
        return any(p.ready and p.load < p.capacity for p in self.agents.values())

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
