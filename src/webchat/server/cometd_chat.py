"""GMS chat over CometD: operations published on ``/service/chatV2/{service}`` (§2.3), and
transcript events pushed to every Bayeux session that follows a chat (§2.4).

Operations reuse the REST API's validation and the same engine calls, so a chat behaves the
same whichever transport the customer uses. A session follows a chat after ``requestChat`` or
``requestNotifications`` (or any authenticated operation); it never receives another chat's
events, because the service channel is shared and isolation is done here, by chat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from webchat.protocol.bayeux.messages import BayeuxMessage
from webchat.protocol.bayeux.server import ServerSession
from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.forms import form_value
from webchat.protocol.gms.models import ChatResponse, EventType, Message
from webchat.server import validation as v
from webchat.server.chat_api import chat_response
from webchat.server.cometd import CometdEndpoint
from webchat.server.engine import ChatEngine
from webchat.server.errors import ChatError
from webchat.store.records import ChatRecord

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "/service/chatV2/"
FOLLOWS = "chats"  # session attachment: {chat_id: channel}
_message = msgspec.json.Decoder(Message)

OPERATIONS = frozenset({"requestChat", "requestNotifications", "sendMessage", "startTyping",
                        "stopTyping", "disconnect", "pushUrl", "customNotice",
                        "updateNickname", "updateData"})
_FORM_OP = {"sendMessage": "send", "requestNotifications": "refresh"}


def as_form(data: Mapping[str, Any]) -> dict[str, str]:
    """CometD data is JSON; REST forms are strings. Turn one into the other so both share
    validation: scalars become strings, the ``userData`` object becomes ``userData[k]`` keys."""
    form: dict[str, str] = {}
    for key, value in data.items():
        if key in ("operation", "auth"):
            continue
        if key == "userData":
            if not isinstance(value, Mapping):
                raise ChatError(ErrorCode.MALFORMED_REQUEST, "userData must be an object")
            for sub, item in value.items():
                if isinstance(item, Mapping | list):
                    raise ChatError(ErrorCode.MALFORMED_REQUEST,
                                    f"userData[{str(sub)[:32]}] must be a string")
                form[f"userData[{sub}]"] = form_value(item)
        elif isinstance(value, Mapping | list):
            raise ChatError(ErrorCode.MALFORMED_REQUEST, f"{key[:32]} must be a string")
        else:
            form[key] = form_value(value)
    return form


class ChatChannel:
    def __init__(self, engine: ChatEngine, endpoint: CometdEndpoint) -> None:
        self.engine = engine
        self.endpoint = endpoint
        self.limits = engine.config.limits
        self.fields = v.FieldPolicy(engine.config.strict_fields,
                                    engine.config.max_ignored_field_chars)
        self.followers: dict[str, set[ServerSession]] = {}
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        endpoint.on_service = self.handle
        endpoint.on_end = self.forget

    # ---- following -------------------------------------------------------------------------

    def follow(self, session: ServerSession, chat: ChatRecord, channel: str) -> None:
        session.attachments.setdefault(FOLLOWS, {})[chat.chat_id] = channel
        self.followers.setdefault(chat.chat_id, set()).add(session)
        if chat.chat_id not in self._unsubscribe:
            self._unsubscribe[chat.chat_id] = self.engine.broker.subscribe(
                f"chat.{chat.chat_id}", self._on_event)

    def followed_by(self, chat_id: str, browser_id: str | None) -> bool:
        """Does a session of this browser (its ``BAYEUX_BROWSER`` cookie) follow the chat?"""
        return browser_id is not None and any(
            s.browser_id == browser_id and not s.closed for s in self.followers.get(chat_id, ()))

    def forget(self, session: ServerSession) -> None:
        for chat_id in session.attachments.get(FOLLOWS, {}):
            sessions = self.followers.get(chat_id)
            if sessions is None:
                continue
            sessions.discard(session)
            if not sessions:
                del self.followers[chat_id]
                unsubscribe = self._unsubscribe.pop(chat_id, None)
                if unsubscribe is not None:
                    unsubscribe()
        session.attachments.pop(FOLLOWS, None)

    def _on_event(self, topic: str, payload: bytes) -> None:
        chat_id = topic.split(".", 1)[1]
        msg = _message.decode(payload)
        chat = self.engine.chats.get(chat_id)
        # Only the chat's last event says it ended: a client may stop listening at that flag.
        ended = bool(chat and chat.ended and msg.index >= chat.next_index - 1)
        # The same push for every follower; only the channel it is delivered on differs.
        # With the secureKey, as every reply: the Genesys widgets forget their key on a reload
        # and learn it again from whatever reply comes first. Every follower proved it knows it.
        response = ChatResponse(statusCode=0, chatId=chat_id, chatEnded=ended,
                                nextPosition=msg.index + 1, messages=[msg],
                                alias=chat.alias if chat else None,
                                userId=chat.user_id if chat else None,
                                secureKey=chat.secure_key if chat else None)
        for session in list(self.followers.get(chat_id, ())):
            channel = session.attachments.get(FOLLOWS, {}).get(chat_id)
            if channel is not None:
                self.endpoint.deliver(session, BayeuxMessage(channel=channel, data=response))

    # ---- operations ------------------------------------------------------------------------

    async def handle(self, session: ServerSession, msg: BayeuxMessage) -> str | None:
        """Run one operation. A refusal is both delivered as a GMS error response (what GMS
        clients read) and returned as the publish reply's error ``400:<code>:<advice>``."""
        channel = str(msg.channel)
        if not channel.startswith(CHANNEL_PREFIX):
            return None  # other service channels have no application behind them
        try:
            await self._operate(session, channel, msg.data)
        except ChatError as exc:
            self._reply(session, channel, exc.response())
            return f"400:{int(exc.code)}:{exc.advice}"
        return None

    async def _operate(self, session: ServerSession, channel: str, data: Any) -> None:
        service = channel[len(CHANNEL_PREFIX):]
        if service not in self.engine.config.services:
            raise ChatError(ErrorCode.UNKNOWN_SERVICE, f"unknown chat service {service[:64]!r}")
        if not isinstance(data, Mapping) or not isinstance(data.get("operation"), str):
            raise ChatError(ErrorCode.MALFORMED_REQUEST, "data must be an object with operation")
        op: str = data["operation"]
        if op not in OPERATIONS:
            raise ChatError(ErrorCode.UNKNOWN_OPERATION, f"unknown operation {op[:64]!r}")
        form = as_form(data)
        checked = form if op != "requestNotifications" else \
            {k: val for k, val in form.items() if not k.startswith("userData[")}
        self.fields.check(_FORM_OP.get(op) or op, checked, v.CHANNEL_FIELDS)
        if op == "requestChat":
            chat = await self.engine.request_chat(service, v.customer_form(form, self.limits))
            # No await between the snapshot and following: no event can fall in between.
            self._reply(session, channel, chat_response(chat, chat.events))
            self.follow(session, chat, channel)
            return
        chat = await self.engine.chat_by_key(service, form.get("secureKey", ""),
                                             form.get("userId"), form.get("alias"))
        if form.get("chatId") and form["chatId"] != chat.chat_id:
            raise ChatError(ErrorCode.CHAT_NOT_FOUND,
                            "no chat matches this chatId, userId, alias and secureKey")
        position = v.position(form)
        self.engine.check_position(chat, position)
        if op == "requestNotifications":
            preview = v.text(form, "message", self.limits.max_message_chars,
                             code=ErrorCode.MESSAGE_TOO_LONG)
            if preview:
                await self.engine.customer_preview(chat, preview)
            chat = self.engine.chats.get(chat.chat_id, chat)
            self._reply(session, channel,
                        chat_response(chat, self.engine.transcript(chat, position)))
            self.follow(session, chat, channel)
            return
        self.follow(session, chat, channel)
        await self._act(op, chat, form)

    async def _act(self, op: str, chat: ChatRecord, form: dict[str, str]) -> None:
        limits = self.limits
        engine = self.engine
        if op == "sendMessage":
            text = v.text(form, "message", limits.max_message_chars, required=True,
                          code=ErrorCode.MESSAGE_TOO_LONG)
            await engine.customer_event(chat, EventType.MESSAGE, text,
                                        v.text(form, "messageType", 64) or None)
        elif op in ("startTyping", "stopTyping"):
            preview = v.text(form, "message", limits.max_message_chars,
                             code=ErrorCode.MESSAGE_TOO_LONG) or None
            await engine.customer_event(chat, EventType.TYPING_STARTED if op == "startTyping"
                                        else EventType.TYPING_STOPPED, preview)
        elif op == "disconnect":
            await engine.customer_disconnect(chat)
        elif op == "pushUrl":
            await engine.customer_event(chat, EventType.PUSH_URL, v.push_url(form, limits))
        elif op == "customNotice":
            notice = v.text(form, "message", limits.max_message_chars,
                            code=ErrorCode.MESSAGE_TOO_LONG) or None
            await engine.customer_event(chat, EventType.CUSTOM_NOTICE, notice)
        elif op == "updateNickname":
            await engine.customer_nickname(
                chat, v.text(form, "nickname", limits.max_name_chars, required=True).strip())
        elif op == "updateData":
            await engine.customer_update_data(chat, v.user_data(form, limits))

    def _reply(self, session: ServerSession, channel: str, response: ChatResponse) -> None:
        self.endpoint.deliver(session, BayeuxMessage(channel=channel, data=response))
