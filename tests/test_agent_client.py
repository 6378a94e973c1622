"""The Python agent client when what answers is not the server: a load balancer whose server
is gone answers with its own HTML error page (nginx's ``502 Bad Gateway``).

Found by the chaos test (tests/test_cluster_chaos.py): a send made through nginx while its
process was being killed raised ``msgspec.DecodeError`` instead of :class:`AgentApiError`,
which neither the bot nor the event stream's reconnect loop catch: the stream, catching up
after a reconnect, stopped for good. The front here is scripted (only a proxy produces such
replies); everything else about the client is real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import AgentRecorder
from webchat.transport.agent import AgentApiError, AgentClient

BAD_GATEWAY = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
               b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1"
               b"</center>\r\n</body>\r\n</html>\r\n")


async def bad_gateway(_: web.Request | None = None) -> web.Response:
    return web.Response(status=502, body=BAD_GATEWAY, content_type="text/html")


@pytest.fixture
async def front() -> AsyncIterator[Callable[[web.Application], Any]]:
    """Serve a scripted front on a loopback port; yields ``start(app) -> base URL``."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def login(_: web.Request) -> web.Response:
    return web.json_response({"token": "t", "agentId": "grace", "expiresInS": 3600})


async def test_a_gateway_error_page_is_an_api_error(front):
    app = web.Application()
    app.router.add_post("/agent/v1/login", login)
    app.router.add_route("*", "/agent/v1/{tail:.*}", bad_gateway)
    client = AgentClient(await front(app), "grace", "pw")
    try:
        await client.login()
        with pytest.raises(AgentApiError) as refused:
            await client.send("C1", "hello")
        assert refused.value.status == 502
    finally:
        await client.close()


async def test_the_stream_catches_up_after_a_gateway_error_while_catching_up(front):
    """The stream says the agent's chat moved on while it was away; the first fetch of what
    it missed meets the front's 502 page, the next one the server: the client reconnects and
    delivers the missed events, once, in order."""
    fetches: list[str] = []

    async def events(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "agentId": "grace",
                            "chats": [{"chatId": "C1", "nextPosition": 5}]})
        async for _ in ws:
            pass
        return ws

    async def chat(request: web.Request) -> web.Response:
        fetches.append(request.query["from"])
        if len(fetches) == 1:
            return await bad_gateway()
        sender = {"nickname": "Ada", "participantId": 1, "type": "Client"}
        return web.json_response({"chatId": "C1", "messages": [
            {"index": i, "type": "Message", "text": f"m{i}", "from": sender, "utcTime": 1}
            for i in (3, 4)]})

    app = web.Application()
    app.router.add_post("/agent/v1/login", login)
    app.router.add_get("/agent/v1/events", events)
    app.router.add_get("/agent/v1/chats/C1", chat)
    client = AgentClient(await front(app), "grace", "pw")
    recorder = AgentRecorder(client)
    try:
        await client.login()
        client.track("C1", 3)
        client.listen(recorder.handle, retry_s=0.05)
        await recorder.wait_for(lambda _: len(recorder.messages("C1")) == 2)
        assert [m["index"] for m in recorder.messages("C1")] == [3, 4]
        assert fetches == ["3", "3"]
        assert client.positions["C1"] == 5
    finally:
        await client.close()

