"""GMS Chat API v2 over REST: ``POST {prefix}/2/chat/{service}[/{chatId}/{operation}]``, and
``POST {prefix}/2/chat-ntf``, the file side door CometD clients use.

An adapter: it reads the HTTP request into a :class:`~webchat.server.gms.operations.Call`, lets
the :class:`~webchat.server.gms.gateway.Gateway` apply every policy and run the operation, and
writes the result (or the refusal, with the status of the configured ``HttpErrorMode``). Every
reply is the one chat-response shape of protocols.md §1.5; nothing a client sends can produce a
500 or an HTML error page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from aiohttp import web

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.forms import FormError, parse_form
from webchat.protocol.gms.models import ChatResponse, encode
from webchat.server import validation as v
from webchat.server.addresses import client_address
from webchat.server.config import ServerConfig
from webchat.server.errors import ChatError
from webchat.server.gms.gateway import Gateway, Result
from webchat.server.gms.operations import NTF_NAMES, Call
from webchat.server.statuses import http_status
from webchat.server.uploads import Upload, file_response, read_upload
from webchat.store.records import ChatRecord

log = logging.getLogger(__name__)

JSON = "application/json"
_FILE_OP = re.compile(r"file(?:/(?P<action>limits)|/(?P<id>[^/]{1,64})/(?P<verb>download|delete))?")


class ChatApi:
    def __init__(self, gateway: Gateway, config: ServerConfig) -> None:
        self.gateway = gateway
        self.engine = gateway.engine
        self.config = config
        self.limits = config.limits
        self.client = client_address(config.trust_forwarded_for)
        self.base = f"{config.api_prefix}/2/chat"
        self.ntf = f"{config.api_prefix}/2/chat-ntf"
        self.bayeux_follows: Callable[[str, str | None], bool] | None = None
        """Set by the app: does a CometD session with this browser cookie follow the chat?"""
        self.answered: list[Callable[[ChatResponse], None]] = []
        """Told of every chat response as it is answered (metrics: what reached a client)."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.ntf, self.chat_ntf)
        app.router.add_post(self.base + "/{service}", self.request_chat)
        # The Genesys widgets strip dataURL's trailing slashes, then request a chat at "dataURL/".
        app.router.add_post(self.base + "/{service}/", self.request_chat)
        app.router.add_post(self.base + "/{service}/{chat_id}/{op:.+}", self.operation)

    # ---- plumbing --------------------------------------------------------------------------

    def reply(self, response: ChatResponse, status: int = 200) -> web.Response:
        for listener in self.answered:
            listener(response)
        return web.Response(body=encode(response), status=status, content_type=JSON)

    def error(self, exc: ChatError, chat_id: str | None = None) -> web.Response:
        return self.reply(exc.response(chat_id), http_status(exc, self.config.http_errors))

    def respond(self, result: Result) -> web.StreamResponse:
        if result.download is not None:
            record, data = result.download
            return file_response(record.name, record.content_type, data)
        return self.reply(result.response)

    def call(self, request: web.Request, operation: str, form: dict[str, str], *,
             service: str | None, chat_id: str | None = None, by_key: bool = False,
             upload: Upload | None = None, file_id: str | None = None,
             authorize: Callable[[ChatRecord], None] | None = None) -> Call:
        """The request as the gateway takes it: scalars apart from ``userData[...]``."""
        return Call(operation, service, v.scalar_fields(form), v.form_user_data(form),
                    chat_id=chat_id, by_key=by_key,
                    api_key=request.headers.get("apikey") or request.headers.get("x-api-key")
                    or "", client=self.client(request), upload=upload, file_id=file_id,
                    authorize=authorize)

    async def _read_form(self, request: web.Request) -> dict[str, str]:
        ctype = request.content_type
        try:
            if ctype == "multipart/form-data":
                return (await read_upload(request, 0, self.limits.max_form_fields,
                                          require_file=False, files=False)).fields
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

    async def _read_upload(self, request: web.Request, *, require_file: bool) -> Upload:
        return await read_upload(request, self.engine.files.limits.max_file_size,
                                 self.limits.max_form_fields, require_file=require_file)

    # ---- endpoints -------------------------------------------------------------------------

    async def request_chat(self, request: web.Request) -> web.Response:
        try:
            form = await self._read_form(request)
            result = await self.gateway.call(self.call(
                request, "requestChat", form, service=request.match_info["service"]))
        except ChatError as exc:
            return self.error(exc)
        return self.reply(result.response)

    async def operation(self, request: web.Request) -> web.StreamResponse:
        op = request.match_info["op"]
        try:
            file_id = None
            upload = None
            if op == "file" or op.startswith("file/"):
                match = _FILE_OP.fullmatch(op)
                if match is None:
                    raise ChatError(ErrorCode.UNKNOWN_OPERATION, f"unknown operation {op[:64]!r}")
                action = match.group("action") or match.group("verb") or "upload"
                op, file_id = f"file/{action}", match.group("id")
                if action == "upload":
                    upload = await self._read_upload(request, require_file=True)
            form = upload.fields if upload is not None else await self._read_form(request)
            result = await self.gateway.call(self.call(
                request, op, form, service=request.match_info["service"],
                chat_id=request.match_info["chat_id"], upload=upload, file_id=file_id))
        except ChatError as exc:
            # Echo the chatId only when the caller proved it owns the chat.
            return self.error(exc)
        return self.respond(result)

    async def chat_ntf(self, request: web.Request) -> web.StreamResponse:
        """``{prefix}/2/chat-ntf``: the file side door of CometD mode (protocols.md §2.5). The
        chat is found by its secureKey; with ``chat_ntf_requires_cookie`` the request must also
        carry the ``BAYEUX_BROWSER`` cookie of a CometD session that follows the chat."""
        try:
            upload: Upload | None = None
            if request.content_type == "multipart/form-data":
                upload = await self._read_upload(request, require_file=False)
                form = upload.fields
                if upload.filename == "":
                    upload = None
            else:
                form = await self._read_form(request)
            name = form.pop("operation", "fileUpload" if upload else "")
            op = NTF_NAMES.get(name)
            if op is None:
                raise ChatError(ErrorCode.UNKNOWN_OPERATION,
                                f"unknown chat-ntf operation {name[:64]!r}")
            file_id = form.pop("fileId", None)
            form.pop("clientId", None)  # some integrations forward it; the key decides
            result = await self.gateway.call(self.call(
                request, op, form, service=None, by_key=True, upload=upload, file_id=file_id,
                authorize=self._cookie_check(request)))
        except ChatError as exc:
            return self.error(exc)
        return self.respond(result)

    def _cookie_check(self, request: web.Request) -> Callable[[ChatRecord], None] | None:
        """With ``chat_ntf_requires_cookie``: a CometD session of this browser must follow
        the chat the key named."""
        if not self.config.chat_ntf_requires_cookie:
            return None
        browser = request.cookies.get("BAYEUX_BROWSER")

        def check(chat: ChatRecord) -> None:
            if self.bayeux_follows is None or not self.bayeux_follows(chat.chat_id, browser):
                raise ChatError(ErrorCode.CHAT_NOT_FOUND,
                                "no CometD session of this browser follows the chat")
        return check
