"""Interop: the official CometD JavaScript client (in Node, via cometd-nodejs-client) chats
through our server over WebSocket and long-polling, with the ack extension on, including a
connection the server drops mid-chat."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import NodeClient
from webchat.server.app import COMETD


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
async def test_official_cometd_client_chats(server, node, agent_factory, transport):
    await server.add_agent("grace", nickname="Grace")
    client = await NodeClient.chat(node, f"{server.url}/genesys/cometd", transport)
    try:
        hs = await client.expect("handshake", successful=True)
        assert hs["transport"] == transport
        await client.expect("subscribed", successful=True)
        await client.expect("published", successful=True)
        started = await client.expect("started")
        chat_id = started["chatId"]
        assert server.engine.chats[chat_id].user_data == {"client": "cometd-js"}

        agent = await agent_factory(server.url, "grace")
        accepted = await agent.client.accept(chat_id)
        agent.client.track(chat_id, accepted["nextPosition"])
        await client.expect("message", type="ParticipantJoined", **{"from": "Agent"})
        await agent.client.send(chat_id, "hello from the agent")
        await client.expect("message", text="hello from the agent")

        await client.send({"operation": "sendMessage", "message": "hi from node"})
        await client.expect("published", operation="sendMessage", successful=True)
        await agent.wait_for(lambda ev: any(
            e.get("message", {}).get("text") == "hi from node" for e in ev))

        if transport == "websocket":
            # The server drops the connection; the client reconnects with its session and
            # the ack extension re-sends whatever was in flight.
            for ws in list(server.app[COMETD].sockets):
                await ws.close(code=1006)
            await asyncio.sleep(0.2)
        await agent.client.send(chat_id, "after the drop")
        await client.expect("message", text="after the drop")
        await agent.client.end(chat_id)
        indexes = await client.ended_in_order()  # every event once, in order
        assert indexes[-1] == server.engine.chats[chat_id].next_index - 1
    finally:
        await client.close()
