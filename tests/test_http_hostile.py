"""Hostile HTTP clients over raw sockets (issue 12): slow heads, slow or truncated bodies,
clients that leave mid-body, and cross-site pages against the agent API. Each test fails on
the code before its fix."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import RunningServer, start_server
from webchat.server.config import ServerConfig

Started = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def tuned(server_config: ServerConfig) -> AsyncIterator[Started]:
    running: list[RunningServer] = []

    async def start(**changes: Any) -> RunningServer:
        running.append(await start_server(replace(server_config, **changes)))
        return running[-1]

    yield start
    for server in running:
        await server.runner.cleanup()


async def raw(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def closed_while_trickling(writer: asyncio.StreamWriter, reader: asyncio.StreamReader,
                                 pieces: list[bytes]) -> bytes:
    """Send ``pieces`` slowly; returns what the server answered once it closed the
    connection, or fails when every piece went out and the server still waited."""
    answer = b""
    for piece in pieces:
        try:
            writer.write(piece)
            await writer.drain()
        except ConnectionError:
            return answer
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 0.1)
        except TimeoutError:
            continue
        except ConnectionError:
            return answer
        answer += chunk
        if not chunk:
            return answer
    pytest.fail(f"the server still holds the connection after {len(pieces)} pieces")


async def test_a_slow_request_head_is_cut_off(tuned):
    server = await tuned(header_timeout_s=0.3)
    reader, writer = await raw(server)
    head = [b"POST /genesys/cometd HTTP/1.1\r\n"] + [f"X-{n}: y\r\n".encode()
                                                      for n in range(100)]
    assert await closed_while_trickling(writer, reader, head) == b""
    writer.close()


@pytest.mark.parametrize("path", ["/genesys/cometd", "/genesys/2/chat/customer-support",
                                  "/agent/v1/login"])
async def test_a_slow_body_is_answered_408_and_closed(tuned, path):
    server = await tuned(body_timeout_s=0.3)
    reader, writer = await raw(server)
    ctype = "application/json" if "chat/" not in path else "application/x-www-form-urlencoded"
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: 1000\r\n\r\n").encode()
    answer = await closed_while_trickling(writer, reader, [head] + [b"x"] * 100)
    assert answer.startswith(b"HTTP/1.1 408 ") or b" 400 " in answer.split(b"\r\n")[0]
    writer.close()


async def test_a_content_length_larger_than_the_body_is_answered(tuned):
    """A truncated body on a connection kept open looks like a slow one: 408 at the deadline,
    not a request held for ever."""
    server = await tuned(body_timeout_s=0.3)
    reader, writer = await raw(server)
    writer.write(b"POST /genesys/cometd HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 100\r\n\r\n[{}]")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    assert answer.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_a_client_leaving_mid_body_logs_no_traceback(server, caplog):
    caplog.set_level(logging.DEBUG)
    for path in ("/genesys/cometd", "/genesys/2/chat/customer-support", "/agent/v1/login"):
        _, writer = await raw(server)
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 1000\r\n\r\n[".encode())
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]


async def test_responses_name_no_server_version_and_json_is_nosniff(server, http):
    async with http.get(f"{server.url}/healthz") as resp:
        assert "aiohttp" not in resp.headers.get("Server", "")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    async with http.get(f"{server.url}/webchat/webchat.js") as resp:
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


# ---- CORS ----------------------------------------------------------------------------------

EVIL = "https://evil.example"


async def test_the_agent_api_is_same_origin_by_default(server, http):
    await server.add_agent("grace", "secret")
    login = f"{server.url}/agent/v1/login"
    async with http.options(login, headers={"Origin": EVIL,
                                            "Access-Control-Request-Method": "POST"}) as resp:
        assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    # The cross-site form POST a browser sends without preflight: refused, and unreadable.
    async with http.post(login, data='{"username":"grace","password":"secret"}',
                         headers={"Origin": EVIL, "Content-Type": "text/plain"}) as resp:
        assert resp.status == 415
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with http.post(login, json={"username": "grace", "password": "secret"},
                         headers={"Origin": EVIL}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_the_customer_side_answers_any_origin_the_agent_api_only_listed_ones(tuned, http):
    """The Genesys widgets' CometD long-polling is credentialed: the customer side echoes any
    allowed origin with credentials (nothing there is authorized by a cookie alone). The agent
    API, whose bearer token a console keeps, answers only origins listed for it."""
    server = await tuned(cors_origins=("*",), agent_cors_origins=("https://console.example",))
    for url in (server.data_url, f"{server.url}/genesys/cometd/handshake"):
        async with http.options(url, headers={
                "Origin": EVIL, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"}) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == EVIL
            assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    async with http.options(f"{server.url}/agent/v1/login", headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST"}) as resp:
        assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    async with http.options(f"{server.url}/agent/v1/login", headers={
            "Origin": "https://console.example", "Access-Control-Request-Method": "POST"}
                            ) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "https://console.example"
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
