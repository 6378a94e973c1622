"""GMS chat over CometD: operations published on ``/service/chatV2/{service}`` (§2.3), and
transcript events pushed to every Bayeux session that follows a chat (§2.4).

An adapter over the same :class:`~webchat.server.gms.gateway.Gateway` as REST, so a chat
behaves the same whichever transport the customer uses: the JSON ``data`` of a publish becomes
a :class:`~webchat.server.gms.operations.Call` (``userData`` stays a map). A session follows a
chat after ``requestChat`` or ``requestNotifications`` (or any authenticated operation); it
never receives another chat's events, because the service channel is shared and isolation is
done here, by chat.
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
from webchat.protocol.gms.models import ChatResponse, Message
from webchat.server import addresses
from webchat.server.cometd import CometdEndpoint
from webchat.server.errors import ChatError
from webchat.server.gms.gateway import Gateway
from webchat.server.gms.operations import COMETD_NAMES, COMETD_OPERATIONS, OPERATIONS, Call
from webchat.store.records import ChatRecord

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "/service/chatV2/"
FOLLOWS = "chats"  # session attachment: {chat_id: channel}
_message = msgspec.json.Decoder(Message)


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, Mapping | list):
        raise ChatError(ErrorCode.MALFORMED_REQUEST, f"{key[:32]} must be a string")
    return form_value(value)


def as_call(service: str, data: Mapping[str, Any], client: str,
            follow: Callable[[ChatRecord], None]) -> Call:
    """A publish's ``data`` as the gateway takes it: JSON scalars as the strings a form would
    carry, ``userData`` as a map of them."""
    fields = {key: _scalar(key, value) for key, value in data.items()
              if key not in ("operation", "auth", "userData")}
    user_data = data.get("userData")
    if user_data is not None and not isinstance(user_data, Mapping):
        raise ChatError(ErrorCode.MALFORMED_REQUEST, "userData must be an object")
    operation = data["operation"]
    return Call(COMETD_NAMES.get(operation, operation), service, fields,
                None if user_data is None else
                {str(k): _scalar(f"userData[{k}]", item) for k, item in user_data.items()},
                chat_id=fields.get("chatId") or None, by_key=True, api_key=None, client=client,
                follow=follow)


class ChatChannel:
    def __init__(self, gateway: Gateway, endpoint: CometdEndpoint) -> None:
        self.gateway = gateway
        self.engine = gateway.engine
        self.endpoint = endpoint
        self.followers: dict[str, set[ServerSession]] = {}
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        endpoint.on_service = self.handle
        endpoint.on_end = self.forget

    # ---- following -------------------------------------------------------------------------

    def follow(self, session: ServerSession, chat: ChatRecord, channel: str) -> None:
        session.attachments.setdefault(FOLLOWS, {})[chat.chat_id] = channel
        self.followers.setdefault(chat.chat_id, set()).add(session)
        if chat.chat_id not in self._unsubscribe:
            self._unsubscribe[chat.chat_id] = self.engine.follow(chat.chat_id, self._on_event)

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
        chat = self.engine.cached(chat_id)
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
        if not isinstance(data, Mapping) or not isinstance(data.get("operation"), str):
            raise ChatError(ErrorCode.MALFORMED_REQUEST, "data must be an object with operation")
        if data["operation"] not in COMETD_OPERATIONS:
            raise ChatError(ErrorCode.UNKNOWN_OPERATION,
                            f"unknown operation {data['operation'][:64]!r}")

        def follow(chat: ChatRecord) -> None:
            self.follow(session, chat, channel)

        call = as_call(channel[len(CHANNEL_PREFIX):], data,
                       session.attachments.get(addresses.CLIENT, "?"), follow)
        result = await self.gateway.call(call)
        if OPERATIONS[call.operation].snapshot_reply:
            # The reply carries the transcript; other operations' effects arrive as pushes.
            self._reply(session, channel, result.response)

    def _reply(self, session: ServerSession, channel: str, response: ChatResponse) -> None:
        self.endpoint.deliver(session, BayeuxMessage(channel=channel, data=response))
