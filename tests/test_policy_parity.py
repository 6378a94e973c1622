"""Every customer-API policy, checked on every transport from one table.

Each row of :data:`POLICIES` is a rule a customer (or an attacker posing as one) runs into;
each runs over REST, CometD long-polling and CometD WebSocket against a real server, through
the same tiny driver, and must give the same refusal. A policy added for one transport only
fails here until all three have it — or until :data:`DIFFERS` says why one transport differs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.conftest import SERVICE, RunningServer, start_server
from webchat.server.config import Limits, ServerConfig

TRANSPORTS = ["rest", "long-polling", "websocket"]
CHANNEL = f"/service/chatV2/{SERVICE}"
COMETD_NAME = {"send": "sendMessage", "refresh": "requestNotifications"}


class Refused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Driver:
    """One customer on one transport: request a chat, run an operation, see the refusal."""

    def __init__(self, http: aiohttp.ClientSession, server: RunningServer) -> None:
        self.http = http
        self.server = server

    async def request_chat(self, fields: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def call(self, chat: dict[str, Any], op: str, fields: dict[str, Any]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class Rest(Driver):
    async def post(self, path: str, fields: dict[str, Any]) -> dict[str, Any]:
        flat = {k: v for k, v in fields.items() if k != "userData"}
        flat.update({f"userData[{k}]": v for k, v in fields.get("userData", {}).items()})
        async with self.http.post(self.server.data_url + path, data=urlencode(flat), headers={
                "Content-Type": "application/x-www-form-urlencoded"}) as resp:
            reply: dict[str, Any] = await resp.json()
        if reply["statusCode"] != 0:
            raise Refused(reply["errors"][0]["code"])
        return reply

    async def request_chat(self, fields: dict[str, Any]) -> dict[str, Any]:
        return await self.post("", fields)

    async def call(self, chat: dict[str, Any], op: str, fields: dict[str, Any]) -> None:
        ident = {k: chat[k] for k in ("userId", "secureKey", "alias")}
        await self.post(f"/{chat['chatId']}/{op}", {**ident, **fields})


class Bayeux(Driver):
    """A raw Bayeux client: replies by id, the GMS replies delivered on the channel."""

    def __init__(self, http: aiohttp.ClientSession, server: RunningServer) -> None:
        super().__init__(http, server)
        self.url = f"{server.url}/genesys/cometd"
        self.ids = 0
        self.client_id = ""
        self.replies: dict[str, dict[str, Any]] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def receive(self, messages: list[dict[str, Any]]) -> None:
        for msg in messages:
            if "successful" in msg:
                self.replies[msg["id"]] = msg
            else:
                self.deliveries.append(msg["data"])
        self.arrived.set()

    async def until(self, ready: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not ready():
                self.arrived.clear()
                await self.arrived.wait()

    async def send(self, message: dict[str, Any]) -> dict[str, Any]:
        self.ids += 1
        msg_id = str(self.ids)
        await self.transmit({"id": msg_id, "clientId": self.client_id, **message})
        await self.until(lambda: msg_id in self.replies)
        return self.replies.pop(msg_id)

    async def transmit(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def open(self) -> None:
        hs = await self.send({"channel": "/meta/handshake", "version": "1.0",
                              "supportedConnectionTypes": ["websocket", "long-polling"]})
        self.client_id = hs["clientId"]

    async def publish(self, data: dict[str, Any]) -> int:
        """Publish an operation; the number of deliveries before it (its reply comes next)."""
        before = len(self.deliveries)
        reply = await self.send({"channel": CHANNEL, "data": data})
        if not reply["successful"]:
            raise Refused(int(reply["error"].split(":")[1]))
        return before

    async def request_chat(self, fields: dict[str, Any]) -> dict[str, Any]:
        before = await self.publish({"operation": "requestChat", **fields})
        await self.poll()
        await self.until(lambda: len(self.deliveries) > before)
        return self.deliveries[before]

    async def call(self, chat: dict[str, Any], op: str, fields: dict[str, Any]) -> None:
        await self.publish({"operation": COMETD_NAME.get(op, op), "chatId": chat["chatId"],
                            "secureKey": chat["secureKey"], **fields})

    async def poll(self) -> None:
        """Let deliveries come (long-polling needs a connect; a WebSocket gets them anyway)."""


class LongPolling(Bayeux):
    async def transmit(self, message: dict[str, Any]) -> None:
        async with self.http.post(self.url, data=json.dumps([message]),
                                  headers={"Content-Type": "application/json"}) as resp:
            self.receive(await resp.json())

    async def poll(self) -> None:
        await self.send({"channel": "/meta/connect", "connectionType": "long-polling",
                         "advice": {"timeout": 0}})


class WebSocket(Bayeux):
    ws: aiohttp.ClientWebSocketResponse
    reader: asyncio.Task[None]

    async def open(self) -> None:
        self.ws = await self.http.ws_connect(self.url.replace("http", "ws", 1))
        self.reader = asyncio.create_task(self.read())
        await super().open()
        await self.send({"channel": "/meta/connect", "connectionType": "websocket",
                         "advice": {"timeout": 0}})

    async def read(self) -> None:
        async for frame in self.ws:
            self.receive(json.loads(frame.data))

    async def transmit(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps([message]))

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


DRIVERS: dict[str, type[Driver]] = {"rest": Rest, "long-polling": LongPolling,
                                    "websocket": WebSocket}
ADA = {"firstName": "Ada", "lastName": "Byron"}


async def refused(action: Awaitable[object]) -> int:
    with pytest.raises(Refused) as caught:
        await action
    return caught.value.code


@dataclass(frozen=True)
class Policy:
    config: Callable[[ServerConfig], ServerConfig]
    check: Callable[[Driver], Awaitable[None]]


async def chat_start_rate(d: Driver) -> None:
    for _ in range(2):
        await d.request_chat(ADA)
    assert await refused(d.request_chat(ADA)) == 1007


async def per_chat_rate(d: Driver) -> None:
    chat = await d.request_chat(ADA)
    for n in range(3):
        await d.call(chat, "send", {"message": f"hi {n}"})
    assert await refused(d.call(chat, "send", {"message": "one too many"})) == 1007


async def wrong_key(d: Driver) -> None:
    chat = await d.request_chat(ADA)
    other = await d.request_chat(ADA)
    assert await refused(d.call({**chat, "secureKey": other["secureKey"]}, "send",
                                {"message": "hi"})) == 1001
    assert await refused(d.call({**chat, "secureKey": "guess"}, "send",
                                {"message": "hi"})) == 1001


async def position(d: Driver) -> None:
    chat = await d.request_chat(ADA)
    assert await refused(d.call(chat, "refresh", {"transcriptPosition": 999})) == 1006
    assert await refused(d.call(chat, "refresh", {"transcriptPosition": "-1"})) == 1006


async def unknown_fields_ignored(d: Driver) -> None:
    chat = await d.request_chat({**ADA, "favouriteColour": "blue"})
    await d.call(chat, "send", {"message": "hi", "cobrowse": "x"})


async def unknown_fields_strict(d: Driver) -> None:
    assert await refused(d.request_chat({**ADA, "favouriteColour": "blue"})) == 1005


async def names_and_email(d: Driver) -> None:
    assert await refused(d.request_chat({})) == 161
    assert await refused(d.request_chat({"firstName": "Ada"})) == 103
    assert await refused(d.request_chat({**ADA, "emailAddress": "nope"})) == 364
    assert await refused(d.request_chat({"nickname": "A" * 129})) == 1004


async def message_length(d: Driver) -> None:
    chat = await d.request_chat(ADA)
    assert await refused(d.call(chat, "send", {"message": "x" * 4097})) == 204
    assert await refused(d.call(chat, "send", {"message": " "})) == 1003


async def user_data_bounds(d: Driver) -> None:
    assert await refused(d.request_chat(
        {**ADA, "userData": {f"k{n}": "v" for n in range(65)}})) == 1010
    assert await refused(d.request_chat({**ADA, "userData": {"k": "v" * 4097}})) == 1004


async def ended_chat(d: Driver) -> None:
    chat = await d.request_chat(ADA)
    await d.call(chat, "disconnect", {})
    assert await refused(d.call(chat, "send", {"message": "after the end"})) == 1002


async def transcript_bounds(d: Driver) -> None:
    chat = await d.request_chat(ADA)
    for n in range(3):  # ParticipantJoined and the queue notice make 5 events
        await d.call(chat, "send", {"message": f"hi {n}"})
    assert await refused(d.call(chat, "send", {"message": "no room"})) == 1017
    await d.call(chat, "disconnect", {})  # leaving still goes in


def same(config: ServerConfig) -> ServerConfig:
    return config


POLICIES: dict[str, Policy] = {
    "chat-start rate per address": Policy(
        lambda c: replace(c, limits=Limits(request_chat_rate=(0.001, 2))), chat_start_rate),
    "operations per chat": Policy(
        lambda c: replace(c, limits=Limits(chat_op_rate=(0.001, 3))), per_chat_rate),
    "authentication by key": Policy(same, wrong_key),
    "transcript position": Policy(same, position),
    "unknown fields ignored": Policy(same, unknown_fields_ignored),
    "unknown fields refused (strict)": Policy(lambda c: replace(c, strict_fields=True),
                                              unknown_fields_strict),
    "names and e-mail": Policy(same, names_and_email),
    "message length": Policy(same, message_length),
    "userData bounds": Policy(same, user_data_bounds),
    "ended chat": Policy(same, ended_chat),
    "transcript bounds": Policy(lambda c: replace(c, limits=Limits(max_chat_events=5)),
                                transcript_bounds),
}

#: Where a transport differs on purpose, and why.
DIFFERS = {
    ("API key", "long-polling"): "CometD publishes cannot carry the apikey header and the "
                                 "Genesys widgets send none over CometD; CometD is guarded "
                                 "by the per-address and per-chat limits above instead",
    ("API key", "websocket"): "as for long-polling",
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("policy", list(POLICIES))
async def test_policy_holds_on_every_transport(policy: str, transport: str,
                                               server_config: ServerConfig) -> None:
    rule = POLICIES[policy]
    server = await start_server(rule.config(server_config))
    try:
        # No cookies, as a page on another site sends none to the server.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            driver = DRIVERS[transport](http, server)
            if isinstance(driver, Bayeux):
                await driver.open()
            try:
                await rule.check(driver)
            finally:
                await driver.close()
    finally:
        await server.runner.cleanup()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_api_key_where_the_transport_carries_one(transport: str,
                                                           server_config: ServerConfig) -> None:
    server = await start_server(replace(server_config, api_keys=("K",)))
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            driver = DRIVERS[transport](http, server)
            if isinstance(driver, Bayeux):
                await driver.open()
                assert ("API key", transport) in DIFFERS
                await driver.request_chat(ADA)  # exempt, see DIFFERS
                await driver.close()
            else:
                assert await refused(driver.request_chat(ADA)) == 1009
    finally:
        await server.runner.cleanup()
