"""The CometD endpoint over real sockets, driven with raw Bayeux frames (protocols.md §2, §3)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from dataclasses import replace

import aiohttp
import msgspec
import pytest

from tests.conftest import SERVICE, start_server
from webchat.server.app import COMETD

CHANNEL = f"/service/chatV2/{SERVICE}"
HANDSHAKE = {"channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
             "supportedConnectionTypes": ["websocket", "long-polling"],
             "advice": {"timeout": 60000, "interval": 0}, "ext": {"ack": True}}


class LongPoll:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.ids = 0
        self.client_id = ""
        self.ack = 0

    async def post(self, suffix: str, *messages: dict) -> tuple[int, list[dict]]:
        batch = []
        for m in messages:
            self.ids += 1
            batch.append({"id": str(self.ids), **({"clientId": self.client_id}
                                                  if self.client_id else {}), **m})
        async with self.http.post(self.url + suffix, data=msgspec.json.encode(batch),
                                  headers={"Content-Type": "application/json"}) as resp:
            body = await resp.read()
            return resp.status, (msgspec.json.decode(body) if resp.status == 200 else [])

    async def handshake(self) -> dict:
        status, [reply] = await self.post("/handshake", HANDSHAKE)
        assert status == 200 and reply["successful"], reply
        self.client_id = reply["clientId"]
        return reply

    async def connect(self, hold_ms: int | None = None) -> list[dict]:
        msg: dict = {"channel": "/meta/connect", "connectionType": "long-polling",
                     "ext": {"ack": self.ack}}
        if hold_ms is not None:
            msg["advice"] = {"timeout": hold_ms}
        _, replies = await self.post("/connect", msg)
        if replies and isinstance(replies[0].get("ext", {}).get("ack"), int):
            self.ack = replies[0]["ext"]["ack"]
        return replies


@pytest.fixture
def cometd_url(server):
    return f"{server.url}/genesys/cometd"


async def test_long_polling_chat_flow_matches_spec(server, http, cometd_url, agent_factory):
    await server.add_agent("grace", nickname="Grace")
    lp = LongPoll(http, cometd_url)
    hs = await lp.handshake()
    assert hs["version"] == "1.0"
    assert hs["advice"]["reconnect"] == "retry"
    assert hs["ext"] == {"ack": True}
    assert "BAYEUX_BROWSER" in {c.key for c in http.cookie_jar}
    first = await lp.connect(hold_ms=0)
    assert first[0]["successful"] is True and "advice" in first[0]
    _, [sub] = await lp.post("", {"channel": "/meta/subscribe", "subscription": CHANNEL})
    assert sub["successful"] is True
    _, [ack] = await lp.post("", {"channel": CHANNEL, "data": {
        "operation": "requestChat", "nickname": "Ada", "userData": {"orderId": "A-1"}}})
    assert ack == {"id": ack["id"], "channel": CHANNEL, "successful": True}  # no data in acks
    replies = await lp.connect()
    delivery = replies[1]
    assert delivery["channel"] == CHANNEL and "successful" not in delivery
    chat = delivery["data"]
    assert chat["statusCode"] == 0 and chat["secureKey"]
    assert chat["messages"][0]["type"] == "ParticipantJoined"
    assert server.engine.chats[chat["chatId"]].user_data == {"orderId": "A-1"}

    # An agent's message is pushed on the held connect.
    agent = await agent_factory(server.url, "grace")
    held = asyncio.create_task(lp.connect())
    await asyncio.sleep(0.05)
    await agent.client.accept(chat["chatId"])
    pushed = await asyncio.wait_for(held, 5)
    assert pushed[0]["channel"] == "/meta/connect"
    assert pushed[1]["data"]["messages"][0]["type"] == "ParticipantJoined"
    assert pushed[1]["data"]["messages"][0]["from"]["nickname"] == "Grace"

    # Operations by secureKey alone, as a server-side integration posts them (bare object).
    _, [ok] = await lp.post("", {"channel": CHANNEL, "data": {
        "operation": "sendMessage", "message": "hello", "secureKey": chat["secureKey"]}})
    assert ok["successful"] is True
    await agent.wait_for(lambda ev: any(e.get("message", {}).get("text") == "hello"
                                        for e in ev))


async def test_unknown_session_gets_402_and_the_cookie_is_not_needed(server, http, cometd_url):
    lp = LongPoll(http, cometd_url)
    lp.client_id = "forged"
    [reply] = await lp.connect()
    assert reply["successful"] is False
    assert reply["error"].startswith("402::")
    assert reply["advice"]["reconnect"] == "handshake"
    await lp.handshake()
    # Cross-origin long-polling (the Genesys widgets) sends no cookie: the clientId is the
    # session's credential, as in CometD.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as cookieless:
        browser = LongPoll(cookieless, cometd_url)
        browser.client_id = lp.client_id
        [reply] = await browser.connect(hold_ms=0)
        assert reply["successful"] is True, reply


async def test_browser_cookie_binding_on_request(server_config, http):
    from dataclasses import replace

    from tests.conftest import start_server
    config = replace(server_config, cometd=replace(server_config.cometd,
                                                   require_browser_cookie=True))
    running = await start_server(config)
    try:
        url = f"{running.url}/genesys/cometd"
        lp = LongPoll(http, url)
        await lp.handshake()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
            thief = LongPoll(other, url)
            thief.client_id = lp.client_id
            [stolen] = await thief.connect()
            assert stolen["error"].startswith("402::")
        [reply] = await lp.connect(hold_ms=0)
        assert reply["successful"] is True
    finally:
        await running.runner.cleanup()


async def test_bad_frames(server, http, cometd_url):
    async with http.post(cometd_url, data=b"{not json",
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    lp = LongPoll(http, cometd_url)
    await lp.handshake()
    _, replies = await lp.post("", {"data": {}}, {"channel": "/bad channel!", "data": 1},
                               {"channel": "/meta/subscribe", "subscription": "/meta/connect"},
                               {"channel": "/foo/*", "data": 1})
    assert [r["successful"] for r in replies] == [False] * 4
    assert [r["error"].split(":")[0] for r in replies] == ["400", "405", "403", "405"]


async def test_cannot_drive_another_chat(server, http, cometd_url):
    lp = LongPoll(http, cometd_url)
    await lp.handshake()
    await lp.connect(hold_ms=0)
    await lp.post("", {"channel": CHANNEL, "data": {"operation": "sendMessage",
                                                    "message": "hi", "secureKey": "guess"}})
    replies = await lp.connect()
    error = replies[1]["data"]
    assert error["statusCode"] != 0 and error["errors"][0]["code"] == 1001
    assert "chatId" not in error


async def test_websocket_chat_and_ack(server, http, cometd_url):
    async with http.ws_connect(cometd_url.replace("http", "ws")) as ws:
        await ws.send_str(msgspec.json.encode([{"id": "1", **HANDSHAKE}]).decode())
        [hs] = msgspec.json.decode((await ws.receive()).data)
        assert hs["successful"] and hs["ext"] == {"ack": True}
        cid = hs["clientId"]
        await ws.send_str(msgspec.json.encode([
            {"id": "2", "channel": "/meta/connect", "clientId": cid,
             "connectionType": "websocket", "advice": {"timeout": 0}, "ext": {"ack": 0}}]
        ).decode())
        [connected] = msgspec.json.decode((await ws.receive()).data)
        assert connected["ext"]["ack"] == 1
        await ws.send_str(msgspec.json.encode([
            {"id": "3", "channel": CHANNEL, "clientId": cid,
             "data": {"operation": "requestChat", "nickname": "Ada"}},
            {"id": "4", "channel": "/meta/connect", "clientId": cid,
             "connectionType": "websocket", "ext": {"ack": 1}}]).decode())
        frames = []
        while not any(m.get("data") for f in frames for m in f):
            frames.append(msgspec.json.decode((await ws.receive()).data))
        flat = [m for f in frames for m in f]
        assert flat[0] == {"id": "3", "channel": CHANNEL, "successful": True}
        delivery = next(m for m in flat if m.get("data"))
        assert delivery["data"]["messages"][0]["type"] == "ParticipantJoined"
        batch = next(m for m in flat if m["channel"] == "/meta/connect")["ext"]["ack"]
        assert batch == 2
    # A handshake batched with other messages is a protocol violation on WebSocket.
    async with http.ws_connect(cometd_url.replace("http", "ws")) as ws:
        await ws.send_str(msgspec.json.encode([HANDSHAKE, {"channel": "/meta/connect"}])
                          .decode())
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1011


async def test_more_bad_input(server, http, cometd_url):
    lp = LongPoll(http, cometd_url)
    # No clientId at all.
    _, [reply] = await lp.post("", {"channel": "/meta/connect", "connectionType": "long-polling"})
    assert reply["error"].startswith("402::")
    # Oversized body.
    big = b"[" + b'{"channel":"/x","data":"' + b"a" * 300_000 + b'"}]'
    async with http.post(cometd_url, data=big, headers={"Content-Type": "application/json"}
                         ) as resp:
        assert resp.status == 413
    async with http.get(cometd_url) as resp:
        assert resp.status == 405
    # Form-encoded long-polling needs a message parameter.
    async with http.post(cometd_url, data={"nothing": "here"}) as resp:
        assert resp.status == 400
    await lp.handshake()
    await lp.connect(hold_ms=0)
    # Another service's channel and a malformed operation are refused in the publish reply.
    _, [other] = await lp.post("", {"channel": "/service/chatV2/other-service",
                                    "data": {"operation": "requestChat", "nickname": "A"}})
    assert other["successful"] is False and other["error"].startswith("400:1008:")
    _, [bad] = await lp.post("", {"channel": CHANNEL, "data": ["not", "an", "object"]})
    assert bad["successful"] is False and bad["error"].startswith("400:1005:")
    _, [nodata] = await lp.post("", {"channel": CHANNEL})
    assert nodata["successful"] is False


async def test_websocket_bad_frames(server, http, cometd_url):
    ws_url = cometd_url.replace("http", "ws")
    for payload, code in [("{not json", 1011), (b"\x00binary", 1003),
                          ("[" + '{"channel":"/x","data":"' + "a" * 300_000 + '"}]', 1009)]:
        async with http.ws_connect(ws_url) as ws:
            if isinstance(payload, bytes):
                await ws.send_bytes(payload)
            else:
                await ws.send_str(payload)
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == code, (payload[:20], msg)


async def test_handshake_flood_is_refused(server, http, cometd_url):
    replies = []
    for _ in range(60):
        _, [reply] = await LongPoll(http, cometd_url).post("/handshake", HANDSHAKE)
        replies.append(reply)
    refused = [r for r in replies if not r["successful"]]
    assert refused and refused[-1]["error"] == "403::handshake_denied"
    assert len(server.app[COMETD].bayeux.sessions) <= 50


async def test_sessions_see_only_their_own_chat(server, http, cometd_url):
    async def start(name: str) -> tuple[LongPoll, dict]:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        lp = LongPoll(session, cometd_url)
        await lp.handshake()
        await lp.connect(hold_ms=0)
        await lp.post("", {"channel": CHANNEL, "data": {"operation": "requestChat",
                                                        "nickname": name}})
        chat = (await lp.connect())[1]["data"]
        return lp, chat

    a, chat_a = await start("Ada")
    b, chat_b = await start("Bob")
    try:
        await a.post("", {"channel": CHANNEL, "data": {
            "operation": "sendMessage", "message": "secret of Ada",
            "secureKey": chat_a["secureKey"]}})
        got_a = await a.connect()
        assert any(m.get("data", {}).get("messages", [{}])[0].get("text") == "secret of Ada"
                   for m in got_a[1:])
        got_b = await b.connect(hold_ms=0)
        assert all("secret of Ada" not in str(m) for m in got_b)
        assert chat_a["chatId"] != chat_b["chatId"]
    finally:
        await a.http.close()
        await b.http.close()


async def test_websocket_without_ack_gets_deliveries_without_a_connect_round_trip(
        server, http, cometd_url):
    async with http.ws_connect(cometd_url.replace("http", "ws")) as ws:
        no_ack = {k: v for k, v in HANDSHAKE.items() if k != "ext"}
        await ws.send_str(msgspec.json.encode([{"id": "1", **no_ack}]).decode())
        [hs] = msgspec.json.decode((await ws.receive()).data)
        assert "ext" not in hs
        cid = hs["clientId"]
        connect = {"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket"}
        await ws.send_str(msgspec.json.encode([{"id": "2", **connect,
                                                "advice": {"timeout": 0}}]).decode())
        msgspec.json.decode((await ws.receive()).data)
        # The next connect is held (30 s); the chat's first delivery must not wait for it.
        await ws.send_str(msgspec.json.encode([
            {"id": "3", **connect},
            {"id": "4", "channel": CHANNEL, "clientId": cid,
             "data": {"operation": "requestChat", "nickname": "Ada"}}]).decode())
        seen: list[dict] = []
        async with asyncio.timeout(5):
            while not any(m.get("data") for m in seen):
                seen.extend(msgspec.json.decode((await ws.receive()).data))
        assert not any(m["channel"] == "/meta/connect" for m in seen)  # still held
        assert next(m for m in seen if m.get("data"))["data"]["secureKey"]


async def test_direct_pushes_of_every_frame_size_arrive_intact_and_in_order(
        server_config, http):
    """Pushes to sessions without acks are framed by hand; each RFC 6455 length form
    (7-bit, 16-bit, 64-bit) must reach a standard WebSocket client unchanged."""
    running = await start_server(replace(server_config,
                                         cometd=replace(server_config.cometd, broadcast=True)))
    try:
        await _pushes_of_every_frame_size(http, f"{running.url}/genesys/cometd")
    finally:
        await running.runner.cleanup()


async def _pushes_of_every_frame_size(http: aiohttp.ClientSession, cometd_url: str) -> None:
    no_ack = {k: v for k, v in HANDSHAKE.items() if k != "ext"}
    ws_url = cometd_url.replace("http", "ws")

    async def join(ws: aiohttp.ClientWebSocketResponse) -> str:
        await ws.send_str(msgspec.json.encode([{"id": "1", **no_ack}]).decode())
        [hs] = msgspec.json.decode((await ws.receive()).data)
        cid = hs["clientId"]
        await ws.send_str(msgspec.json.encode([
            {"id": "2", "channel": "/meta/connect", "clientId": cid,
             "connectionType": "websocket", "advice": {"timeout": 0}},
            {"id": "3", "channel": "/meta/subscribe", "clientId": cid,
             "subscription": "/rooms/sizes"}]).decode())
        replies: list[dict] = []
        while not any(r["channel"] == "/meta/subscribe" for r in replies):
            replies.extend(msgspec.json.decode((await ws.receive()).data))
        return cid

    async with http.ws_connect(ws_url) as sender, http.ws_connect(ws_url) as reader:
        sender_id = await join(sender)
        await join(reader)
        texts = ["short", "é" * 100, "x" * 70_000]
        for n, text in enumerate(texts):
            await sender.send_str(msgspec.json.encode([
                {"id": f"p{n}", "channel": "/rooms/sizes", "clientId": sender_id,
                 "data": {"text": text}}]).decode())
        got: list[str] = []
        async with asyncio.timeout(5):
            while len(got) < len(texts):
                frame = await reader.receive()
                assert frame.type == aiohttp.WSMsgType.TEXT, frame
                got.extend(m["data"]["text"] for m in msgspec.json.decode(frame.data)
                           if m["channel"] == "/rooms/sizes")
        assert got == texts


async def test_the_request_chat_reply_is_a_snapshot_so_no_index_comes_twice(
        server, http, cometd_url, agent_factory):
    """The reply to requestChat waits in the session's queue until the next /meta/connect.
    Events added meanwhile (the agent joining, greeting at once, as a bot does) go out as pushes
    — and went out inside that reply too, when it held the chat's live event list."""
    await server.add_agent("grace", nickname="Grace")
    agent = await agent_factory(server.url, "grace")
    lp = LongPoll(http, cometd_url)
    await lp.handshake()
    await lp.connect(hold_ms=0)
    _, [ack] = await lp.post("", {"channel": CHANNEL, "data": {
        "operation": "requestChat", "nickname": "Ada"}})
    assert ack["successful"] is True
    await agent.wait_for(lambda events: any(e["type"] == "offer" for e in events))
    chat_id = next(e["chat"]["chatId"] for e in agent.events if e["type"] == "offer")
    await agent.client.accept(chat_id)
    await agent.client.send(chat_id, "Hello at once")
    deliveries = [m["data"] for m in await lp.connect(hold_ms=0) if m["channel"] == CHANNEL]
    indexes = [msg["index"] for d in deliveries for msg in d.get("messages", [])]
    assert indexes == sorted(set(indexes)), indexes
    assert set(indexes) == set(range(1, server.engine.chats[chat_id].next_index))


