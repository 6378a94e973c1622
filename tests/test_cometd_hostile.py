"""Hostile CometD clients over real sockets (issue 12): nesting bombs, sockets that break the
protocol, handshake twice or never read, sessions taken over from another transport or
socket, and the open relay. Each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import RunningServer, start_server
from tests.test_cometd_server import CHANNEL, HANDSHAKE, LongPoll
from webchat.protocol.bayeux.messages import DecodeError, decode_messages
from webchat.server.app import COMETD
from webchat.server.cometd import CometdEndpoint
from webchat.server.config import ServerConfig

Tuned = Callable[..., Awaitable[RunningServer]]
NO_ACK = {k: v for k, v in HANDSHAKE.items() if k != "ext"}


def encode(*messages: dict[str, Any]) -> str:
    return msgspec.json.encode(list(messages)).decode()


async def started(config: ServerConfig, **cometd: Any) -> RunningServer:
    return await start_server(replace(config, cometd=replace(config.cometd, **cometd)))


@pytest.fixture
async def tuned(server_config: ServerConfig) -> AsyncIterator[Tuned]:
    """Starts a server with the given CometD options; stops it after the test."""
    running: list[RunningServer] = []

    async def start(**cometd: Any) -> RunningServer:
        running.append(await started(server_config, **cometd))
        return running[-1]

    yield start
    for server in running:
        await server.runner.cleanup()


def endpoint(server: RunningServer) -> CometdEndpoint:
    return server.app[COMETD]


def ws_url(server: RunningServer) -> str:
    return f"{server.url.replace('http', 'ws')}/genesys/cometd"


async def ws_handshake(ws: aiohttp.ClientWebSocketResponse, hello: dict[str, Any]) -> str:
    await ws.send_str(encode({"id": "1", **hello}))
    [reply] = msgspec.json.decode((await ws.receive()).data)
    assert reply["successful"], reply
    return str(reply["clientId"])


async def replies_until(ws: aiohttp.ClientWebSocketResponse, channel: str) -> list[dict]:
    seen: list[dict] = []
    async with asyncio.timeout(5):
        while not any(m.get("channel") == channel and "successful" in m for m in seen):
            frame = await ws.receive()
            assert frame.type == aiohttp.WSMsgType.TEXT, frame
            seen.extend(msgspec.json.decode(frame.data))
    return seen


async def until(condition: Callable[[], bool]) -> None:
    """Server-side bookkeeping that follows a close the client already saw."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - state of the server under test
            await asyncio.sleep(0.01)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# ---- JSON depth and size, before decoding --------------------------------------------------

@pytest.mark.parametrize("field", ["data", "ext"])
async def test_deeply_nested_json_over_long_polling_is_a_400_not_a_500(server, http, field):
    inner = nested(50_000) if field == "data" else b'{"a":' * 20_000 + b"1" + b"}" * 20_000
    body = b'[{"channel":"/service/chatV2/customer-support","' + field.encode() + b'":' \
        + inner + b"}]"
    async with http.post(f"{server.url}/genesys/cometd", data=body,
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert "nested deeper than" in await resp.text()
    lp = LongPoll(http, f"{server.url}/genesys/cometd")
    await lp.handshake()  # still serving


async def test_deeply_nested_json_over_websocket_closes_with_1009(server, http):
    async with http.ws_connect(ws_url(server)) as ws:
        cid = await ws_handshake(ws, HANDSHAKE)
        await ws.send_str('[{"channel":"/meta/connect","clientId":"' + cid
                          + '","ext":' + nested(20_000).decode() + "}]")
        frame = await ws.receive()
        assert frame.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1009
    assert cid not in endpoint(server).bayeux.sessions


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=60),
       st.integers(min_value=0, max_value=3000))
def test_any_json_decodes_or_is_refused_never_crashes(value: object, extra_depth: int) -> None:
    body = b'[{"channel":"/a","data":' + b"[" * extra_depth + msgspec.json.encode(value) \
        + b"]" * extra_depth + b"}]"
    with contextlib.suppress(DecodeError):
        decode_messages(body)


# ---- sessions bound to their transport and to one socket -----------------------------------

