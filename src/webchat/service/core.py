"""The plumbing every WebChatService command shares: one chat session (the pure state machine),
one transport, and the translation of what the session reports into bus events with the
original's names and payloads (see ``docs/webchatservice.md``).

Commands live in :mod:`~webchat.service.chat`, :mod:`~webchat.service.restore` and
:mod:`~webchat.service.files`; :mod:`~webchat.service.plugin` puts them on the bus.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import msgspec

from webchat.bus.bus import Bus, CommandError, Plugin
from webchat.protocol.gms.models import ChatResponse, Message, ParticipantType
from webchat.protocol.gms.session import (
    ChatSession,
    Ended,
    FileUploaded,
    Gap,
    HttpRequest,
    MessagesReceived,
    ParticipantJoined,
    ParticipantLeft,
    ServerError,
    SessionError,
    SessionEvent,
    Started,
    TypingChanged,
)
from webchat.service.config import WebChatConfig
from webchat.service.filters import MessageView
from webchat.service.storage import CallbackStorage, MemoryStorage, SessionStorage
from webchat.transport.chat_cometd import CometdChatTransport
from webchat.transport.rest import RestTransport, TransportError

log = logging.getLogger(__name__)

NAMESPACE = "WebChatService"
NO_SESSION = "There is no active chat session"
ALREADY_ACTIVE = "There is already an active chat session"
BAD_USER_DATA = "malformed JSON provided in userData property"
NO_MESSAGE = "No message text provided"
T = TypeVar("T")

Transport = RestTransport | CometdChatTransport

_CONNECTED = {ParticipantType.AGENT: "agentConnected", ParticipantType.CLIENT: "clientConnected",
              ParticipantType.SUPERVISOR: "supervisorConnected"}
_DISCONNECTED = {ParticipantType.AGENT: "agentDisconnected",
                 ParticipantType.CLIENT: "clientDisconnected",
                 ParticipantType.SUPERVISOR: "supervisorDisconnected"}

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
               "error": logging.ERROR}

#: Every event the service publishes (``WebChatService.<name>``), declared on the bus with
#: ``registerEvents`` as the original's plugin does: the 8.5 bundle's list, in its order,
#: then the ones it publishes without declaring and ours.
EVENTS: tuple[str, ...] = (
    "ready", "restored", "restoreTimeout", "restoreFailed", "messageReceived", "error",
    "started", "ended", "agentTypingStarted", "agentTypingStopped", "pollingStarted",
    "pollingStopped", "clientConnected", "clientDisconnected", "agentConnected",
    "agentDisconnected", "supervisorConnected", "supervisorDisconnected",
    "clientTypingStarted", "clientTypingStopped", "ajaxResponse", "disconnected",
    "reconnected", "chatServerWentOffline", "chatServerBackOnline", "restoredOffline",
    "chatServerTimeout", "fileUploaded",
)

RESYNC_INTERVAL_MS = 3000
RESYNC_ATTEMPTS = 30
"""The original's resync after the connection came back: a refresh every 3 s, 30 times at
most, then ``chatServerTimeout``."""


def builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def check_options(options: Mapping[str, Any], allowed: Mapping[str, type | tuple[type, ...]],
                  required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Reject unknown, missing or wrong-typed options with a reason naming the option."""
    for key, value in options.items():
        if key not in allowed:
            raise CommandError(f"unknown option {key!r}; expected one of {sorted(allowed)}")
        expected = allowed[key]
        if value is None:
            continue
        if isinstance(value, bool) and expected in (int, float):
            raise CommandError(f"option {key!r} must be a number")
        if not isinstance(value, expected):
            name = expected.__name__ if isinstance(expected, type) else \
                " or ".join(t.__name__ for t in expected)
            raise CommandError(f"option {key!r} must be {name}")
    for key in required:
        if options.get(key) is None:
            raise CommandError(f"option {key!r} is required")
    return dict(options)


