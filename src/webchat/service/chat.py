"""The chat commands: start, talk, type, end; notices, user data, filters; polling; state."""

from __future__ import annotations

import platform
import re
from dataclasses import replace
from typing import Any

from webchat import __version__
from webchat.bus.bus import CommandError
from webchat.protocol.gms.models import ParticipantType
from webchat.protocol.gms.session import ChatSession, HttpRequest, SessionState
from webchat.service.config import ConfigError, WebChatConfig
from webchat.service.core import (
    ALREADY_ACTIVE,
    NO_MESSAGE,
    NO_SESSION,
    ServiceCore,
    builtins,
    check_options,
    one_of,
    parse_user_data,
    string_map,
)
from webchat.service.filters import FilterError, compile_patterns

NO_POLLING_ON_COMETD = "Polling is not supported when using CometD"
"""The original's reason, for ``startPoll`` while CometD delivers the chat."""
_RECONFIGURE_LIVE = "the transport cannot change during an active chat session"
DEFAULT_MESSAGE_TYPE = "text"
"""The original sends ``messageType: data.type || "text"`` with every message."""


def page_context() -> dict[str, str]:
    """The ``_genesys_*`` userData the original adds to every chat so agents see where the
    customer is, with the values a process has: no page (``source`` "api", empty URL,
    referrer and title; a caller who has them passes them in userData, which wins), this
    library as the browser, the operating system's name."""
    return {"_genesys_source": "api", "_genesys_referrer": "", "_genesys_url": "",
            "_genesys_pageTitle": "", "_genesys_browser": f"webchat-python/{__version__}",
            "_genesys_OS": platform.system()}