async def websocket_session(ws: aiohttp.ClientWebSocketResponse) -> str:
    """Handshake on ``ws`` and have a first connect answered at once: the session's id."""
    await ws.send_str(msgspec.json.encode([{"id": "1", **HANDSHAKE}]).decode())
    [hs] = msgspec.json.decode((await ws.receive()).data)
    await ws.send_str(msgspec.json.encode([{
        "id": "2", "channel": "/meta/connect", "clientId": hs["clientId"],
        "connectionType": "websocket", "advice": {"timeout": 0}}]).decode())
    [connect] = msgspec.json.decode((await ws.receive()).data)
    assert (connect["channel"], connect["successful"]) == ("/meta/connect", True)
    return str(hs["clientId"])


async def test_a_websocket_waiting_for_its_next_frame_keeps_nothing_of_the_last(
        server, http, cometd_url):
    """Each socket waits seconds for its customer's next frame: what the last frame made (the
    frame, its exchange, its messages) used to wait with it, objects the collector walked
    again and again at 10,000 sockets, instead of going once the frame was handled."""
    url = cometd_url.replace("http", "ws")
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(http.ws_connect(url)) for _ in range(5)]
        ids = set()
        for ws in sockets:
            ids.add(await websocket_session(ws))
        await asyncio.sleep(0.05)
        gc.collect()  # what earlier tests left in cycles
        mine = server.app[COMETD]._connections

        def ours(o: object) -> bool:
            kind = type(o).__name__
            if kind == "_Exchange":
                return o.sock in mine  # type: ignore[attr-defined]
            if kind == "BayeuxMessage":
                return o.clientId in ids  # type: ignore[attr-defined]
            return kind == "WSMessage" and any(i in str(o.data) for i in ids)  # type: ignore

        kept = [o for o in gc.get_objects() if ours(o)]
        assert kept == []  # (the frames the server received carry their clientId)


