"""The OpenAPI 3.1 description of both HTTP APIs, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from webchat.server.agent_api import PREFIX
from webchat.server.config import ServerConfig
from webchat.server.validation import FIELDS

_ID = {"type": "string"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schemas() -> dict[str, Any]:
    return {
        "Participant": {"type": "object", "required": ["nickname", "participantId", "type"],
                        "properties": {"nickname": _ID, "participantId": {"type": "integer"},
                                       "type": {"enum": ["Client", "Agent", "Supervisor",
                                                         "External"]}}},
        "Message": {"type": "object", "required": ["from", "index", "type", "utcTime"],
                    "properties": {"from": _ref("Participant"),
                                   "index": {"type": "integer", "minimum": 1},
                                   "type": _ID, "utcTime": {"type": "integer"},
                                   "text": _ID, "messageType": _ID, "userData": _STR_MAP}},
        "ChatResponse": {
            "type": "object", "required": ["statusCode"],
            "properties": {"statusCode": {"type": "integer"}, "chatId": _ID, "alias": _ID,
                           "userId": _ID, "secureKey": _ID, "chatEnded": {"type": "boolean"},
                           "nextPosition": {"type": "integer"},
                           "messages": {"type": "array", "items": _ref("Message")},
                           "userData": _STR_MAP,
                           "errors": {"type": "array", "items": {
                               "type": "object", "required": ["code"],
                               "properties": {"code": {"type": "integer"},
                                              "advice": _ID}}}}},
        "ChatSummary": {"type": "object", "properties": {
            "chatId": _ID, "service": _ID, "status": {"enum": ["queued", "active", "ended"]},
            "createdMs": {"type": "integer"}, "queuedMs": {"type": "integer"},
            "endedMs": {"type": ["integer", "null"]}, "agentId": {"type": ["string", "null"]},
            "targetAgent": {"type": ["string", "null"]}, "offeredTo": {"type": ["string", "null"]},
            "position": {"type": ["integer", "null"]}, "customer": _STR_MAP,
            "userData": _STR_MAP, "nextPosition": {"type": "integer"}}},
        "AgentError": {"type": "object", "properties": {"error": {
            "type": "object", "properties": {"code": _ID, "message": _ID}}}},
    }


def _form(fields: frozenset[str], identity: bool) -> dict[str, Any]:
    props: dict[str, Any] = {name: {"type": "string"} for name in sorted(fields)}
    required = []
    if identity:
        props.update({"userId": _ID, "secureKey": _ID, "alias": _ID})
        required = ["userId", "secureKey", "alias"]
    return {"content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": props, "required": required,
        "additionalProperties": False}}}}


def _chat_paths(base: str) -> dict[str, Any]:
    reply = {"description": "chat response (errors carry a non-zero statusCode)",
             "content": {"application/json": {"schema": _ref("ChatResponse")}}}
    paths: dict[str, Any] = {
        f"{base}/{{service}}": {"post": {
            "summary": "Request a chat", "tags": ["chat"], "operationId": "requestChat",
            "parameters": [{"name": "service", "in": "path", "required": True, "schema": _ID}],
            "requestBody": _form(FIELDS["requestChat"], identity=False),
            "responses": {"200": reply, "default": reply}}}}
    for op, fields in FIELDS.items():
        if op == "requestChat":
            continue
        paths[f"{base}/{{service}}/{{chatId}}/{op}"] = {"post": {
            "summary": op, "tags": ["chat"], "operationId": op,
            "parameters": [{"name": n, "in": "path", "required": True, "schema": _ID}
                           for n in ("service", "chatId")],
            "requestBody": _form(fields, identity=True),
            "responses": {"200": reply, "default": reply}}}
    return paths


def _agent_op(summary: str, body: dict[str, Any] | None = None, chat: bool = True,
              method: str = "post") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": ["agent"], "security": [{"bearer": []}],
                          "responses": {"200": {"description": "ok"},
                                        "default": {"description": "error", "content": {
                                            "application/json": {
                                                "schema": _ref("AgentError")}}}}}
    if chat:
        op["parameters"] = [{"name": "chatId", "in": "path", "required": True, "schema": _ID}]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, **body}}}}
    return {method: op}


def _agent_paths() -> dict[str, Any]:
    c = f"{PREFIX}/chats/{{chatId}}"
    login = _agent_op("Log in; returns a bearer token", {
        "required": ["username", "password"],
        "properties": {"username": _ID, "password": _ID}}, chat=False)
    login["post"].pop("security")
    return {
        f"{PREFIX}/login": login,
        f"{PREFIX}/logout": _agent_op("Log out (revokes the token)", chat=False),
        f"{PREFIX}/me": _agent_op("The agent's own state", chat=False, method="get"),
        f"{PREFIX}/state": _agent_op("Set ready / not ready and capacity", {
            "required": ["ready"], "properties": {"ready": {"type": "boolean"},
                                                  "capacity": {"type": "integer"}}}, chat=False),
        f"{PREFIX}/queue": _agent_op("Chats waiting for an agent", chat=False, method="get"),
        f"{PREFIX}/chats": _agent_op("The agent's chats and offers", chat=False, method="get"),
        c: _agent_op("One chat with its transcript from ?from=N", method="get"),
        f"{c}/accept": _agent_op("Accept a waiting or offered chat"),
        f"{c}/decline": _agent_op("Decline an offer"),
        f"{c}/send": _agent_op("Send a message", {
            "required": ["text"], "properties": {"text": _ID, "messageType": _ID}}),
        f"{c}/typing": _agent_op("Typing started or stopped", {
            "required": ["typing"], "properties": {"typing": {"type": "boolean"},
                                                   "preview": _ID}}),
        f"{c}/pushUrl": _agent_op("Push a URL to the customer", {
            "required": ["url"], "properties": {"url": _ID}}),
        f"{c}/end": _agent_op("End the chat"),
        f"{c}/transfer": _agent_op("Transfer to another agent, or back to the queue", {
            "properties": {"toAgent": {"type": ["string", "null"]}}}),
        f"{PREFIX}/events": _agent_op(
            "WebSocket event stream (?token=...): hello, offer, offerRevoked, message, "
            "userData, queue",
            chat=False, method="get"),
    }


def openapi_document(config: ServerConfig) -> dict[str, Any]:
    base = f"{config.api_prefix}/2/chat"
    return {
        "openapi": "3.1.0",
        "info": {"title": "webchat server", "version": "1",
                 "description": "GMS Chat API v2 compatible chat API and the agent API."},
        "paths": {**_chat_paths(base), **_agent_paths()},
        "components": {"schemas": _schemas(),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