def string_map(value: Mapping[Any, Any]) -> dict[str, str]:
    """userData as the wire carries it: string keys, string values (numbers and booleans are
    converted as the original does); nested objects are refused with its reason."""
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        if not isinstance(key, str) or not key or not isinstance(item, str | int | float):
            raise CommandError(BAD_USER_DATA)
        out[key] = str(item)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_user_data(value: Mapping[Any, Any] | str | None) -> dict[str, str]:
    """``startChat``'s userData, which the original also takes as a JSON string: a blank
    string, or JSON that is not an object (``"[1]"``, ``"5"``), is no userData, as there;
    text that does not parse is refused with its reason. ``NaN`` and ``Infinity``, which
    Python's json would accept, are refused as the browser's ``JSON.parse`` refuses them."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value, parse_constant=_no_constant)
        except ValueError:
            raise CommandError(BAD_USER_DATA) from None
        if not isinstance(value, dict):
            return {}
    return string_map(value or {})


def one_of(options: Mapping[str, Any], ours: str, original: str) -> Any:
    """An option both we and the original name, differently: either name may be given, both
    only with the same value (a caller who gives two different values has a bug we should not
    guess around). Empty values count as not given, as the original's ``||`` does."""
    mine, theirs = options.get(ours) or None, options.get(original) or None
    if mine is not None and theirs is not None and mine != theirs:
        raise CommandError(f"options {ours!r} and {original!r} differ; give one of them")
    return mine if mine is not None else theirs


