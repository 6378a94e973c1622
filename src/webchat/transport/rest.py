"""GMS Chat v2 over REST: POST each :class:`HttpRequest` form-encoded, decode the reply.

Servers differ on HTTP statuses for errors (protocols.md §1.9): some answer 200 with a non-zero
``statusCode``, others 4xx with the same body. Both are decoded to a :class:`ChatResponse`;
only a reply that is not a chat response at all is a :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import msgspec

from webchat.protocol.gms.models import ChatResponse, decode_response
from webchat.protocol.gms.session import HttpRequest


class TransportError(Exception):
    """The request did not produce a chat response: network failure, timeout, garbage."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Download:
    data: bytes
    content_type: str
    filename: str


async def fetch_file(client: aiohttp.ClientSession, url: str, request: HttpRequest,
                     data: object, headers: Mapping[str, str], limit: aiohttp.ClientTimeout
                     ) -> Download | ChatResponse:
    """POST a download request: the bytes (with the name from ``Content-Disposition``), or
    the chat response the server refused it with."""
    try:
        async with client.post(url, data=data, headers=headers, timeout=limit) as resp:
            body = await resp.read()
            if resp.status == 200 and resp.content_type != "application/json":
                name = resp.content_disposition.filename if resp.content_disposition else None
                return Download(body, resp.content_type, name or "")
            status = resp.status
    except TimeoutError:
        raise TransportError(f"{request.operation}: no reply within {limit.total:g} s"
                             ) from None
    except aiohttp.ClientError as exc:
        raise TransportError(f"{request.operation}: {exc}") from None
    return decode_reply(request, status, body)


def decode_reply(request: HttpRequest, status: int, body: bytes) -> ChatResponse:
    try:
        return decode_response(body)
    except msgspec.DecodeError:
        raise TransportError(f"{request.operation}: HTTP {status} without a chat response",
                             status) from None


class RestTransport:
    pushes = False
    """REST has no server push: the service polls."""

    def __init__(self, data_url: str, *, apikey: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout_ms: int = 3000,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.data_url = data_url.rstrip("/")
        self.headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if apikey:
            self.headers["apikey"] = apikey
        self.headers.update(headers or {})
        self.timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._session = session
        self._owns_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def call(self, request: HttpRequest) -> ChatResponse:
        status, body, _ = await self._post(request, urlencode(request.fields), self.headers)
        return decode_reply(request, status, body)

    async def upload(self, request: HttpRequest, name: str, data: bytes, content_type: str
                     ) -> ChatResponse:
        """POST the request's fields and the file as ``multipart/form-data``."""
        form = aiohttp.FormData()
        for key, value in request.fields.items():
            form.add_field(key, value)
        form.add_field("file", data, filename=name, content_type=content_type)
        headers = {k: v for k, v in self.headers.items() if k != "Content-Type"}
        status, body, _ = await self._post(request, form, headers)
        return decode_reply(request, status, body)

    async def download(self, request: HttpRequest) -> Download | ChatResponse:
        """The file, or the server's error response."""
        return await fetch_file(self._client(), self.data_url + request.path, request,
                                urlencode(request.fields), self.headers, self.timeout)

    async def _post(self, request: HttpRequest, data: object, headers: Mapping[str, str]
                    ) -> tuple[int, bytes, str]:
        url = self.data_url + request.path
        try:
            async with self._client().post(url, data=data, headers=headers,
                                           timeout=self.timeout) as resp:
                return resp.status, await resp.read(), resp.content_type
        except TimeoutError:
            raise TransportError(f"{request.operation}: no reply within "
                                 f"{self.timeout.total:g} s") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{request.operation}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            # Give aiohttp a tick to close the underlying connections cleanly.
            await asyncio.sleep(0)
        self._session = None
