"""Fuzzing the customer chat API over REST: forms and multipart bodies, bounded.

Against a ``webchat serve`` process: every reply is a GMS chat response below 500, none takes
longer than a per-request timeout, the server logs no traceback, and its RSS comes back within
10% of where it started once the fuzzing is over.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SERVICE
from tests.live_server import LiveServer, live_server
from webchat.server.validation import FIELDS

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


BASE = f"/genesys/2/chat/{SERVICE}"


class Live(LiveServer):
    chats: list[dict[str, str]]
    base = BASE


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(Live, tmp_path_factory.mktemp("fuzz"), "--agent", "grace:pw",
                     "--chat-start-rate", "1000:1000") as server:
        # Chats to aim the operations at (several: each has its own rate limit).
        server.chats = []
        for n in range(8):
            status, body = server.post(BASE, urlencode({"nickname": f"Fuzz{n}"}).encode(),
                                       "application/x-www-form-urlencoded")
            assert status == 200, body
            server.chats.append(json.loads(body))
        warm(server)
        server.mark_start()
        yield server


def warm(server: Live) -> None:
    """Every kind of request once, so code loaded on first use does not count as growth."""
    chat = server.chats[0]
    ident = {k: chat[k] for k in ("userId", "secureKey", "alias")}
    for op in ("refresh", "send", "file/limits", "nosuch"):
        server.post(f"{server.base}/{chat['chatId']}/{op}",
                    urlencode({**ident, "message": "hi"}).encode(),
                    "application/x-www-form-urlencoded")
    server.post(f"{server.base}/{chat['chatId']}/file", multipart([("file", "a.txt", b"x")]),
                f"multipart/form-data; boundary={BOUNDARY}")


def check(status: int, body: bytes) -> None:
    assert status < 500, body[:300]
    reply = json.loads(body)  # always the chat-response shape, never an HTML error page
    assert isinstance(reply, dict) and "statusCode" in reply, body[:300]


# ---- strategies --------------------------------------------------------------------------

KNOWN = sorted(set().union(*FIELDS.values()) | {"userId", "secureKey", "alias",
                                                 "userData[a]", "userData[]", "userData"})
text = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "0", "-1", "99999999999999999999", "\x00", "%", "%zz", "a" * 5000, "[]", "{\"a\":1}"])
keys = st.sampled_from(KNOWN) | text
OPERATIONS = st.sampled_from([*FIELDS, "file", "file/x/download", "file/x/delete", "file/",
                              "file/limits/x", "nosuch", "%2e%2e/refresh", "refresh/"])


def form_body(pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote(k, safe='[]')}={quote(v)}" for k, v in pairs).encode()


raw_bodies = st.binary(max_size=300) | st.sampled_from(
    [b"a=%", b"a", b"=&=&", b"a=1&a=2", b"%00=1", b"a=%ff%fe", b"&" * 5000])
forms = st.lists(st.tuples(keys, text), max_size=8).map(form_body) | raw_bodies
content_types = st.sampled_from(["application/x-www-form-urlencoded", "text/plain",
                                 "application/json", "application/octet-stream",
                                 "multipart/form-data", "x" * 300, None])


@st.composite
def chat_and_identity(draw: st.DrawFn, server: Live) -> tuple[str, list[tuple[str, str]]]:
    chat = draw(st.sampled_from(server.chats))
    ident = [(k, chat[k]) for k in ("userId", "secureKey", "alias")]
    ident = draw(st.sampled_from([ident, ident[:2], [], [(ident[0][0], "wrong"), *ident[1:]]]))
    chat_id = draw(st.sampled_from([chat["chatId"], "", "x" * 100, "NOSUCH"]))
    return chat_id or "-", ident


BOUNDARY = "fuzzb0undary"


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = BOUNDARY) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


part_names = st.sampled_from(["file", "userId", "secureKey", "alias", "userData[file-description]",
                              "description", "operation", ""]) | text
parts = st.lists(st.tuples(part_names, st.none() | text,
                           st.binary(max_size=200) | st.just(b"\x89PNG\r\n\x1a\n")),
                 max_size=6)


# ---- tests -------------------------------------------------------------------------------


@FUZZ
@given(data=st.data(), op=OPERATIONS, body=forms, ctype=content_types)
def test_fuzzed_forms_get_a_gms_reply(live: Live, data, op, body, ctype):
    chat_id, ident = data.draw(chat_and_identity(live))
    if data.draw(st.booleans()):  # a well-identified request with fuzzed fields
        body = form_body(ident) + (b"&" + body if body else b"")
    check(*live.post(f"{live.base}/{quote(chat_id)}/{op}", body, ctype))


@FUZZ
@given(body=forms, ctype=content_types, service=st.sampled_from([SERVICE, "", "nosuch", "x" * 300]),
       slash=st.booleans())
def test_fuzzed_chat_requests_get_a_gms_reply(live: Live, body, ctype, service, slash):
    path = f"/genesys/2/chat/{quote(service)}" + ("/" if slash else "")
    check(*live.post(path, body, ctype))


@FUZZ
@given(data=st.data(), fuzzed=parts, cut=st.none() | st.integers(min_value=0, max_value=400),
       op=st.sampled_from(["file", "send", "refresh", "file/limits"]),
       boundary=st.sampled_from([BOUNDARY, "", "x" * 100, None]))
def test_fuzzed_multipart_gets_a_gms_reply(live: Live, data, fuzzed, cut, op, boundary):
    chat_id, ident = data.draw(chat_and_identity(live))
    body = multipart([(k, None, v.encode()) for k, v in ident] + fuzzed)
    if cut is not None:
        body = body[:cut]  # truncated, with an honest Content-Length
    ctype = "multipart/form-data" + (f"; boundary={boundary}" if boundary is not None else "")
    check(*live.post(f"{live.base}/{quote(chat_id)}/{op}", body, ctype))


@FUZZ
@given(fuzzed=parts, data=st.data(), form=st.booleans())
def test_fuzzed_chat_ntf_gets_a_gms_reply(live: Live, fuzzed, data, form):
    chat = data.draw(st.sampled_from(live.chats))
    key = data.draw(st.sampled_from([chat["secureKey"], "", "wrong"]))
    operation = data.draw(st.sampled_from(["fileGetLimits", "fileUpload", "fileDownload",
                                           "fileDelete", "", "nosuch"]))
    if form:
        check(*live.post("/genesys/2/chat-ntf", form_body(
            [("operation", operation), ("secureKey", key), ("fileId", "x")]),
            "application/x-www-form-urlencoded"))
    else:
        body = multipart([("operation", None, operation.encode()),
                          ("secureKey", None, key.encode()), *fuzzed])
        check(*live.post("/genesys/2/chat-ntf", body,
                         f"multipart/form-data; boundary={BOUNDARY}"))


def test_after_the_fuzzing_the_log_is_clean_and_memory_came_back(live: Live):
    """Runs last in this module (pytest keeps file order)."""
    status, body = live.post(live.base, urlencode({"nickname": "After"}).encode(),
                             "application/x-www-form-urlencoded")
    assert status == 200, body
    live.assert_clean_and_memory_back("unhandled error")