async def test_a_websocket_cannot_take_over_a_long_polling_session(server, http):
    lp = LongPoll(http, f"{server.url}/genesys/cometd")
    await lp.handshake()
    await lp.connect(hold_ms=0)
    async with aiohttp.ClientSession() as attacker, attacker.ws_connect(ws_url(server)) as ws:
        await ws.send_str(encode({"id": "1", "channel": "/meta/connect",
                                  "clientId": lp.client_id, "connectionType": "websocket"}))
        [reply] = msgspec.json.decode((await ws.receive()).data)
        assert reply["successful"] is False and reply["error"].startswith("402")
        await ws.send_str(encode({"id": "2", "channel": CHANNEL, "clientId": lp.client_id,
                                  "data": {"operation": "requestChat", "nickname": "Mallory"}}))
        [reply] = msgspec.json.decode((await ws.receive()).data)
        assert reply["successful"] is False
    # The victim's session is untouched: its own publish works and is answered over HTTP.
    _, replies = await lp.post("", {"channel": CHANNEL, "data": {"operation": "requestChat",
                                                                 "nickname": "Ada"}})
    assert replies[0]["successful"] is True
    got = await lp.connect(hold_ms=0)
    assert any(m.get("data", {}).get("secureKey") for m in got)


async def test_long_polling_cannot_use_a_websocket_session(server, http):
    async with http.ws_connect(ws_url(server)) as ws:
        cid = await ws_handshake(ws, HANDSHAKE)
        lp = LongPoll(http, f"{server.url}/genesys/cometd")
        lp.client_id = cid
        [reply] = await lp.connect(hold_ms=0)
        assert reply["successful"] is False and reply["error"].startswith("402")


async def test_a_second_socket_cannot_replace_a_live_one(server, http):
    async with http.ws_connect(ws_url(server)) as victim:
        cid = await ws_handshake(victim, NO_ACK)
        await victim.send_str(encode({"id": "2", "channel": "/meta/connect", "clientId": cid,
                                      "connectionType": "websocket", "advice": {"timeout": 0}}))
        await replies_until(victim, "/meta/connect")
        async with aiohttp.ClientSession() as other, other.ws_connect(ws_url(server)) as thief:
            await thief.send_str(encode({"id": "1", "channel": "/meta/connect", "clientId": cid,
                                         "connectionType": "websocket"}))
            [reply] = msgspec.json.decode((await thief.receive()).data)
            assert reply["successful"] is False and reply["error"].startswith("402")
        # Deliveries still reach the victim's socket.
        await victim.send_str(encode({"id": "3", "channel": CHANNEL, "clientId": cid,
                                      "data": {"operation": "requestChat", "nickname": "Ada"}}))
        seen = await replies_until(victim, CHANNEL)
        async with asyncio.timeout(5):
            while not any(m.get("data", {}).get("secureKey") for m in seen):
                seen.extend(msgspec.json.decode((await victim.receive()).data))


async def test_a_socket_resumes_its_session_once_the_old_socket_is_gone(server, http):
    """What CometD clients do after a dropped connection must keep working."""
    async with http.ws_connect(ws_url(server)) as first:
        cid = await ws_handshake(first, NO_ACK)
    async with http.ws_connect(ws_url(server)) as second:
        await second.send_str(encode({"id": "2", "channel": "/meta/connect", "clientId": cid,
                                      "connectionType": "websocket", "advice": {"timeout": 0}}))
        [reply] = await replies_until(second, "/meta/connect")
        assert reply["successful"] is True


# ---- nothing kept for sockets that are gone ------------------------------------------------

async def test_a_second_handshake_on_one_socket_ends_the_first_session(server, http):
    cometd = endpoint(server)
    async with http.ws_connect(ws_url(server)) as ws:
        first = await ws_handshake(ws, NO_ACK)
        second = await ws_handshake(ws, NO_ACK)
        assert first not in cometd.bayeux.sessions and second in cometd.bayeux.sessions
    await until(lambda: not cometd.sockets)
    assert cometd.attached == 0  # the closed socket serves no session any more


async def test_a_socket_closed_for_a_malformed_frame_ends_its_session_at_once(server, http):
    cometd = endpoint(server)
    async with http.ws_connect(ws_url(server)) as ws:
        cid = await ws_handshake(ws, NO_ACK)
        await ws.send_str("{not json")
        frame = await ws.receive()
        assert frame.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1011
    assert cid not in cometd.bayeux.sessions


