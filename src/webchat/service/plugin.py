"""WebChatService on the bus: commands in, events out, the chat session in between.

The plugin owns one :class:`~webchat.protocol.gms.session.ChatSession` (the pure state machine)
and one transport. Commands validate their options, ask the session for a request, carry it
over the transport and feed the reply back; whatever the session reports becomes a bus event
with the original's name and payload (see ``docs/webchatservice.md``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import msgspec

from webchat.bus.bus import Bus, CommandError, Plugin
from webchat.protocol.gms.models import ChatResponse, ParticipantType
from webchat.protocol.gms.session import (
    ChatSession,
    Ended,
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
from webchat.transport.chat_cometd import CometdChatTransport
from webchat.transport.rest import RestTransport, TransportError

log = logging.getLogger(__name__)

NAMESPACE = "WebChatService"
NO_SESSION = "There is no active chat session"
ALREADY_ACTIVE = "There is already an active chat session"
BAD_USER_DATA = "malformed JSON provided in userData property"
NO_MESSAGE = "No message text provided"
_PUSH = HttpRequest("push", "", {})

Command = Callable[[dict[str, Any]], Awaitable[Any]]

_CONNECTED = {ParticipantType.AGENT: "agentConnected", ParticipantType.CLIENT: "clientConnected",
              ParticipantType.SUPERVISOR: "supervisorConnected"}
_DISCONNECTED = {ParticipantType.AGENT: "agentDisconnected",
                 ParticipantType.CLIENT: "clientDisconnected",
                 ParticipantType.SUPERVISOR: "supervisorDisconnected"}


def _builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def _options(options: Mapping[str, Any], allowed: Mapping[str, type | tuple[type, ...]]
             ) -> dict[str, Any]:
    """Reject unknown or wrong-typed options with a reason naming the option."""
    for key, value in options.items():
        if key not in allowed:
            raise CommandError(f"unknown option {key!r}; expected one of {sorted(allowed)}")
        expected = allowed[key]
        if value is not None and not isinstance(value, expected):
            name = expected.__name__ if isinstance(expected, type) else "a valid value"
            raise CommandError(f"option {key!r} must be {name}")
    return dict(options)


class WebChatService:
    def __init__(self, bus: Bus, config: WebChatConfig, *,
                 transport: RestTransport | CometdChatTransport | None = None) -> None:
        self.bus = bus
        self.config = config
        self.transport = transport or self._transport(config)
        if isinstance(self.transport, CometdChatTransport):
            self.transport.on_push = self._on_push
            self.transport.on_resync = self._resync
        self.session = ChatSession()
        self.plugin: Plugin = bus.register_plugin(NAMESPACE)
        self.poll_exceptions = 0
        self._poller: asyncio.Task[None] | None = None
        self._typing_timer: asyncio.TimerHandle | None = None
        self._typing = False
        self._background: set[asyncio.Task[None]] = set()
        commands: dict[str, Command] = {
            "startChat": self.start_chat,
            "sendMessage": self.send_message,
            "sendTyping": self.send_typing,
            "endChat": self.end_chat,
            "getTranscript": self.get_transcript,
            "getAgents": self.get_agents,
            "getSessionData": self.get_session_data,
            "resetPollExceptions": self.reset_poll_exceptions,
        }
        for name, handler in commands.items():
            self.plugin.register_command(name, handler)

    @staticmethod
    def _transport(config: WebChatConfig) -> RestTransport | CometdChatTransport:
        """CometD when enabled (WebSocket first unless ``websocketEnabled`` is off, falling
        back to long-polling), REST polling otherwise."""
        comet = config.cometD
        if comet.enabled:
            return CometdChatTransport(comet.cometURL, comet.channel,
                                       websocket=comet.websocketEnabled,
                                       timeout_ms=max(config.ajaxTimeout, 10_000))
        headers = config.headers if config.enableCustomHeader else {}
        return RestTransport(config.dataURL, apikey=config.apikey or None, headers=headers,
                             timeout_ms=config.ajaxTimeout)

    async def start(self) -> None:
        self.plugin.ready()

    async def close(self) -> None:
        self._stop_polling(publish=True)
        self._cancel_typing_timer()
        await self.transport.close()

    # ---- commands --------------------------------------------------------------------------

    async def start_chat(self, options: dict[str, Any]) -> Any:
        opts = _options(options, {"userData": dict, "nickname": str, "firstname": str,
                                  "lastname": str, "email": str, "subject": str})
        if self.session.active:
            raise CommandError(ALREADY_ACTIVE)
        user_data = dict(self.config.userData)
        for key, value in (opts.get("userData") or {}).items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            if not isinstance(key, str) or not isinstance(value, str | int | float):
                raise CommandError(BAD_USER_DATA)
            user_data[key] = str(value)
        form = {"nickname": opts.get("nickname"), "firstName": opts.get("firstname"),
                "lastName": opts.get("lastname"), "emailAddress": opts.get("email"),
                "subject": opts.get("subject")}
        fields = {k: v for k, v in form.items() if v}
        fields.update({f"userData[{k}]": v for k, v in user_data.items()})
        if self.session.state.value == "ended":
            self.session = ChatSession()
        request = self.session.request_chat(fields)
        try:
            response = await self._carry(request)
        except CommandError:
            self.session.fail_start()
            raise
        self._apply(request, response)
        if not response.ok:
            raise CommandError(self._reason(response), _builtins(response))
        self._start_polling()
        return _builtins(response)

    async def send_message(self, options: dict[str, Any]) -> Any:
        opts = _options(options, {"message": str, "messageType": str})
        text = opts.get("message")
        if not text or not text.strip():
            raise CommandError(NO_MESSAGE)
        self._cancel_typing_timer()
        self._typing = False  # the server clears typing when a message arrives
        return await self._operation(lambda: self.session.send_message(
            text, opts.get("messageType")))

    async def send_typing(self, options: dict[str, Any]) -> Any:
        opts = _options(options, {"message": str})
        self._require_session()
        self._cancel_typing_timer()
        loop = asyncio.get_running_loop()
        self._typing_timer = loop.call_later(self.config.typingStopDelay / 1000,
                                             lambda: self._spawn(self._stop_typing()))
        if self._typing:
            return None
        self._typing = True
        result = await self._operation(lambda: self.session.start_typing(opts.get("message")))
        self.plugin.publish("clientTypingStarted", {"message": opts.get("message")})
        return result

    async def _stop_typing(self) -> None:
        self._typing_timer = None
        if not self._typing or not self.session.active:
            return
        self._typing = False
        try:
            await self._operation(self.session.stop_typing)
        except CommandError as exc:
            log.debug("stopTyping failed: %s", exc)
            return
        self.plugin.publish("clientTypingStopped", None)

    async def end_chat(self, options: dict[str, Any]) -> Any:
        _options(options, {})
        self._require_session()
        self._cancel_typing_timer()
        return await self._operation(self.session.disconnect)

    async def get_transcript(self, options: dict[str, Any]) -> Any:
        _options(options, {})
        return {"messages": [_builtins(m) for m in self.session.transcript]}

    async def get_agents(self, options: dict[str, Any]) -> Any:
        _options(options, {})
        return {"agents": self.session.agents(),
                "numAgentsConnected": self.session.connected_agents()}

    async def get_session_data(self, options: dict[str, Any]) -> Any:
        _options(options, {})
        if self.session.chat_id is None:
            raise CommandError(NO_SESSION)
        return self.session.session_data()

    async def reset_poll_exceptions(self, options: dict[str, Any]) -> Any:
        _options(options, {})
        self.poll_exceptions = 0
        if self.session.active and self._poller is None:
            self._start_polling()
        return {"pollExceptions": 0}

    # ---- plumbing --------------------------------------------------------------------------

    def _require_session(self) -> None:
        if not self.session.active or self.session.chat_id is None:
            raise CommandError(NO_SESSION)

    async def _operation(self, make: Callable[[], HttpRequest]) -> Any:
        try:
            request = make()
        except SessionError as exc:
            raise CommandError(str(exc)) from None
        response = await self._carry(request)
        self._apply(request, response)
        if not response.ok:
            raise CommandError(self._reason(response), _builtins(response))
        return _builtins(response)

    async def _carry(self, request: HttpRequest) -> ChatResponse:
        try:
            return await self.transport.call(request)
        except TransportError as exc:
            data = {"type": "error", "text": exc.reason, "status": exc.status}
            self.plugin.publish("error", data)
            raise CommandError(exc.reason, data) from None

    @staticmethod
    def _reason(response: ChatResponse) -> str:
        errors = response.errors or []
        if errors:
            return "; ".join(f"{e.code}: {e.advice}" if e.advice else str(e.code)
                             for e in errors)
        return f"server error (statusCode {response.statusCode})"

    def _apply(self, request: HttpRequest, response: ChatResponse) -> None:
        for event in self.session.receive(request, response):
            self._publish(event)

    def _publish(self, event: SessionEvent) -> None:
        publish = self.plugin.publish
        session = self.session
        if isinstance(event, Started):
            publish("started", session.session_data())
        elif isinstance(event, MessagesReceived):
            messages = [_builtins(m) for m in event.messages]
            publish("messageReceived", {"messages": messages, "originalMessages": messages,
                                        "restoring": False,
                                        "sessionData": session.session_data()})
        elif isinstance(event, ParticipantJoined | ParticipantLeft):
            table = _CONNECTED if isinstance(event, ParticipantJoined) else _DISCONNECTED
            name = table.get(event.participant.type)  # type: ignore[call-overload]
            if name is not None:
                publish(name, {"message": _builtins(event.message), "agents": session.agents(),
                               "numAgentsConnected": session.connected_agents()})
        elif isinstance(event, TypingChanged):
            if event.participant.type == ParticipantType.AGENT:
                name = "agentTypingStarted" if event.started else "agentTypingStopped"
                publish(name, {"message": _builtins(event.message)})
        elif isinstance(event, Ended):
            self._cancel_typing_timer()
            self._stop_polling(publish=True)
            publish("ended", session.session_data())
        elif isinstance(event, ServerError):
            publish("error", _builtins(event.response))

    # ---- polling ---------------------------------------------------------------------------

    # ---- pushes (CometD) --------------------------------------------------------------------

    def _on_push(self, response: ChatResponse) -> None:
        indexes = [m.index for m in response.messages or () if m.index]
        if indexes and min(indexes) > self.session.next_position:
            # A gap (events we never received): ask for them rather than skip them.
            self._spawn(self._resync())
            return
        self._apply(_PUSH, response)

    async def _resync(self) -> None:
        if self.session.active and self.session.chat_id is not None:
            try:
                await self._operation(self.session.refresh)
            except CommandError as exc:
                log.warning("could not resume the chat after reconnecting: %s", exc)

    def _start_polling(self) -> None:
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

    async def _poll(self) -> None:
        interval = self.config.pollInterval / 1000
        while self.session.active:
            await asyncio.sleep(interval)
            if not self.session.active:
                break
            try:
                request = self.session.refresh()
            except SessionError:
                break
            try:
                response = await self.transport.call(request)
            except TransportError as exc:
                self._poll_failed({"type": "error", "text": exc.reason, "status": exc.status})
            else:
                if response.ok:
                    self.poll_exceptions = 0
                self._apply(request, response)
                if not response.ok:
                    self._poll_failed(None)
            if self._poller is None or self._poller is not asyncio.current_task():
                return

    def _poll_failed(self, error: dict[str, Any] | None) -> None:
        self.poll_exceptions += 1
        if error is not None:
            self.plugin.publish("error", error)
        if self.poll_exceptions >= self.config.pollExceptionLimit:
            self.plugin.publish("error", {
                "type": "error", "text": "poll exception limit reached",
                "pollExceptions": self.poll_exceptions})
            self._stop_polling(publish=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _cancel_typing_timer(self) -> None:
        if self._typing_timer is not None:
            self._typing_timer.cancel()
            self._typing_timer = None

