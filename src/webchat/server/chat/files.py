"""Files in a chat: uploads by either side, counted customer downloads, deletion by the uploader.

The bytes live in a :class:`~webchat.server.files.Vault` (written before the event that
announces them is committed); the records and their events go through the unit of work."""

from __future__ import annotations

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.models import EventType, Message, Participant, ParticipantType
from webchat.server.chat.agents import AgentOps, agent_participant
from webchat.server.chat.change import SYSTEM_ID, Changes
from webchat.server.chat.clock import Clock
from webchat.server.chat.customers import require_open
from webchat.server.errors import ChatError
from webchat.server.files import FileLimits, Vault, check_upload, clean_name, limits_data
from webchat.store.records import ChatRecord, FileRecord


def _file(chat: ChatRecord, file_id: str) -> FileRecord:
    record = chat.files.get(file_id)
    if record is None or record.deleted:
        raise ChatError(ErrorCode.FILE_NOT_FOUND, "no such file in this chat")
    return record


class Files:
    def __init__(self, vault: Vault, limits: FileLimits, changes: Changes,
                 agents: AgentOps, clock: Clock) -> None:
        self._vault = vault
        self.limits = limits
        self._changes = changes
        self._agents = agents
        self._clock = clock

    def limits_notice(self, chat: ChatRecord) -> Message:
        """The ``file-client-cfg-get`` notice a limits request is answered with. It is a reply,
        not a transcript event, so it has no index and changes no position."""
        system = chat.participants[SYSTEM_ID]
        return Message(from_=Participant(system.nickname, SYSTEM_ID, system.type), index=0,
                       type=EventType.NOTICE.value, utcTime=self._clock(),
                       text="file-client-cfg-get", userData=limits_data(chat, self.limits))

    async def upload(self, chat: ChatRecord, participant_id: int, name: str,
                     declared_type: str, data: bytes, description: str = "") -> FileRecord:
        require_open(chat)
        name = clean_name(name)
        async with self._changes.open(chat) as change:
            require_open(change.chat)
            agent_present = any(p.type == ParticipantType.AGENT and p.connected
                                for p in change.chat.participants.values())
            content_type = check_upload(change.chat, self.limits, name, declared_type,
                                        data, agent_present=agent_present)
            change.require_room()  # before the file is written
            record = FileRecord(self._vault.new_id(), chat.chat_id, name, len(data),
                                content_type, participant_id, change.now_ms, description)
            await self._vault.write(record.file_id, data)
            change.files.append(record)
            meta = {"file-id": record.file_id, "file-name": name, "file-size": str(len(data)),
                    "file-type": content_type}
            if description:
                meta["file-description"] = description
            change.add(participant_id, EventType.FILE_UPLOADED, record.file_id, user_data=meta)
        return record

    async def download(self, chat: ChatRecord, file_id: str, *, counted: bool
                       ) -> tuple[FileRecord, bytes]:
        """The file's bytes. Customer downloads count against ``download-attempts``."""
        record = _file(chat, file_id)
        if counted:
            async with self._changes.open(chat) as change:
                used = sum(f.downloads for f in change.chat.files.values())
                if used >= self.limits.download_attempts:
                    raise ChatError(ErrorCode.DOWNLOAD_LIMIT,
                                    "no download attempts left for this chat")
                record = _file(change.chat, file_id)
                record.downloads += 1
                change.files.append(record)
        data = await self._vault.read(record.file_id)
        if data is None:
            raise ChatError(ErrorCode.FILE_NOT_FOUND, "no such file in this chat")
        return record, data

    async def delete(self, chat: ChatRecord, file_id: str, participant_id: int) -> ChatRecord:
        """Only whoever uploaded a file may delete it."""
        require_open(chat)
        async with self._changes.open(chat) as change:
            record = _file(change.chat, file_id)
            if record.participant_id != participant_id:
                raise ChatError(ErrorCode.FILE_NOT_FOUND, "no such file of yours in this chat")
            record.deleted = True
            change.files.append(record)
            change.add(participant_id, EventType.FILE_DELETED, file_id)
        await self._vault.delete(file_id)
        return change.chat

    async def agent_upload(self, agent_id: str, chat_id: str, name: str, declared_type: str,
                           data: bytes, description: str = "") -> FileRecord:
        chat = await self._agents.agent_chat(agent_id, chat_id)
        p = agent_participant(agent_id, chat)
        return await self.upload(chat, p.participant_id, name, declared_type, data, description)
