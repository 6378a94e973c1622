"""Inactivity: when a chat has gone quiet for too long.

Decided from the transcript alone (so it survives restarts and needs no timers per chat): the
customer's idle time runs from their last event or the last agent joining, whichever is later
(for a chat waiting in the queue, from when it was queued if that is later still); the agent's
from the first customer message they have not answered. The engine sweeps open chats and applies
what :func:`due` returns:

* customer idle past ``customer_alert_s`` (queued: ``queued_alert_s``) -> an ``IdleAlert`` event
  (once per quiet period);
* customer idle past ``customer_close_s`` (queued: ``queued_close_s``) -> ``IdleClose`` and the
  chat ends — except for asynchronous chats, which are meant to outlive the customer's visit;
* agent silent past ``agent_alert_s`` -> a reminder on the agent's stream only;
* agent silent past ``agent_requeue_s`` -> the chat goes back to the queue for another agent.

The sweep runs every second, so it must not read transcripts: what the rules need of one is
folded into a small :class:`Quiet` as events are committed (:func:`fold`), and :func:`due` looks
at that and the chat's status alone; :func:`next_due` says when it next will name an action, so
that a sweep looks only at the chats due by then.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from webchat.protocol.gms.models import EventType, Message, ParticipantType
from webchat.store.records import ChatRecord, ChatStatus

CUSTOMER = 1


@dataclass(frozen=True)
class InactivityConfig:
    customer_alert_s: float | None = 240.0
    customer_close_s: float | None = 300.0
    agent_alert_s: float | None = 120.0
    agent_requeue_s: float | None = None
    """Off by default: moving a chat away from its agent is a policy a site must choose."""
    queued_alert_s: float | None = 1500.0
    queued_close_s: float | None = 1800.0
    """A customer waiting in the queue is expected to wait quietly, so far longer than with an
    agent; but a chat abandoned in the queue (a closed tab never says goodbye) must end."""
    sweep_s: float = 1.0

    def __post_init__(self) -> None:
        for alert, final in ((self.customer_alert_s, self.customer_close_s),
                             (self.queued_alert_s, self.queued_close_s),
                             (self.agent_alert_s, self.agent_requeue_s)):
            if alert is not None and final is not None and alert >= final:
                raise ValueError("an inactivity alert must come before its close/requeue")

    def customer_limits(self, status: ChatStatus) -> tuple[float | None, float | None]:
        """(alert, close) seconds of customer silence for a chat in this state."""
        if status is ChatStatus.QUEUED:
            return self.queued_alert_s, self.queued_close_s
        return self.customer_alert_s, self.customer_close_s


class Action(enum.Enum):
    CUSTOMER_ALERT = "customer_alert"
    CUSTOMER_CLOSE = "customer_close"
    AGENT_ALERT = "agent_alert"
    AGENT_REQUEUE = "agent_requeue"


class Quiet(msgspec.Struct, frozen=True, gc=False):
    """What the inactivity rules need to know of a transcript (times in ms). A new one per
    commit of every chat, kept until the chat's next: an untracked struct (numbers only, no
    cycle possible), so the garbage collector never walks them."""

    customer_since: int = 0
    """The customer's latest event or the latest agent joining (0: neither yet)."""
    unanswered_since: int | None = None
    """When the customer's oldest unanswered message arrived (None when the agent spoke last
    or the customer has not written since the agent joined)."""
    customer_alerted: int | None = None
    """When the customer was last sent an ``IdleAlert``."""


def fold(quiet: Quiet, events: Iterable[Message]) -> Quiet:
    """``quiet`` updated with ``events``, which follow the ones it was made from. Folding a
    transcript in pieces gives what folding it whole does, so the engine folds each commit."""
    customer_since, unanswered, alerted = (quiet.customer_since, quiet.unanswered_since,
                                           quiet.customer_alerted)
    for msg in events:
        agent = msg.from_.type == ParticipantType.AGENT
        joined = agent and msg.type == EventType.PARTICIPANT_JOINED
        if msg.from_.participantId == CUSTOMER:
            customer_since = max(customer_since, msg.utcTime)
            if msg.type == EventType.MESSAGE and unanswered is None:
                unanswered = msg.utcTime
        elif agent and (joined or msg.type == EventType.MESSAGE):
            unanswered = None
        if joined:
            customer_since = max(customer_since, msg.utcTime)
        if msg.type == EventType.IDLE_ALERT and (msg.userData or {}).get("idle") == "customer":
            alerted = msg.utcTime
    return Quiet(customer_since, unanswered, alerted)


def quiet_of(chat: ChatRecord) -> Quiet:
    """The whole transcript folded (for a chat the engine has not followed yet)."""
    return fold(Quiet(), chat.events)


def unanswered_since(chat: ChatRecord) -> int | None:
    """See :attr:`Quiet.unanswered_since` (reads the whole transcript)."""
    return quiet_of(chat).unanswered_since


