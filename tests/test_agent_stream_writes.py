"""Chat writes sent on the agent event stream (``/agent/v1/events``): the same commands as the
REST calls, with the same answers and refusals, the token checked for each, in the order sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp
import msgspec
import pytest

from tests.conftest import RunningServer
from tests.test_agent_security import accepted, agent_call, token_of


class Stream:
    """An agent's event stream, its events and the replies to its writes, by id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.replies: dict[Any, dict[str, Any]] = {}
        self.order: list[Any] = []

    async def write(self, id_: Any, op: str, chat_id: str, body: Any = None) -> None:
        frame: dict[str, Any] = {"id": id_, "op": op, "chatId": chat_id}
        if body is not None:
            frame["body"] = body
        await self.ws.send_str(msgspec.json.encode(frame).decode())

    async def reply(self, id_: Any, within: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while id_ not in self.replies:
                await self._next()
        return self.replies[id_]

    async def _next(self) -> None:
        frame = await self.ws.receive()
        assert frame.type is aiohttp.WSMsgType.TEXT, frame
        event = msgspec.json.decode(frame.data)
        if event.get("type") == "reply":
            self.replies[event["id"]] = event
            self.order.append(event["id"])
        else:
            self.events.append(event)


async def open_stream(http: aiohttp.ClientSession, server: RunningServer, token: str
                      ) -> tuple[aiohttp.ClientWebSocketResponse, Stream]:
    ws = await http.ws_connect(server.url.replace("http", "ws", 1) + "/agent/v1/events",
                               params={"token": token})
    assert (await ws.receive_json())["type"] == "hello"
    return ws, Stream(ws)


async def transcript(http: aiohttp.ClientSession, server: RunningServer, token: str,
                     chat_id: str) -> list[str]:
    status, body = await agent_call(http, server, "GET", f"/chats/{chat_id}", token)
    assert status == 200, body
    return [m["text"] for m in body["messages"] if m["type"] == "Message"]


async def test_a_message_sent_on_the_stream_reaches_the_transcript_and_is_answered(
        server, http):
    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    chat_id = await accepted(server, http, token)
    ws, stream = await open_stream(http, server, token)
    async with ws:
        await stream.write(1, "send", chat_id, {"text": "hello from the stream"})
        assert await stream.reply(1) == {"type": "reply", "id": 1, "ok": True, "result": None}
        # The agent hears its own message as an event, before the reply.
        assert any(e.get("message", {}).get("text") == "hello from the stream"
                   for e in stream.events)
    assert (await transcript(http, server, token, chat_id))[-1] == "hello from the stream"


async def test_writes_to_one_chat_keep_the_order_they_were_sent_in(server, http):
    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    chat_id = await accepted(server, http, token)
    ws, stream = await open_stream(http, server, token)
    async with ws:
        for n in range(30):
            await stream.write(f"m{n}", "send", chat_id, {"text": f"line {n}"})
        for n in range(30):
            assert (await stream.reply(f"m{n}"))["ok"]
    assert await transcript(http, server, token, chat_id) == [f"line {n}" for n in range(30)]


@pytest.mark.parametrize(("op", "body"), [
    ("send", {"text": ""}),                      # empty text
    ("send", {"text": "x", "colour": "red"}),    # an unknown field
    ("send", {"text": 5}),                       # not a string
    ("pushUrl", {"url": "javascript:alert(1)"}),
    ("typing", {"typing": True, "preview": "x" * 20_000}),  # over the message limit
])
async def test_a_refused_write_gets_the_rest_calls_status_and_error(server, http, op, body):
    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    chat_id = await accepted(server, http, token)
    rest_status, rest_body = await agent_call(http, server, "POST", f"/chats/{chat_id}/{op}",
                                              token, body)
    ws, stream = await open_stream(http, server, token)
    async with ws:
        await stream.write(7, op, chat_id, body)
        reply = await stream.reply(7)
    assert rest_status >= 400
    assert reply["ok"] is False
    assert reply["status"] == rest_status
    assert reply["error"]["code"] == rest_body["error"]["code"]


async def test_a_chat_of_another_agent_is_refused_on_the_stream_as_on_rest(server, http):
    await server.add_agent("grace")
    await server.add_agent("ada")
    grace = await token_of(http, server, "grace")
    ada = await token_of(http, server, "ada")
    chat_id = await accepted(server, http, grace)
    rest_status, _ = await agent_call(http, server, "POST", f"/chats/{chat_id}/send", ada,
                                      {"text": "not mine"})
    ws, stream = await open_stream(http, server, ada)
    async with ws:
        await stream.write(1, "send", chat_id, {"text": "not mine"})
        reply = await stream.reply(1)
    assert rest_status in (403, 404, 409)
    assert (reply["ok"], reply["status"]) == (False, rest_status)
    assert "not mine" not in await transcript(http, server, grace, chat_id)


@pytest.mark.parametrize("frame", [
    "not json", '{"op": "send"}', '{"id": 3, "op": "fly", "chatId": "c"}',
    '{"id": 4, "op": "send", "chatId": "c", "body": {}, "extra": 1}',
    '{"id": {"deep": 1}, "op": "send", "chatId": "c"}',
    '{"id": 5, "op": "send", "chatId": "' + "c" * 500 + '"}',
])
async def test_a_malformed_write_is_answered_400_and_the_stream_goes_on(server, http, frame):
    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    chat_id = await accepted(server, http, token)
    ws, stream = await open_stream(http, server, token)
    async with ws:
        await ws.send_str(frame)
        async with asyncio.timeout(5):
            while not stream.order:
                await stream._next()
        reply = stream.replies[stream.order[0]]
        assert (reply["ok"], reply["status"], reply["error"]["code"]) == \
            (False, 400, "bad_request")
        await stream.write(9, "send", chat_id, {"text": "still here"})
        assert (await stream.reply(9))["ok"]


async def test_a_write_after_logout_is_refused_though_the_stream_was_open(server, http):
    """The token is checked for every write, not only when the stream opened: revoked behind
    the stream's back (its watchdog not woken), a write is refused."""
    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    chat_id = await accepted(server, http, token)
    ws, stream = await open_stream(http, server, token)
    async with ws:
        accounts = server.app[_accounts_key()]
        await accounts.logout(token)  # revoked, the stream not yet closed by its watchdog
        await stream.write(1, "send", chat_id, {"text": "after logout"})
        reply = await stream.reply(1)
    assert (reply["ok"], reply["status"]) == (False, 401)
    other = await token_of(http, server, "grace")
    assert "after logout" not in await transcript(http, server, other, chat_id)


def _accounts_key() -> Any:
    from webchat.server.app import ACCOUNTS
    return ACCOUNTS


async def test_accept_and_end_on_the_stream_answer_what_rest_answers(server, http):
    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    async with http.post(server.data_url, data={"nickname": "Ada"}) as resp:
        chat_id = str(msgspec.json.decode(await resp.read())["chatId"])
    ws, stream = await open_stream(http, server, token)
    async with ws:
        await stream.write(1, "accept", chat_id)
        accepted_reply = await stream.reply(1)
        assert accepted_reply["ok"], accepted_reply
        assert accepted_reply["result"]["chatId"] == chat_id
        assert accepted_reply["result"]["messages"]
        await stream.write(2, "end", chat_id)
        assert (await stream.reply(2))["ok"]
        await stream.write(3, "send", chat_id, {"text": "too late"})
        late = await stream.reply(3)
    status, _ = await agent_call(http, server, "POST", f"/chats/{chat_id}/send", token,
                                 {"text": "too late"})
    assert (late["ok"], late["status"]) == (False, status)


async def test_a_write_under_way_when_the_stream_closes_is_completed_not_cut(server, http):
    """A console closing (a reload, a lost network) while its write is being committed: the
    message is written whole, as a REST call's would be."""
    from webchat.server.app import AGENT_API

    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    chat_id = await accepted(server, http, token)
    api = server.app[AGENT_API]
    send = api.chat_commands["send"]

    async def slow(agent_id: str, chat: str, body: Any) -> Any:
        await asyncio.sleep(0.5)  # still under way when the stream closes
        return await send.run(agent_id, chat, body)

    api.chat_commands["send"] = replace(send, run=slow)
    ws, stream = await open_stream(http, server, token)
    await stream.write(1, "send", chat_id, {"text": "sent as the tab closed"})
    await asyncio.sleep(0.1)
    await ws.close()
    await asyncio.sleep(1.5)  # the slowed write (0.5 s) has long been committed
    assert (await transcript(http, server, token, chat_id))[-1] == "sent as the tab closed"
