"""The agent API: JSON over REST for actions, a WebSocket for everything that happens.

``/agent/v1/...`` is documented in the OpenAPI file served at ``/openapi.json``. Agents log in
with a password and get a bearer token good for ``expiresInS`` seconds; every other call
carries ``Authorization: Bearer``, ``/refresh`` swaps a valid token for a new one and
``/logout`` revokes it (see :mod:`accounts`). The WebSocket ``/agent/v1/events?token=...``
pushes offers, transcript events of the agent's chats and queue sizes; on (re)connect it first
sends a ``hello`` with the agent's chats and their ``nextPosition`` so a client can fetch
anything it missed while disconnected. A stream lives as long as its token: it follows a
refresh, and closes (4401) when the token is revoked or runs out.

The chat writes (``accept``, ``decline``, ``send``, ``typing``, ``pushUrl``, ``end``,
``transfer``) can also be sent on the event stream, which spares a console an HTTP request per
message: a text frame ``{"id": 7, "op": "send", "chatId": "...", "body": {"text": "hi"}}``
(``body`` as the REST call's, ``id`` a number or a string of the client's) is answered, in
order with the events, by ``{"type": "reply", "id": 7, "ok": true, "result": ...}`` or
``{"type": "reply", "id": 7, "ok": false, "status": 409, "error": {"code", "message"}}``, the
REST call's status and error. Both transports run the same :class:`_ChatCommand` with the same
checks, the token checked again for every write; writes to one chat are performed in the order
sent, and at most :data:`MAX_STREAM_WRITES` are under way per stream (the stream is not read
further until one is done).

Input is checked with the customer API's rules where both take the same thing (push URLs, file
descriptions: :mod:`validation`), so the two APIs cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from aiohttp import WSMsgType, web

from webchat.protocol.gms.models import EventType
from webchat.server import validation
from webchat.server.accounts import Accounts, Grant, token_hash
from webchat.server.addresses import client_address
from webchat.server.engine import ChatEngine
from webchat.server.errors import AgentError, ChatError, Refusal
from webchat.server.statuses import agent_status, chat_status
from webchat.server.uploads import file_response, read_upload
from webchat.server.wsframes import direct, text_frame, writable_now
from webchat.store.records import AgentRecord

log = logging.getLogger(__name__)

PREFIX = "/agent/v1"
AGENT_KEY: web.AppKey[str] = web.AppKey("agent_id", str)
MAX_CAPACITY = 10_000
"""The most chats an agent may take at once (``POST /state``)."""
TOKEN_GONE = 4401
"""Close code of an event stream whose token was revoked or ran out: log in (or refresh)."""
MAX_STREAM_WRITES = 256
"""Chat writes one event stream may have under way at once."""


class Login(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class State(msgspec.Struct, forbid_unknown_fields=True):
    ready: bool
    capacity: Annotated[int, msgspec.Meta(ge=0, le=MAX_CAPACITY)] | msgspec.UnsetType = \
        msgspec.UNSET
    """Absent: unchanged. ``null`` is refused like any other non-number."""


class SendText(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    messageType: str | None = None


class Typing(msgspec.Struct, forbid_unknown_fields=True):
    typing: bool
    preview: str | None = None


class Transfer(msgspec.Struct, forbid_unknown_fields=True):
    toAgent: str | None = None


class PushUrl(msgspec.Struct, forbid_unknown_fields=True):
    url: str


class StreamWrite(msgspec.Struct, forbid_unknown_fields=True):
    """A chat write sent on the event stream (see the module docstring)."""

    id: Annotated[int, msgspec.Meta(ge=-(2**53), le=2**53)] | \
        Annotated[str, msgspec.Meta(max_length=64)]
    op: str
    chatId: Annotated[str, msgspec.Meta(max_length=128)]
    body: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


class _Id(msgspec.Struct):
    """What a write the stream could not decode may still say of itself."""

    id: int | str | None = None


Handler = Callable[[web.Request, str], Awaitable[Any]]


@dataclass(frozen=True)
class _ChatCommand:
    """A write to one chat, on REST (``POST /chats/{id}/<op>``) or on the event stream."""

    body: type[Any] | None
    """The body's model (None: a body is not read)."""
    run: Callable[[str, str, Any], Awaitable[Any]]
    """(agent id, chat id, decoded body) -> the result (None: ``{"ok": true}`` on REST)."""