class ServiceCore:
    def __init__(self, bus: Bus, config: WebChatConfig, *, transport: Transport | None = None,
                 storage: SessionStorage | None = None) -> None:
        self.bus = bus
        self.config = config
        self.transport = transport or self.make_transport(config)
        self._bind_transport()
        self.session = ChatSession()
        self.plugin: Plugin = bus.register_plugin(NAMESPACE)
        self.plugin.register_events(EVENTS)
        self.view = MessageView()
        self.storage = storage or self._default_storage(config)
        self.poll_exceptions = 0
        self.offline = False
        self.disconnected = False
        """A request failed at the network level (or CometD lost its connection) and nothing
        has succeeded since: the next success publishes ``reconnected``."""
        self.resync_interval_ms = RESYNC_INTERVAL_MS
        self.resync_attempts = RESYNC_ATTEMPTS
        self._resyncing: asyncio.Task[None] | None = None
        self.saved_at = 0
        self._poller: asyncio.Task[None] | None = None
        self._typing_timer: asyncio.TimerHandle | None = None
        self._typing = False
        self._background: set[asyncio.Task[None]] = set()
        self._follower: asyncio.Task[None] | None = None
        """Watches the storage for a chat another process starts (``follow_shared_session``)."""

    @staticmethod
    def make_transport(config: WebChatConfig) -> Transport:
        """CometD when enabled (WebSocket first unless ``websocketEnabled`` is off, falling
        back to long-polling), REST polling otherwise."""
        comet = config.cometD
        if comet.enabled:
            # The original hands logLevel to the CometD library; ours is a logger.
            logging.getLogger("webchat.transport").setLevel(_LOG_LEVELS[comet.logLevel])
            return CometdChatTransport(comet.cometURL, comet.channel,
                                       websocket=comet.websocketEnabled,
                                       timeout_ms=max(config.ajaxTimeout, 10_000),
                                       api_url=comet.apiURL or None)
        headers = config.headers if config.enableCustomHeader else {}
        return RestTransport(config.chat_url, apikey=config.apikey or None, headers=headers,
                             timeout_ms=config.ajaxTimeout)

    @staticmethod
    def _default_storage(config: WebChatConfig) -> SessionStorage:
        get, set_ = config.async_.getSessionData, config.async_.setSessionData
        if get is not None and set_ is not None:
            return CallbackStorage(get, set_, cookie_options=config.cookieOptions)
        return MemoryStorage()

    def _bind_transport(self) -> None:
        if isinstance(self.transport, CometdChatTransport):
            self.transport.on_push = self._on_push
            self.transport.on_resync = self._resync
            self.transport.on_link = self._on_link

    async def close(self) -> None:
        # restoreTimeout counts the time away, so leaving stamps the saved session.
        self.save()
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None
        self._stop_polling(publish=True)
        self._cancel_typing_timer()
        if self._resyncing is not None:
            self._resyncing.cancel()
            self._resyncing = None
        await self.transport.close()

    # ---- carrying requests -----------------------------------------------------------------

    def require_session(self) -> None:
        if not self.session.active or self.session.chat_id is None:
            raise CommandError(NO_SESSION)

    def request(self, make: Callable[[], HttpRequest]) -> HttpRequest:
        try:
            return make()
        except SessionError as exc:
            raise CommandError(str(exc)) from None

    async def operation(self, make: Callable[[], HttpRequest]) -> Any:
        request = self.request(make)
        response = await self.carry(request)
        self.apply(request, response)
        self.raise_for(response)
        return builtins(response)

    async def carry(self, request: HttpRequest) -> ChatResponse:
        return await self.guarded(self.transport.call(request), request)

    async def reach(self, call: Awaitable[T], request: HttpRequest | None = None) -> T:
        """Await a transport call, keeping the connection events: ``disconnected`` when it
        fails at the network level, ``reconnected`` on the first success after that (and the
        chat is then refreshed from its position), ``ajaxResponse`` with every successful
        chat response."""
        try:
            result = await call
        except TransportError as exc:
            if exc.status is None:  # not reached at all (an HTTP answer is a reached server)
                self._link(up=False)
            raise
        ok = isinstance(result, ChatResponse) and result.ok
        # A refresh that succeeds is itself the catch-up from the chat's position.
        self._link(up=True, refreshed=ok and request is not None
                   and request.operation == "refresh")
        if ok:
            self.plugin.publish("ajaxResponse", builtins(result))
        return result

    def _link(self, *, up: bool, refreshed: bool = False) -> None:
        if not up:
            if not self.disconnected:
                self.disconnected = True
                self.plugin.publish("disconnected", None)
            return
        if self.disconnected:
            self.disconnected = False
            self.plugin.publish("reconnected", None)
            if not refreshed:
                self.resync()

    def _on_link(self, up: bool) -> None:
        """CometD's own connection (its /meta/connect) went down or came back."""
        self._link(up=up)

    async def guarded(self, call: Awaitable[T], request: HttpRequest | None = None) -> T:
        """Await a transport call; a failure rejects the command and publishes ``error``."""
        try:
            return await self.reach(call, request)
        except TransportError as exc:
            data = {"type": "error", "text": exc.reason, "status": exc.status}
            self.plugin.publish("error", data)
            raise CommandError(exc.reason, data) from None

    def raise_for(self, response: ChatResponse) -> None:
        if not response.ok:
            raise CommandError(self.reason(response), builtins(response))

    @staticmethod
    def reason(response: ChatResponse) -> str:
        errors = response.errors or []
        if errors:
            return "; ".join(f"{e.code}: {e.advice}" if e.advice else str(e.code)
                             for e in errors)
        return f"server error (statusCode {response.statusCode})"

    def apply(self, request: HttpRequest, response: ChatResponse) -> None:
        for event in self.session.receive(request, response):
            self.publish_event(event)

    # ---- session events -> bus events ------------------------------------------------------

    def publish_event(self, event: SessionEvent) -> None:
        """Payloads carry transcript events in the original's shape
        (:meth:`ChatSession.original_message`), the server's ones in ``originalMessages``."""
        publish = self.plugin.publish
        session = self.session
        if isinstance(event, Started):
            self.save()
            # The original's "AJAX Response containing session data".
            publish("started", {**builtins(event.response), **session.session_data()})
        elif isinstance(event, MessagesReceived):
            self.save()
            group = [builtins(m) for m in event.messages]
            publish("messageReceived", {
                "messages": self.view.show([session.original_message(m) for m in group]),
                "originalMessages": group, "restoring": event.restoring,
                "sessionData": session.session_data()})
        elif isinstance(event, ParticipantJoined | ParticipantLeft):
            table = _CONNECTED if isinstance(event, ParticipantJoined) else _DISCONNECTED
            name = table.get(event.participant.type)  # type: ignore[call-overload]
            if name is not None:
                publish(name, {"message": self.original_message(event.message),
                               "agents": session.agents(),
                               "numAgentsConnected": session.connected_agents()})
        elif isinstance(event, TypingChanged):
            # The original's data is the message itself (from.id, from.name); ours also
            # names it ``message``. A stop implied by a message or a departure is that event.
            message = self.original_message(event.message)
            publish("agentTypingStarted" if event.started else "agentTypingStopped",
                    {**message, "isTyping": event.started, "message": message})
        elif isinstance(event, FileUploaded):
            publish("fileUploaded", file_event(self.original_message(event.message)))
        elif isinstance(event, Ended):
            self._cancel_typing_timer()
            self._stop_polling(publish=True)
            self.forget()
            publish("ended", session.session_data())
        elif isinstance(event, ServerError):
            publish("error", builtins(event.response))
        elif isinstance(event, Gap):
            self.resync()  # events we never received: ask for them rather than skip them

    def original_message(self, message: Message) -> dict[str, Any]:
        return self.session.original_message(builtins(message))

    # ---- persistence hooks (restore.py) ----------------------------------------------------

    def save(self) -> None:
        """Remember the chat so another process can restore it (see restore.py)."""

    def forget(self) -> None:
        """The chat is over: nothing to restore any more."""

    # ---- pushes (CometD) --------------------------------------------------------------------

    def _on_push(self, response: ChatResponse) -> None:
        for event in self.session.push(response):
            self.publish_event(event)

    async def _resync(self) -> None:
        """After a re-handshake (the server had lost this client)."""
        self.resync()

    def resync(self) -> None:
        """Catch the chat up from its position, one catch-up at a time: a refresh, retried
        every ``resync_interval_ms`` until one succeeds; after ``resync_attempts`` failures
        the service gives up and publishes ``chatServerTimeout``."""
        if self._resyncing is None or self._resyncing.done():
            self._resyncing = asyncio.ensure_future(self._resync_until_done())

    async def _resync_until_done(self) -> None:
        for attempt in range(self.resync_attempts):
            if attempt:
                await asyncio.sleep(self.resync_interval_ms / 1000)
            if not self.session.active or self.session.chat_id is None:
                return
            try:
                await self.operation(self.session.refresh)
                return
            except CommandError as exc:
                log.info("could not catch the chat up (attempt %d): %s", attempt + 1, exc)
        if self.session.active:
            self.plugin.publish("chatServerTimeout", None)

    # ---- polling (REST) --------------------------------------------------------------------

    @property
    def polling(self) -> bool:
        return self._poller is not None

    def start_polling(self) -> None:
        if self.transport.pushes:
            return
        if self._poller is None and self.session.active:
            self._poller = asyncio.create_task(self._poll())
            self.plugin.publish("pollingStarted", None)

    def _stop_polling(self, *, publish: bool) -> None:
        poller, self._poller = self._poller, None
        if poller is None:
            return
        if poller is not asyncio.current_task():
            poller.cancel()
        if publish:
            self.plugin.publish("pollingStopped", None)

    async def poll_once(self) -> ChatResponse | None:
        """One refresh; ``None`` when it failed (counted as a poll exception)."""
        try:
            request = self.session.refresh()
        except SessionError:
            return None
        try:
            response = await self.reach(self.transport.call(request), request)
        except TransportError as exc:
            self._poll_failed({"type": "error", "text": exc.reason, "status": exc.status})
            return None
        self.apply(request, response)
        if response.ok:
            self.poll_exceptions = 0
            if self.offline:
                self.offline = False
                self.plugin.publish("chatServerBackOnline", None)
        else:
            self._poll_failed(None)
        return response

    async def _poll(self) -> None:
        interval = self.config.pollInterval / 1000
        while self.session.active:
            await asyncio.sleep(interval)
            if not self.session.active:
                break
            await self.poll_once()
            if self._poller is None or self._poller is not asyncio.current_task():
                return

    def _poll_failed(self, error: dict[str, Any] | None) -> None:
        self.poll_exceptions += 1
        if error is not None:
            self.plugin.publish("error", error)
        if self.poll_exceptions >= self.config.pollExceptionLimit and not self.offline:
            # The original's name for "the server stopped answering our refreshes".
            self.offline = True
            self.plugin.publish("chatServerWentOffline", {
                "pollExceptions": self.poll_exceptions})
            self._stop_polling(publish=True)

    # ---- typing ----------------------------------------------------------------------------

    def schedule_typing_stop(self) -> None:
        self._cancel_typing_timer()
        loop = asyncio.get_running_loop()
        self._typing_timer = loop.call_later(self.config.typingStopDelay / 1000,
                                             lambda: self.spawn(self._stop_typing()))

    async def stop_typing(self) -> Any:
        """Send stopTyping if this client is typing (the reply), else nothing (``None``): a
        stop the server never had a start for would only add noise to the transcript."""
        self._cancel_typing_timer()
        if not self._typing:
            return None
        self._typing = False
        result = await self.operation(self.session.stop_typing)
        self.plugin.publish("clientTypingStopped", None)
        return result

    async def _stop_typing(self) -> None:
        """The idle stop: nobody awaits it, so a failure is only logged."""
        self._typing_timer = None
        if not self.session.active:
            return
        try:
            await self.stop_typing()
        except CommandError as exc:
            log.debug("stopTyping failed: %s", exc)

    def _cancel_typing_timer(self) -> None:
        if self._typing_timer is not None:
            self._typing_timer.cancel()
            self._typing_timer = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def file_event(message: dict[str, Any]) -> dict[str, Any]:
    """``fileUploaded``: who sent which file, from the FileUploaded event's metadata."""
    meta = message.get("userData") or {}
    size = meta.get("file-size")
    return {"message": message, "fileId": meta.get("file-id") or message.get("text"),
            "fileName": meta.get("file-name"), "fileType": meta.get("file-type"),
            "fileSize": int(size) if isinstance(size, str) and size.isdigit() else None,
            "from": message.get("from")}
