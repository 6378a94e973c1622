"""The OpenAPI 3.1 description of everything the server serves, at ``/openapi.json``: the chat
API with its file routes and chat-ntf, CometD, the agent API and the pages.
``tests/test_openapi.py`` checks every route of the app against it, and fuzzes it with
schemathesis."""

from __future__ import annotations

from typing import Any

from webchat.server.agent_api import MAX_CAPACITY, PREFIX
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


_IDENTITY = {"userId": _ID, "secureKey": _ID, "alias": _ID}
_FILE_ID = {"name": "fileId", "in": "path", "required": True, "schema": _ID}
_BINARY = {"type": "string", "format": "binary"}

#: How a REST operation name of :data:`~webchat.server.validation.FIELDS` is spelled in the path
#: (``x-gms-operation`` of each path names it back, so a test can check that none is missing).
_FILE_PATHS = {"file/upload": "file", "file/limits": "file/limits",
               "file/download": "file/{fileId}/download", "file/delete": "file/{fileId}/delete"}


def _form(fields: frozenset[str], identity: bool) -> dict[str, Any]:
    props: dict[str, Any] = {name: {"type": "string"} for name in sorted(fields)}
    required = []
    if identity:
        props.update(_IDENTITY)
        required = ["userId", "secureKey", "alias"]
    return {"content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": props, "required": required,
        "additionalProperties": False}}}}


def _multipart(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": props, "required": required}}}}


def _chat_paths(base: str, ntf: str) -> dict[str, Any]:
    reply = {"description": "chat response (errors carry a non-zero statusCode)",
             "content": {"application/json": {"schema": _ref("ChatResponse")}}}
    responses = {"200": reply, "default": reply}
    service = {"name": "service", "in": "path", "required": True, "schema": _ID}
    chat = {"name": "chatId", "in": "path", "required": True, "schema": _ID}

    def request_chat(operation_id: str, summary: str) -> dict[str, Any]:
        return {"post": {
            "summary": summary, "tags": ["chat"], "operationId": operation_id,
            "x-gms-operation": "requestChat", "parameters": [service],
            "requestBody": _form(FIELDS["requestChat"], identity=False),
            "responses": responses}}

    paths: dict[str, Any] = {
        f"{base}/{{service}}": request_chat("requestChat", "Request a chat"),
        # The Genesys widgets strip dataURL's trailing slashes, then post to "dataURL/".
        f"{base}/{{service}}/": request_chat("requestChatSlash",
                                             "Request a chat (as the Genesys widgets do)")}
    for op, fields in FIELDS.items():
        if op == "requestChat":
            continue
        path = _FILE_PATHS.get(op, op)
        body = _form(fields, identity=True)
        if op == "file/upload":
            body = _multipart({**_IDENTITY, "file": _BINARY,
                               "userData[file-description]": _ID},
                              ["userId", "secureKey", "alias", "file"])
        ok = reply
        if op == "file/download":
            ok = {"description": "the file, as an attachment",
                  "content": {"application/octet-stream": {"schema": _BINARY}}}
        paths[f"{base}/{{service}}/{{chatId}}/{path}"] = {"post": {
            "summary": op, "tags": ["chat"], "operationId": op.replace("/", "_"),
            "x-gms-operation": op,
            "parameters": [service, chat, *([_FILE_ID] if "{fileId}" in path else [])],
            "requestBody": body, "responses": {"200": ok, "default": reply}}}
    ntf_fields = {"operation": {"enum": ["fileGetLimits", "fileUpload", "fileDownload",
                                         "fileDelete"]},
                  "secureKey": _ID, "fileId": _ID}
    paths[ntf] = {"post": {
        "summary": "File operations for CometD clients, the chat found by its secureKey",
        "tags": ["chat"], "operationId": "chatNtf",
        "requestBody": {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": ntf_fields,
                "required": ["operation", "secureKey"]}},
            "multipart/form-data": {"schema": {
                "type": "object", "properties": {**ntf_fields, "file": _BINARY},
                "required": ["secureKey"]}}}},
        "responses": {"200": {"description": "chat response, or the file of fileDownload",
                              "content": {"application/json": {"schema": _ref("ChatResponse")},
                                          "application/octet-stream": {"schema": _BINARY}}},
                      "default": reply}}}
    return paths