@dataclass(eq=False)
class _Stream:
    """An open event stream and the token it lives by (that token's successor after a
    refresh)."""

    ws: web.WebSocketResponse
    token_hash: str
    moved: asyncio.Event


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status,
                        content_type="application/json")


def _error(code: str, message: str) -> dict[str, Any]:
    """The agent API's error object, on REST and in a stream write's reply."""
    return {"error": {"code": code, "message": message}}


def error_body(code: str, message: str, status: int) -> web.Response:
    return _json(_error(code, message), status)


def refusal(exc: AgentError | ChatError) -> tuple[str, str, int]:
    """A refusal's code, message and status. One of the customer kind (a full transcript, a
    file limit) takes the status the customer API's strict mode gives it."""
    if isinstance(exc, AgentError):
        return exc.code, exc.message, agent_status(exc)
    return exc.code.name.lower(), exc.advice, chat_status(exc)


def agent_error_body(exc: AgentError) -> web.Response:
    return error_body(*refusal(exc))


def chat_error_body(exc: ChatError) -> web.Response:
    return error_body(*refusal(exc))


class AgentApi:
    def __init__(self, engine: ChatEngine, accounts: Accounts) -> None:
        self.engine = engine
        self.accounts = accounts
        self.limits = engine.config.limits
        self.client_address = client_address(engine.config.trust_forwarded_for)
        self.sockets: set[web.WebSocketResponse] = set()
        self._streams: dict[str, set[_Stream]] = {}
        """token hash -> the event streams it opened (or the token it was refreshed from)."""
        self.chat_commands: dict[str, _ChatCommand] = {
            "accept": _ChatCommand(None, self.accept),
            "decline": _ChatCommand(None, self.decline),
            "send": _ChatCommand(SendText, self.send),
            "typing": _ChatCommand(Typing, self.typing),
            "pushUrl": _ChatCommand(PushUrl, self.push_url),
            "end": _ChatCommand(None, self.end),
            "transfer": _ChatCommand(Transfer, self.transfer),
        }

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post(f"{PREFIX}/login", self.login)
        r.add_post(f"{PREFIX}/logout", self._authed(self.logout))
        r.add_post(f"{PREFIX}/refresh", self.refresh)
        r.add_get(f"{PREFIX}/me", self._authed(self.me))
        r.add_post(f"{PREFIX}/state", self._authed(self.state))
        r.add_get(f"{PREFIX}/queue", self._authed(self.queue))
        r.add_get(f"{PREFIX}/chats", self._authed(self.chats))
        r.add_get(f"{PREFIX}/chats/{{chat_id}}", self._authed(self.chat))
        for op, command in self.chat_commands.items():
            r.add_post(f"{PREFIX}/chats/{{chat_id}}/{op}", self._authed(self._on_rest(command)))
        r.add_post(f"{PREFIX}/chats/{{chat_id}}/files", self._authed(self.upload_file))
        r.add_get(f"{PREFIX}/chats/{{chat_id}}/files/{{file_id}}",
                  self._authed(self.download_file))
        r.add_get(f"{PREFIX}/supervise", self._authed(self.supervise))
        r.add_post(f"{PREFIX}/chats/{{chat_id}}/monitor", self._authed(self.monitor))
        r.add_post(f"{PREFIX}/chats/{{chat_id}}/unmonitor", self._authed(self.unmonitor))
        r.add_post(f"{PREFIX}/chats/{{chat_id}}/bargeIn", self._authed(self.barge_in))
        r.add_post(f"{PREFIX}/chats/{{chat_id}}/leave", self._authed(self.leave))
        r.add_get(f"{PREFIX}/events", self.events)

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close(code=1001, message=b"server shutting down")

    # ---- plumbing --------------------------------------------------------------------------

    def _authed(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                agent_id = (await self.accounts.authenticate(_bearer(request))).agent_id
                result = await handler(request, agent_id)
            except AgentError as exc:
                return agent_error_body(exc)
            except ChatError as exc:
                return chat_error_body(exc)
            if isinstance(result, web.StreamResponse):
                return result
            return _json(result if result is not None else {"ok": True})
        return wrapped

    async def _body(self, request: web.Request, model: type[Any]) -> Any:
        return _decode(await request.read(), model)

    def _on_rest(self, command: _ChatCommand) -> Handler:
        async def handler(request: web.Request, agent_id: str) -> Any:
            body = None if command.body is None else await self._body(request, command.body)
            return await command.run(agent_id, request.match_info["chat_id"], body)
        return handler

    @staticmethod
    def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
        raw = request.query.get(name)
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            raise AgentError(Refusal.INVALID, "bad_request",
                             f"{name} must be an integer from {low} to {high}")
        return int(raw)

    def _text(self, text: str, limit: int, name: str) -> str:
        if not text.strip():
            raise AgentError(Refusal.INVALID, "bad_request", f"{name} must not be empty")
        if len(text) > limit:
            raise AgentError(Refusal.INVALID, "too_long",
                             f"{name} is longer than {limit} characters")
        return text

    def _agent(self, agent_id: str) -> AgentRecord:
        """The account of an authenticated agent (authentication checked it exists)."""
        agent = self.engine.agent(agent_id)
        if agent is None:
            raise AgentError(Refusal.UNAUTHORIZED, "unauthorized", "no such agent")
        return agent

    # ---- endpoints -------------------------------------------------------------------------

    def _token_reply(self, token: str, grant: Grant) -> dict[str, Any]:
        agent = self._agent(grant.agent_id)
        return {"token": token, "agentId": agent.agent_id, "nickname": agent.nickname,
                "expiresInS": (grant.expires_ms - self.engine.clock()) / 1000}

    async def login(self, request: web.Request) -> web.Response:
        try:
            body: Login = await self._body(request, Login)
            token, grant = await self.accounts.login(body.username, body.password,
                                                     self.client_address(request))
        except AgentError as exc:
            return agent_error_body(exc)
        return _json(self._token_reply(token, grant))

    async def refresh(self, request: web.Request) -> web.Response:
        """A new token for a valid one, which stops working; its streams follow the new one."""
        try:
            old, token, grant = await self.accounts.refresh(_bearer(request))
        except AgentError as exc:
            return agent_error_body(exc)
        streams = self._streams.pop(old.token_hash, set())
        if streams:
            self._streams.setdefault(grant.token_hash, set()).update(streams)
        for stream in streams:
            stream.token_hash = grant.token_hash
            stream.moved.set()
        return _json(self._token_reply(token, grant))

    async def logout(self, request: web.Request, agent_id: str) -> None:
        hashed = token_hash(_bearer(request))
        await self.accounts.logout(_bearer(request))
        for stream in self._streams.pop(hashed, set()):
            stream.moved.set()  # its watchdog finds the token gone and closes it

    async def me(self, request: web.Request, agent_id: str) -> dict[str, Any]:
        agent = self._agent(agent_id)
        presence = self.engine.staff.presence(agent_id)
        return {"agentId": agent_id, "nickname": agent.nickname, "ready": agent.ready,
                "capacity": agent.capacity, "load": presence.load,
                "supervisor": agent.supervisor}

    async def state(self, request: web.Request, agent_id: str) -> dict[str, Any]:
        body: State = await self._body(request, State)
        capacity = self._agent(agent_id).capacity \
            if isinstance(body.capacity, msgspec.UnsetType) else body.capacity
        await self.engine.staff.set_ready(agent_id, body.ready, capacity)
        return await self.me(request, agent_id)

    async def queue(self, request: web.Request, agent_id: str) -> dict[str, Any]:
        """One page of the waiting chats (``?limit=&offset=``, optionally one ``?service=``),
        longest waiting first, with how many wait in all."""
        service = request.query.get("service")
        if service is not None and service not in self.engine.config.services:
            raise AgentError(Refusal.INVALID, "bad_request", "unknown service")
        limit = self._int_query(request, "limit", self.limits.queue_page_size, 1,
                                self.limits.max_queue_page_size)
        offset = self._int_query(request, "offset", 0, 0, 10**9)
        chats, total = self.engine.dispatch.queued_page(service, offset, limit)
        return {"chats": [self.engine.summary(c) for c in chats], "total": total,
                "offset": offset, "limit": limit}

    async def chats(self, request: web.Request, agent_id: str) -> dict[str, Any]:
        return {"chats": [self.engine.summary(c) for c in self.engine.staff.agent_chats(agent_id)]}

    async def chat(self, request: web.Request, agent_id: str) -> dict[str, Any]:
        chat = await self.engine.staff.agent_chat(agent_id, request.match_info["chat_id"])
        start = max(1, self._int_query(request, "from", 1, 0, 10**12))
        if start > chat.next_index:
            raise AgentError(Refusal.INVALID, "bad_request", "from is beyond the transcript")
        return {**self.engine.summary(chat), "messages": chat.events[start - 1:]}

    async def accept(self, agent_id: str, chat_id: str, _: None) -> dict[str, Any]:
        chat = await self.engine.staff.accept(agent_id, chat_id)
        return {**self.engine.summary(chat), "messages": chat.events}

    async def decline(self, agent_id: str, chat_id: str, _: None) -> None:
        await self.engine.staff.decline(agent_id, chat_id)

    async def send(self, agent_id: str, chat_id: str, body: SendText) -> None:
        text = self._text(body.text, self.limits.max_message_chars, "text")
        await self.engine.staff.event(agent_id, chat_id, EventType.MESSAGE, text,
                                      body.messageType)

    async def typing(self, agent_id: str, chat_id: str, body: Typing) -> None:
        preview = body.preview
        if preview is not None and len(preview) > self.limits.max_message_chars:
            raise AgentError(Refusal.INVALID, "too_long", "preview is too long")
        type_ = EventType.TYPING_STARTED if body.typing else EventType.TYPING_STOPPED
        await self.engine.staff.event(agent_id, chat_id, type_, preview)

    async def push_url(self, agent_id: str, chat_id: str, body: PushUrl) -> None:
        url = validation.push_url({"pushUrl": body.url}, self.limits)
        await self.engine.staff.event(agent_id, chat_id, EventType.PUSH_URL, url)

    async def end(self, agent_id: str, chat_id: str, _: None) -> None:
        await self.engine.staff.end(agent_id, chat_id)

    async def transfer(self, agent_id: str, chat_id: str, body: Transfer) -> None:
        await self.engine.staff.transfer(agent_id, chat_id, body.toAgent)

    # ---- event stream ----------------------------------------------------------------------

    async def upload_file(self, request: web.Request, agent_id: str) -> dict[str, Any]:
        """multipart/form-data with a ``file`` part and an optional ``description``."""
        upload = await read_upload(request, self.engine.files.limits.max_file_size,
                                   self.limits.max_form_fields)
        unknown = set(upload.fields) - {"description"}
        if unknown:
            raise AgentError(Refusal.INVALID, "bad_request", f"unknown fields {sorted(unknown)}")
        description = validation.text(upload.fields, "description",
                                      self.limits.max_file_description_chars)
        record = await self.engine.files.agent_upload(
            agent_id, request.match_info["chat_id"], upload.filename, upload.content_type,
            upload.data, description)
        return {"fileId": record.file_id, "fileName": record.name, "size": record.size,
                "contentType": record.content_type}

    async def download_file(self, request: web.Request, agent_id: str) -> web.Response:
        chat = await self.engine.staff.agent_chat(agent_id, request.match_info["chat_id"])
        record, data = await self.engine.files.download(chat, request.match_info["file_id"],
                                                        counted=False)
        return file_response(record.name, record.content_type, data)

    # ---- supervisors ----------------------------------------------------------------------

    async def supervise(self, request: web.Request, agent_id: str) -> dict[str, Any]:
        if not self.engine.staff.is_supervisor(agent_id):
            raise AgentError(Refusal.FORBIDDEN, "not_supervisor", "only supervisors may do this")
        return {"chats": [self.engine.summary(c) for c in self.engine.staff.open_chats()]}

    async def monitor(self, request: web.Request, agent_id: str) -> dict[str, Any]:
        chat = await self.engine.supervision.monitor(agent_id, request.match_info["chat_id"])
        return {**self.engine.summary(chat), "messages": chat.events}

    async def unmonitor(self, request: web.Request, agent_id: str) -> None:
        self.engine.supervision.unmonitor(agent_id, request.match_info["chat_id"])

    async def barge_in(self, request: web.Request, agent_id: str) -> dict[str, Any]:
        chat = await self.engine.supervision.barge_in(agent_id, request.match_info["chat_id"])
        return self.engine.summary(chat)

    async def leave(self, request: web.Request, agent_id: str) -> None:
        await self.engine.supervision.leave(agent_id, request.match_info["chat_id"])

    async def events(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token") or _bearer(request)
        try:
            grant = await self.accounts.authenticate(token)
        except AgentError as exc:
            return agent_error_body(exc)
        agent_id = grant.agent_id
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024, compress=False)
        await ws.prepare(request)
        self.sockets.add(ws)
        stream = _Stream(ws, grant.token_hash, asyncio.Event())
        self._streams.setdefault(grant.token_hash, set()).add(stream)
        watchdog = asyncio.create_task(self._watch(stream))
        outbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
        closing: list[asyncio.Future[bool]] = []

        def push(_topic: str, payload: bytes) -> None:
            try:
                outbox.put_nowait(payload)
            except asyncio.QueueFull:  # a stalled consumer: drop it, it resyncs on reconnect
                closing.append(asyncio.ensure_future(ws.close(code=1013, message=b"too slow")))

        # No await between the snapshot and the subscription: nothing can slip between them.
        hello = {"type": "hello", "agentId": agent_id,
                 "chats": [self.engine.summary(c) for c in self.engine.staff.agent_chats(agent_id)]}
        outbox.put_nowait(msgspec.json.encode(hello))
        unsubscribe = self.engine.notifier.listen(agent_id, push)
        writer = asyncio.create_task(self._pump(ws, request.transport, outbox))
        writes = _Writes(self, stream, push)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "ping":
                    await ws.send_str('{"type":"pong"}')
                else:
                    await writes.take(msg.data)
        finally:
            for unsub in unsubscribe:
                unsub()
            await writes.settle()
            for task in (writer, watchdog):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.sockets.discard(ws)
            same_token = self._streams.get(stream.token_hash, set())
            same_token.discard(stream)
            if not same_token:
                self._streams.pop(stream.token_hash, None)
        return ws

    async def _watch(self, stream: _Stream) -> None:
        """Close the stream once its token is revoked or runs out (woken early by a refresh
        or a logout, which change the answer)."""
        while True:
            expires = self.accounts.expires_ms(stream.token_hash)
            left_s = 0.0 if expires is None else (expires - self.engine.clock()) / 1000
            if left_s <= 0:
                await stream.ws.close(code=TOKEN_GONE, message=b"token revoked or expired")
                return
            stream.moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.moved.wait(), left_s)

    @staticmethod
    async def _pump(ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None,
                    outbox: asyncio.Queue[bytes]) -> None:
        """Write the stream's events in order: all that queued meanwhile in one write while
        the console keeps up, else one at a time as it reads (``server/wsframes.py``)."""
        writer = direct(transport)
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not ws.closed:
                batch = [await outbox.get()]
                while not outbox.empty():
                    batch.append(outbox.get_nowait())
                if ws.closed:
                    return
                if writer is not None and writable_now(writer):
                    writer.write(b"".join(map(text_frame, batch)))
                    continue
                for payload in batch:
                    await ws.send_frame(payload, WSMsgType.TEXT)


