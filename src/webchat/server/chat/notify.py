"""Who hears what: a chat's committed events on its topic, and each agent's own stream.

Agents hear the events of the chats they are connected to (or just sent from), and supervisors
those of the chats they monitor: :attr:`Notifier.monitors` is that live, unpersisted view.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from webchat.broker.base import Broker, Unsubscribe
from webchat.protocol.gms.models import Message
from webchat.store.records import ChatRecord


def connected_agents(chat: ChatRecord) -> set[str]:
    return {p.agent_id for p in chat.participants.values() if p.agent_id and p.connected}


class Notifier:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.monitors: dict[str, set[str]] = {}
        """chat id -> supervisors watching it silently (a live view, not persisted)."""

    def announce(self, chat: ChatRecord, events: list[Message]) -> None:
        """Publish committed events to the chat's followers and its agents."""
        if not events:
            return
        topic = f"chat.{chat.chat_id}"
        for msg in events:
            self._broker.publish(topic, msgspec.json.encode(msg))
        senders = {msg.from_.participantId for msg in events}
        agents = {p.agent_id for p in chat.participants.values()
                  if p.agent_id and (p.connected or p.participant_id in senders)}
        agents |= self.monitors.get(chat.chat_id, set())
        if chat.ended:
            self.monitors.pop(chat.chat_id, None)
        for agent_id in agents:
            for msg in events:
                self.agent(agent_id, {"type": "message", "chatId": chat.chat_id,
                                      "chatEnded": chat.ended, "message": msg})

    def follow(self, chat_id: str, handler: Callable[[str, bytes], None]) -> Unsubscribe:
        """Hear a chat's events (``handler(topic, encoded message)``) until unsubscribed."""
        return self._broker.subscribe(f"chat.{chat_id}", handler)

    def listen(self, agent_id: str, handler: Callable[[str, bytes], None]
               ) -> list[Unsubscribe]:
        """An agent's stream: its own notifications and the queue sizes every agent gets."""
        return [self._broker.subscribe(f"agent.{agent_id}", handler),
                self._broker.subscribe("agents", handler)]

    def agent(self, agent_id: str, payload: dict[str, object]) -> None:
        self._broker.publish(f"agent.{agent_id}", msgspec.json.encode(payload))

    def queue(self, waiting: dict[str, int]) -> None:
        self._broker.publish("agents", msgspec.json.encode({"type": "queue", "waiting": waiting}))

    def watch(self, agent_id: str, chat_id: str) -> None:
        self.monitors.setdefault(chat_id, set()).add(agent_id)

    def unwatch(self, agent_id: str, chat_id: str) -> None:
        watchers = self.monitors.get(chat_id)
        if watchers is not None:
            watchers.discard(agent_id)
            if not watchers:
                del self.monitors[chat_id]

    def watched_by(self, agent_id: str) -> set[str]:
        return {cid for cid, watchers in self.monitors.items() if agent_id in watchers}
