"""What the real Genesys Widgets 8.5 client sends, and what it reads back, server side.

The requests here are the shapes the unmodified bundle sends (the recordings in
tests/fixtures/genesys-widgets/ replay whole conversations; this module pins each rule on its
own): request chat at ``dataURL/`` with blank identity fields, ``text`` and ``_genesys_*``
userData; a typing preview ``message`` on every refresh; ``chatId`` on every CometD publish;
file requests over chat-ntf with the secureKey alone; downloads by form POST without the API
key. And the replies it can show: HTTP 400 with ``errors[]``, ``statusCode`` 1 for what may be
retried, bare numbers as the advice of 201/202.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tests.conftest import RunningServer, start_server
from tests.test_cometd_server import CHANNEL, LongPoll
from webchat.server.config import Limits

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
#: The bundle's request-chat form, field for field (webchat-service ``startChat``).
REQUEST_CHAT = [
    ("alias", ""), ("secureKey", ""), ("userId", ""), ("nickname", ""), ("firstName", "Ada"),
    ("lastName", "Byron"), ("emailAddress", "ada@example.org"), ("subject", "Invoice"),
    ("text", ""), ("userData[_genesys_source]", "web"),
    ("userData[_genesys_referrer]", ""), ("userData[_genesys_url]", "http://site.test/shop"),
    ("userData[_genesys_pageTitle]", "Shop"), ("userData[_genesys_browser]", "Chrome"),
    ("userData[_genesys_OS]", "Linux"),
]


async def post(http: aiohttp.ClientSession, url: str, fields: Any,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=urlencode(fields), headers={**FORM, **(headers or {})}
                         ) as resp:
        return resp.status, await resp.json()


async def bundle_chat(http: aiohttp.ClientSession, server: RunningServer,
                      headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, reply = await post(http, server.data_url + "/", REQUEST_CHAT, headers)
    assert (status, reply["statusCode"]) == (200, 0), reply
    return reply


def ident(chat: dict[str, Any]) -> list[tuple[str, str]]:
    return [("alias", chat["alias"]), ("secureKey", chat["secureKey"]),
            ("userId", chat["userId"])]


async def test_request_chat_as_the_bundle_sends_it(server, http):
    reply = await bundle_chat(http, server)
    for key in ("chatId", "secureKey", "userId", "alias", "nextPosition"):
        assert reply[key], key
    assert reply["messages"][0]["type"] == "ParticipantJoined"
    chat = server.engine.chats[reply["chatId"]]
    assert chat.customer["nickname"] == "Ada Byron"
    # Agents see the page context the widget sends.
    assert chat.user_data["_genesys_url"] == "http://site.test/shop"
    assert "text" not in chat.user_data and "alias" not in chat.user_data


async def test_unknown_fields_are_ignored_but_still_bounded(server, http):
    status, reply = await post(http, server.data_url, [("nickname", "Ada"),
                                                       ("favouriteColour", "blue")])
    assert (status, reply["statusCode"]) == (200, 0)
    chat = reply
    base = f"{server.data_url}/{chat['chatId']}"
    status, reply = await post(http, f"{base}/send",
                               [*ident(chat), ("message", "hi"), ("cobrowse", "x")])
    assert (status, reply["statusCode"]) == (200, 0)
    # Tolerance of extra fields is not tolerance of garbage.
    for fields, code in [([("nickname", "Ada"), ("extra", "x" * 4097)], 1004),
                         ([("nickname", "Ada"), ("extra", "a\x00b")], 1005),
                         ([("nickname", "Ada"), ("nickname", "Bob")], 1005)]:
        status, reply = await post(http, server.data_url, fields)
        assert (status, reply["errors"][0]["code"]) == (400, code), fields
    assert len(server.engine.chats) == 1


async def test_strict_fields_refuses_what_it_did_before(server_config, http):
    running = await start_server(replace(server_config, strict_fields=True))
    try:
        status, reply = await post(http, running.data_url, [("nickname", "Ada"),
                                                            ("favouriteColour", "blue")])
        assert (status, reply["errors"][0]["code"]) == (400, 1005)
        # What the real client sends is known, strict or not.
        await bundle_chat(http, running)
    finally:
        await running.runner.cleanup()


async def agent_chat(server: RunningServer, agent_factory: Any, chat_id: str) -> Any:
    await server.add_agent("grace", nickname="Grace")
    agent = await agent_factory(server.url, "grace")
    await agent.wait_for(lambda events: any(e.get("type") == "offer" for e in events))
    agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
    return agent


async def test_refresh_preview_reaches_the_agent_only_while_typing(server, http,
                                                                   agent_factory):
    chat = await bundle_chat(http, server)
    base = f"{server.data_url}/{chat['chatId']}"
    agent = await agent_chat(server, agent_factory, chat["chatId"])
    refresh = [*ident(chat), ("transcriptPosition", "1")]

    def typing() -> list[tuple[str, str | None]]:
        return [(m.type, m.text) for m in server.engine.chats[chat["chatId"]].events
                if m.from_.participantId == 1 and m.type.startswith("Typing")]

    # Text left in the box is not typing: the preview alone starts nothing.
    await post(http, f"{base}/refresh", [*refresh, ("message", "left over")])
    assert typing() == []
    await post(http, f"{base}/startTyping", [*ident(chat), ("message", "")])
    await post(http, f"{base}/refresh", [*refresh, ("message", "Where is")])
    await post(http, f"{base}/refresh", [*refresh, ("message", "Where is")])  # unchanged
    await post(http, f"{base}/refresh", [*refresh, ("message", "Where is my order")])
    assert typing() == [("TypingStarted", None), ("TypingStarted", "Where is"),
                        ("TypingStarted", "Where is my order")]
    await agent.wait_message(chat["chatId"], lambda m: m.get("text") == "Where is my order")


async def test_typing_that_nothing_followed_ends_on_the_server(server_config, http):
    now = [1_000_000]
    running = await start_server(replace(server_config, typing_timeout_s=10.0),
                                 clock=lambda: now[0])
    try:
        chat = await bundle_chat(http, running)
        base = f"{running.data_url}/{chat['chatId']}"
        # Over CometD the bundle sends startTyping with its preview and never stopTyping.
        await post(http, f"{base}/startTyping", [*ident(chat), ("message", "Hel")])
        now[0] += 9_999
        await running.engine.expire_typing()
        events = running.engine.chats[chat["chatId"]].events
        assert events[-1].type == "TypingStarted"
        now[0] += 1
        await running.engine.expire_typing()
        assert [m.type for m in events[-2:]] == ["TypingStarted", "TypingStopped"]
        await running.engine.expire_typing()  # once
        assert events[-1].type == "TypingStopped" and events[-2].type == "TypingStarted"
        # A message ends typing by itself: nothing more to stop.
        await post(http, f"{base}/startTyping", [*ident(chat), ("message", "Hel")])
        await post(http, f"{base}/send", [*ident(chat), ("message", "Hello")])
        now[0] += 60_000
        await running.engine.expire_typing()
        assert events[-1].type == "Message"
    finally:
        await running.runner.cleanup()


async def test_refusals_are_400_with_errors_and_retryable_ones_say_so(server_config, http):
    """The widget shows a refusal only from HTTP 400 + errors[] (or a 200 body): a 429, 503 or
    413 showed the customer nothing. statusCode 1 is GMS's "try again", 2 "give up"."""
    limits = Limits(request_chat_rate=(0.001, 3), max_queue_per_service=1)
    running = await start_server(replace(server_config, limits=limits))
    try:
        await bundle_chat(http, running)
        refusals = []
        for fields in (REQUEST_CHAT, [("nickname", "")], REQUEST_CHAT):
            status, reply = await post(http, running.data_url + "/", fields)
            refusals.append((status, reply["statusCode"], reply["errors"][0]["code"]))
        # queue full: retry later; no name: give up; too many chats from this address: retry.
        assert refusals == [(400, 1, 240), (400, 2, 161), (400, 1, 1007)]
    finally:
        await running.runner.cleanup()