def customer_idle_since(chat: ChatRecord, quiet: Quiet) -> int:
    since = max(chat.created_ms, quiet.customer_since)
    if chat.status is ChatStatus.QUEUED:
        since = max(since, chat.queued_ms)  # a requeued chat: its customer waits anew
    return since


def due(chat: ChatRecord, quiet: Quiet, now_ms: int, config: InactivityConfig, *,
        asynchronous: bool, agent_reminded_since: int | None = None) -> Action | None:
    """What, if anything, the chat's silence calls for now. Of the chat it reads the status and
    times only; its transcript it knows through ``quiet``."""
    if chat.status is ChatStatus.ENDED:
        return None
    since = customer_idle_since(chat, quiet)
    idle_s = (now_ms - since) / 1000
    alert_s, close_s = config.customer_limits(chat.status)
    if not asynchronous:
        if close_s is not None and idle_s >= close_s:
            return Action.CUSTOMER_CLOSE
        alerted = quiet.customer_alerted is not None and quiet.customer_alerted >= since
        if alert_s is not None and idle_s >= alert_s and not alerted:
            return Action.CUSTOMER_ALERT
    waiting = quiet.unanswered_since
    if chat.status is not ChatStatus.ACTIVE or waiting is None:
        return None
    silent_s = (now_ms - waiting) / 1000
    if config.agent_requeue_s is not None and silent_s >= config.agent_requeue_s:
        return Action.AGENT_REQUEUE
    if (config.agent_alert_s is not None and silent_s >= config.agent_alert_s
            and (agent_reminded_since is None or agent_reminded_since < waiting)):
        return Action.AGENT_ALERT
    return None


def next_due(chat: ChatRecord, quiet: Quiet, config: InactivityConfig, *, asynchronous: bool,
             agent_reminded_since: int | None = None) -> int | None:
    """The first time (ms) at which :func:`due` names an action for these same inputs, or None
    if it never will: until something is committed to the chat (or its agent is reminded),
    nothing is due before it. The sweeper looks at a chat only then, so a sweep costs what is
    due rather than every open chat (at 10,000 chats the whole walk held the event loop for
    tens of milliseconds every second)."""
    if chat.status is ChatStatus.ENDED:
        return None
    times: list[int] = []
    since = customer_idle_since(chat, quiet)
    alert_s, close_s = config.customer_limits(chat.status)
    if not asynchronous:
        if close_s is not None:
            times.append(_first_ms(since, close_s))
        alerted = quiet.customer_alerted is not None and quiet.customer_alerted >= since
        if alert_s is not None and not alerted:
            times.append(_first_ms(since, alert_s))
    waiting = quiet.unanswered_since
    if chat.status is ChatStatus.ACTIVE and waiting is not None:
        if config.agent_requeue_s is not None:
            times.append(_first_ms(waiting, config.agent_requeue_s))
        if config.agent_alert_s is not None and (agent_reminded_since is None
                                                 or agent_reminded_since < waiting):
            times.append(_first_ms(waiting, config.agent_alert_s))
    return min(times, default=None)


def _first_ms(since: int, limit_s: float) -> int:
    """The least ``now`` with ``(now - since) / 1000 >= limit_s``, as :func:`due` computes it
    (floating point included)."""
    now = since + math.ceil(limit_s * 1000)
    while (now - 1 - since) / 1000 >= limit_s:
        now -= 1
    while (now - since) / 1000 < limit_s:
        now += 1
    return now


# ---- typing ------------------------------------------------------------------------------
# The customer is typing while their latest typing-related event (typing started or stopped, a
# message, leaving) is a ``TypingStarted``. Two real-client habits make the server keep this
# state rather than trust the client to close it: the Genesys widgets over CometD send
# ``startTyping`` (with the text typed so far) every few seconds while the text changes and
# never ``stopTyping``, and over REST they send the text typed so far with every refresh. So a
# typing that nothing followed for ``typing_timeout_s`` ends on the server, and a changed
# preview while typing reaches the agent as a new ``TypingStarted`` carrying it.

_ENDS_TYPING = frozenset({EventType.TYPING_STOPPED, EventType.MESSAGE,
                          EventType.PARTICIPANT_LEFT})


def customer_typing(chat: ChatRecord) -> Message | None:
    """The customer's ``TypingStarted`` still in force, if any. Reads back from the end only
    to the customer's latest typing-related event."""
    for msg in reversed(chat.events):
        if msg.from_.participantId != CUSTOMER:
            continue
        if msg.type == EventType.TYPING_STARTED:
            return msg
        if msg.type in _ENDS_TYPING:
            return None
    return None


def preview_is_new(chat: ChatRecord, preview: str) -> bool:
    """A preview worth passing on: the customer is typing and the text differs from the last
    one the agent got. A preview alone never starts typing (text left in the box is not)."""
    typing = customer_typing(chat)
    return typing is not None and bool(preview) and (typing.text or "") != preview


def typing_expired(chat: ChatRecord, now_ms: int, timeout_s: float) -> bool:
    typing = customer_typing(chat)
    return typing is not None and now_ms - typing.utcTime >= timeout_s * 1000
