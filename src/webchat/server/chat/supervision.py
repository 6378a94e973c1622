"""Supervision: supervisors watch a chat silently, barge into it openly, and leave it again.

A monitor is a live view (:attr:`Notifier.monitors`), never persisted; barging in makes the
supervisor a participant the customer is told about."""

from __future__ import annotations

from webchat.protocol.gms.models import EventType, ParticipantType
from webchat.server.chat.agents import AgentOps, agent_participant
from webchat.server.chat.change import Changes
from webchat.server.chat.customers import require_open
from webchat.server.chat.notify import Notifier
from webchat.server.errors import AgentError, Refusal
from webchat.store.records import ChatRecord


class Supervision:
    def __init__(self, agents: AgentOps, changes: Changes, notifier: Notifier) -> None:
        self._agents = agents
        self._changes = changes
        self._notifier = notifier

    def _require_supervisor(self, agent_id: str) -> None:
        if not self._agents.is_supervisor(agent_id):
            raise AgentError(Refusal.FORBIDDEN, "not_supervisor", "only supervisors may do this")

    async def monitor(self, agent_id: str, chat_id: str) -> ChatRecord:
        """Watch a chat without joining it: its events reach the supervisor's stream, the
        customer sees nothing."""
        self._require_supervisor(agent_id)
        chat = await self._agents.agent_chat(agent_id, chat_id)
        if chat.ended:
            raise AgentError(Refusal.CONFLICT, "chat_ended", "the chat has ended")
        self._notifier.watch(agent_id, chat_id)
        return chat

    def unmonitor(self, agent_id: str, chat_id: str) -> None:
        self._notifier.unwatch(agent_id, chat_id)

    async def barge_in(self, agent_id: str, chat_id: str) -> ChatRecord:
        """Join a chat openly as a Supervisor participant (the customer is told)."""
        self._require_supervisor(agent_id)
        chat = await self._agents.agent_chat(agent_id, chat_id)
        require_open(chat)
        async with self._changes.open(chat) as change:
            require_open(change.chat)
            if any(p.agent_id == agent_id and p.connected
                   for p in change.chat.participants.values()):
                raise AgentError(Refusal.CONFLICT, "already_in_chat",
                                 "already a participant of this chat")
            nickname = self._agents.agents[agent_id].nickname
            p = change.join(ParticipantType.SUPERVISOR, nickname, agent_id)
            change.add(p.participant_id, EventType.PARTICIPANT_JOINED)
        self.unmonitor(agent_id, chat_id)
        return change.chat

    async def leave(self, agent_id: str, chat_id: str) -> ChatRecord:
        """A supervisor who barged in leaves; the chat goes on with its agent."""
        chat = await self._agents.agent_chat(agent_id, chat_id)
        async with self._changes.open(chat) as change:
            p = agent_participant(agent_id, change.chat)
            if p.type != ParticipantType.SUPERVISOR:
                raise AgentError(Refusal.CONFLICT, "not_supervisor",
                                 "agents end or transfer chats instead")
            change.add(p.participant_id, EventType.PARTICIPANT_LEFT)
            change.touch(p).connected = False
        return change.chat
