"""Wire formats checked field by field against the examples in shared/spec/protocols.md."""

from __future__ import annotations

import os
import re
import time
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from tests.conftest import start_server
from webchat.protocol.gms.models import ChatResponse, decode_response, encode

SPEC = Path(os.environ.get("WEBCHAT_SPEC") or
            Path(__file__).resolve().parents[2] / "shared" / "spec" / "protocols.md")


def rest_examples() -> list[dict]:
    """The JSON chat responses of protocols.md §1.11, parsed."""
    if not SPEC.exists():
        if os.environ.get("CI"):
            pytest.fail(f"spec digest not found at {SPEC}: CI must have shared/ beside the clone")
        pytest.skip(f"spec digest not found at {SPEC}")
    text = SPEC.read_text("utf-8")
    section = text.split("### 1.11 Examples (REST)", 1)[1].split("### 1.12", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    assert len(blocks) == 4, "the spec's REST examples changed; revisit this test"
    return [msgspec.json.decode(b) for b in blocks]


def test_spec_examples_round_trip_through_our_models():
    for example in rest_examples():
        decoded = decode_response(msgspec.json.encode(example))
        assert msgspec.json.decode(encode(decoded)) == example


def test_spec_error_example_has_our_error_shape():
    error = rest_examples()[3]
    assert set(error) == {"statusCode", "chatId", "errors"}
    assert error["statusCode"] != 0
    assert set(error["errors"][0]) == {"code", "advice"}


async def test_request_chat_reply_matches_spec_example(server_config, http):
    running = await start_server(replace(server_config, api_keys=("demo-key",)))
    try:
        body = ("firstName=Ada&lastName=Byron&emailAddress=ada%40example.org"
                "&subject=Invoice+question&userData%5BGCTI_LanguageCode%5D=en")
        before = int(time.time() * 1000)
        async with http.post(running.data_url, data=body, headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "apikey": "demo-key"}) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            reply = msgspec.json.decode(await resp.read())
        spec = rest_examples()[0]
        # Every field of the spec's reply is present with the same type.
        for key, value in spec.items():
            assert type(reply[key]) is type(value), key
        assert reply["statusCode"] == 0
        assert re.fullmatch(r"[0-9A-F]{16}", reply["userId"])
        assert len(reply["secureKey"]) >= 16
        first, spec_first = reply["messages"][0], spec["messages"][0]
        assert set(first) == set(spec_first)
        assert first["from"] == {"nickname": "Ada Byron", "participantId": 1, "type": "Client"}
        assert (first["index"], first["type"]) == (1, "ParticipantJoined")
        assert before <= first["utcTime"] <= int(time.time() * 1000)  # epoch milliseconds
        assert reply["nextPosition"] == len(reply["messages"]) + 1
        chat = running.engine.chats[reply["chatId"]]
        assert chat.user_data == {"GCTI_LanguageCode": "en"}
        assert chat.customer["emailAddress"] == "ada@example.org"
    finally:
        await running.runner.cleanup()


async def test_refresh_reply_matches_spec_example(server, http, agent_factory):
    await server.add_agent("grace", nickname="Grace")
    async with http.post(server.data_url, data={"nickname": "Ada"}) as resp:
        chat = await resp.json()
    agent = await agent_factory(server.url, "grace")
    await agent.client.accept(chat["chatId"])
    await agent.client.send(chat["chatId"], "Hello Ada, how can I help?")
    await agent.client.typing(chat["chatId"], True)
    form = {"userId": chat["userId"], "secureKey": chat["secureKey"], "alias": chat["alias"],
            "transcriptPosition": "3"}
    async with http.post(f"{server.data_url}/{chat['chatId']}/refresh", data=form) as resp:
        reply = msgspec.json.decode(await resp.read())
    spec = rest_examples()[1]
    assert set(spec) <= set(reply)
    assert reply["chatEnded"] is False
    assert [m["index"] for m in reply["messages"]] == [3, 4, 5]
    assert reply["nextPosition"] == 6
    joined, said, typing = reply["messages"]
    spec_joined, spec_said, spec_typing = spec["messages"]
    for ours, theirs in ((joined, spec_joined), (said, spec_said), (typing, spec_typing)):
        assert set(ours) == set(theirs)
        assert ours["type"] == theirs["type"]
        assert ours["from"] == {"nickname": "Grace", "participantId": 3, "type": "Agent"}
    assert said["text"] == "Hello Ada, how can I help?"
    # The same position again gives the same events: refresh is idempotent.
    async with http.post(f"{server.data_url}/{chat['chatId']}/refresh", data=form) as resp:
        again = msgspec.json.decode(await resp.read())
    assert again["messages"] == reply["messages"]


async def test_send_with_position_echoes_transcript(server, http):
    async with http.post(server.data_url, data={"nickname": "Ada"}) as resp:
        chat = await resp.json()
    form = {"userId": chat["userId"], "secureKey": chat["secureKey"], "alias": chat["alias"],
            "message": "hi", "messageType": "text", "transcriptPosition": "1"}
    async with http.post(f"{server.data_url}/{chat['chatId']}/send", data=form) as resp:
        reply = msgspec.json.decode(await resp.read(), type=ChatResponse)
    assert reply.messages is not None
    assert [m.type for m in reply.messages] == ["ParticipantJoined", "Notice", "Message"]
    assert (reply.messages[-1].text, reply.messages[-1].messageType) == ("hi", "text")
    # Without a position the reply carries no transcript, only where it ends.
    form.pop("transcriptPosition")
    async with http.post(f"{server.data_url}/{chat['chatId']}/send", data=form) as resp:
        bare = msgspec.json.decode(await resp.read(), type=ChatResponse)
    assert bare.messages is None
    assert bare.nextPosition == 5


async def test_openapi_document_is_served(server, http):
    async with http.get(f"{server.url}/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert "/genesys/2/chat/{service}/{chatId}/refresh" in doc["paths"]
    assert "/agent/v1/chats/{chatId}/transfer" in doc["paths"]