def _cometd_paths(path: str) -> dict[str, Any]:
    """Bayeux 1.0 (long-polling POSTs of message arrays; WebSocket upgrade on GET)."""
    op: dict[str, Any] = {
        "summary": "Bayeux long-polling: an array of Bayeux messages in, replies out",
        "tags": ["cometd"],
        # One message or an array of them. Bayeux refuses a bad message in its reply (HTTP 200,
        # ``error``), not by status: only a body that is no message at all gets a 400.
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "oneOf": [{"type": "object"},
                      {"type": "array", "items": {"type": "object"}}]}}}},
        "responses": {"200": {"description": "Bayeux replies", "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
                      "default": {"description": "refused"}}}
    upgrade = {"summary": "Bayeux over WebSocket (an Upgrade request)", "tags": ["cometd"],
               "responses": {"101": {"description": "switching protocols"},
                             "default": {"description": "not a WebSocket request"}}}
    suffix = {"name": "suffix", "in": "path", "required": True, "schema": _ID,
              "description": "handshake, connect, disconnect... (informational)"}
    return {path: {"post": {**op, "operationId": "bayeux"},
                   "get": {**upgrade, "operationId": "bayeuxWebSocket"}},
            f"{path}/{{suffix}}": {
                "post": {**op, "operationId": "bayeuxSuffix", "parameters": [suffix]},
                "get": {**upgrade, "operationId": "bayeuxWebSocketSuffix",
                        "parameters": [suffix]}}}


def _page_paths() -> dict[str, Any]:
    """The browser side (:mod:`webchat.web`) and the server's own service routes."""
    def get(summary: str, content: str, params: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"get": {"summary": summary, "tags": ["web"],
                        "parameters": [{"name": n, "in": "path", "required": True,
                                        "schema": _ID} for n in params],
                        "responses": {"200": {"description": summary,
                                              "content": {content: {}}},
                                      "default": {"description": "not found"}}}}
    return {
        "/": get("The demo site with the chat widget", "text/html"),
        "/agent": get("The agent console", "text/html"),
        "/favicon.ico": get("No icon (204)", "image/x-icon"),
        "/webchat/i18n/{lang}.json": get("The widget's strings in a language",
                                         "application/json", ("lang",)),
        "/webchat/{path}": get("The widget, WebChatService and console as ES modules",
                               "text/javascript", ("path",)),
        "/openapi.json": get("This document", "application/json"),
        "/healthz": get("Liveness and counts", "application/json"),
        "/readyz": {"get": {
            "summary": "Readiness: the store and the broker answer, and no stop is draining",
            "tags": ["web"], "responses": {
                "200": {"description": "ready: each dependency's round trip",
                        "content": {"application/json": {}}},
                "503": {"description": "unready (which dependency failed) or draining",
                        "content": {"application/json": {}}}}}},
        "/metrics": get("Prometheus metrics (text exposition format 0.0.4)", "text/plain"),
    }


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


_TOKEN_REPLY = {"description": "a bearer token, good for expiresInS seconds",
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["token", "agentId", "expiresInS"],
                    "properties": {"token": _ID, "agentId": _ID, "nickname": _ID,
                                   "expiresInS": {"type": "number"}}}}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _with_params(op: dict[str, Any], param: dict[str, Any]) -> dict[str, Any]:
    for spec in op.values():
        spec.setdefault("parameters", []).append(param)
    return op


def _upload_op() -> dict[str, Any]:
    op = _agent_op("Upload a file to the chat (multipart: file, optional description)")
    op["post"]["requestBody"] = _multipart({"file": _BINARY, "description": _ID}, ["file"])
    return op


