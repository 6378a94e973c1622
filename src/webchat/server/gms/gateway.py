"""Every policy of the customer chat API, applied once, whatever the transport.

REST, CometD (long-polling and WebSocket) and chat-ntf turn what they received into a
:class:`~webchat.server.gms.operations.Call` and hand it to :meth:`Gateway.call`, which applies,
in this order:

1. the operation exists;
2. the API key, where the operation needs one and the transport can carry one (CometD
   publishes cannot: the Genesys widgets send their ``apikey`` on REST and file requests only,
   so CometD is guarded by the limits below and the handshake's flood guard instead);
3. the service is one this server runs;
4. field tolerance (:class:`~webchat.server.validation.FieldPolicy`) and userData bounds;
5. chat starts per client address, then authentication by the keys (one reply for every
   mismatch), then operations per chat — the same buckets for every transport;
6. the transcript position;

then runs the operation and builds the reply from the committed snapshot. Domain errors are
:class:`ChatError`; each adapter maps them to its own wire form (HTTP status, Bayeux error).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace

from webchat.protocol.gms.errors import ErrorCode
from webchat.protocol.gms.models import ChatResponse, Message
from webchat.server import validation as v
from webchat.server.chat.customers import check_position
from webchat.server.config import ServerConfig
from webchat.server.engine import ChatEngine
from webchat.server.errors import ChatError
from webchat.server.gms.operations import OPERATIONS, Call, Operation, Outcome, user_data_of
from webchat.server.ratelimit import RateLimiter
from webchat.store.records import ChatRecord, FileRecord


def chat_response(chat: ChatRecord, messages: list[Message] | None) -> ChatResponse:
    """A successful reply about ``chat``: identity (the secureKey too, on every reply: the
    Genesys widgets learn it again from replies after a reload), end flag, next position and
    ``messages`` — a snapshot, never the chat's live event list, because a CometD reply is
    encoded only when it leaves, and events added meanwhile also go out as pushes."""
    return ChatResponse(
        statusCode=0, chatId=chat.chat_id, alias=chat.alias, userId=chat.user_id,
        secureKey=chat.secure_key, chatEnded=chat.ended, nextPosition=chat.next_index,
        messages=list(messages) if messages else None)


@dataclass
class Result:
    chat: ChatRecord
    response: ChatResponse
    download: tuple[FileRecord, bytes] | None = None


class Gateway:
    def __init__(self, engine: ChatEngine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.limits = config.limits
        self.fields = v.FieldPolicy(config.strict_fields, config.max_ignored_field_chars)
        self.start_limiter = RateLimiter(*config.limits.request_chat_rate)
        self.op_limiter = RateLimiter(*config.limits.chat_op_rate)

    async def call(self, call: Call) -> Result:
        """Run one customer operation under every policy (see the module docstring).

        Over CometD the caller follows the chat (``call.follow``) from the right moment: for
        the operations that reply with the transcript, right after the reply's snapshot, with
        no await in between, so every later event is pushed and none is both in the reply and
        pushed; for the others, before they run, so their own events are pushed too.
        """
        op = OPERATIONS.get(call.operation)
        if op is None:
            raise ChatError(ErrorCode.UNKNOWN_OPERATION,
                            f"unknown operation {call.operation[:64]!r}")
        if op.needs_api_key and call.api_key is not None:
            self._check_api_key(call.api_key)
        if call.service is not None and call.service not in self.config.services:
            raise ChatError(ErrorCode.UNKNOWN_SERVICE,
                            f"unknown chat service {call.service[:64]!r}")
        self.fields.check(op.name, call.fields, v.CHANNEL_FIELDS if call.by_key else
                          frozenset())
        data = user_data_of(call.user_data, op, strict=self.config.strict_fields)
        if data is not None:
            data = v.user_data(data, self.limits)
        call = replace(call, user_data=data)
        if op.name == "requestChat":
            return await self._request_chat(call)
        chat = await self._authenticate(call)
        if call.authorize is not None:
            call.authorize(chat)
        if not self.op_limiter.allow(chat.chat_id):
            raise ChatError(ErrorCode.RATE_LIMITED, "too many requests for this chat")
        # Validate the position before acting, so a bad request changes nothing. A position
        # past what this process holds may have been seen at another process of a cluster:
        # this one is behind, not the client wrong, until the store says otherwise.
        position = v.position(call.fields)
        if position is not None and position > chat.next_index:
            chat = await self.engine.catch_up(chat)
        check_position(chat, position)
        if call.follow is not None and not op.snapshot_reply:
            call.follow(chat)
        outcome = await op.run(self.engine, chat, call, self.limits)
        return self._result(op, outcome, call)

    async def _request_chat(self, call: Call) -> Result:
        assert call.service is not None
        if not self.start_limiter.allow(call.client):
            raise ChatError(ErrorCode.RATE_LIMITED, "too many chats requested; slow down")
        form = v.customer_form(call.fields, call.user_data, self.limits)
        chat = await self.engine.customers.request_chat(call.service, form)
        return self._result(OPERATIONS["requestChat"], Outcome(chat, chat.events), call)

    def _result(self, op: Operation, outcome: Outcome, call: Call) -> Result:
        """The reply, from the chat as the operation committed it."""
        chat = outcome.chat
        response = chat_response(chat, outcome.messages)
        response.userData = outcome.user_data
        if call.follow is not None and op.snapshot_reply:
            call.follow(chat)
        return Result(chat, response, outcome.download)

    def _check_api_key(self, given: str) -> None:
        if not self.config.api_keys:
            return
        if not any(hmac.compare_digest(given.encode(), key.encode())
                   for key in self.config.api_keys):
            raise ChatError(ErrorCode.INVALID_API_KEY, "missing or invalid apikey")

    async def _authenticate(self, call: Call) -> ChatRecord:
        """The chat these credentials open, or CHAT_NOT_FOUND whatever was wrong."""
        fields = call.fields
        key = fields.get("secureKey", "")
        if not call.by_key:
            assert call.service is not None
            return await self.engine.customers.customer_chat(
                call.service, call.chat_id or "", fields.get("userId", ""), key,
                fields.get("alias", ""))
        # By key (CometD, chat-ntf): userId and alias, where sent, must match too, and so
        # must a chatId the client believes it is in.
        user_id, alias = fields.get("userId") or None, fields.get("alias") or None
        chat = await self.engine.customers.chat_by_key(call.service, key, user_id, alias)
        if call.chat_id and call.chat_id != chat.chat_id:
            raise ChatError(ErrorCode.CHAT_NOT_FOUND,
                            "no chat matches this chatId, userId, alias and secureKey")
        return chat