async def test_a_socket_the_server_closed_is_let_go_of_at_once(server, http):
    """aiohttp re-arms its heartbeat timer on the peer's close frame; the loop's timer then
    kept every closed response alive for 60 s (4,000 closed sockets: +46 MB)."""
    for _ in range(3):
        async with http.ws_connect(ws_url(server)) as ws:
            await ws_handshake(ws, NO_ACK)
            await ws.send_str("{not json")
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
    await asyncio.sleep(0.2)
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, web.WebSocketResponse)]


async def test_idle_websockets_without_a_session_are_closed(tuned, http):
    server = await tuned(max_interval_ms=200)
    async with http.ws_connect(ws_url(server), autoping=True) as ws:
        async with asyncio.timeout(10):
            frame = await ws.receive()
        assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.ERROR)
    assert not endpoint(server).sockets


async def test_a_publish_slower_than_max_interval_does_not_expire_its_session(tuned, http):
    """The benchmark's chat starts took up to 10 s on an overloaded server; the connect
    answered in the same frame left with them, but its session had expired meanwhile
    (expiry counted from when the reply was made) and the socket, now without a session,
    was reaped: the client saw its WebSocket dropped (1006) for the server's slowness."""
    server = await tuned(max_interval_ms=200)
    cometd = endpoint(server)
    service = cometd.on_service
    assert service is not None

    async def slow(session: Any, message: Any) -> str | None:
        await asyncio.sleep(2.5)  # the sweep (each second) runs twice meanwhile
        return await service(session, message)

    cometd.on_service = slow
    async with http.ws_connect(ws_url(server)) as ws:
        client_id = await ws_handshake(ws, NO_ACK)
        await ws.send_str(encode(
            {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket",
             "advice": {"timeout": 0}},
            {"channel": CHANNEL, "clientId": client_id, "id": "2",
             "data": {"operation": "requestChat", "nickname": "Slow"}}))
        seen = await replies_until(ws, CHANNEL)
        assert any(m["channel"] == "/meta/connect" and m["successful"] for m in seen), seen
        await ws.send_str(encode({"channel": "/meta/connect", "clientId": client_id,
                                  "connectionType": "websocket", "advice": {"timeout": 0}}))
        [connect] = [m for m in await replies_until(ws, "/meta/connect")
                     if m["channel"] == "/meta/connect"]
        assert connect["successful"], connect


# ---- a subscriber that never reads ---------------------------------------------------------

class RawWebSocket:
    """A WebSocket client on a plain socket with a tiny receive buffer, so that the server
    sees a peer that stops reading as soon as the test stops reading."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /genesys/cometd HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        self.buf = self.buf.split(b"\r\n\r\n", 1)[1]

    def send(self, *messages: dict[str, Any]) -> None:
        payload = encode(*messages).encode()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes((0x81, 0x80 | n)) if n < 126 else \
            bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self) -> list[dict]:
        while True:
            if len(self.buf) >= 2:
                n, at = self.buf[1] & 0x7F, 2
                if n == 126:
                    n, at = int.from_bytes(self.buf[2:4], "big"), 4
                elif n == 127:
                    n, at = int.from_bytes(self.buf[2:10], "big"), 10
                if len(self.buf) >= at + n:
                    payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
                    return list(msgspec.json.decode(payload))
            self.sock.settimeout(5)
            self.buf += self.sock.recv(65536)

    def dropped(self) -> bool:
        """Read what is left until the server's end: True once the connection is gone."""
        self.sock.settimeout(5)
        try:
            while self.sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()