def _agent_paths(config: ServerConfig) -> dict[str, Any]:
    c = f"{PREFIX}/chats/{{chatId}}"
    limits = config.limits
    login = _agent_op("Log in; returns a bearer token (429 after too many failed logins for "
                      "the name or from the address)", {
                          "required": ["username", "password"],
                          "properties": {"username": _ID, "password": _ID}}, chat=False)
    login["post"].pop("security")
    login["post"]["responses"]["200"] = _TOKEN_REPLY
    refresh = _agent_op("Swap a valid token for a new one (the old one stops working; event "
                        "streams opened with it follow the new one)", chat=False)
    refresh["post"]["responses"]["200"] = _TOKEN_REPLY
    queue = _agent_op("One page of the chats waiting for an agent, longest waiting first",
                      chat=False, method="get")
    queue["get"]["parameters"] = [
        _query("limit", {"type": "integer", "minimum": 1,
                         "maximum": limits.max_queue_page_size,
                         "default": limits.queue_page_size}, "page size"),
        _query("offset", {"type": "integer", "minimum": 0, "default": 0},
               "chats to skip"),
        _query("service", {"enum": list(config.services)}, "only this service's queue")]
    queue["get"]["responses"]["200"] = {"description": "a page and how many wait in all",
                                        "content": {"application/json": {"schema": {
                                            "type": "object", "properties": {
                                                "chats": {"type": "array",
                                                          "items": _ref("ChatSummary")},
                                                "total": {"type": "integer"},
                                                "offset": {"type": "integer"},
                                                "limit": {"type": "integer"}}}}}}
    return {
        f"{PREFIX}/login": login,
        f"{PREFIX}/refresh": refresh,
        f"{PREFIX}/logout": _agent_op("Log out (revokes the token, closes its event streams)",
                                      chat=False),
        f"{PREFIX}/me": _agent_op("The agent's own state", chat=False, method="get"),
        f"{PREFIX}/state": _agent_op("Set ready / not ready and capacity", {
            "required": ["ready"], "properties": {
                "ready": {"type": "boolean"},
                "capacity": {"type": "integer", "minimum": 0, "maximum": MAX_CAPACITY}}},
            chat=False),
        f"{PREFIX}/queue": queue,
        f"{PREFIX}/chats": _agent_op("The agent's chats and offers", chat=False, method="get"),
        c: _with_params(_agent_op("One chat with its transcript from ?from=N", method="get"),
                        _query("from", {"type": "integer", "minimum": 1},
                               "the first transcript index wanted")),
        f"{c}/accept": _agent_op("Accept a waiting or offered chat"),
        f"{c}/decline": _agent_op("Decline an offer"),
        f"{c}/send": _agent_op("Send a message", {
            "required": ["text"], "properties": {"text": _ID, "messageType": _ID}}),
        f"{c}/typing": _agent_op("Typing started or stopped", {
            "required": ["typing"], "properties": {"typing": {"type": "boolean"},
                                                   "preview": _ID}}),
        f"{c}/pushUrl": _agent_op("Push a URL to the customer", {
            "required": ["url"], "properties": {"url": {
                "type": "string", "maxLength": limits.max_url_chars,
                "description": "an http(s) URL with a host, as pushUrl on the chat API"}}}),
        f"{c}/end": _agent_op("End the chat"),
        f"{c}/transfer": _agent_op("Transfer to another agent, or back to the queue", {
            "properties": {"toAgent": {"type": ["string", "null"]}}}),
        f"{c}/files": _upload_op(),
        f"{c}/files/{{fileId}}": _with_params(_agent_op("Download a file of the chat",
                                                        method="get"), _FILE_ID),
        f"{PREFIX}/supervise": _agent_op("Every open chat (supervisors)", chat=False,
                                         method="get"),
        f"{c}/monitor": _agent_op("Watch a chat silently (supervisors)"),
        f"{c}/unmonitor": _agent_op("Stop watching a chat"),
        f"{c}/bargeIn": _agent_op("Join a chat openly as a Supervisor (supervisors)"),
        f"{c}/leave": _agent_op("Leave a chat one barged into"),
        f"{PREFIX}/events": _agent_op(
            "WebSocket event stream (?token=...): hello, offer, offerRevoked, message, "
            "userData, queue; closed with 4401 once its token is revoked or expired. The "
            "chat writes (accept, decline, send, typing, pushUrl, end, transfer) may be sent "
            "on it as {\"id\", \"op\", \"chatId\", \"body\"}, each answered by a reply "
            "event {\"id\", \"ok\", \"result\"} or {\"id\", \"ok\": false, \"status\", "
            "\"error\"}: the REST call's status and error",
            chat=False, method="get"),
    }


def openapi_document(config: ServerConfig) -> dict[str, Any]:
    base = f"{config.api_prefix}/2/chat"
    return {
        "openapi": "3.1.0",
        "info": {"title": "webchat server", "version": "1",
                 "description": "GMS Chat API v2 compatible chat API and the agent API."},
        "paths": {**_chat_paths(base, f"{config.api_prefix}/2/chat-ntf"),
                  **_cometd_paths(f"{config.api_prefix}/cometd"), **_agent_paths(config),
                  **_page_paths()},
        "components": {"schemas": _schemas(),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
