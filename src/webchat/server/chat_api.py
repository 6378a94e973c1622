"""GMS Chat API v2 over REST: ``POST {prefix}/2/chat/{service}[/{chatId}/{operation}]``.

This module only translates HTTP to engine calls and back. Every reply, success or failure, is
the one chat-response shape of protocols.md §1.5; nothing a client sends can produce a 500 or
an HTML error page.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.forms import FormError, parse_form
from webchat.protocol.gms.models import ChatResponse, EventType, Message, encode
from webchat.server import validation as v
from webchat.server.config import HttpErrorMode, ServerConfig
from webchat.server.engine import CUSTOMER_ID, ChatEngine
from webchat.server.errors import ChatError
from webchat.server.ratelimit import RateLimiter
from webchat.server.uploads import Upload, file_response, read_upload
from webchat.store.records import ChatRecord

log = logging.getLogger(__name__)

JSON = "application/json"
_FILE_OP = re.compile(r"file(?:/(?P<action>limits)|/(?P<id>[^/]{1,64})/(?P<verb>download|delete))?")


_NTF_ACTIONS = {"fileGetLimits": "limits", "fileGetsLimits": "limits", "fileUpload": "upload",
                "fileDownload": "download", "fileDelete": "delete"}


def http_status(exc: ChatError, mode: HttpErrorMode) -> int:
    """The HTTP status of a refusal in the configured mode (see :class:`HttpErrorMode`)."""
    if mode is HttpErrorMode.GMS:
        return 400
    return 200 if mode is HttpErrorMode.LENIENT else exc.http_status


def without_api_key(action: str) -> bool:
    """Downloads need no API key: the Genesys widgets download with a ``target=_blank`` form
    POST, which cannot carry the ``apikey`` header. The chat's secureKey still authorizes it
    (the API key is a site-wide token published in the page, never a per-chat secret), and a
    download is counted against ``download-attempts`` and the per-chat rate limit."""
    return action == "download"


Handler = Callable[[ChatRecord, dict[str, str]], Awaitable[list[Message] | None]]


def chat_response(chat: ChatRecord, messages: list[Message] | None) -> ChatResponse:
    """A successful reply about ``chat``: identity (the secureKey too, on every reply: the
    Genesys widgets learn it again from replies after a reload), end flag, next position and
    ``messages`` — a snapshot, never the chat's live event list, because a CometD reply is
    encoded only when it leaves, and events added meanwhile also go out as pushes."""
    return ChatResponse(
        statusCode=0, chatId=chat.chat_id, alias=chat.alias, userId=chat.user_id,
        secureKey=chat.secure_key, chatEnded=chat.ended, nextPosition=chat.next_index,
        messages=list(messages) if messages else None)


class ChatApi:
    def __init__(self, engine: ChatEngine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.limits = config.limits
        self.fields = v.FieldPolicy(config.strict_fields, config.max_ignored_field_chars)
        self.start_limiter = RateLimiter(*config.limits.request_chat_rate)
        self.op_limiter = RateLimiter(*config.limits.chat_op_rate)
        self.base = f"{config.api_prefix}/2/chat"
        self.ntf = f"{config.api_prefix}/2/chat-ntf"
        self.bayeux_follows: Callable[[str, str | None], bool] | None = None
        """Set by the app: does a CometD session with this browser cookie follow the chat?"""
        self._ops: dict[str, Handler] = {
            "send": self._send,
            "refresh": self._refresh,
            "startTyping": self._typing(EventType.TYPING_STARTED),
            "stopTyping": self._typing(EventType.TYPING_STOPPED),
            "disconnect": self._disconnect,
            "pushUrl": self._push_url,
            "customNotice": self._custom_notice,
            "updateNickname": self._update_nickname,
            "updateData": self._update_data,
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.ntf, self.chat_ntf)
        app.router.add_post(self.base + "/{service}", self.request_chat)
        # The Genesys widgets strip dataURL's trailing slashes, then request a chat at "dataURL/".
        app.router.add_post(self.base + "/{service}/", self.request_chat)
        app.router.add_post(self.base + "/{service}/{chat_id}/{op:.+}", self.operation)

    # ---- plumbing --------------------------------------------------------------------------

    def reply(self, response: ChatResponse, status: int = 200) -> web.Response:
        return web.Response(body=encode(response), status=status, content_type=JSON)

    def error(self, exc: ChatError, chat_id: str | None = None) -> web.Response:
        return self.reply(exc.response(chat_id), http_status(exc, self.config.http_errors))

    def _check_api_key(self, request: web.Request) -> None:
        if not self.config.api_keys:
            return
        given = request.headers.get("apikey") or request.headers.get("x-api-key") or ""
        if not any(hmac.compare_digest(given.encode(), k.encode()) for k in self.config.api_keys):
            raise ChatError(ErrorCode.INVALID_API_KEY, "missing or invalid apikey")

    def _check_service(self, request: web.Request) -> str:
        service = request.match_info["service"]
        if service not in self.config.services:
            raise ChatError(ErrorCode.UNKNOWN_SERVICE, f"unknown chat service {service[:64]!r}")
        return service

    async def _read_form(self, request: web.Request) -> dict[str, str]:
        ctype = request.content_type
        try:
            if ctype == "multipart/form-data":
                return await self._read_multipart(request)
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ChatError(ErrorCode.TOO_LARGE,
                            f"request body exceeds {self.limits.max_body_bytes} bytes") from None
        if ctype not in ("application/x-www-form-urlencoded", "application/octet-stream") \
                and body:
            raise ChatError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                            f"expected application/x-www-form-urlencoded, got {ctype[:64]!r}")
        try:
            return parse_form(body, max_fields=self.limits.max_form_fields)
        except FormError as exc:
            raise ChatError(ErrorCode.MALFORMED_REQUEST, str(exc)) from None

    async def _read_multipart(self, request: web.Request) -> dict[str, str]:
        form = await read_upload(request, 0, self.limits.max_form_fields, require_file=False,
                                 files=False)
        return form.fields

    def _client(self, request: web.Request) -> str:
        if self.config.trust_forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For", "")
            if forwarded:
                return forwarded.split(",")[0].strip()
        return request.remote or "?"

    # ---- endpoints -------------------------------------------------------------------------

    async def request_chat(self, request: web.Request) -> web.Response:
        try:
            self._check_api_key(request)
            service = self._check_service(request)
            if not self.start_limiter.allow(self._client(request)):
                raise ChatError(ErrorCode.RATE_LIMITED, "too many chats requested; slow down")
            form = await self._read_form(request)
            self.fields.check("requestChat", form)
            chat = await self.engine.request_chat(service, v.customer_form(form, self.limits))
        except ChatError as exc:
            return self.error(exc)
        return self.reply(chat_response(chat, chat.events))

    async def operation(self, request: web.Request) -> web.StreamResponse:
        chat_id = request.match_info["chat_id"]
        op = request.match_info["op"]
        try:
            service = self._check_service(request)
            if op == "file" or op.startswith("file/"):
                return await self._file_operation(request, service, chat_id, op)
            handler = self._ops.get(op)
            if handler is None:
                raise ChatError(ErrorCode.UNKNOWN_OPERATION, f"unknown operation {op[:64]!r}")
            self._check_api_key(request)
            form = await self._read_form(request)
            self.fields.check(op, form)
            chat = await self.engine.customer_chat(
                service, chat_id, form.get("userId", ""), form.get("secureKey", ""),
                form.get("alias", ""))
            if not self.op_limiter.allow(chat.chat_id):
                raise ChatError(ErrorCode.RATE_LIMITED, "too many requests for this chat")
            # Validate the position before acting, so a bad request changes nothing.
            self.engine.check_position(chat, v.position(form))
            messages = await handler(chat, form)
            chat = self.engine.chats.get(chat.chat_id, chat)
        except ChatError as exc:
            # Echo the chatId only when the caller proved it owns the chat.
            return self.error(exc)
        return self.reply(chat_response(chat, messages))

    # ---- files -----------------------------------------------------------------------------

    async def _file_operation(self, request: web.Request, service: str, chat_id: str,
                              op: str) -> web.StreamResponse:
        """``file/limits``, ``file`` (multipart upload), ``file/{id}/download``,
        ``file/{id}/delete`` (protocols.md §1.10). Errors propagate to :meth:`operation`."""
        match = _FILE_OP.fullmatch(op)
        if match is None:
            raise ChatError(ErrorCode.UNKNOWN_OPERATION, f"unknown operation {op[:64]!r}")
        action = match.group("action") or match.group("verb") or "upload"
        if not without_api_key(action):
            self._check_api_key(request)
        upload = await read_upload(
            request, self.engine.file_limits.max_file_size, self.limits.max_form_fields,
        ) if action == "upload" else None
        form = upload.fields if upload is not None else await self._read_form(request)
        self.fields.check(f"file/{action}", form)
        chat = await self.engine.customer_chat(
            service, chat_id, form.get("userId", ""), form.get("secureKey", ""),
            form.get("alias", ""))
        return await self._file_action(chat, action, match.group("id"), form, upload)

    async def chat_ntf(self, request: web.Request) -> web.StreamResponse:
        """``{prefix}/2/chat-ntf``: the file side door of CometD mode (protocols.md §2.5). The
        chat is found by its secureKey; with ``chat_ntf_requires_cookie`` the request must also
        carry the ``BAYEUX_BROWSER`` cookie of a CometD session that follows the chat."""
        try:
            if request.content_type == "multipart/form-data":
                upload: Upload | None = await read_upload(
                    request, self.engine.file_limits.max_file_size,
                    self.limits.max_form_fields, require_file=False)
                form = upload.fields if upload is not None else {}
                if upload is not None and upload.filename == "":
                    upload = None
            else:
                upload, form = None, await self._read_form(request)
            operation = form.pop("operation", "fileUpload" if upload else "")
            action = _NTF_ACTIONS.get(operation)
            if action is None:
                raise ChatError(ErrorCode.UNKNOWN_OPERATION,
                                f"unknown chat-ntf operation {operation[:64]!r}")
            if not without_api_key(action):
                self._check_api_key(request)
            file_id = form.pop("fileId", None)
            if action in ("download", "delete") and not file_id:
                raise ChatError(ErrorCode.MISSING_FIELD, "fileId is required")
            if action == "upload" and upload is None:
                raise ChatError(ErrorCode.MISSING_FIELD, "the 'file' part is missing")
            form.pop("clientId", None)  # some integrations forward it; the cookie decides
            self.fields.check(f"file/{action}", form)
            chat = await self.engine.chat_for_key(form.get("secureKey", ""),
                                                  form.get("userId"), form.get("alias"))
            if self.config.chat_ntf_requires_cookie and not (
                    self.bayeux_follows is not None
                    and self.bayeux_follows(chat.chat_id, request.cookies.get("BAYEUX_BROWSER"))):
                raise ChatError(ErrorCode.CHAT_NOT_FOUND,
                                "no CometD session of this browser follows the chat")
            return await self._file_action(chat, action, file_id, form, upload)
        except ChatError as exc:
            return self.error(exc)

    async def _file_action(self, chat: ChatRecord, action: str, file_id: str | None,
                           form: dict[str, str], upload: Upload | None) -> web.StreamResponse:
        if not self.op_limiter.allow(chat.chat_id):
            raise ChatError(ErrorCode.RATE_LIMITED, "too many requests for this chat")
        if action == "limits":
            return self.reply(chat_response(chat, [self.engine.file_limits_notice(chat)]))
        if action == "upload":
            assert upload is not None
            description = v.text(form, "userData[file-description]", 256)
            record = await self.engine.upload_file(chat, CUSTOMER_ID, upload.filename,
                                                   upload.content_type, upload.data,
                                                   description)
            reply = chat_response(self.engine.chats.get(chat.chat_id, chat), None)
            reply.userData = {"file-id": record.file_id}
            return self.reply(reply)
        assert file_id is not None
        if action == "delete":
            await self.engine.delete_file(chat, file_id, CUSTOMER_ID)
            return self.reply(chat_response(self.engine.chats.get(chat.chat_id, chat), None))
        record, data = await self.engine.download_file(chat, file_id, counted=True)
        return file_response(record.name, record.content_type, data)

    def _since(self, chat: ChatRecord, form: dict[str, str]) -> list[Message] | None:
        pos = v.position(form)
        if pos is None:
            return None
        return self.engine.transcript(self.engine.chats.get(chat.chat_id, chat), pos)

    # ---- operations ------------------------------------------------------------------------

    async def _refresh(self, chat: ChatRecord, form: dict[str, str]) -> list[Message]:
        # The Genesys widgets send what the customer is typing with every refresh.
        preview = v.text(form, "message", self.limits.max_message_chars,
                         code=ErrorCode.MESSAGE_TOO_LONG)
        if preview:
            await self.engine.customer_preview(chat, preview)
        return self.engine.transcript(self.engine.chats.get(chat.chat_id, chat),
                                      v.position(form))

    async def _send(self, chat: ChatRecord, form: dict[str, str]) -> list[Message] | None:
        text = v.text(form, "message", self.limits.max_message_chars, required=True,
                      code=ErrorCode.MESSAGE_TOO_LONG)
        message_type = v.text(form, "messageType", 64) or None
        await self.engine.customer_event(chat, EventType.MESSAGE, text, message_type)
        return self._since(chat, form)

    def _typing(self, type_: EventType) -> Handler:
        async def handler(chat: ChatRecord, form: dict[str, str]) -> list[Message] | None:
            preview = v.text(form, "message", self.limits.max_message_chars,
                             code=ErrorCode.MESSAGE_TOO_LONG) or None
            await self.engine.customer_event(chat, type_, preview)
            return self._since(chat, form)
        return handler

    async def _disconnect(self, chat: ChatRecord, form: dict[str, str]) -> list[Message] | None:
        await self.engine.customer_disconnect(chat)
        return self._since(chat, form)

    async def _push_url(self, chat: ChatRecord, form: dict[str, str]) -> list[Message] | None:
        url = v.push_url(form, self.limits)
        await self.engine.customer_event(chat, EventType.PUSH_URL, url)
        return self._since(chat, form)

    async def _custom_notice(self, chat: ChatRecord, form: dict[str, str]
                             ) -> list[Message] | None:
        text = v.text(form, "message", self.limits.max_message_chars,
                      code=ErrorCode.MESSAGE_TOO_LONG) or None
        await self.engine.customer_event(chat, EventType.CUSTOM_NOTICE, text)
        return self._since(chat, form)

    async def _update_nickname(self, chat: ChatRecord, form: dict[str, str]
                               ) -> list[Message] | None:
        nickname = v.text(form, "nickname", self.limits.max_name_chars, required=True).strip()
        await self.engine.customer_nickname(chat, nickname)
        return self._since(chat, form)

    async def _update_data(self, chat: ChatRecord, form: dict[str, str]) -> list[Message] | None:
        data = v.user_data(form, self.limits)
        await self.engine.customer_update_data(chat, data)
        return self._since(chat, form)
