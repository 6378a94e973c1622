"""Client for the agent API: REST calls plus the WebSocket event stream, with resync.

Used by ``webchat agent``, ``webchat bot``, the benchmarks and the tests. The stream delivers
transcript events of the agent's chats; the client tracks the next index per chat and, after a
reconnect, fetches whatever it missed, so a handler sees every event exactly once and in order.

Tokens have a lifetime (``expiresInS`` in the login reply): the client swaps its token for a new
one halfway through (before a call, and in the background while it listens), and logs in again
with its password should the token be gone anyway (a long sleep, a server that forgot it), so
a long-running bot or agent never sees its token run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None] | None]


class AgentApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _decoded(status: int, payload: bytes) -> Any:
    """The reply's JSON, or an :class:`AgentApiError` for a refusal. A body that is no JSON
    at all is one too: it is what a load balancer answers for a server that is gone (nginx's
    HTML ``502 Bad Gateway``), an error every caller handles (the stream reconnects, a bot
    retries), not a crash of whoever made the call."""
    try:
        decoded = msgspec.json.decode(payload) if payload else {}
    except msgspec.DecodeError:
        raise AgentApiError(status, "bad_reply", f"HTTP {status} without a JSON body"
                            ) from None
    if status >= 400:
        err = decoded.get("error", {}) if isinstance(decoded, dict) else {}
        raise AgentApiError(status, err.get("code", "?"), err.get("message", ""))
    return decoded


class AgentClient:
    def __init__(self, base_url: str, username: str, password: str, *,
                 session: aiohttp.ClientSession | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base = base_url.rstrip("/") + "/agent/v1"
        self.username = username
        self.password = password
        self.token = ""
        self.clock = clock
        self._refresh_at = 0.0
        """When (``clock`` seconds) the token is half way through its life: swap it then."""
        self._renewing = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._http = session
        self._owns = session is None
        self.positions: dict[str, int] = {}
        """chatId -> next transcript index this client has not yet seen."""
        self._stream: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = msgspec.json.encode(body) if body is not None else None
        status, payload, _ = await self._raw(method, path, data, json=data is not None)
        return _decoded(status, payload)

    async def _raw(self, method: str, path: str, data: Any = None, *, json: bool = False
                   ) -> tuple[int, bytes, str]:
        """One call with a fresh token; a 401 on a token we hold means it is gone (expired,
        forgotten): log in again and retry once (not a multipart body, already consumed)."""
        own_token = path not in ("/login", "/refresh")
        if own_token:
            await self._fresh()
        result = await self._send(method, path, data, json=json)
        if result[0] == 401 and own_token and self.token \
                and not isinstance(data, aiohttp.FormData):
            await self._relogin()
            result = await self._send(method, path, data, json=json)
        return result

    async def _send(self, method: str, path: str, data: Any, *, json: bool
                    ) -> tuple[int, bytes, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if json:
            headers["Content-Type"] = "application/json"
        async with self.http.request(method, self.base + path, data=data,
                                     headers=headers) as resp:
            return resp.status, await resp.read(), resp.content_type

    def _took(self, reply: dict[str, Any]) -> None:
        self.token = reply["token"]
        self._refresh_at = self.clock() + float(reply.get("expiresInS", 0)) / 2

    async def _fresh(self) -> None:
        """Swap the token once it is half way through its life (one swap at a time)."""
        if not self.token or self.clock() < self._refresh_at:
            return
        async with self._renewing:
            if not self.token or self.clock() < self._refresh_at:
                return  # swapped meanwhile
            try:
                self._took(await self._call("POST", "/refresh"))
            except AgentApiError as exc:
                if exc.status != 401:
                    raise
                await self.login()

    async def _relogin(self) -> None:
        async with self._renewing:
            await self.login()

    async def refresh(self) -> dict[str, Any]:
        """Swap the token for a new one now (``POST /refresh``)."""
        reply: dict[str, Any] = await self._call("POST", "/refresh")
        self._took(reply)
        return reply

    async def _keep_fresh(self) -> None:
        """While listening: swap the token in time even when no call is made."""
        while True:
            await asyncio.sleep(max(1.0, self._refresh_at - self.clock()))
            try:
                await self._fresh()
            except (aiohttp.ClientError, ConnectionError, TimeoutError, AgentApiError) as exc:
                log.debug("token refresh failed, retrying: %s", exc)

    async def push_url(self, chat_id: str, url: str) -> None:
        await self._call("POST", f"/chats/{quote(chat_id)}/pushUrl", {"url": url})

    async def supervise(self) -> list[dict[str, Any]]:
        """Every open chat (supervisors only)."""
        reply: dict[str, Any] = await self._call("GET", "/supervise")
        chats: list[dict[str, Any]] = reply["chats"]
        return chats

    async def monitor(self, chat_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = await self._call("POST", f"/chats/{quote(chat_id)}/monitor")
        return reply

    async def unmonitor(self, chat_id: str) -> None:
        await self._call("POST", f"/chats/{quote(chat_id)}/unmonitor")

    async def barge_in(self, chat_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = await self._call("POST", f"/chats/{quote(chat_id)}/bargeIn")
        return reply

    async def leave(self, chat_id: str) -> None:
        await self._call("POST", f"/chats/{quote(chat_id)}/leave")

    async def upload_file(self, chat_id: str, name: str, data: bytes, content_type: str,
                          description: str | None = None) -> dict[str, Any]:
        form = aiohttp.FormData()
        if description:
            form.add_field("description", description)
        form.add_field("file", data, filename=name, content_type=content_type)
        status, payload, _ = await self._raw("POST", f"/chats/{quote(chat_id)}/files", form)
        result: dict[str, Any] = _decoded(status, payload)
        return result

    async def download_file(self, chat_id: str, file_id: str) -> tuple[bytes, str]:
        """The file's bytes and content type."""
        status, payload, ctype = await self._raw(
            "GET", f"/chats/{quote(chat_id)}/files/{quote(file_id)}")
        if status >= 400:
            _decoded(status, payload)
        return payload, ctype

    # ---- REST ------------------------------------------------------------------------------

    async def login(self) -> dict[str, Any]:
        reply: dict[str, Any] = await self._call(
            "POST", "/login", {"username": self.username, "password": self.password})
        self._took(reply)
        return reply

    async def me(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/me")
        return result

    async def logout(self) -> None:
        await self._call("POST", "/logout")
        self.token = ""

    async def set_state(self, ready: bool, capacity: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"ready": ready}
        if capacity is not None:
            body["capacity"] = capacity
        result: dict[str, Any] = await self._call("POST", "/state", body)
        return result

    async def queue(self, limit: int | None = None, offset: int = 0,
                    service: str | None = None) -> list[dict[str, Any]]:
        """One page of waiting chats (the server's default page size unless ``limit``)."""
        query = {"offset": str(offset), **({"limit": str(limit)} if limit else {}),
                 **({"service": service} if service else {})}
        path = "/queue?" + "&".join(f"{k}={quote(v)}" for k, v in query.items())
        return list((await self._call("GET", path))["chats"])

    async def chats(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/chats"))["chats"])

    async def chat(self, chat_id: str, since: int = 1) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/chats/{chat_id}?from={since}")
        return result

    async def accept(self, chat_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/chats/{chat_id}/accept")
        return result

    async def decline(self, chat_id: str) -> None:
        await self._call("POST", f"/chats/{chat_id}/decline")

    async def send(self, chat_id: str, text: str, message_type: str | None = None) -> None:
        body: dict[str, Any] = {"text": text}
        if message_type:
            body["messageType"] = message_type
        await self._call("POST", f"/chats/{chat_id}/send", body)

    async def typing(self, chat_id: str, typing: bool) -> None:
        await self._call("POST", f"/chats/{chat_id}/typing", {"typing": typing})

    async def end(self, chat_id: str) -> None:
        await self._call("POST", f"/chats/{chat_id}/end")

    async def transfer(self, chat_id: str, to_agent: str | None = None) -> None:
        await self._call("POST", f"/chats/{chat_id}/transfer", {"toAgent": to_agent})

    # ---- event stream ----------------------------------------------------------------------

    def listen(self, handler: EventHandler, *, retry_s: float = 0.5) -> None:
        """Follow the event stream in the background, reconnecting until :meth:`close`."""
        self._stream = asyncio.create_task(self._follow(handler, retry_s))
        self._refresher = asyncio.create_task(self._keep_fresh())

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def _follow(self, handler: EventHandler, retry_s: float) -> None:
        url = self.base.replace("http", "ws", 1) + "/events"
        while True:
            try:
                await self._fresh()
                async with self.http.ws_connect(url, params={"token": self.token},
                                                heartbeat=30) as ws:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        await self._dispatch(msgspec.json.decode(msg.data), handler)
            except aiohttp.WSServerHandshakeError as exc:
                log.debug("agent stream refused: %s", exc)
                if exc.status == 401 and self.token:
                    with contextlib.suppress(aiohttp.ClientError, AgentApiError):
                        await self._relogin()  # the token is gone: a new one
            except (aiohttp.ClientError, ConnectionError, TimeoutError, AgentApiError) as exc:
                log.debug("agent stream dropped: %s", exc)
            self._connected.clear()
            await asyncio.sleep(retry_s)

    async def _dispatch(self, event: dict[str, Any], handler: EventHandler) -> None:
        if event.get("type") == "hello":
            # Resync: fetch what happened in our chats while we were away.
            for chat in event.get("chats", []):
                chat_id = chat["chatId"]
                known = self.positions.get(chat_id)
                if known is not None and known < chat["nextPosition"]:
                    try:
                        missed = await self.chat(chat_id, known)
                    except AgentApiError as exc:
                        if exc.status != 404:
                            raise
                        continue  # no longer this agent's chat
                    for raw in missed["messages"]:
                        await self._deliver(chat_id, raw, False, handler)
            self._connected.set()
        elif event.get("type") == "message":
            await self._deliver(event["chatId"], event["message"], event.get("chatEnded", False),
                                handler)
            return
        result = handler(event)
        if result is not None:
            await result

    async def _deliver(self, chat_id: str, raw: dict[str, Any], ended: bool,
                       handler: EventHandler) -> None:
        index = int(raw.get("index", 0))
        expected = self.positions.get(chat_id)
        if expected is not None and index and index < expected:
            return  # seen already (overlap between resync and the live stream)
        if expected is not None and index > expected:
            # A gap: fetch the missing events first so the handler sees them in order.
            self.positions[chat_id] = index  # stops the fetch's events recursing here
            missed = await self.chat(chat_id, expected)
            for earlier in missed["messages"]:
                if expected <= earlier["index"] < index:
                    self.positions[chat_id] = earlier["index"] + 1
                    await self._emit(chat_id, earlier, False, handler)
        self.positions[chat_id] = max(expected or 1, index + 1)
        await self._emit(chat_id, raw, ended, handler)

    @staticmethod
    async def _emit(chat_id: str, raw: dict[str, Any], ended: bool,
                    handler: EventHandler) -> None:
        result = handler({"type": "message", "chatId": chat_id, "chatEnded": ended,
                          "message": raw})
        if result is not None:
            await result

    def track(self, chat_id: str, next_position: int) -> None:
        """Start following a chat's transcript from ``next_position``."""
        self.positions[chat_id] = max(self.positions.get(chat_id, 1), next_position)

    async def close(self) -> None:
        for task in (self._stream, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._stream = self._refresher = None
        if self._http is not None and self._owns:
            await self._http.close()
        self._http = None
