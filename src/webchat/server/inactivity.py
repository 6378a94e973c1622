"""Inactivity: when a chat that an agent is handling has gone quiet for too long.

Decided from the transcript alone (so it survives restarts and needs no timers per chat): the
customer's idle time runs from their last event or the last agent joining, whichever is later;
the agent's from the first customer message they have not answered. The engine sweeps open chats
and applies what :func:`due` returns:

* customer idle past ``customer_alert_s`` -> an ``IdleAlert`` event (once per quiet period);
* customer idle past ``customer_close_s`` -> ``IdleClose`` and the chat ends — except for
  asynchronous chats, which are meant to outlive the customer's visit;
* agent silent past ``agent_alert_s`` -> a reminder on the agent's stream only;
* agent silent past ``agent_requeue_s`` -> the chat goes back to the queue for another agent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

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
    sweep_s: float = 1.0

    def __post_init__(self) -> None:
        for alert, final in ((self.customer_alert_s, self.customer_close_s),
                             (self.agent_alert_s, self.agent_requeue_s)):
            if alert is not None and final is not None and alert >= final:
                raise ValueError("an inactivity alert must come before its close/requeue")


class Action(enum.Enum):
    CUSTOMER_ALERT = "customer_alert"
    CUSTOMER_CLOSE = "customer_close"
    AGENT_ALERT = "agent_alert"
    AGENT_REQUEUE = "agent_requeue"


def _is_agent(msg: Message) -> bool:
    return msg.from_.type == ParticipantType.AGENT


def customer_idle_since(chat: ChatRecord) -> int:
    since = chat.created_ms
    for msg in chat.events:
        if msg.from_.participantId == CUSTOMER or (
                _is_agent(msg) and msg.type == EventType.PARTICIPANT_JOINED):
            since = max(since, msg.utcTime)
    return since


def unanswered_since(chat: ChatRecord) -> int | None:
    """When the customer's oldest unanswered message arrived (None when the agent spoke last
    or the customer has not written since the agent joined)."""
    since: int | None = None
    for msg in chat.events:
        if msg.type != EventType.MESSAGE and not (
                _is_agent(msg) and msg.type == EventType.PARTICIPANT_JOINED):
            continue
        if msg.from_.participantId == CUSTOMER:
            since = since if since is not None else msg.utcTime
        elif _is_agent(msg):
            since = None
    return since


def _alerted(chat: ChatRecord, since: int, who: str) -> bool:
    return any(m.type == EventType.IDLE_ALERT and m.utcTime >= since
               and (m.userData or {}).get("idle") == who for m in chat.events)


def due(chat: ChatRecord, now_ms: int, config: InactivityConfig, *, asynchronous: bool,
        agent_reminded_since: int | None = None) -> Action | None:
    """What, if anything, the chat's silence calls for now."""
    if chat.status is not ChatStatus.ACTIVE:
        return None
    since = customer_idle_since(chat)
    idle_s = (now_ms - since) / 1000
    if not asynchronous:
        if config.customer_close_s is not None and idle_s >= config.customer_close_s:
            return Action.CUSTOMER_CLOSE
        if (config.customer_alert_s is not None and idle_s >= config.customer_alert_s
                and not _alerted(chat, since, "customer")):
            return Action.CUSTOMER_ALERT
    waiting = unanswered_since(chat)
    if waiting is None:
        return None
    silent_s = (now_ms - waiting) / 1000
    if config.agent_requeue_s is not None and silent_s >= config.agent_requeue_s:
        return Action.AGENT_REQUEUE
    if (config.agent_alert_s is not None and silent_s >= config.agent_alert_s
            and (agent_reminded_since is None or agent_reminded_since < waiting)):
        return Action.AGENT_ALERT
    return None


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