def port_of(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def join_room(http: aiohttp.ClientSession, server: RunningServer
                    ) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(ws_url(server))
    cid = await ws_handshake(ws, NO_ACK)
    return ws, cid


async def publish(ws: aiohttp.ClientWebSocketResponse, cid: str, count: int, size: int) -> None:
    for n in range(count):
        await ws.send_str(encode({"id": f"p{n}", "channel": "/rooms/r", "clientId": cid,
                                  "data": {"n": n, "pad": "x" * size}}))
    acks = 0
    async with asyncio.timeout(30):
        while acks < count:
            acks += sum(1 for m in msgspec.json.decode((await ws.receive()).data)
                        if m.get("channel") == "/rooms/r" and "successful" in m)


def raw_subscriber(server: RunningServer, hello: dict[str, Any]) -> tuple[RawWebSocket, str]:
    reader = RawWebSocket(port_of(server))
    reader.send({"id": "1", **hello})
    cid = reader.receive()[0]["clientId"]
    reader.send({"id": "2", "channel": "/meta/connect", "clientId": cid,
                 "connectionType": "websocket", "advice": {"timeout": 0}, "ext": {"ack": 0}},
                {"id": "3", "channel": "/meta/subscribe", "clientId": cid,
                 "subscription": "/rooms/r"},
                {"id": "4", "channel": "/meta/connect", "clientId": cid,
                 "connectionType": "websocket", "ext": {"ack": 1}})
    seen: list[dict] = []
    while not any(m["channel"] == "/meta/subscribe" for m in seen):
        seen.extend(reader.receive())
    return reader, cid


async def test_a_subscriber_that_never_reads_is_dropped_without_acks(tuned, http):
    server = await tuned(broadcast=True, max_outbound_bytes=256 * 1024)
    cometd = endpoint(server)
    reader, cid = await asyncio.to_thread(raw_subscriber, server, NO_ACK)
    try:
        sender, sender_id = await join_room(http, server)
        await publish(sender, sender_id, 200, 64 * 1024)  # 12.8 MB at a peer reading nothing
        await sender.close()
        assert cid not in cometd.bayeux.sessions  # ended: it must re-handshake (402 says so)
        assert await asyncio.to_thread(reader.dropped)
    finally:
        reader.close()


async def test_a_slow_subscriber_with_acks_is_dropped_and_gets_everything_again(tuned, http):
    server = await tuned(broadcast=True, max_outbound_bytes=256 * 1024,
                         max_outbound_messages=50, max_queue_bytes=64 * 1024 * 1024,
                         max_interval_ms=30_000)
    cometd = endpoint(server)
    reader, cid = await asyncio.to_thread(raw_subscriber, server, HANDSHAKE)
    count = 120
    try:
        sender, sender_id = await join_room(http, server)
        await publish(sender, sender_id, count, 32 * 1024)
        await sender.close()
        assert cometd.attached == 0  # the socket was dropped ...
        assert cid in cometd.bayeux.sessions  # ... the session kept for the client
    finally:
        reader.close()
    # The client comes back on a new socket, acknowledging only what it had read (batch 1).
    got: list[int] = []
    async with http.ws_connect(ws_url(server)) as ws:
        ack = 1
        async with asyncio.timeout(20):
            while len(got) < count:
                await ws.send_str(encode({"id": "c", "channel": "/meta/connect",
                                          "clientId": cid, "connectionType": "websocket",
                                          "ext": {"ack": ack}, "advice": {"timeout": 0}}))
                for m in await replies_until(ws, "/meta/connect"):
                    if m["channel"] == "/meta/connect":
                        assert m["successful"] is True, m
                        ack = m["ext"]["ack"]
                    elif m["channel"] == "/rooms/r":
                        got.append(m["data"]["n"])
    assert got == list(range(count))


# ---- no open relay -------------------------------------------------------------------------

async def test_clients_cannot_publish_to_broadcast_channels_by_default(server, http):
    async with http.ws_connect(ws_url(server)) as listener:
        lid = await ws_handshake(listener, NO_ACK)
        await listener.send_str(encode({"id": "2", "channel": "/meta/subscribe",
                                        "clientId": lid, "subscription": "/**"}))
        await replies_until(listener, "/meta/subscribe")
        async with http.ws_connect(ws_url(server)) as ws:
            cid = await ws_handshake(ws, NO_ACK)
            await ws.send_str(encode({"id": "2", "channel": "/anything/goes", "clientId": cid,
                                      "data": {"spam": True}}))
            [reply] = await replies_until(ws, "/anything/goes")
            assert reply["successful"] is False and reply["error"] == "403::publish_denied"
        await listener.send_str(encode({"id": "3", "channel": "/meta/connect", "clientId": lid,
                                        "connectionType": "websocket",
                                        "advice": {"timeout": 0}}))
        seen = await replies_until(listener, "/meta/connect")
        assert not any(m.get("channel") == "/anything/goes" for m in seen)
