"""GMS chat over CometD for WebChatService (protocols.md §2): the same ``call(request)`` as the
REST transport, plus pushed transcript events.

Each :class:`HttpRequest` the session builds becomes a publish on ``/service/chatV2/{service}``
(``send`` → ``sendMessage``, ``refresh`` → ``requestNotifications``, maps as JSON objects). The
publish reply says whether it worked; ``requestChat`` then waits for the delivery that carries
the new chat's keys. Everything else arrives as pushes, handed to ``on_push``. After a
re-handshake (server restart, expired session) ``on_resync`` lets the service ask for the
transcript from its own position, so nothing is lost and the session drops what it has seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import aiohttp
import msgspec

from webchat.protocol.gms.errors import ERROR_STATUS_CODE, ErrorCode
from webchat.protocol.gms.models import ChatResponse, ErrorEntry
from webchat.protocol.gms.session import HttpRequest
from webchat.transport.cometd import CometdClient, CometdError
from webchat.transport.rest import Download, TransportError, decode_reply, fetch_file

_OPERATION = {"send": "sendMessage", "refresh": "requestNotifications"}
_FILE_OPERATIONS = frozenset({"fileLimits", "fileDelete"})


def publish_data(request: HttpRequest) -> dict[str, Any]:
    data: dict[str, Any] = {"operation": _OPERATION.get(request.operation, request.operation)}
    user_data: dict[str, str] = {}
    for key, value in request.fields.items():
        if key.startswith("userData[") and key.endswith("]"):
            user_data[key[9:-1]] = value
        elif key == "transcriptPosition":
            data[key] = int(value)
        else:
            data[key] = value
    if user_data:
        data["userData"] = user_data
    return data


def error_response(error: str | None) -> ChatResponse:
    """Turn a publish reply's ``400:<code>:<advice>`` back into a GMS error response."""
    code, advice = int(ErrorCode.INTERNAL), error or "publish refused"
    parts = (error or "").split(":", 2)
    if len(parts) == 3 and parts[1].isdigit():
        code, advice = int(parts[1]), parts[2]
    return ChatResponse(statusCode=ERROR_STATUS_CODE, errors=[ErrorEntry(code, advice)])


class CometdChatTransport:
    pushes = True

    def __init__(self, comet_url: str, channel: str, *, websocket: bool = True,
                 timeout_ms: int = 10_000, api_url: str | None = None) -> None:
        self.channel = channel
        self.timeout = timeout_ms / 1000
        self.api_url = api_url
        self.client = CometdClient(comet_url, websocket=websocket,
                                   on_delivery=self._delivered, on_handshake=self._rehandshake,
                                   on_link=self._link)
        self.on_push: Callable[[ChatResponse], None] | None = None
        self.on_resync: Callable[[], Awaitable[None]] | None = None
        self.on_link: Callable[[bool], None] | None = None
        """The CometD connection went down (``False``) or came back (``True``)."""
        self._started: asyncio.Future[ChatResponse] | None = None
        self._up = False

    @property
    def connection_type(self) -> str:
        return self.client.transport

    async def call(self, request: HttpRequest) -> ChatResponse:
        if request.operation in _FILE_OPERATIONS:
            return await self.file_call(request)
        try:
            if not self._up:
                await self.client.start([self.channel])
                self._up = True
            if request.operation == "requestChat":
                self._started = asyncio.get_running_loop().create_future()
            reply = await self.client.publish(self.channel, publish_data(request))
            if reply.successful is not True:
                return error_response(reply.error if isinstance(reply.error, str) else None)
            if self._started is not None and request.operation == "requestChat":
                return await asyncio.wait_for(self._started, self.timeout)
            return ChatResponse(statusCode=0)
        except (CometdError, TimeoutError, OSError, aiohttp.ClientError) as exc:
            raise TransportError(f"{request.operation} over CometD: {exc or 'timed out'}"
                                 ) from None
        finally:
            if request.operation == "requestChat":
                self._started = None

    # ---- files: the chat-ntf side door (protocols.md §2.5) ----------------------------------

    def _ntf_fields(self, request: HttpRequest) -> dict[str, str]:
        if not self.api_url:
            raise TransportError(f"{request.operation}: file operations over CometD need "
                                 "webchat.cometD.apiURL")
        operation = {"fileLimits": "fileGetLimits"}.get(request.operation, request.operation)
        fields = {"operation": operation, **request.fields}
        if request.operation in ("fileDownload", "fileDelete"):
            fields["fileId"] = unquote(request.path.rstrip("/").split("/")[-2])
        return fields

    async def _ntf_post(self, request: HttpRequest, data: object) -> ChatResponse:
        assert self.api_url is not None
        try:
            async with self.client.http.post(self.api_url, data=data,
                                             timeout=aiohttp.ClientTimeout(self.timeout)) as resp:
                return decode_reply(request, resp.status, await resp.read())
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(f"{request.operation} over chat-ntf: {exc or 'timed out'}"
                                 ) from None

    async def file_call(self, request: HttpRequest) -> ChatResponse:
        return await self._ntf_post(request, self._ntf_fields(request))

    async def upload(self, request: HttpRequest, name: str, data: bytes, content_type: str
                     ) -> ChatResponse:
        form = aiohttp.FormData()
        for key, value in self._ntf_fields(request).items():
            form.add_field(key, value)
        form.add_field("file", data, filename=name, content_type=content_type)
        return await self._ntf_post(request, form)

    async def download(self, request: HttpRequest) -> Download | ChatResponse:
        fields = self._ntf_fields(request)
        assert self.api_url is not None
        return await fetch_file(self.client.http, self.api_url, request, fields, {},
                                aiohttp.ClientTimeout(self.timeout))

    def _delivered(self, channel: str, data: Any) -> None:
        if channel != self.channel:
            return
        try:
            response = msgspec.convert(data, ChatResponse)
        except msgspec.ValidationError:
            return
        if response.statusCode != 0:
            return  # refusals already came back as the publish reply
        if self._started is not None and not self._started.done() and response.secureKey:
            self._started.set_result(response)
        elif self.on_push is not None:
            self.on_push(response)

    def _link(self, up: bool) -> None:
        if self.on_link is not None:
            self.on_link(up)

    async def _rehandshake(self, _again: bool) -> None:
        if self.on_resync is not None:
            await self.on_resync()

    async def close(self) -> None:
        await self.client.close()
