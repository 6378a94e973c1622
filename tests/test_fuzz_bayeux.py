"""Fuzzing Bayeux over real long-polling requests and real WebSockets, bounded (issue 12).

Against a ``webchat serve`` process: arbitrary message lists, valid and broken, on live
sessions and on none, and broken bodies and frames. No reply is a 5xx, none is later than a
per-request timeout, the server logs no traceback, and its RSS comes back within 10% of where
it started once the fuzzing is over.

A ``/meta/connect`` of a live session is held until deliveries or its timeout: the fuzzer's
connects ask for holds of at most 200 ms (``advice.timeout``, which the server honours up to
its own), so that any reply later than :data:`TIMEOUT_S` is a hang, not a long poll.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SERVICE
from tests.live_server import TIMEOUT_S, LiveServer, live_server

FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PATH = "/genesys/cometd"
HANDSHAKE = {"channel": "/meta/handshake", "version": "1.0",
             "supportedConnectionTypes": ["websocket", "long-polling"]}


class Live(LiveServer):
    runner: asyncio.Runner

    def bayeux(self, body: bytes, content_type: str | None = "application/json"
               ) -> tuple[int, bytes]:
        """A long-polling POST to the CometD endpoint."""
        return self.post(PATH, body, content_type)

    def handshake(self) -> str:
        status, body = self.bayeux(json.dumps([HANDSHAKE]).encode())
        assert status == 200, body
        [reply] = json.loads(body)
        assert reply["successful"], reply
        return str(reply["clientId"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(Live, tmp_path_factory.mktemp("fuzz-bayeux"),
                     "--cometd-handshake-rate", "1000:1000") as server, \
            asyncio.Runner() as runner:
        server.runner = runner
        warm(server)
        server.mark_start()
        yield server


def warm(server: Live) -> None:
    """Every kind of exchange once, so code loaded on first use does not count as growth."""
    cid = server.handshake()
    for msg in ({"channel": "/meta/connect", "connectionType": "long-polling"},
                {"channel": "/meta/subscribe", "subscription": "/a"},
                {"channel": f"/service/chatV2/{SERVICE}", "data": {"operation": "nosuch"}},
                {"channel": "/meta/connect", "advice": {"timeout": 0}},
                {"channel": "/meta/disconnect"}):
        server.bayeux(json.dumps([{**msg, "clientId": cid}]).encode())
    server.bayeux(b"[" * 100)
    server.runner.run(ws_exchange(server, [json.dumps([HANDSHAKE]), "{"]))


def check_http(status: int, body: bytes) -> None:
    assert status < 500, body[:300]
    if status == 200:
        replies = json.loads(body)
        assert isinstance(replies, list) and all("channel" in r for r in replies), body[:300]


# ---- strategies --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=10)
CHANNELS = st.sampled_from([
    "/meta/handshake", "/meta/connect", "/meta/subscribe", "/meta/unsubscribe",
    "/meta/disconnect", "/meta/nosuch", f"/service/chatV2/{SERVICE}", "/service/chatV2/x",
    "/service/other", "/room/a", "/room/*", "/**", "", "nochannel", "/a//b", "/" + "a" * 600])
OPERATIONS = st.sampled_from(["requestChat", "sendMessage", "startTyping", "stopTyping",
                              "requestNotifications", "disconnect", "updateNickname",
                              "customNotice", "", "nosuch"])
GMS_KEYS = st.sampled_from(["chatId", "secureKey", "userId", "alias", "nickname", "message",
                            "messageType", "transcriptPosition", "userData", "auth"])


@st.composite
def gms_data(draw: st.DrawFn) -> Any:
    data: dict[str, Any] = {"operation": draw(OPERATIONS | json_values)}
    data.update(draw(st.dictionaries(GMS_KEYS | st.text(max_size=8), json_values, max_size=5)))
    return data


@st.composite
def message(draw: st.DrawFn, client_id: str) -> dict[str, Any]:
    msg: dict[str, Any] = {"channel": draw(CHANNELS | json_values)}
    if draw(st.integers(0, 3)):
        msg["clientId"] = draw(st.sampled_from([client_id, client_id, "nosuch", ""])
                               | json_values)
    if draw(st.booleans()):
        msg["id"] = draw(st.sampled_from(["1", 2, "x" * 80, "bad id!"]) | json_values)
    if msg["channel"] == "/meta/connect":
        # A short hold: a reply after TIMEOUT_S is then a hang (see the module docstring).
        msg["advice"] = {"timeout": draw(st.sampled_from([0, 50, 200]))}
        msg["connectionType"] = draw(st.sampled_from(["long-polling", "websocket", 7]))
    elif draw(st.booleans()):
        msg["advice"] = draw(json_values)
    if draw(st.booleans()):
        msg["data"] = draw(gms_data() | json_values)
    for key in ("ext", "subscription", "version", "supportedConnectionTypes", "successful"):
        if not draw(st.integers(0, 4)):
            msg[key] = draw(st.sampled_from([{"ack": True}, {"ack": 3}, "/room/a", "1.0",
                                             ["long-polling"], True]) | json_values)
    return msg


def messages(client_id: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(message(client_id), min_size=1, max_size=5)


broken = st.binary(max_size=300) | st.sampled_from(
    [b"", b"[", b"[]", b"{}", b"null", b"[1,2]", b"[" * 5000 + b"]" * 5000,
     b'[{"channel":"/meta/connect","data":' + b"[" * 2000 + b"]" * 2000 + b"}]",
     b'{"channel": "/meta/handshake"}' * 3, b"[\"\\ud800\"]", b"\xff\xfe"])


# ---- long-polling ------------------------------------------------------------------------


@FUZZ
@given(data=st.data(), as_object=st.booleans(), form=st.booleans())
def test_fuzzed_message_lists_over_long_polling(live: Live, data, as_object, form):
    cid = live.handshake()
    msgs = data.draw(messages(cid))
    body = json.dumps(msgs[0] if as_object and len(msgs) == 1 else msgs).encode()
    if form:
        check_http(*live.bayeux(b"message=" + urllib.request.quote(body).encode(),
                              "application/x-www-form-urlencoded"))
    else:
        check_http(*live.bayeux(body))


@FUZZ
@given(body=broken, ctype=st.sampled_from(["application/json", "text/plain", None,
                                           "application/x-www-form-urlencoded"]))
def test_broken_bodies_over_long_polling(live: Live, body, ctype):
    check_http(*live.bayeux(body, ctype))


# ---- WebSocket ---------------------------------------------------------------------------

PROBE = json.dumps([{"channel": "/meta/probe", "id": "probe"}])
"""Answered by every socket that still reads (402 or 405, id ``probe``): frames are processed
in order, so its reply proves the frame before it was fully processed."""


async def ws_exchange(live: Live, frames: list[str | bytes]) -> None:
    """Send each frame, then a probe; the probe's reply (or the server closing the socket)
    must come within TIMEOUT_S."""
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(f"ws://127.0.0.1:{live.port}{PATH}") as ws:
        for frame in frames:
            if ws.closed:
                return
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            if not ws.closed:
                await ws.send_str(PROBE)
            async with asyncio.timeout(TIMEOUT_S):
                while True:
                    got = await ws.receive()
                    if got.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                        assert got.type != aiohttp.WSMsgType.ERROR, got
                        if got.type == aiohttp.WSMsgType.CLOSE:
                            assert got.data in (1003, 1009, 1011), got  # never 1011 by crash
                        return
                    assert got.type == aiohttp.WSMsgType.TEXT, got
                    replies = json.loads(got.data)
                    assert isinstance(replies, list), got.data[:300]
                    if any(r.get("id") == "probe" for r in replies):
                        break


@FUZZ
@given(data=st.data(), handshake_first=st.booleans())
def test_fuzzed_message_lists_over_websocket(live: Live, data, handshake_first):
    frames: list[str | bytes] = [json.dumps([HANDSHAKE])] if handshake_first else []
    # The socket's own clientId is not known before its handshake reply; a long-polling
    # session's id tries the cross-transport door.
    cid = live.handshake()
    frames += [json.dumps(m) for m in data.draw(st.lists(messages(cid), min_size=1,
                                                          max_size=3))]
    live.runner.run(ws_exchange(live, frames))


@FUZZ
@given(frame=broken)
def test_broken_frames_over_websocket(live: Live, frame):
    live.runner.run(ws_exchange(live, [json.dumps([HANDSHAKE]), frame]))


def test_after_the_fuzzing_the_log_is_clean_and_memory_came_back(live: Live):
    """Runs last in this module (pytest keeps file order)."""
    live.handshake()  # still serving
    live.assert_clean_and_memory_back("Error handling request")