class _Writes:
    """The chat writes of one event stream under way: each a task, the next one of a chat
    started when the last is done (in the order sent), at most :data:`MAX_STREAM_WRITES`."""

    def __init__(self, api: AgentApi, stream: _Stream, reply: Callable[[str, bytes], None]
                 ) -> None:
        self.api = api
        self.stream = stream
        self.reply = reply
        self.room = asyncio.Semaphore(MAX_STREAM_WRITES)
        self.last: dict[str, asyncio.Task[None]] = {}
        """chat id -> its latest write (until it is done)."""

    async def take(self, frame: str) -> None:
        """Decode one frame and start its write (an undecodable one is answered at once)."""
        try:
            write = msgspec.json.decode(frame, type=StreamWrite)
            command = self.api.chat_commands.get(write.op)
            if command is None:
                raise AgentError(Refusal.INVALID, "bad_request", f"unknown op {write.op!r}")
            body = None if command.body is None else _decode(write.body, command.body)
        except msgspec.DecodeError as exc:
            self._refuse(_id_of(frame), *refusal(
                AgentError(Refusal.INVALID, "bad_request", f"invalid write: {exc}")))
            return
        except AgentError as exc:
            self._refuse(_id_of(frame), *refusal(exc))
            return
        await self.room.acquire()
        task = asyncio.create_task(self._run(write, command, body, self.last.get(write.chatId)))
        self.last[write.chatId] = task
        task.add_done_callback(functools.partial(self._done, write.chatId))

    async def _run(self, write: StreamWrite, command: _ChatCommand, body: Any,
                   before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await asyncio.wait({before})
        try:
            agent_id = self.api.accounts.current(self.stream.token_hash).agent_id
            result = await command.run(agent_id, write.chatId, body)
        except (AgentError, ChatError) as exc:
            self._refuse(write.id, *refusal(exc))
        except Exception:
            log.exception("unhandled error in %s on an agent event stream", write.op)
            self._refuse(write.id, "internal", "internal server error", 500)
        else:
            self._answer(write.id, {"ok": True, "result": result})

    def _refuse(self, id_: int | str | None, code: str, message: str, status: int) -> None:
        """The reply to a refused write: the status and error the REST call would answer."""
        self._answer(id_, {"ok": False, "status": status, **_error(code, message)})

    def _answer(self, id_: int | str | None, outcome: dict[str, Any]) -> None:
        self.reply("reply", msgspec.json.encode({"type": "reply", "id": id_, **outcome}))

    def _done(self, chat_id: str, task: asyncio.Task[None]) -> None:
        self.room.release()
        if self.last.get(chat_id) is task:
            del self.last[chat_id]

    async def settle(self) -> None:
        """Wait for the writes under way (the stream closed): a write is never cut off half
        way, as a REST call is not when its client goes; what it answers goes nowhere. Each
        chat's latest write waits for the ones before it, so those are all."""
        if self.last:
            await asyncio.wait(set(self.last.values()))


def _decode(raw: bytes | str, model: type[Any]) -> Any:
    """A body as ``model`` (an empty one as ``{}``), or the agent API's refusal."""
    try:
        return msgspec.json.decode(raw or b"{}", type=model)
    except msgspec.DecodeError as exc:
        raise AgentError(Refusal.INVALID, "bad_request", f"invalid body: {exc}") from None


def _id_of(frame: str) -> int | str | None:
    """The id of a write that could not be decoded, if it has a readable one."""
    try:
        return msgspec.json.decode(frame, type=_Id).id
    except msgspec.DecodeError:
        return None


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
