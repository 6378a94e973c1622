"""Routing orchestration: applies :class:`~webchat.server.routing.Router`'s decisions.

The router is the pure policy (who gets which chat) and its picture follows the committed
chats in every process (:meth:`Router.sync`). This module does what follows from it, in the
one process that holds the cluster's lease (:mod:`webchat.broker.lease`): offers made by
committing them to their chats, timed out on the scheduler, revoked, and queue sizes
published. An offer is a chat change that re-checks its premise under the chat's lock
(still waiting, offered to nobody), so even two leaders for a moment cannot offer one chat to
two agents. Declining, accepting, ending and requeueing can happen in any process: they are
chat changes too, and the leader hears of them like everyone else.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from webchat.broker.lease import Lease
from webchat.protocol.gms.models import EventType, Message, ParticipantType
from webchat.server import inactivity
from webchat.server.chat.change import SYSTEM_ID, Change, Changes
from webchat.server.chat.clock import Scheduler, Timer
from webchat.server.chat.facts import ChatFacts
from webchat.server.chat.notify import Notifier
from webchat.server.chat.registry import ChatRegistry
from webchat.server.errors import ChatError
from webchat.server.routing import Offer, Router
from webchat.store.records import ChatRecord, ChatStatus, ParticipantRecord

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, router: Router, registry: ChatRegistry, changes: Changes,
                 notifier: Notifier, facts: ChatFacts, scheduler: Scheduler,
                 offer_timeout_s: float, leadership: Lease) -> None:
        self.router = router
        self._registry = registry
        self._changes = changes
        self._notifier = notifier
        self._facts = facts
        self._scheduler = scheduler
        self._offer_timeout_s = offer_timeout_s
        self.leadership = leadership
        self._timers: dict[str, tuple[Offer, Timer]] = {}
        self._route_due = False
        self._stopped = False
        changes.committed.append(self._committed)
        notifier.on("presence", self._presence)
        self.leadership.on_change.append(self._leading)

    # ---- following the chats ---------------------------------------------------------------

    def _committed(self, chat: ChatRecord, _events: list[Message]) -> None:
        self.router.sync(chat)
        if self.leadership.held:
            self._time_offer(chat.chat_id)
            self.route()

    def presence(self, agent_id: str, ready: bool, capacity: int) -> None:
        """Tell every process the agent's new presence (applied in :meth:`_presence`)."""
        self._notifier.send({"kind": "presence", "agent": agent_id, "ready": ready,
                             "capacity": capacity})

    def _presence(self, news: dict[str, Any]) -> None:
        withdrawn = self.router.set_ready(news["agent"], bool(news["ready"]),
                                          int(news["capacity"]))
        if self.leadership.held:
            for offer in withdrawn:
                self._spawn(self._clear_offer(offer.chat_id, offer.agent_id, None))
            self.route()

    def start(self) -> None:
        if self.leadership.held:
            self._leading(True)

    def _leading(self, held: bool) -> None:
        if held:
            for chat_id in list(self.router.offers):
                self._time_offer(chat_id)
            self.route()
        else:
            self.cancel_timers()

    # ---- the leader's work -----------------------------------------------------------------

    def route(self) -> None:
        """Make every offer the queue and presence allow (soon, once however often asked)."""
        if self.leadership.held and not self._route_due:
            self._route_due = True
            self._scheduler.call_later(0, self._route)

    async def _route(self) -> None:
        self._route_due = False
        if not self.leadership.held:
            return
        for offer in self.router.route(self._scheduler.now()):
            if self._stopped or not self.leadership.held:
                break  # the rest is the next leader's
            await self._offer(offer)
        self._notifier.queue({service: len(queue)
                              for service, queue in self.router.queues.items()})

    async def _offer(self, offer: Offer) -> None:
        """Commit the router's proposal to the chat, if it still holds there."""
        chat = self._registry.cached(offer.chat_id)
        made = False
        if chat is not None:
            try:
                async with self._changes.open(chat) as change:
                    chat = change.chat
                    if (chat.status is ChatStatus.QUEUED and chat.offered_to is None
                            and chat.target_agent in (None, offer.agent_id)):
                        # Timed from now, not from when routing proposed it: one routing
                        # pass commits its offers one after another, and the last ones would
                        # reach their agents with little of the timeout left.
                        chat.offered_to, chat.offered_ms = offer.agent_id, change.now_ms
                        change.mark()
                        made = True
            except ChatError:
                log.warning("could not offer chat %s", offer.chat_id)
        if not made:
            self.router.lapse(offer.chat_id, offer.agent_id)
            if chat is not None:
                self.router.sync(chat)
            return
        assert chat is not None
        self._notifier.agent(offer.agent_id, {"type": "offer", "chat": self.summary(chat)})

    def _time_offer(self, chat_id: str) -> None:
        """Keep one timer per outstanding offer, due ``offer_timeout_s`` after it was made."""
        offer = self.router.offers.get(chat_id)
        timed = self._timers.get(chat_id)
        if timed is not None and (offer is None or timed[0] != offer):
            timed[1].cancel()
            del self._timers[chat_id]
            timed = None
        if offer is None or timed is not None:
            return
        due_s = max(0.0, (offer.made_ms + self._offer_timeout_s * 1000
                          - self._scheduler.now()) / 1000)

        async def lapse() -> None:
            self._timers.pop(chat_id, None)
            await self._clear_offer(chat_id, offer.agent_id, offer.made_ms)

        self._timers[chat_id] = (offer, self._scheduler.call_later(due_s, lapse))

    async def _clear_offer(self, chat_id: str, agent_id: str, made_ms: int | None) -> bool:
        """Take back the chat's offer to ``agent_id`` (that very offer, if ``made_ms``)."""
        chat = self._registry.cached(chat_id)
        if chat is None:
            return False
        async with self._changes.open(chat) as change:
            chat = change.chat
            if chat.offered_to != agent_id or made_ms not in (None, chat.offered_ms):
                return False
            chat.offered_to = chat.offered_ms = None
            change.mark()
        self._revoke(agent_id, chat_id)
        return True

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("routing work failed")

        self._scheduler.call_later(0, run)

    def cancel_timers(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def stop(self) -> None:
        """No more offers from this process (a routing pass under way ends after the offer it
        is committing) nor timers."""
        self._stopped = True
        self.cancel_timers()

    # ---- in any process --------------------------------------------------------------------

    async def decline(self, agent_id: str, chat_id: str) -> bool:
        """The agent turns its offer down; False if it has no offer of this chat."""
        return await self._clear_offer(chat_id, agent_id, None)

    def assign(self, chat: ChatRecord) -> None:
        """The agent took the chat (inside the accepting change): its offer ends."""
        chat.offered_to = chat.offered_ms = None

    def _revoke(self, agent_id: str, chat_id: str) -> None:
        self._notifier.agent(agent_id, {"type": "offerRevoked", "chatId": chat_id})

    def end(self, change: Change) -> None:
        """End the chat: its staff leave, it gives up its queue place, offer or agent, and it
        is evicted from the cache later."""
        chat = change.chat
        for p in list(chat.participants.values()):
            if p.connected and p.type in (ParticipantType.AGENT, ParticipantType.SUPERVISOR):
                change.add(p.participant_id, EventType.PARTICIPANT_LEFT)
                change.touch(p).connected = False
        chat.status = ChatStatus.ENDED
        chat.ended_ms = change.now_ms
        chat.agent_id = None
        if chat.offered_to is not None:
            self._revoke(chat.offered_to, chat.chat_id)
            chat.offered_to = chat.offered_ms = None
        self._registry.schedule_eviction(chat.chat_id)

    def requeue(self, change: Change, p: ParticipantRecord, to_agent: str | None,
                notice: str) -> None:
        """The agent leaves and the chat waits in the queue again (for ``to_agent`` if set)."""
        chat = change.chat
        change.add(SYSTEM_ID, EventType.NOTICE, notice)
        change.add(p.participant_id, EventType.PARTICIPANT_LEFT)
        change.touch(p).connected = False
        chat.status = ChatStatus.QUEUED
        chat.agent_id = None
        chat.target_agent = to_agent
        chat.queued_ms = change.now_ms
        chat.offered_to = chat.offered_ms = None

    def summary(self, chat: ChatRecord) -> dict[str, object]:
        """A chat as the agent API lists it."""
        return {
            "chatId": chat.chat_id, "service": chat.service, "status": chat.status.value,
            "createdMs": chat.created_ms, "queuedMs": chat.queued_ms, "endedMs": chat.ended_ms,
            "agentId": chat.agent_id, "targetAgent": chat.target_agent,
            "offeredTo": chat.offered_to,
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
