"""Per-chat bounds: a transcript stops growing at ``max_chat_events`` / ``max_chat_bytes``.

One address kept 20 queued chats sending at the allowed rate and grew the server by 355 MB of
RSS a minute; no chat may grow without end, whoever writes to it.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

import msgspec
import pytest

from tests.conftest import accepted_chat, start_server
from webchat.server.config import HttpErrorMode, Limits
from webchat.transport.agent import AgentApiError

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FAST = Limits(chat_op_rate=(1000.0, 1000))


async def post(http, url, fields):
    async with http.post(url, data=urlencode(fields), headers=FORM) as resp:
        return resp.status, msgspec.json.decode(await resp.read())


async def start(http, server):
    status, chat = await post(http, server.data_url, {"nickname": "Ada"})
    assert status == 200, chat
    ident = {"userId": chat["userId"], "secureKey": chat["secureKey"], "alias": chat["alias"]}
    return chat["chatId"], ident


async def send_until_refused(http, server, chat_id, ident, text, most=200):
    """Send messages until the server refuses one: the refusal."""
    for n in range(most):
        status, reply = await post(http, f"{server.data_url}/{chat_id}/send",
                                   {**ident, "message": f"{text} {n}"})
        if reply["statusCode"] != 0:
            return status, reply
    raise AssertionError(f"{most} messages and no refusal")


@pytest.mark.parametrize("limits", [
    replace(FAST, max_chat_events=12),
    replace(FAST, max_chat_bytes=4000),
], ids=["events", "bytes"])
async def test_a_full_transcript_refuses_more_with_1017(server_config, http, limits):
    server = await start_server(replace(server_config, limits=limits,
                                        http_errors=HttpErrorMode.STRICT))
    try:
        chat_id, ident = await start(http, server)
        status, reply = await send_until_refused(http, server, chat_id, ident, "x" * 300)
        assert (status, [e["code"] for e in reply["errors"]]) == (413, [1017])
        assert reply["statusCode"] == 2  # sending again will not help
        chat = server.engine.chats[chat_id]
        if limits.max_chat_events < 100:
            assert len(chat.events) == limits.max_chat_events
        else:  # the last event in may pass the byte bound by its own size, no more
            size = len(b"".join(msgspec.json.encode(m) for m in chat.events))
            assert limits.max_chat_bytes <= size < limits.max_chat_bytes + 500
        # Everything else a participant adds is refused too; nothing was stored.
        before = len(chat.events)
        for op, fields in (("startTyping", {}), ("customNotice", {"message": "hi"}),
                           ("updateNickname", {"nickname": "Bo"}),
                           ("pushUrl", {"pushUrl": "https://example.com/"})):
            status, reply = await post(http, f"{server.data_url}/{chat_id}/{op}",
                                       {**ident, **fields})
            assert [e["code"] for e in reply["errors"]] == [1017], (op, reply)
        assert len(server.engine.chats[chat_id].events) == before
        assert chat.customer["nickname"] == "Ada"  # the refused rename changed nothing
        # ...but the customer still reads the transcript, typing preview or not, and can leave.
        status, reply = await post(http, f"{server.data_url}/{chat_id}/refresh",
                                   {**ident, "message": "typed"})
        assert reply["statusCode"] == 0 and len(reply["messages"]) == before
        status, reply = await post(http, f"{server.data_url}/{chat_id}/disconnect", ident)
        assert reply["statusCode"] == 0 and reply["chatEnded"] is True
    finally:
        await server.runner.cleanup()


async def test_a_full_chat_can_still_be_answered_refused_and_closed_by_its_agent(
        server_config, customer_factory, agent_factory):
    server = await start_server(replace(server_config, limits=replace(FAST,
                                                                      max_chat_events=10)))
    try:
        customer = await customer_factory(server.data_url)
        agent, chat_id = await accepted_chat(server, customer, agent_factory)
        while len(server.engine.chats[chat_id].events) < 10:
            await agent.client.send(chat_id, "filling")
        with pytest.raises(AgentApiError) as refused:
            await agent.client.send(chat_id, "one too many")
        assert (refused.value.status, refused.value.code) == (413, "transcript_full")
        await agent.client.end(chat_id)  # leaving is always recorded
        await customer.wait_event("ended")
        assert server.engine.chats[chat_id].ended
    finally:
        await server.runner.cleanup()

