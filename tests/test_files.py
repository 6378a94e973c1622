"""Files in a chat: limits, uploads both ways, downloads, deletion, and every refusal — over REST
and over CometD's chat-ntf side door — with nothing stored for a refused file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SERVICE, accepted_chat
from tests.test_end_to_end import transport_options
from webchat.bus import CommandError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def files_options(server, transport: str) -> dict:
    options = transport_options(server, transport)
    if "cometD" in options:
        options["cometD"]["apiURL"] = f"{server.url}/genesys/2/chat-ntf"
    return options


async def chat_with_agent(server, customer_factory, agent_factory, transport: str):
    customer = await customer_factory(server.data_url, **files_options(server, transport))
    agent, chat_id = await accepted_chat(server, customer, agent_factory)
    return customer, agent, chat_id


def stored_files(server) -> tuple[list[Path], int]:
    vault = Path(server.config.data_dir) / "files"
    blobs = [p for p in vault.rglob("*") if p.is_file()] if vault.exists() else []
    with sqlite3.connect(Path(server.config.data_dir) / "webchat.sqlite3") as db:
        rows = db.execute("SELECT count(*) FROM files").fetchone()[0]
    return blobs, rows


@pytest.mark.conformance("command:getFileLimits", "command:sendFile", "command:downloadFile",
                         "command:deleteFile", "event:fileUploaded", "option:cometD.apiURL")
@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_files_both_ways(server, customer_factory, agent_factory, transport):
    customer, agent, chat_id = await chat_with_agent(server, customer_factory, agent_factory,
                                                     transport)
    limits = await customer.command("getFileLimits")
    assert limits["upload-max-files"] == "5" and limits["used-upload-max-files"] == "0"
    assert limits["upload-file-types"] == "jpg:jpeg:png:gif:pdf:txt"

    sent = await customer.command("sendFile", {"data": PNG, "fileName": "receipt.png",
                                               "description": "my receipt"})
    file_id = sent["userData"]["file-id"]
    uploaded = await customer.wait_event("fileUploaded")
    assert uploaded.data["fileId"] == file_id
    assert (uploaded.data["fileName"], uploaded.data["fileSize"]) == ("receipt.png", len(PNG))
    # The agent sees the FileUploaded event and downloads exactly those bytes.
    event = await agent.wait_message(chat_id, lambda m: m["type"] == "FileUploaded")
    assert event["userData"]["file-description"] == "my receipt"
    data, ctype = await agent.client.download_file(chat_id, file_id)
    assert (data, ctype) == (PNG, "image/png")

    # The agent sends a file back; the customer is told and downloads it.
    note = b"Refund approved.\n"
    back = await agent.client.upload_file(chat_id, "refund.txt", note, "text/plain")
    got = await customer.wait_event("fileUploaded", count=2)
    assert got.data["from"]["type"] == "Agent" and got.data["fileId"] == back["fileId"]
    downloaded = await customer.command("downloadFile", {"fileId": back["fileId"]})
    assert (downloaded["data"], downloaded["fileName"]) == (note, "refund.txt")
    assert (await customer.command("getFileLimits"))["used-upload-max-files"] == "2"

    # Deleting gives the quota back; the file is gone for everyone.
    await customer.command("deleteFile", {"fileId": file_id})
    await customer.wait_for(lambda c: any(m["type"] == "FileDeleted" for e in c.events
                                          if e.event == "WebChatService.messageReceived"
                                          for m in e.data["messages"]))
    assert (await customer.command("getFileLimits"))["used-upload-max-files"] == "1"
    with pytest.raises(CommandError, match="1014"):
        await customer.command("downloadFile", {"fileId": file_id})
    with pytest.raises(CommandError, match="1014"):  # only the uploader may delete
        await customer.command("deleteFile", {"fileId": back["fileId"]})

    # After the chat, its files can still be read back (but not changed).
    await agent.client.end(chat_id)
    await customer.wait_event("ended")
    again = await customer.command("downloadFile", {"fileId": back["fileId"]})
    assert again["data"] == note
    with pytest.raises(CommandError, match="There is no active chat session"):
        await customer.command("sendFile", {"data": b"late", "fileName": "late.txt"})


@pytest.mark.parametrize(("name", "data", "ctype", "code"), [
    ("tool.exe", b"MZ\x90\x00", "application/octet-stream", 203),  # type not allowed
    ("cat.png", b"#!/bin/sh\nrm -rf /\n", "image/png", 203),     # lying extension
    ("cat.png", PNG, "application/pdf", 203),                     # lying declared type
    ("notes.txt", b"\x00\x01binary", "text/plain", 203),          # not text
    ("noext", b"hello", "text/plain", 203),
    ("big.png", PNG + b"\x00" * 2048, "image/png", 1013),          # over the per-file size
])
async def test_refused_files_are_not_stored(server_config, customer_factory, name, data, ctype,
                                            code):
    from dataclasses import replace

    from tests.conftest import start_server
    server_config.files = replace(server_config.files, max_file_size=2048)
    server = await start_server(server_config)
    try:
        customer = await customer_factory(server.data_url)
        await customer.command("startChat", {"nickname": "Ada"})
        with pytest.raises(CommandError, match=str(code)):
            await customer.command("sendFile", {"data": data, "fileName": name,
                                                "contentType": ctype})
        assert stored_files(server) == ([], 0)
        assert not [m for m in next(iter(server.engine.chats.values())).events
                    if m.type == "FileUploaded"]
    finally:
        await server.runner.cleanup()


async def test_count_and_total_limits(server_config, customer_factory):
    from dataclasses import replace

    from tests.conftest import start_server
    server_config.files = replace(server_config.files, max_files=2, max_total_size=3000,
                                  delete_returns_quota=False)
    server = await start_server(server_config)
    try:
        customer = await customer_factory(server.data_url)
        await customer.command("startChat", {"nickname": "Ada"})
        first = await customer.command("sendFile", {"data": PNG, "fileName": "a.png"})
        with pytest.raises(CommandError, match="202"):  # 2 x 1032 bytes + 1200 > 3000
            await customer.command("sendFile", {"data": PNG + b"\x00" * 1200,
                                                "fileName": "b.png"})
        await customer.command("sendFile", {"data": PNG, "fileName": "c.png"})
        await customer.command("deleteFile", {"fileId": first["userData"]["file-id"]})
        with pytest.raises(CommandError, match="201"):  # deleting does not give quota back
            await customer.command("sendFile", {"data": b"hi", "fileName": "d.txt"})
        blobs, rows = stored_files(server)
        assert (len(blobs), rows) == (1, 2)  # the deleted blob is gone, its row marked
    finally:
        await server.runner.cleanup()


@pytest.fixture
async def strict_server(server_config):
    """Strict HTTP statuses (``--http-errors strict``): each refusal its own status."""
    from dataclasses import replace

    from tests.conftest import start_server
    from webchat.server.config import HttpErrorMode
    server = await start_server(replace(server_config, http_errors=HttpErrorMode.STRICT,
                                        chat_ntf_requires_cookie=True))
    yield server
    await server.runner.cleanup()


async def test_file_endpoints_refuse_bad_requests(strict_server, http, customer_factory):
    server = strict_server
    customer = await customer_factory(server.data_url)
    started = await customer.command("startChat", {"nickname": "Ada"})
    base = f"{server.data_url}/{started['chatId']}"
    ident = {k: started[k] for k in ("userId", "secureKey", "alias")}

    async def post(path: str, data) -> tuple[int, dict]:
        async with http.post(base + path, data=data) as resp:
            return resp.status, await resp.json()

    form = aiohttp.FormData(ident, default_to_multipart=True)
    status, body = await post("/file", form)  # no file part
    assert (status, body["errors"][0]["code"]) == (400, 1003)
    form = aiohttp.FormData(ident)
    form.add_field("file", b"a", filename="a.txt", content_type="text/plain")
    form.add_field("file", b"b", filename="b.txt", content_type="text/plain")
    status, body = await post("/file", form)
    assert body["errors"][0]["code"] == 1005
    status, body = await post("/file", ident)  # not multipart
    assert (status, body["errors"][0]["code"]) == (415, 1011)
    for path in ("/file/0123456789abcdef0123456789abcdef/download", "/file/../../x/download",
                 "/file/%2e%2e/delete"):
        status, body = await post(path, ident)
        assert status in (400, 404) and body["errors"][0]["code"] in (1012, 1014), path
    # Someone else's key cannot read the chat's files.
    status, body = await post("/file/limits", {**ident, "secureKey": "wrong"})
    assert (status, body["errors"][0]["code"]) == (403, 1001)
    # A path in the name is dropped; the file is stored under a random id.
    form = aiohttp.FormData(ident)
    form.add_field("file", b"hello\n", filename="../../etc/passwd.txt",
                   content_type="text/plain")
    status, body = await post("/file", form)
    assert status == 200
    chat = server.engine.chats[started["chatId"]]
    assert [f.name for f in chat.files.values()] == ["passwd.txt"]
    # The download is an attachment that a browser will not render or sniff.
    async with http.post(f"{base}/file/{body['userData']['file-id']}/download",
                         data=ident) as resp:
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.read() == b"hello\n"


async def test_chat_ntf_needs_the_bayeux_cookie_of_a_following_session(strict_server, http,
                                                                       customer_factory):
    """With ``--chat-ntf-cookie`` (off by default: see test_genesys_widgets.py)."""
    server = strict_server
    customer = await customer_factory(server.data_url)
    started = await customer.command("startChat", {"nickname": "Ada"})
    ntf = f"{server.url}/genesys/2/chat-ntf"
    fields = {"operation": "fileGetLimits", "secureKey": started["secureKey"]}
    async with http.post(ntf, data=fields) as resp:
        body = await resp.json()
    assert (resp.status, body["errors"][0]["code"]) == (403, 1001)
    async with http.post(ntf, data={**fields, "operation": "fileExplode"}) as resp:
        assert (await resp.json())["errors"][0]["code"] == 1012
    assert f"/service/chatV2/{SERVICE}"  # the CometD path is covered by test_files_both_ways