async def upload(http: aiohttp.ClientSession, url: str, fields: list[tuple[str, str]],
                 data: bytes, name: str = "note.txt",
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData(fields)
    form.add_field("file", data, filename=name, content_type="text/plain")
    async with http.post(url, data=form, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_file_limit_advice_is_the_bare_number_the_widget_formats(server_config, http):
    config = replace(server_config, files=replace(server_config.files, max_files=1,
                                                  max_total_size=100, need_agent=False))
    running = await start_server(config)
    try:
        chat = await bundle_chat(http, running)
        url = f"{running.data_url}/{chat['chatId']}/file"
        status, reply = await upload(http, url, ident(chat), b"x" * 101)
        assert (status, reply["errors"][0]) == (400, {"code": 202, "advice": "100"})
        assert (await upload(http, url, ident(chat), b"hello"))[0] == 200
        status, reply = await upload(http, url, ident(chat), b"again")
        assert (status, reply["errors"][0]) == (400, {"code": 201, "advice": "1"})
    finally:
        await running.runner.cleanup()


async def test_chat_ntf_works_cross_origin_with_the_secure_key_alone(server_config):
    """The bundle's chat-ntf requests from another origin carry no cookie: operation and
    secureKey (+ file, fileId). A fresh cookie-less client stands for that browser."""
    config = replace(server_config, files=replace(server_config.files, need_agent=False))
    running = await start_server(config)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            chat = await bundle_chat(http, running)
            ntf = f"{running.url}/genesys/2/chat-ntf"
            key = [("secureKey", chat["secureKey"])]
            status, reply = await post(http, ntf, [("operation", "fileGetLimits"), *key])
            assert reply["statusCode"] == 0
            notice = reply["messages"][0]
            assert notice["text"] == "file-client-cfg-get"
            assert int(notice["userData"]["upload-max-files"]) > 0
            status, reply = await upload(http, ntf, [("operation", "fileUpload"), *key],
                                         b"hello")
            assert (status, reply["statusCode"]) == (200, 0), reply
            file_id = reply["userData"]["file-id"]
            async with http.post(ntf, data={"operation": "fileDownload", "fileId": file_id,
                                            "secureKey": chat["secureKey"]}) as resp:
                assert (resp.status, await resp.read()) == (200, b"hello")
            status, reply = await post(http, ntf, [("operation", "fileGetLimits"),
                                                   ("secureKey", "not-the-key")])
            assert (status, reply["errors"][0]["code"]) == (400, 1001)
    finally:
        await running.runner.cleanup()


async def test_downloads_need_no_api_key_but_everything_else_does(server_config, http):
    config = replace(server_config, api_keys=("K",),
                     files=replace(server_config.files, need_agent=False))
    running = await start_server(config)
    try:
        key = {"apikey": "K"}
        chat = await bundle_chat(http, running, key)
        base = f"{running.data_url}/{chat['chatId']}"
        status, reply = await upload(http, f"{base}/file", ident(chat), b"hello",
                                     headers=key)
        file_id = reply["userData"]["file-id"]
        status, reply = await upload(http, f"{base}/file", ident(chat), b"hello")
        assert (status, reply["errors"][0]["code"]) == (400, 1009)
        for path in ("refresh", "file/limits", f"file/{file_id}/delete"):
            status, reply = await post(http, f"{base}/{path}", ident(chat))
            assert (status, reply["errors"][0]["code"]) == (400, 1009), path
        # The widget's download: a target=_blank multipart form POST, no headers of its own.
        form = aiohttp.FormData(ident(chat), default_to_multipart=True)
        async with http.post(f"{base}/file/{file_id}/download", data=form) as resp:
            assert (resp.status, await resp.read()) == (200, b"hello")
        # ... still only with the chat's secureKey.
        form = aiohttp.FormData([*ident(chat)[:1], ("secureKey", "guess"), ident(chat)[2]],
                                default_to_multipart=True)
        async with http.post(f"{base}/file/{file_id}/download", data=form) as resp:
            assert resp.status == 400
        async with http.post(f"{running.url}/genesys/2/chat-ntf", data={
                "operation": "fileDownload", "fileId": file_id,
                "secureKey": chat["secureKey"]}) as resp:
            assert (resp.status, await resp.read()) == (200, b"hello")
    finally:
        await running.runner.cleanup()


async def test_cometd_publishes_as_the_bundle_sends_them(server, http, agent_factory):
    """Every publish carries chatId (blank on requestChat, with blank identity fields);
    requestNotifications carries the preview ``message``; every reply and push carries the
    secureKey, which the bundle forgets on a reload and learns again from replies."""
    lp = LongPoll(http, f"{server.url}/genesys/cometd")
    await lp.handshake()
    await lp.connect(hold_ms=0)
    _, [ack] = await lp.post("", {"channel": CHANNEL, "data": {
        "operation": "requestChat", "chatId": "", "alias": "", "secureKey": "", "userId": "",
        "nickname": "", "firstName": "Ada", "lastName": "Byron", "emailAddress": "",
        "subject": "", "text": "", "userData": {"_genesys_source": "web"}}})
    assert ack["successful"] is True, ack
    replies = await lp.connect()
    chat = replies[1]["data"]
    assert chat["statusCode"] == 0 and chat["secureKey"]
    agent = await agent_chat(server, agent_factory, chat["chatId"])
    await agent.client.send(chat["chatId"], "Hello Ada")
    pushes = [r["data"] for r in await lp.connect() if r["channel"] == CHANNEL]
    assert pushes and all(p["secureKey"] == chat["secureKey"] for p in pushes)
    # After a reload: a new session, the keys from the bundle's cookie, the preview.
    again = LongPoll(http, f"{server.url}/genesys/cometd")
    await again.handshake()
    await again.connect(hold_ms=0)
    _, [ack] = await again.post("", {"channel": CHANNEL, "data": {
        "operation": "requestNotifications", "chatId": chat["chatId"],
        "alias": chat["alias"], "secureKey": chat["secureKey"], "userId": chat["userId"],
        "transcriptPosition": 1, "message": ""}})
    assert ack["successful"] is True, ack
    restored = next(r["data"] for r in await again.connect() if r["channel"] == CHANNEL)
    assert restored["chatEnded"] is False and restored["secureKey"] == chat["secureKey"]
    assert "Hello Ada" in [m.get("text") for m in restored["messages"]]
    # A chatId that is not the key's chat is refused like a wrong key.
    _, [nack] = await again.post("", {"channel": CHANNEL, "data": {
        "operation": "sendMessage", "chatId": "0000000000000000",
        "secureKey": chat["secureKey"], "message": "hi", "messageType": "text"}})
    assert nack["successful"] is False and nack["error"].startswith("400:1001:")

