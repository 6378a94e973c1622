"""The inactivity sweeper: every ``sweep_s`` on the scheduler, applies what
:mod:`webchat.server.inactivity` (the pure policy) says is due: a customer's typing that timed
out, idle alerts, idle closes, and chats requeued from an agent who does not answer.

A sweep looks only at the chats due by then: each copy of a chat that becomes the cached one
(:attr:`ChatRegistry.put_listeners`) is planned with :func:`inactivity.next_due` into a heap of
deadlines, so a tick costs what is due, not every open chat (walking 10,000 held the event loop
for tens of milliseconds each second: the delivery p99)."""

from __future__ import annotations

import heapq
import logging
import math

from webchat.protocol.gms.models import EventType, Message
from webchat.server import inactivity
from webchat.server.chat.agents import agent_participant
from webchat.server.chat.change import CUSTOMER_ID, SYSTEM_ID, Change, Changes
from webchat.server.chat.clock import Clock, Scheduler, Timer
from webchat.server.chat.dispatch import Dispatcher
from webchat.server.chat.facts import ChatFacts
from webchat.server.chat.notify import Notifier
from webchat.server.chat.registry import ChatRegistry
from webchat.server.config import ServerConfig
from webchat.store.records import ChatRecord

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, registry: ChatRegistry, changes: Changes, dispatcher: Dispatcher,
                 notifier: Notifier, facts: ChatFacts, config: ServerConfig,
                 scheduler: Scheduler, clock: Clock) -> None:
        self._registry = registry
        self._changes = changes
        self._dispatcher = dispatcher
        self._notifier = notifier
        self._facts = facts
        self._config = config
        self._scheduler = scheduler
        self._clock = clock
        self._timer: Timer | None = None
        self._reminded: dict[str, int] = {}
        """chat id -> when its agent was last reminded of an unanswered customer."""
        self._typing: set[str] = set()
        """Chats whose customer may be typing: the ones the typing timeout looks at."""
        self._deadlines: dict[str, int] = {}
        """chat id -> when :func:`inactivity.next_due` says it must be looked at (ms)."""
        self._heap: list[tuple[int, str]] = []
        """The deadlines in order; an entry no longer in ``_deadlines`` is stale, skipped."""
        changes.committed.append(self._committed)
        registry.put_listeners.append(self._plan)

    def start(self, chats: list[ChatRecord]) -> None:
        """``chats``: those the registry loaded at start (already planned as it put them)."""
        for chat in chats:
            if inactivity.customer_typing(chat) is not None:
                self._typing.add(chat.chat_id)
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        self._timer = self._scheduler.call_later(self._config.inactivity.sweep_s, self._tick)

    async def _tick(self) -> None:
        try:
            if self._dispatcher.leadership.held:  # once per cluster
                await self.check_inactivity()
        except Exception:
            log.exception("inactivity sweep failed")
        if self._timer is not None:  # not stopped meanwhile
            self._schedule()

    def _committed(self, chat: ChatRecord, events: list[Message]) -> None:
        if any(m.type == EventType.TYPING_STARTED and m.from_.participantId == CUSTOMER_ID
               for m in events):
            self._typing.add(chat.chat_id)

    def _due(self, chat: ChatRecord, now_ms: int) -> inactivity.Action | None:
        return inactivity.due(chat, self._registry.tally(chat).quiet, now_ms,
                              self._config.inactivity, asynchronous=self._facts.is_async(chat),
                              agent_reminded_since=self._reminded.get(chat.chat_id))

    def _plan(self, chat: ChatRecord) -> None:
        """Put the chat's next deadline in the heap (or drop it: nothing will be due)."""
        when = inactivity.next_due(chat, self._registry.tally(chat).quiet,
                                   self._config.inactivity,
                                   asynchronous=self._facts.is_async(chat),
                                   agent_reminded_since=self._reminded.get(chat.chat_id))
        if when is None:
            self._deadlines.pop(chat.chat_id, None)
            if chat.ended:
                self._reminded.pop(chat.chat_id, None)
            return
        if self._deadlines.get(chat.chat_id) == when:
            return
        self._deadlines[chat.chat_id] = when
        heapq.heappush(self._heap, (when, chat.chat_id))
        if len(self._heap) > 2 * len(self._deadlines) + 1024:  # mostly stale: rebuild
            self._heap = [(t, c) for c, t in self._deadlines.items()]
            heapq.heapify(self._heap)

    def _take_due(self, now_ms: int) -> list[ChatRecord]:
        """The cached chats whose deadline has come, removed from the plan (each is planned
        again when it changes, or after it has been looked at)."""
        chats: list[ChatRecord] = []
        while self._heap and self._heap[0][0] <= now_ms:
            when, chat_id = heapq.heappop(self._heap)
            if self._deadlines.get(chat_id) != when:
                continue  # stale: the chat was planned again since
            del self._deadlines[chat_id]
            chat = self._registry.cached(chat_id)
            if chat is not None and not chat.ended:
                chats.append(chat)
        return chats

    async def check_inactivity(self) -> None:
        """Alert, close or requeue chats that went quiet (see :mod:`inactivity`)."""
        await self.expire_typing()
        for chat in self._take_due(self._clock()):
            try:
                await self._act(chat)
            except Exception:  # one chat's failure must not leave the others unswept
                log.exception("inactivity sweep of chat %s failed", chat.chat_id)
            current = self._registry.cached(chat.chat_id)
            if current is not None:  # taken off the plan: planned again, acted on or not
                self._plan(current)

    async def _act(self, chat: ChatRecord) -> None:
        """Apply what is due to ``chat`` now, if anything still is."""
        action = self._due(chat, self._clock())
        if action is None:
            return
        if action is inactivity.Action.AGENT_ALERT:
            self._reminded[chat.chat_id] = self._clock()
            if chat.agent_id is not None:
                self._notifier.agent(chat.agent_id, {
                    "type": "idle", "chatId": chat.chat_id,
                    "waitingSinceMs": self._registry.tally(chat).quiet.unanswered_since})
            return
        async with self._changes.open(chat) as change:
            # Re-decide under the lock: the customer may have written meanwhile.
            if self._due(change.chat, change.now_ms) is action:
                self._apply_idle(change, action)

    async def expire_typing(self) -> None:
        """End the typing of customers who sent nothing for ``typing_timeout_s``."""
        timeout = self._config.typing_timeout_s
        for chat_id in list(self._typing):
            chat = self._registry.cached(chat_id)
            if chat is None or chat.ended or inactivity.customer_typing(chat) is None:
                self._typing.discard(chat_id)
                continue
            if not inactivity.typing_expired(chat, self._clock(), timeout):
                continue
            self._typing.discard(chat_id)
            async with self._changes.open(chat) as change:
                if not change.chat.ended and inactivity.typing_expired(
                        change.chat, change.now_ms, timeout):
                    change.add(CUSTOMER_ID, EventType.TYPING_STOPPED, by_server=True)

    def _apply_idle(self, change: Change, action: inactivity.Action) -> None:
        chat = change.chat
        if action is inactivity.Action.CUSTOMER_ALERT:
            alert_s, close_s = self._config.inactivity.customer_limits(chat.status)
            left = math.ceil((close_s or 0) - (alert_s or 0))
            change.add(SYSTEM_ID, EventType.IDLE_ALERT,
                       self._facts.notice(chat, "idle_alert", seconds=left),
                       user_data={"idle": "customer", "closeInS": str(left)})
        elif action is inactivity.Action.CUSTOMER_CLOSE:
            change.add(SYSTEM_ID, EventType.IDLE_CLOSE, self._facts.notice(chat, "idle_close"),
                       user_data={"idle": "customer"})
            customer = change.touch(chat.participants[CUSTOMER_ID])
            change.add(CUSTOMER_ID, EventType.PARTICIPANT_LEFT)
            customer.connected = False
            self._dispatcher.end(change)
        elif action is inactivity.Action.AGENT_REQUEUE and chat.agent_id is not None:
            p = agent_participant(chat.agent_id, chat)
            self._dispatcher.requeue(change, p, None, self._facts.notice(chat,
                                                                         "agent_idle_requeue"))
            self._reminded.pop(chat.chat_id, None)
