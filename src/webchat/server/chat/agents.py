"""Agent operations: the agent directory, who may see which chat, and what an agent does to
one (accept, decline, write, end, transfer, presence). Each returns the committed chat."""

from __future__ import annotations

from typing import Any

import msgspec

from webchat.protocol.gms.models import EventType, ParticipantType
from webchat.server.chat.change import Change, Changes
from webchat.server.chat.dispatch import Dispatcher
from webchat.server.chat.facts import ChatFacts
from webchat.server.chat.notify import Notifier
from webchat.server.chat.registry import ChatRegistry
from webchat.server.errors import AgentError, Refusal
from webchat.server.routing import Presence
from webchat.store.base import Store
from webchat.store.records import AgentRecord, ChatRecord, ChatStatus, ParticipantRecord

_agent_record = msgspec.json.Decoder(AgentRecord)


def agent_participant(agent_id: str, chat: ChatRecord) -> ParticipantRecord:
    """The agent's connected participant in the chat, or why it has none."""
    for p in chat.participants.values():
        if p.agent_id == agent_id and p.connected:
            return p
    if chat.ended:
        raise AgentError(Refusal.CONFLICT, "chat_ended", "the chat has ended")
    raise AgentError(Refusal.CONFLICT, "not_in_chat", "the agent is not connected to this chat")


