"""Bad input gets the documented GMS error shape and code, never a 500, and changes nothing.

These run in strict mode (``--http-errors strict --strict-fields``): each kind of refusal has
its own HTTP status and unknown fields are refused, exactly as before the default became GMS's
tolerance (tests/test_genesys_widgets.py covers the defaults).
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

import msgspec
import pytest

from tests.conftest import SERVICE, start_server
from webchat.protocol.gms.models import ChatResponse
from webchat.server.config import HttpErrorMode, Limits, ServerConfig

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def server_config(server_config: ServerConfig) -> ServerConfig:
    return replace(server_config, http_errors=HttpErrorMode.STRICT, strict_fields=True)


async def post(http, url, data=None, headers=None, raw=None):
    body = raw if raw is not None else urlencode(data or {})
    async with http.post(url, data=body, headers=headers or FORM) as resp:
        payload = await resp.read()
        return resp.status, payload


def error_of(status, payload, http_status, code):
    """Assert a GMS error reply and return it decoded."""
    reply = msgspec.json.decode(payload, type=ChatResponse)
    assert (status, reply.statusCode != 0) == (http_status, True), payload
    assert reply.errors is not None
    assert [e.code for e in reply.errors] == [code], payload
    assert reply.errors[0].advice
    assert reply.messages is None
    return reply


async def start(http, server, **fields):
    status, payload = await post(http, server.data_url, fields or {"nickname": "Ada"})
    assert status == 200, payload
    return msgspec.json.decode(payload)


def ident(chat):
    return {"userId": chat["userId"], "secureKey": chat["secureKey"], "alias": chat["alias"]}


async def test_unknown_chat_and_wrong_key_look_identical(server, http):
    chat = await start(http, server)
    other = await start(http, server)
    base = server.data_url
    unknown = await post(http, f"{base}/NOSUCHCHAT0000/refresh", ident(chat))
    wrong_key = await post(http, f"{base}/{chat['chatId']}/refresh",
                           {**ident(chat), "secureKey": other["secureKey"]})
    wrong_user = await post(http, f"{base}/{chat['chatId']}/refresh",
                            {**ident(chat), "userId": other["userId"]})
    wrong_alias = await post(http, f"{base}/{chat['chatId']}/refresh",
                             {**ident(chat), "alias": "999"})
    no_key = await post(http, f"{base}/{chat['chatId']}/refresh", {"userId": chat["userId"]})
    for status, payload in (unknown, wrong_key, wrong_user, wrong_alias, no_key):
        reply = error_of(status, payload, 403, 1001)
        assert reply.chatId is None and reply.secureKey is None
    # Byte-identical: nothing tells an existing chat from a missing one.
    assert unknown[1] == wrong_key[1] == wrong_user[1] == wrong_alias[1]
    # Another chat's key never reads this chat's transcript, and nothing was changed.
    assert b"Ada" not in wrong_key[1]
    assert len(server.engine.chats[chat["chatId"]].events) == 2


@pytest.mark.parametrize(("fields", "code"), [
    ({}, 161),
    ({"firstName": "Ada"}, 103),
    ({"lastName": "Byron"}, 102),
    ({"nickname": "   "}, 161),
    ({"nickname": "Ada", "emailAddress": "not-an-email"}, 364),
    ({"nickname": "A" * 129}, 1004),
    ({"nickname": "Ada", "subject": "s" * 513}, 1004),
    ({"nickname": "Ada", "favouriteColour": "blue"}, 1005),
    ({"nickname": "Ada", "userData[]": "x"}, 1005),
    ({"nickname": "Ada", "userData[k]": "v" * 4097}, 1004),
    ({"nickname": "Ada\x00"}, 1005),
])
async def test_request_chat_validation(server, http, fields, code):
    status, payload = await post(http, server.data_url, fields)
    error_of(status, payload, 400, code)
    assert server.engine.chats == {}


async def test_too_many_user_data_keys(server, http):
    fields = {"nickname": "Ada", **{f"userData[k{i}]": "v" for i in range(65)}}
    error_of(*(await post(http, server.data_url, fields)), 413, 1010)


@pytest.mark.parametrize(("raw", "ctype", "http_status", "code"), [
    (b"nickname=%FF%FE", None, 400, 1005),             # not UTF-8
    (b"nickname=Ada&nickname=Bob", None, 400, 1005),   # repeated key
    (b"nickname", None, 400, 1005),                    # no '='
    (b'{"nickname": "Ada"}', "application/json", 415, 1011),
    (b"--x\r\nbroken", "multipart/form-data; boundary=x", 400, 1005),
    (b"nickname=" + b"A" * (300 * 1024), None, 413, 1010),
])
async def test_malformed_bodies(server, http, raw, ctype, http_status, code):
    headers = {"Content-Type": ctype} if ctype else FORM
    error_of(*(await post(http, server.data_url, raw=raw, headers=headers)), http_status, code)
    assert server.engine.chats == {}


async def test_multipart_request_chat_is_accepted(server, http):
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("nickname", "Ada")
    form.add_field("userData[orderId]", "A-1")
    async with http.post(server.data_url, data=form) as resp:
        reply = msgspec.json.decode(await resp.read())
    assert reply["statusCode"] == 0
    assert server.engine.chats[reply["chatId"]].user_data == {"orderId": "A-1"}


async def test_message_limits(server, http):
    chat = await start(http, server)
    url = f"{server.data_url}/{chat['chatId']}/send"
    error_of(*(await post(http, url, ident(chat))), 400, 1003)
    error_of(*(await post(http, url, {**ident(chat), "message": "  "})), 400, 1003)
    error_of(*(await post(http, url, {**ident(chat), "message": "x" * 4097})), 400, 204)
    status, _payload = await post(http, url, {**ident(chat), "message": "x" * 4096})
    assert status == 200
    assert len(server.engine.chats[chat["chatId"]].events) == 3


async def test_configurable_message_limit(server_config, http):
    config = replace(server_config, limits=Limits(max_message_chars=10))
    running = await start_server(config)
    try:
        chat = await start(http, running)
        url = f"{running.data_url}/{chat['chatId']}/send"
        error_of(*(await post(http, url, {**ident(chat), "message": "x" * 11})), 400, 204)
    finally:
        await running.runner.cleanup()


@pytest.mark.parametrize("position", ["abc", "-1", "1.5", "99", "1" * 20])
async def test_bad_transcript_position(server, http, position):
    chat = await start(http, server)
    url = f"{server.data_url}/{chat['chatId']}/refresh"
    error_of(*(await post(http, url, {**ident(chat), "transcriptPosition": position})),
             400, 1006)
    # A bad position on send is refused before the message is stored.
    url = f"{server.data_url}/{chat['chatId']}/send"
    error_of(*(await post(http, url, {**ident(chat), "message": "hi",
                                      "transcriptPosition": position})), 400, 1006)
    assert len(server.engine.chats[chat["chatId"]].events) == 2


async def test_requests_after_the_chat_ended(server, http):
    chat = await start(http, server)
    base = f"{server.data_url}/{chat['chatId']}"
    status, _ = await post(http, f"{base}/disconnect", ident(chat))
    assert status == 200
    for op, extra in [("send", {"message": "hi"}), ("startTyping", {}), ("disconnect", {}),
                      ("pushUrl", {"pushUrl": "https://example.org"}), ("customNotice", {}),
                      ("updateData", {"userData[a]": "b"})]:
        error_of(*(await post(http, f"{base}/{op}", {**ident(chat), **extra})), 409, 1002)
    # Reading the final transcript still works.
    status, payload = await post(http, f"{base}/refresh", {**ident(chat),
                                                           "transcriptPosition": "1"})
    reply = msgspec.json.decode(payload)
    assert status == 200
    assert reply["chatEnded"] is True
    assert reply["messages"][-1]["type"] == "ParticipantLeft"


async def test_unknown_service_operation_and_method(server, http):
    chat = await start(http, server)
    error_of(*(await post(http, f"{server.url}/genesys/2/chat/nope", {"nickname": "A"})),
             404, 1008)
    error_of(*(await post(http, f"{server.data_url}/{chat['chatId']}/explode", ident(chat))),
             400, 1012)
    error_of(*(await post(http, f"{server.data_url}/{chat['chatId']}/file/x/y", ident(chat))),
             400, 1012)
    async with http.get(server.data_url) as resp:
        error_of(resp.status, await resp.read(), 405, 1012)
    error_of(*(await post(http, f"{server.data_url}/{chat['chatId']}/send",
                          {**ident(chat), "message": "hi", "bogus": "1"})), 400, 1005)
    error_of(*(await post(http, f"{server.data_url}/{chat['chatId']}/pushUrl",
                          {**ident(chat), "pushUrl": "javascript:alert(1)"})), 400, 1005)


async def test_api_key_required_when_configured(server_config, http):
    running = await start_server(replace(server_config, api_keys=("k1",)))
    try:
        error_of(*(await post(http, running.data_url, {"nickname": "A"})), 401, 1009)
        error_of(*(await post(http, running.data_url, {"nickname": "A"},
                              headers={**FORM, "apikey": "wrong"})), 401, 1009)
        status, _ = await post(http, running.data_url, {"nickname": "A"},
                               headers={**FORM, "x-api-key": "k1"})
        assert status == 200
    finally:
        await running.runner.cleanup()


async def test_lenient_mode_answers_200(server_config, http):
    running = await start_server(replace(server_config, http_errors=HttpErrorMode.LENIENT))
    try:
        error_of(*(await post(http, running.data_url, {})), 200, 161)
    finally:
        await running.runner.cleanup()


async def test_rate_limits(server_config, http):
    limits = Limits(request_chat_rate=(0.001, 2), chat_op_rate=(0.001, 3))
    running = await start_server(replace(server_config, limits=limits))
    try:
        chat = await start(http, running)
        await start(http, running)
        error_of(*(await post(http, running.data_url, {"nickname": "A"})), 429, 1007)
        url = f"{running.data_url}/{chat['chatId']}/refresh"
        for _ in range(3):
            assert (await post(http, url, ident(chat)))[0] == 200
        error_of(*(await post(http, url, ident(chat))), 429, 1007)
    finally:
        await running.runner.cleanup()


async def test_cors_preflight_and_origin_echo(server_config, http):
    running = await start_server(replace(server_config, cors_origins=("https://shop.example",)))
    try:
        headers = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "content-type,apikey"}
        async with http.options(running.data_url, headers=headers) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"
            assert "apikey" in resp.headers["Access-Control-Allow-Headers"]
        async with http.options(running.data_url, headers={
                **headers, "Origin": "https://evil.example"}) as resp:
            assert resp.status == 403
        async with http.post(running.data_url, data="nickname=A", headers={
                **FORM, "Origin": "https://shop.example"}) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"
            assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    finally:
        await running.runner.cleanup()


# ---- agent API ------------------------------------------------------------------------------

async def agent_call(http, server, method, path, token="", body=None, raw=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else (msgspec.json.encode(body) if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"  # the agent API takes JSON only (415)
    async with http.request(method, f"{server.url}/agent/v1{path}", data=data,
                            headers=headers) as resp:
        return resp.status, msgspec.json.decode(await resp.read())


async def test_agent_api_rejections(server, http):
    await server.add_agent("grace", "secret")
    status, body = await agent_call(http, server, "POST", "/login",
                                    body={"username": "grace", "password": "wrong"})
    assert (status, body["error"]["code"]) == (401, "bad_credentials")
    status, body = await agent_call(http, server, "POST", "/login",
                                    body={"username": "nobody", "password": "secret"})
    assert (status, body["error"]["code"]) == (401, "bad_credentials")
    status, body = await agent_call(http, server, "GET", "/queue", token="forged")
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    _, login = await agent_call(http, server, "POST", "/login",
                                body={"username": "grace", "password": "secret"})
    token = login["token"]
    status, body = await agent_call(http, server, "POST", "/state", token, raw=b"{nope")
    assert (status, body["error"]["code"]) == (400, "bad_request")
    status, body = await agent_call(http, server, "POST", "/state", token,
                                    body={"ready": True, "colour": "red"})
    assert (status, body["error"]["code"]) == (400, "bad_request")
    status, body = await agent_call(http, server, "POST", "/chats/NOPE/accept", token)
    assert (status, body["error"]["code"]) == (404, "chat_not_found")
    chat = await start(http, server)
    # A waiting chat is nobody's until accepted (or offered, or reserved): not found for her.
    status, body = await agent_call(http, server, "POST", f"/chats/{chat['chatId']}/send",
                                    token, body={"text": "hi"})
    assert (status, body["error"]["code"]) == (404, "chat_not_found")
    status, body = await agent_call(http, server, "POST", f"/chats/{chat['chatId']}/accept",
                                    token)
    assert status == 200
    status, body = await agent_call(http, server, "POST", f"/chats/{chat['chatId']}/send",
                                    token, body={"text": "x" * 4097})
    assert (status, body["error"]["code"]) == (400, "too_long")
    status, body = await agent_call(http, server, "GET", "/nothing-here", token)
    assert status == 404
    assert body["error"]["code"] == "http_error"
    await agent_call(http, server, "POST", "/logout", token)
    status, _ = await agent_call(http, server, "GET", "/queue", token)
    assert status == 401
    assert SERVICE in server.config.services
