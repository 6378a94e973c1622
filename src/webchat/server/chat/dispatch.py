"""Routing orchestration: applies :class:`~webchat.server.routing.Router`'s decisions.

The router is the pure policy (who gets which chat); this module does what follows from it:
offers sent to agents and timed out on the scheduler, offers revoked, chats put back in the
queue or ended (giving up their queue place and agent), queue sizes published, and the queue
summaries agents see.
"""

from __future__ import annotations

import functools

from webchat.protocol.gms.models import EventType, ParticipantType
from webchat.server import inactivity
from webchat.server.chat.change import SYSTEM_ID, Change
from webchat.server.chat.clock import Scheduler, Timer
from webchat.server.chat.facts import ChatFacts
from webchat.server.chat.notify import Notifier
from webchat.server.chat.registry import ChatRegistry
from webchat.server.routing import Offer, Router
from webchat.store.records import ChatRecord, ChatStatus, ParticipantRecord


class Dispatcher:
    def __init__(self, router: Router, registry: ChatRegistry, notifier: Notifier,
                 facts: ChatFacts, scheduler: Scheduler, offer_timeout_s: float) -> None:
        self.router = router
        self._registry = registry
        self._notifier = notifier
        self._facts = facts
        self._scheduler = scheduler
        self._offer_timeout_s = offer_timeout_s
        self._timers: dict[str, Timer] = {}

    def route(self) -> None:
        """Make every offer the queue and presence allow, each timed out on the scheduler."""
        for offer in self.router.route(self._scheduler.now()):
            chat = self._registry.cached(offer.chat_id)
            if chat is None:
                continue
            self._timers[offer.chat_id] = self._scheduler.call_later(
                self._offer_timeout_s, functools.partial(self._offer_lapsed, offer))
            self._notifier.agent(offer.agent_id, {"type": "offer", "chat": self.summary(chat)})
        self._notifier.queue({service: len(queue)
                              for service, queue in self.router.queues.items()})

    def _offer_lapsed(self, offer: Offer) -> None:
        self._timers.pop(offer.chat_id, None)
        if self.router.lapse(offer.chat_id, offer.agent_id) is not None:
            self._revoke(offer)
            self.route()

    def offered_to(self, chat_id: str) -> str | None:
        offer = self.router.offers.get(chat_id)
        return offer.agent_id if offer is not None else None

    def decline(self, agent_id: str, chat_id: str) -> bool:
        """The agent turns its offer down; False if it has no offer of this chat."""
        offer = self.router.lapse(chat_id, agent_id)
        if offer is None:
            return False
        self.withdraw([offer])
        self.route()
        return True

    def withdraw(self, offers: list[Offer]) -> None:
        """Offers the router took back: their timers stop and their agents are told."""
        for offer in offers:
            self._cancel_timer(offer.chat_id)
            self._revoke(offer)

    def assign(self, chat: ChatRecord, agent_id: str, now_ms: int) -> None:
        """The agent took the chat: it leaves the queue and its offer ends."""
        self.router.dequeue(chat.chat_id)
        self._cancel_timer(chat.chat_id)
        self.router.assign(chat.chat_id, agent_id, now_ms)

    def _revoke(self, offer: Offer) -> None:
        self._notifier.agent(offer.agent_id, {"type": "offerRevoked", "chatId": offer.chat_id})

    def _cancel_timer(self, chat_id: str) -> None:
        timer = self._timers.pop(chat_id, None)
        if timer is not None:
            timer.cancel()

    def cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def end(self, change: Change) -> None:
        """End the chat: its staff leave, it gives up its queue place or agent, and it is
        evicted from the cache later; routing runs once the change is committed."""
        chat = change.chat
        for p in chat.participants.values():
            if p.connected and p.type in (ParticipantType.AGENT, ParticipantType.SUPERVISOR):
                change.touch(p)
                change.add(p.participant_id, EventType.PARTICIPANT_LEFT)
                p.connected = False
        old_agent = chat.agent_id
        chat.status = ChatStatus.ENDED
        chat.ended_ms = change.now_ms
        chat.agent_id = None
        voided = self.router.dequeue(chat.chat_id)
        self.router.release(chat.chat_id, old_agent)
        if voided is not None:
            self._revoke(voided)
        self._registry.schedule_eviction(chat.chat_id)
        self._scheduler.call_later(0, self.route)

    def requeue(self, change: Change, p: ParticipantRecord, to_agent: str | None,
                notice: str) -> None:
        """The agent leaves and the chat waits in the queue again (for ``to_agent`` if set)."""
        chat = change.chat
        change.touch(p)
        change.add(SYSTEM_ID, EventType.NOTICE, notice)
        change.add(p.participant_id, EventType.PARTICIPANT_LEFT)
        p.connected = False
        old_agent = chat.agent_id
        chat.status = ChatStatus.QUEUED
        chat.agent_id = None
        chat.target_agent = to_agent
        chat.queued_ms = change.now_ms
        if old_agent is not None:
            self.router.release(chat.chat_id, old_agent)
        self.router.enqueue(chat)

    def summary(self, chat: ChatRecord) -> dict[str, object]:
        """A chat as the agent API lists it."""
        return {
            "chatId": chat.chat_id, "service": chat.service, "status": chat.status.value,
            "createdMs": chat.created_ms, "queuedMs": chat.queued_ms, "endedMs": chat.ended_ms,
            "agentId": chat.agent_id, "targetAgent": chat.target_agent,
            "offeredTo": self.offered_to(chat.chat_id),
            "position": self.router.position(chat.service, chat.chat_id) or None,
            "customer": chat.customer, "userData": chat.user_data,
            "nextPosition": chat.next_index, "async": self._facts.is_async(chat),
            "waitingForReply": inactivity.unanswered_since(chat) is not None,
        }

    def queued_page(self, service: str | None, offset: int, limit: int
                    ) -> tuple[list[ChatRecord], int]:
        """``limit`` waiting chats from ``offset`` in queue order, and how many wait in all."""
        waiting = self.router.waiting(service)
        page = waiting[offset:offset + limit]
        return [c for cid in page if (c := self._registry.cached(cid)) is not None], len(waiting)
