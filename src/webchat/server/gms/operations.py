"""The GMS customer operations, each written once: its fields and what it runs.

REST (``POST .../{chatId}/{operation}``), CometD (``operation`` in a publish on
``/service/chatV2/{service}``) and the chat-ntf side door all arrive here through
:class:`~webchat.server.gms.gateway.Gateway`, which has already applied every policy (API key,
service, field tolerance, rate limits, authentication, transcript position) by the time an
operation's ``run`` is called. So an operation only turns its fields into an engine call.

Names are the REST ones; :data:`COMETD_NAMES` and :data:`NTF_NAMES` map the other transports'
names onto them.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.models import EventType, Message
from webchat.server import validation as v
from webchat.server.chat.change import CUSTOMER_ID
from webchat.server.chat.customers import transcript
from webchat.server.config import Limits
from webchat.server.engine import ChatEngine
from webchat.server.errors import ChatError
from webchat.server.uploads import Upload
from webchat.store.records import ChatRecord, FileRecord


class UserData(enum.Enum):
    """What an operation does with ``userData``."""

    REFUSED = "refused"
    IGNORED = "ignored"
    """Accepted and dropped: GMSLIB sends userData with requestNotifications."""
    USED = "used"


@dataclass(frozen=True)
class Call:
    """One customer operation as a transport received it, before any rule was applied."""

    operation: str
    """The REST name (``send``, ``refresh``, ``file/limits``...)."""
    service: str | None
    """The service the request named; ``None`` where the transport names none (chat-ntf:
    the chat's own service applies)."""
    fields: Mapping[str, str]
    """Every scalar field, as strings (CometD's JSON scalars are stringified as a form would
    carry them), without ``userData``."""
    user_data: Mapping[str, str] | None = None
    chat_id: str | None = None
    """REST's path segment, or CometD's ``chatId`` field (blank: not known yet)."""
    by_key: bool = False
    """CometD and chat-ntf find the chat by its secureKey; REST names it in the path."""
    api_key: str | None = None
    """The ``apikey`` the request carried; ``None`` where the transport cannot carry one."""
    client: str = "?"
    upload: Upload | None = None
    file_id: str | None = None
    authorize: Callable[[ChatRecord], None] | None = None
    """A transport's own further check once the keys named the chat (chat-ntf's optional
    cookie binding); raises :class:`ChatError` to refuse."""
    follow: Callable[[ChatRecord], None] | None = None
    """Called once the caller is known to own the chat, at the moment from which it must get
    every later event as a push (CometD); see :meth:`Gateway.call`."""


@dataclass
class Outcome:
    """What an operation gives back: the chat as it committed it, and the rest of the reply."""

    chat: ChatRecord
    """The committed snapshot the reply describes (never a copy read again from a cache)."""
    messages: list[Message] | None = None
    user_data: dict[str, str] | None = None
    download: tuple[FileRecord, bytes] | None = None


Run = Callable[[ChatEngine, ChatRecord, Call, Limits], Awaitable[Outcome]]


@dataclass(frozen=True)
class Operation:
    name: str
    fields: frozenset[str]
    run: Run
    user_data: UserData = UserData.REFUSED
    snapshot_reply: bool = False
    """The reply carries the transcript (request chat, refresh): over CometD it is delivered,
    and the session follows the chat from the snapshot on. Other operations' effects reach
    CometD clients as pushes only."""
    needs_api_key: bool = True
    extra: frozenset[str] = field(default_factory=frozenset)


def _since(chat: ChatRecord, call: Call) -> Outcome:
    """The committed ``chat``; the optional ``transcriptPosition`` of an action asks for the
    transcript with the reply (protocols.md §1.6)."""
    position = v.position(call.fields)
    if position is None:
        return Outcome(chat)
    return Outcome(chat, transcript(chat, position))


def _message_text(call: Call, limits: Limits, *, required: bool = False) -> str:
    return v.text(call.fields, "message", limits.max_message_chars, required=required,
                  code=ErrorCode.MESSAGE_TOO_LONG)


async def _refresh(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                   ) -> Outcome:
    # The Genesys widgets send what the customer is typing with every refresh.
    preview = _message_text(call, limits)
    if preview:
        chat = await engine.customers.preview(chat, preview)
    return Outcome(chat, transcript(chat, v.position(call.fields)))


async def _send(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits) -> Outcome:
    text = _message_text(call, limits, required=True)
    return _since(await engine.customers.event(
        chat, EventType.MESSAGE, text, v.text(call.fields, "messageType", 64) or None), call)


def _typing(type_: EventType) -> Run:
    async def run(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                  ) -> Outcome:
        return _since(await engine.customers.event(
            chat, type_, _message_text(call, limits) or None), call)
    return run


async def _disconnect(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                      ) -> Outcome:
    return _since(await engine.customers.disconnect(chat), call)


async def _push_url(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                    ) -> Outcome:
    return _since(await engine.customers.event(
        chat, EventType.PUSH_URL, v.push_url(call.fields, limits)), call)


async def _custom_notice(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                         ) -> Outcome:
    return _since(await engine.customers.event(
        chat, EventType.CUSTOM_NOTICE, _message_text(call, limits) or None), call)


async def _update_nickname(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                           ) -> Outcome:
    nickname = v.text(call.fields, "nickname", limits.max_name_chars, required=True).strip()
    return _since(await engine.customers.nickname(chat, nickname), call)


async def _update_data(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                       ) -> Outcome:
    return _since(await engine.customers.update_data(chat, dict(call.user_data or {})), call)


async def _file_limits(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                       ) -> Outcome:
    return Outcome(chat, [engine.files.limits_notice(chat)])


async def _file_upload(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                       ) -> Outcome:
    if call.upload is None:
        raise ChatError(ErrorCode.MISSING_FIELD, "the 'file' part is missing")
    description = v.text(call.user_data or {}, "file-description",
                         limits.max_file_description_chars)
    record = await engine.files.upload(chat, CUSTOMER_ID, call.upload.filename,
                                       call.upload.content_type, call.upload.data, description)
    return Outcome(chat, user_data={"file-id": record.file_id})


def _file_id(call: Call) -> str:
    if not call.file_id:
        raise ChatError(ErrorCode.MISSING_FIELD, "fileId is required")
    return call.file_id


async def _file_download(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                         ) -> Outcome:
    return Outcome(chat, download=await engine.files.download(chat, _file_id(call),
                                                              counted=True))


async def _file_delete(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                       ) -> Outcome:
    return Outcome(await engine.files.delete(chat, _file_id(call), CUSTOMER_ID))


async def _not_here(engine: ChatEngine, chat: ChatRecord, call: Call, limits: Limits
                    ) -> Outcome:
    raise AssertionError("requestChat creates its chat in the gateway")


def _op(name: str, run: Run, **options: object) -> Operation:
    return Operation(name, v.FIELDS[name], run, **options)  # type: ignore[arg-type]


OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    _op("requestChat", _not_here, user_data=UserData.USED, snapshot_reply=True),
    _op("refresh", _refresh, user_data=UserData.IGNORED, snapshot_reply=True),
    _op("send", _send),
    _op("startTyping", _typing(EventType.TYPING_STARTED)),
    _op("stopTyping", _typing(EventType.TYPING_STOPPED)),
    _op("disconnect", _disconnect),
    _op("pushUrl", _push_url),
    _op("customNotice", _custom_notice),
    _op("updateNickname", _update_nickname),
    _op("updateData", _update_data, user_data=UserData.USED),
    _op("file/limits", _file_limits),
    _op("file/upload", _file_upload, user_data=UserData.USED),
    # The Genesys widgets download with a target=_blank form POST, which cannot carry the
    # apikey header. The chat's secureKey still authorizes it (the API key is a site-wide
    # token published in the page, never a per-chat secret), and a download is counted
    # against download-attempts and the per-chat rate limit.
    _op("file/download", _file_download, needs_api_key=False),
    _op("file/delete", _file_delete),
)}

#: CometD's names for the operations that have another name there (protocols.md §2.3).
COMETD_NAMES = {"sendMessage": "send", "requestNotifications": "refresh"}
#: The operations CometD clients may publish (files go through chat-ntf).
COMETD_OPERATIONS = frozenset({*COMETD_NAMES, "requestChat", "startTyping", "stopTyping",
                               "disconnect", "pushUrl", "customNotice", "updateNickname",
                               "updateData"})
#: chat-ntf's ``operation`` values (``fileGetsLimits``: a spelling seen in the wild).
NTF_NAMES = {"fileGetLimits": "file/limits", "fileGetsLimits": "file/limits",
             "fileUpload": "file/upload", "fileDownload": "file/download",
             "fileDelete": "file/delete"}


def user_data_of(call_user_data: Mapping[str, str] | None, op: Operation, *, strict: bool
                 ) -> Mapping[str, str] | None:
    """The userData an operation gets: refused (strict) or dropped where it takes none."""
    if call_user_data is None or op.user_data is UserData.USED:
        return call_user_data
    if op.user_data is UserData.REFUSED and strict and call_user_data:
        raise ChatError(ErrorCode.MALFORMED_REQUEST, f"{op.name} takes no userData")
    return None