class ChatCommands(ServiceCore):
    async def start_chat(self, options: dict[str, Any]) -> Any:
        opts = check_options(options, {"userData": (dict, str), "nickname": str,
                                       "firstname": str, "lastname": str, "email": str,
                                       "subject": str})
        if self.session.active:
            raise CommandError(ALREADY_ACTIVE)
        user_data = {**page_context(), **self.config.userData,
                     **parse_user_data(opts.get("userData"))}
        if self.config.async_.enabled:
            user_data.setdefault(self.config.async_.userDataKey, "true")
        form = {"nickname": opts.get("nickname"), "firstName": opts.get("firstname"),
                "lastName": opts.get("lastname"), "emailAddress": opts.get("email"),
                "subject": opts.get("subject")}
        fields = {k: v for k, v in form.items() if v}
        fields.update({f"userData[{k}]": v for k, v in user_data.items()})
        self.session = ChatSession()  # not active: nothing of an earlier start carries over
        request = self.session.request_chat(fields)
        try:
            response = await self.carry(request)
        except BaseException:  # refused, failed or cancelled: the chat may be started again
            self.session.fail_start()
            raise
        self.apply(request, response)
        self.raise_for(response)
        self.start_polling()
        return builtins(response)

    async def send_message(self, options: dict[str, Any]) -> Any:
        """``type`` is the original's name for what goes out as ``messageType``."""
        opts = check_options(options, {"message": str, "messageType": str, "type": str})
        return await self._send(opts.get("message"), one_of(opts, "messageType", "type"))

    async def _send(self, text: str | None, message_type: str | None = None) -> Any:
        if not text or not text.strip():
            raise CommandError(NO_MESSAGE)
        self._cancel_typing_timer()
        self._typing = False  # the server clears typing when a message arrives
        kind = message_type or DEFAULT_MESSAGE_TYPE
        return await self.operation(lambda: self.session.send_message(text, kind))

    async def send_filtered_message(self, options: dict[str, Any]) -> Any:
        """Send a message the customer's own transcript must not show (a code or token for
        the agent): ``regex`` becomes a prefilter before the message goes out, so its echo
        is already hidden when it comes back."""
        opts = check_options(options, {"message": str, "regex": (str, re.Pattern)},
                             required=("regex",))
        try:
            patterns = compile_patterns(opts["regex"])
        except FilterError as exc:
            raise CommandError(str(exc)) from None
        if not opts.get("message") or not opts["message"].strip():
            raise CommandError(NO_MESSAGE)
        self.require_session()
        self.view.add_prefilters(patterns)
        return await self._send(opts["message"])

    async def add_prefilter(self, options: dict[str, Any]) -> Any:
        opts = check_options(options, {"filters": (str, re.Pattern, list, tuple)},
                             required=("filters",))
        try:
            patterns = compile_patterns(opts["filters"])
        except FilterError as exc:
            raise CommandError(str(exc)) from None
        return {"filters": self.view.add_prefilters(patterns)}

    async def register_pre_processor(self, options: dict[str, Any]) -> Any:
        opts = check_options(options, {"preprocessor": object}, required=("preprocessor",))
        if not callable(opts["preprocessor"]):
            raise CommandError("option 'preprocessor' must be a function")
        self.view.preprocessors.append(opts["preprocessor"])
        return {"preprocessors": len(self.view.preprocessors)}

    async def send_typing(self, options: dict[str, Any]) -> Any:
        """``isTyping`` as the original reads it: only ``False`` is false (anything else, or
        nothing, is typing). The original then still only starts; we stop at once, which is
        what a caller saying "not typing" means. A start stops by itself after
        ``typingStopDelay`` of silence."""
        opts = check_options(options, {"message": str, "isTyping": object})
        self.require_session()
        if opts.get("isTyping") is False:
            return await self.stop_typing()
        self.schedule_typing_stop()
        if self._typing:
            return None
        self._typing = True
        result = await self.operation(lambda: self.session.start_typing(opts.get("message")))
        self.plugin.publish("clientTypingStarted", {"message": opts.get("message")})
        return result

    async def send_custom_notice(self, options: dict[str, Any]) -> Any:
        opts = check_options(options, {"message": str})
        self.require_session()
        return await self.operation(lambda: self.session.custom_notice(opts.get("message")))

    async def update_user_data(self, options: dict[str, Any]) -> Any:
        """The options object is the user data itself, as in the original. Without an active
        chat, as there, it joins the configured ``userData`` that the next ``startChat``
        sends, and the result is that merged userData."""
        if not options:
            raise CommandError("no userData provided")
        data = string_map(options)
        if self.session.state is not SessionState.ACTIVE:
            self.config = replace(self.config, userData={**self.config.userData, **data})
            return dict(self.config.userData)
        return await self.operation(lambda: self.session.update_data(data))

    async def end_chat(self, options: dict[str, Any]) -> Any:
        check_options(options, {})
        self.require_session()
        self._cancel_typing_timer()
        return await self.operation(self.session.disconnect)

    # ---- state -----------------------------------------------------------------------------

    async def get_transcript(self, options: dict[str, Any]) -> Any:
        """As the original: ``messages`` in its shape, ``originalMessages`` as the server sent
        them."""
        check_options(options, {})
        originals = [builtins(m) for m in self.session.transcript]
        return {"messages": [self.session.original_message(m) for m in originals],
                "originalMessages": originals}

    async def get_agents(self, options: dict[str, Any]) -> Any:
        check_options(options, {})
        return {"agents": self.session.agents(),
                "numAgentsConnected": self.session.connected_agents()}

    async def get_session_data(self, options: dict[str, Any]) -> Any:
        check_options(options, {})
        if self.session.chat_id is None:
            raise CommandError(NO_SESSION)
        return self.session.session_data()

    async def verify_session(self, options: dict[str, Any]) -> Any:
        check_options(options, {})
        return {"sessionActive": self.session.active and self.session.chat_id is not None,
                "sessionData": self.session.session_data() if self.session.chat_id else None}

    async def get_stats(self, options: dict[str, Any]) -> Any:
        """The original's ``agents``, ``startTime``, ``endTime`` and ``duration`` (from the
        first event to the last), and counts a dashboard or survey needs."""
        check_options(options, {})
        if self.session.chat_id is None:
            raise CommandError(NO_SESSION)
        transcript = self.session.transcript
        me = self.session.self_participant_id
        texts = [m for m in transcript if m.type == "Message"]
        agents = {pid for pid, p in self.session.participants.items()
                  if p.type == ParticipantType.AGENT and p.joined}
        return {"sessionID": self.session.chat_id, "agents": self.session.agents(),
                "startTime": transcript[0].utcTime if transcript else None,
                "duration": transcript[-1].utcTime - transcript[0].utcTime if transcript
                else None,
                "endTime": transcript[-1].utcTime if self.session.state.value == "ended"
                and transcript else None,
                "messagesSent": sum(1 for m in texts if m.from_.participantId == me),
                "messagesReceived": sum(1 for m in texts if m.from_.participantId != me),
                "agentsJoined": len(agents),
                "numAgentsConnected": self.session.connected_agents()}

    async def fetch_history(self, options: dict[str, Any]) -> Any:
        """The whole transcript as the server has it (events not seen yet are also published
        as usual, once)."""
        check_options(options, {})
        self.require_session()
        request = self.request(self.session.refresh)
        request = HttpRequest(request.operation, request.path,
                              {**request.fields, "transcriptPosition": "1"})
        response = await self.carry(request)
        self.apply(request, response)
        self.raise_for(response)
        return {"messages": [builtins(m) for m in response.messages or ()]}

    # ---- polling ---------------------------------------------------------------------------

    async def poll(self, options: dict[str, Any]) -> Any:
        check_options(options, {})
        self.require_session()
        return await self.operation(self.session.refresh)

    async def start_poll(self, options: dict[str, Any]) -> Any:
        check_options(options, {})
        self.require_session()
        if self.transport.pushes:
            raise CommandError(NO_POLLING_ON_COMETD)
        self.start_polling()
        return {"polling": self.polling}

    async def stop_poll(self, options: dict[str, Any]) -> Any:
        check_options(options, {})
        self._stop_polling(publish=True)
        return {"polling": self.polling}

    async def reset_poll_exceptions(self, options: dict[str, Any]) -> Any:
        check_options(options, {})
        self.poll_exceptions = 0
        if self.session.active and not self.polling:
            self.start_polling()
        return {"pollExceptions": 0}

    # ---- configuration ---------------------------------------------------------------------

    async def configure(self, options: dict[str, Any]) -> Any:
        """Apply ``webchat`` options at run time. Connection options (URLs, CometD) may only
        change between chats."""
        current = self.config
        merged: dict[str, Any] = {
            "dataURL": current.dataURL, "endpoint": current.endpoint, "apikey": current.apikey,
            "enableCustomHeader": current.enableCustomHeader, "userData": current.userData,
            "pollExceptionLimit": current.pollExceptionLimit,
            "ajaxTimeout": current.ajaxTimeout, "pollInterval": current.pollInterval,
            "typingStopDelay": current.typingStopDelay,
            "restoreTimeout": current.restoreTimeout,
            "cometD": {k: getattr(current.cometD, k)
                       for k in current.cometD.__dataclass_fields__},
            "async": {k: getattr(current.async_, k)
                      for k in current.async_.__dataclass_fields__},
            **current.extra, **options}
        try:
            config = WebChatConfig.from_dict(merged, {"header": current.headers,
                                                     "cookieOptions": current.cookieOptions})
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        connection = (config.chat_url, config.apikey, config.cometD, config.headers,
                      config.enableCustomHeader, config.ajaxTimeout)
        old = (current.chat_url, current.apikey, current.cometD, current.headers,
               current.enableCustomHeader, current.ajaxTimeout)
        if connection != old:
            if self.session.active:
                raise CommandError(_RECONFIGURE_LIVE)
            await self.transport.close()
            self.transport = self.make_transport(config)
            self._bind_transport()
        self.config = config
        return {"configured": sorted(options)}