class AgentOps:
    def __init__(self, store: Store, registry: ChatRegistry, changes: Changes,
                 dispatcher: Dispatcher, notifier: Notifier, facts: ChatFacts) -> None:
        self._store = store
        self._registry = registry
        self._changes = changes
        self._dispatcher = dispatcher
        self._notifier = notifier
        self._facts = facts
        self.agents: dict[str, AgentRecord] = {}
        notifier.on("account", self._account)

    # ---- the directory ---------------------------------------------------------------------

    async def load(self) -> None:
        for agent in await self._store.list_agents():
            self.agents[agent.agent_id] = agent
            self._dispatcher.router.set_ready(agent.agent_id, agent.ready, agent.capacity)

    def _account(self, news: dict[str, Any]) -> None:
        record = _agent_record.decode(msgspec.json.encode(news["record"]))
        self.agents[record.agent_id] = record

    def agent(self, agent_id: str) -> AgentRecord | None:
        return self.agents.get(agent_id)

    async def find(self, agent_id: str) -> AgentRecord | None:
        """The account from the directory or, when this process has not heard of it yet,
        from the store: an account created on another process a moment ago (its news still
        on the way over the broker) may log in here at once."""
        agent = self.agents.get(agent_id)
        if agent is None:
            stored = await self._store.get_agent(agent_id)
            if stored is not None:
                agent = self.agents.setdefault(agent_id, stored)
        return agent

    async def save_agent(self, record: AgentRecord) -> None:
        """Create or replace an account (stored first, then known here)."""
        await self._store.put_agent(record)
        self.agents[record.agent_id] = record
        self._notifier.send({"kind": "account", "record": msgspec.to_builtins(record)})

    def is_supervisor(self, agent_id: str) -> bool:
        agent = self.agents.get(agent_id)
        return agent is not None and agent.supervisor

    def presence(self, agent_id: str) -> Presence:
        return self._dispatcher.router.presence(agent_id)

    async def set_ready(self, agent_id: str, ready: bool, capacity: int) -> None:
        agent = self.agents[agent_id]
        agent.ready, agent.capacity = ready, capacity
        await self._store.put_agent(agent)
        self._dispatcher.presence(agent_id, ready, capacity)

    # ---- who sees what ---------------------------------------------------------------------

    async def agent_chat(self, agent_id: str, chat_id: str, *, claim: bool = False
                         ) -> ChatRecord:
        """The chat, if this agent may have it (:meth:`agent_may_see`). ``claim``: any waiting
        chat too, for :meth:`accept`, which checks offers and reservations itself."""
        chat = await self._registry.get(chat_id)
        if chat is None or not (self.agent_may_see(agent_id, chat)
                                or (claim and chat.status is ChatStatus.QUEUED)):
            raise AgentError(Refusal.NOT_FOUND, "chat_not_found", "no such chat for this agent")
        return chat

    def agent_may_see(self, agent_id: str, chat: ChatRecord) -> bool:
        """Who may read a chat and download its files. A supervisor, by role; otherwise the
        chat's state decides: while it waits, the agent it is offered or reserved to; while
        it is active, the agents connected to it; once it ended, those who took part (their
        own history). Not a bystander, and not an agent who handed it over while it goes on
        without them (the queue lists waiting chats, their transcripts stay private)."""
        if self.is_supervisor(agent_id):
            return True
        if chat.status is ChatStatus.QUEUED:
            return agent_id in (chat.target_agent, chat.offered_to)
        if chat.status is ChatStatus.ACTIVE:
            return chat.agent_id == agent_id or any(
                p.agent_id == agent_id and p.connected for p in chat.participants.values())
        return any(p.agent_id == agent_id for p in chat.participants.values())

    def agent_chats(self, agent_id: str) -> list[ChatRecord]:
        presence = self.presence(agent_id)
        ids = presence.active | presence.offered | self._notifier.watched_by(agent_id)
        ids |= {c.chat_id for c in self._registry.open_chats() if any(
            p.agent_id == agent_id and p.connected and p.type == ParticipantType.SUPERVISOR
            for p in c.participants.values())}
        return [c for cid in sorted(ids) if (c := self._registry.cached(cid)) is not None]

    def open_chats(self) -> list[ChatRecord]:
        """Every chat not ended (what a supervisor can choose to monitor)."""
        return sorted(self._registry.open_chats(), key=lambda c: c.created_ms)

    def queued(self, service: str | None = None) -> list[ChatRecord]:
        return [c for cid in self._dispatcher.router.waiting(service)
                if (c := self._registry.cached(cid)) is not None]

    # ---- operations ------------------------------------------------------------------------

    async def accept(self, agent_id: str, chat_id: str) -> ChatRecord:
        chat = await self.agent_chat(agent_id, chat_id, claim=True)
        async with self._changes.open(chat) as change:
            chat = change.chat
            if chat.status is not ChatStatus.QUEUED:
                raise AgentError(Refusal.CONFLICT, "not_waiting",
                                 "the chat is not waiting for an agent")
            if chat.offered_to not in (None, agent_id):
                raise AgentError(Refusal.CONFLICT, "offered_elsewhere",
                                 "the chat is offered to another agent")
            if chat.target_agent not in (None, agent_id):
                raise AgentError(Refusal.CONFLICT, "offered_elsewhere",
                                 "the chat is reserved for another agent")
            agent = self.agents[agent_id]
            chat.status = ChatStatus.ACTIVE
            chat.agent_id = agent_id
            chat.target_agent = None
            change.join(ParticipantType.AGENT, agent.nickname, agent_id)
            change.add(chat.next_participant - 1, EventType.PARTICIPANT_JOINED)
            self._dispatcher.assign(chat)
        return chat

    async def decline(self, agent_id: str, chat_id: str) -> None:
        if not await self._dispatcher.decline(agent_id, chat_id):
            raise AgentError(Refusal.CONFLICT, "no_offer", "this chat is not offered to this agent")

    async def event(self, agent_id: str, chat_id: str, type_: EventType,
                    text: str | None = None, message_type: str | None = None) -> ChatRecord:
        chat = await self.agent_chat(agent_id, chat_id)

        def edit(change: Change) -> None:
            p = agent_participant(agent_id, change.chat)
            change.add(p.participant_id, type_, text, message_type=message_type)

        return await self._changes.apply(chat, edit)

    async def end(self, agent_id: str, chat_id: str) -> ChatRecord:
        chat = await self.agent_chat(agent_id, chat_id)
        async with self._changes.open(chat) as change:
            agent_participant(agent_id, change.chat)
            self._dispatcher.end(change)
        return change.chat

    async def transfer(self, agent_id: str, chat_id: str, to_agent: str | None) -> ChatRecord:
        """Hand the chat to another agent (reserved for them) or back to the queue."""
        if to_agent is not None and to_agent not in self.agents:
            raise AgentError(Refusal.NOT_FOUND, "agent_not_found", f"no agent {to_agent!r}")
        if to_agent == agent_id:
            raise AgentError(Refusal.INVALID, "bad_request", "cannot transfer a chat to oneself")
        chat = await self.agent_chat(agent_id, chat_id)
        async with self._changes.open(chat) as change:
            p = agent_participant(agent_id, change.chat)
            if to_agent is None:
                notice = self._facts.notice(change.chat, "transfer_queue")
            else:
                notice = self._facts.notice(change.chat, "transfer_agent",
                                            agent=self.agents[to_agent].nickname)
            self._dispatcher.requeue(change, p, to_agent, notice)
        return change.chat
