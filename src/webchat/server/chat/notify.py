"""Who hears what, in this process and across a cluster.

Two kinds of news leave the domain:

* a chat's committed events, on the chat's topic and to its agents' streams. Every process
  learns of every commit (its own, and the others' through :mod:`~webchat.server.chat.replica`)
  and announces it to the clients connected to *it*: this part is always local.
* news that is no commit: offers and their revocation, idle reminders, queue sizes,
  supervisors' monitors, and what other parts register with :meth:`Notifier.on` (agent
  presence and accounts, revoked tokens). It is made once, in one process, and every
  process must hear it: :meth:`Notifier.send` puts it on the cluster broker's ``control``
  topic and each process (the sender too) applies it in :meth:`Notifier.receive`. With one
  process there is no cluster broker and :meth:`send` applies it at once.

Agents hear the events of the chats they are connected to (or just sent from), and supervisors
those of the chats they monitor: :attr:`Notifier.monitors` is that live, unpersisted view,
the same in every process since watching is control news too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec

from webchat.broker.base import Broker, Unsubscribe
from webchat.protocol.gms.models import Message
from webchat.store.records import ChatRecord

log = logging.getLogger(__name__)

CONTROL = "control"
Listener = Callable[[dict[str, Any]], None]


def connected_agents(chat: ChatRecord) -> set[str]:
    return {p.agent_id for p in chat.participants.values() if p.agent_id and p.connected}


class Notifier:
    def __init__(self, broker: Broker, cluster: Broker | None = None) -> None:
        """``broker``: this process's fan-out; ``cluster``: the broker every process shares
        (None with one process)."""
        self._broker = broker
        self._cluster = cluster
        self.monitors: dict[str, set[str]] = {}
        """chat id -> supervisors watching it silently (a live view, not persisted)."""
        self._listeners: dict[str, list[Listener]] = {}
        self._unsubscribe: Unsubscribe | None = None

    def start(self) -> None:
        if self._cluster is not None:
            self._unsubscribe = self._cluster.subscribe(CONTROL, self._control)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ---- commits: local ---------------------------------------------------------------------

    def announce(self, chat: ChatRecord, events: list[Message]) -> None:
        """Publish committed events to the chat's followers and its agents here."""
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
                self._local_agent(agent_id, {"type": "message", "chatId": chat.chat_id,
                                             "chatEnded": chat.ended, "message": msg})

    def follow(self, chat_id: str, handler: Callable[[str, bytes], None]) -> Unsubscribe:
        """Hear a chat's events (``handler(topic, encoded message)``) until unsubscribed."""
        return self._broker.subscribe(f"chat.{chat_id}", handler)

    def listen(self, agent_id: str, handler: Callable[[str, bytes], None]
               ) -> list[Unsubscribe]:
        """An agent's stream: its own notifications and the queue sizes every agent gets."""
        return [self._broker.subscribe(f"agent.{agent_id}", handler),
                self._broker.subscribe("agents", handler)]

    def _local_agent(self, agent_id: str, payload: dict[str, Any]) -> None:
        self._broker.publish(f"agent.{agent_id}", msgspec.json.encode(payload))

    # ---- control news: once, heard everywhere ----------------------------------------------

    def agent(self, agent_id: str, payload: dict[str, Any]) -> None:
        """Tell one agent something that is no commit (an offer, a revocation, a reminder)."""
        self.send({"kind": "agent", "agent": agent_id, "payload": payload})

    def queue(self, waiting: dict[str, int]) -> None:
        self.send({"kind": "queue", "waiting": waiting})

    def watch(self, agent_id: str, chat_id: str) -> None:
        self.send({"kind": "watch", "agent": agent_id, "chat": chat_id})

    def unwatch(self, agent_id: str, chat_id: str) -> None:
        self.send({"kind": "unwatch", "agent": agent_id, "chat": chat_id})

    def on(self, kind: str, listener: Listener) -> None:
        """Hear control news of ``kind`` (sent by :meth:`send` in any process) here."""
        self._listeners.setdefault(kind, []).append(listener)

    def send(self, news: dict[str, Any]) -> None:
        if self._cluster is None:
            self.receive(news)
        else:
            self._cluster.publish(CONTROL, msgspec.json.encode(news))

    def _control(self, _topic: str, payload: bytes) -> None:
        try:
            news = msgspec.json.decode(payload)
            self.receive(news)
        except Exception:
            log.exception("bad control news %r", payload[:200])

    def receive(self, news: dict[str, Any]) -> None:
        """Apply control news in this process (see the module docstring)."""
        kind = news["kind"]
        if kind == "agent":
            self._local_agent(news["agent"], news["payload"])
        elif kind == "queue":
            self._broker.publish("agents", msgspec.json.encode(
                {"type": "queue", "waiting": news["waiting"]}))
        elif kind == "watch":
            self.monitors.setdefault(news["chat"], set()).add(news["agent"])
        elif kind == "unwatch":
            watchers = self.monitors.get(news["chat"])
            if watchers is not None:
                watchers.discard(news["agent"])
                if not watchers:
                    del self.monitors[news["chat"]]
        for listener in self._listeners.get(kind, ()):
            listener(news)

    def watched_by(self, agent_id: str) -> set[str]:
        return {cid for cid, watchers in self.monitors.items() if agent_id in watchers}