async def test_connects_held_on_websockets_cost_no_task_and_end_at_their_timeout(
        server, http, cometd_url):
    """A connect held on a WebSocket is a timer on its socket: holding one on each of 20
    sockets adds no task to the server (a task per hold was some fifteen objects living the
    hold's 30 s, at 10,000 chats), and each is answered when its timeout passes."""
    url = cometd_url.replace("http", "ws")
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(http.ws_connect(url)) for _ in range(20)]
        ids = []
        for ws in sockets:
            ids.append(await websocket_session(ws))
        await asyncio.sleep(0.1)
        before = len(asyncio.all_tasks())
        for ws, cid in zip(sockets, ids, strict=True):
            await ws.send_str(msgspec.json.encode([{
                "id": "3", "channel": "/meta/connect", "clientId": cid,
                "connectionType": "websocket", "advice": {"timeout": 500}}]).decode())
        await asyncio.sleep(0.2)
        assert server.app[COMETD].bayeux.sessions[ids[0]].holding
        assert len(asyncio.all_tasks()) <= before
        for ws in sockets:
            async with asyncio.timeout(5):
                [reply] = msgspec.json.decode((await ws.receive()).data)
            assert (reply["channel"], reply["id"], reply["successful"]) == (
                "/meta/connect", "3", True)
