"""Whole conversations of the real Genesys Widgets 8.5 client, replayed against our server.

``tests/fixtures/genesys-widgets/*.json`` is our record of what the unmodified bundle
(8.5.007.03) sent in one chat per transport — request chat (once refused for a missing first
name), refreshes with the typing preview, typing, send, a page reload and its restore, files
(limits, upload, download), end by the customer, a second chat the agent ends — written by
``scripts/record_genesys_widgets.py`` while it drove the bundle in Chromium. The bundle itself is
third-party code and not in this repository; these files hold field names and values only.

The replay sends the customer's requests exactly as recorded, with the values the client had
learned from replies (``{chatId}``, ``{secureKey}``, ``{userId}``, ``{alias}``, ``{clientId}``,
``{fileId}``, ``{nextPosition}``) filled in from our own replies, plays the agent through the
agent API at the recorded points, and checks every reply for each field the bundle reads:
``statusCode``, ``chatEnded``, ``secureKey``, ``alias``, ``userId``, ``chatId``,
``nextPosition``, ``messages[].from/index/type/text/utcTime`` and ``errors[].code/advice``.
Over CometD the client keeps one ``/meta/connect`` outstanding, re-sent as each returns, as the
bundle does; the recorded connects give its two shapes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.conftest import AgentRecorder, RunningServer, start_server
from webchat.server.config import ServerConfig

FIXTURES = Path(__file__).parent / "fixtures" / "genesys-widgets"
RECORDINGS = ["rest", "rest-apikey", "websocket", "long-polling"]
PLACEHOLDER = re.compile(r"\{(chatId|secureKey|userId|alias|clientId|fileId|nextPosition)\}")
SENDER_TYPES = {"Client", "Agent", "Supervisor", "External"}
WITHIN = 10.0


def load(name: str) -> dict[str, Any]:
    recording: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    assert recording["outcome"]["completed"], recording["outcome"]
    return recording


def page_origin(recording: dict[str, Any]) -> str:
    """The origin of the page the bundle ran on (another site than the server's)."""
    for step in recording["steps"]:
        for message in step.get("bayeux", ()):
            url = message.get("data", {}).get("userData", {}).get("_genesys_url")
            if url:
                return "/".join(url.split("/")[:3])
        for key, value in step.get("http", {}).get("form", ()):
            if key == "userData[_genesys_url]":
                return "/".join(value.split("/")[:3])
    raise AssertionError("no page URL in the recording")


async def browser_cors(http: aiohttp.ClientSession, url: str, origin: str,
                       headers: dict[str, str], *, credentials: bool) -> None:
    """What Chromium checks before it lets the page see an answer from another origin: the
    preflight a non-simple request needs (a JSON body, an ``apikey`` header), and that the
    answer names the page's origin — with credentials for the requests the bundle sends
    ``withCredentials`` (its CometD long-polling)."""
    custom = sorted(k.lower() for k in headers if k.lower() != "content-type")
    simple = headers.get("Content-Type", "").split(";")[0] in (
        "", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
    if custom or not simple:
        wanted = ", ".join(custom + ([] if simple else ["content-type"]))
        async with http.options(url, headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": wanted}) as resp:
            assert resp.status in (200, 204), (url, resp.status)
            check_cors(resp.headers, url, origin, credentials=credentials)
            allowed = resp.headers.get("Access-Control-Allow-Headers", "").lower()
            for name in wanted.split(", "):
                assert name in allowed, (url, name, allowed)


def check_cors(headers: Any, url: str, origin: str, *, credentials: bool) -> None:
    assert headers.get("Access-Control-Allow-Origin") == origin, (url, dict(headers))
    if credentials:
        assert headers.get("Access-Control-Allow-Credentials") == "true", (url, dict(headers))


def check_chat_reply(reply: Any, *, where: str) -> None:
    """Every field the bundle reads from a successful chat reply, with the type it needs."""
    assert isinstance(reply, dict), where
    assert reply["statusCode"] == 0, (where, reply)
    for key in ("chatId", "secureKey", "userId", "alias"):
        assert isinstance(reply.get(key), str) and reply[key], (where, key, reply)
    # The bundle tells "restored" from "gone" by chatEnded === false / true.
    assert isinstance(reply.get("chatEnded"), bool), (where, reply)
    assert isinstance(reply.get("nextPosition"), int), (where, reply)
    for msg in reply.get("messages") or []:
        sender = msg["from"]
        assert isinstance(sender["nickname"], str), (where, msg)
        assert isinstance(sender["participantId"], int), (where, msg)
        assert sender["type"] in SENDER_TYPES, (where, msg)
        assert isinstance(msg["type"], str) and isinstance(msg["utcTime"], int), (where, msg)
        if msg["type"] == "Message":
            assert isinstance(msg["text"], str), (where, msg)
        if msg.get("text") == "file-client-cfg-get":
            continue  # the file-limits notice is an answer, not a transcript event
        assert isinstance(msg["index"], int) and msg["index"] >= 1, (where, msg)
        assert reply["nextPosition"] > msg["index"], (where, reply)


def check_refusal(reply: Any, *, where: str) -> list[int]:
    assert isinstance(reply, dict) and reply["statusCode"] in (1, 2), (where, reply)
    assert reply["errors"], (where, reply)
    for error in reply["errors"]:
        assert isinstance(error["code"], int) and isinstance(error["advice"], str), where
    return [e["code"] for e in reply["errors"]]


def recorded_codes(step: dict[str, Any]) -> list[int]:
    """The GMS codes this refused step got when it was recorded: it must get them again."""
    reply = step["reply"]
    if isinstance(reply.get("json"), dict):
        return [e["code"] for e in reply["json"]["errors"]]
    bayeux = reply["json"] if "json" in reply else reply["bayeux"]  # long-polling / WebSocket
    return [int(m["error"].split(":")[1]) for m in bayeux if m.get("successful") is False]


@dataclass
class Customer:
    """What a client of the bundle's kind knows: the learned values and what it has seen."""

    values: dict[str, str] = field(default_factory=dict)
    seen: dict[str, list[int]] = field(default_factory=dict)
    """chat id -> every index received, in order, repeats included."""
    session_seen: list[int] = field(default_factory=list)
    """Indexes pushed to the current CometD session (each must come once)."""
    texts: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def next_position(self) -> int:
        return max(self.seen.get(self.values.get("chatId", ""), [0]), default=0) + 1

    def fill(self, value: Any, *, numbers: bool = False) -> Any:
        """Put learned values into what was recorded (``numbers``: a JSON body, where the
        bundle sends transcriptPosition as a number)."""
        if isinstance(value, str):
            if numbers and value == "{nextPosition}":
                return self.next_position()
            return PLACEHOLDER.sub(lambda m: str(self.next_position()) if m[1] == "nextPosition"
                                   else self.values[m[1]], value)
        if isinstance(value, list):
            return [self.fill(v, numbers=numbers) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v, numbers=numbers) for k, v in value.items()}
        return value

    def learn(self, reply: dict[str, Any], *, pushed: bool = False) -> None:
        if reply.get("statusCode") != 0:
            return
        if reply.get("chatId") and reply["chatId"] != self.values.get("chatId"):
            self.session_seen = []
        for key in ("chatId", "secureKey", "userId", "alias"):
            if reply.get(key):
                self.values[key] = reply[key]
        chat = self.seen.setdefault(self.values["chatId"], [])
        for msg in reply.get("messages") or []:
            if "index" not in msg:
                continue
            chat.append(msg["index"])
            if pushed:
                self.session_seen.append(msg["index"])
            if msg["type"] == "Message":
                self.texts.append(msg["text"])
        self.changed.set()

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WITHIN):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class Bayeux:
    """One CometD session of the replayed client on its transport, with the connect loop."""

    def __init__(self, http: aiohttp.ClientSession, server: RunningServer, customer: Customer,
                 transport: str, held: dict[str, Any] | None, origin: str) -> None:
        self.origin = origin
        self.http = http
        self.server = server
        self.customer = customer
        self.transport = transport
        self.replies: dict[str, dict[str, Any]] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.held = held
        """The recorded /meta/connect the client keeps outstanding (without advice)."""
        self.connect_path = ""
        self.next_id = 1000
        self.open = False

    async def send(self, messages: list[dict[str, Any]], http: dict[str, Any] | None,
                   websocket: dict[str, Any] | None) -> None:
        if self.transport == "websocket":
            if self.ws is None:
                assert websocket is not None, "a new WebSocket starts with a recorded path"
                url = self.server.url.replace("http", "ws", 1) + websocket["path"]
                self.ws = await self.http.ws_connect(url)
                self.tasks.append(asyncio.create_task(self._read()))
            await self.ws.send_str(json.dumps(messages))
        else:
            assert http is not None
            self.tasks.append(asyncio.create_task(self._post(http["path"], messages)))

    async def _post(self, path: str, messages: list[dict[str, Any]]) -> None:
        url = self.server.url + path
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        try:
            await browser_cors(self.http, url, self.origin, headers, credentials=True)
            async with self.http.post(url, data=json.dumps(messages),
                                      headers={**headers, "Origin": self.origin}) as resp:
                assert resp.status == 200, (path, resp.status)
                check_cors(resp.headers, url, self.origin, credentials=True)
                self.receive(await resp.json())
        except aiohttp.ClientError:
            if self.open:  # a held connect cut by closing the session is no failure
                raise

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.receive(json.loads(frame.data))

    def receive(self, messages: list[dict[str, Any]]) -> None:
        for msg in messages:
            if "successful" in msg:
                self.replies[str(msg.get("id"))] = msg
                if msg["channel"] == "/meta/handshake" and msg["successful"]:
                    self.customer.values["clientId"] = msg["clientId"]
                if msg["channel"] == "/meta/connect" and self.open:
                    self._connect_again()
            else:
                data = msg["data"]
                where = f"delivery on {msg['channel']}"
                if data.get("statusCode") == 0:
                    check_chat_reply(data, where=where)
                else:
                    check_refusal(data, where=where)
                self.customer.learn(data, pushed=True)
                self.deliveries.append(data)
        self.arrived.set()

    def _connect_again(self) -> None:
        """The bundle's client re-sends /meta/connect as soon as the last one returned."""
        assert self.held is not None
        template = self.held
        self.next_id += 1
        msg = {**self.customer.fill(template), "id": str(self.next_id)}
        if self.transport == "websocket":
            assert self.ws is not None
            self.tasks.append(asyncio.create_task(self.ws.send_str(json.dumps([msg]))))
        else:
            self.tasks.append(asyncio.create_task(self._post(self.connect_path, [msg])))

    async def delivery(self, number: int) -> dict[str, Any]:
        async with asyncio.timeout(WITHIN):
            while len(self.deliveries) <= number:
                self.arrived.clear()
                await self.arrived.wait()
        return self.deliveries[number]

    async def reply_to(self, msg_id: str) -> dict[str, Any]:
        async with asyncio.timeout(WITHIN):
            while msg_id not in self.replies:
                self.arrived.clear()
                await self.arrived.wait()
        return self.replies.pop(msg_id)

    async def close(self) -> None:
        self.open = False
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
        if self.ws is not None:
            await self.ws.close()
            self.ws = None


async def replay(name: str, server: RunningServer, agent: AgentRecorder) -> Customer:
    recording = load(name)
    transport = recording["transport"]
    customer = Customer()
    agent_files: dict[str, bytes] = {}
    origin = page_origin(recording)
    held = next((without_id(m) for step in recording["steps"] for m in step.get("bayeux", ())
                 if m["channel"] == "/meta/connect" and "advice" not in m), None)
    # The page is on another site than the server: its requests carry no cookies of the
    # server's (XHRs without credentials, SameSite on the WebSocket), so neither do ours.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        bayeux = Bayeux(http, server, customer, transport, held, origin)
        for number, step in enumerate(recording["steps"]):
            where = f"{name} step {number} ({step['phase']}: {step.get('label', step.get('do'))})"
            if step["actor"] == "agent":
                await play_agent(step, server, agent, customer, agent_files)
            elif step.get("do") == "reload":
                await bayeux.close()
                bayeux = Bayeux(http, server, customer, transport, held, origin)
                customer.session_seen = []
            elif "bayeux" in step:
                await replay_bayeux(step, bayeux, customer, where)
            else:
                await replay_http(step, http, server, customer, agent_files, where, origin)
            await settle(server, customer, bayeux, transport)
        await bayeux.close()
    return customer


async def play_agent(step: dict[str, Any], server: RunningServer, agent: AgentRecorder,
                     customer: Customer, files: dict[str, bytes]) -> None:
    chat_id = customer.values["chatId"]
    client = agent.client
    if step["do"] == "accept":
        await agent.wait_for(lambda events: any(
            e["type"] == "offer" and e["chat"]["chatId"] == chat_id for e in events), WITHIN)
        client.track(chat_id, (await client.accept(chat_id))["nextPosition"])
    elif step["do"] == "send":
        await client.send(chat_id, step["text"])
    elif step["do"] == "typing":
        await client.typing(chat_id, step["on"])
    elif step["do"] == "file":
        data = step["text"].encode()
        uploaded = await client.upload_file(chat_id, step["name"], data, step["content_type"])
        customer.values["fileId"] = uploaded["fileId"]
        files[uploaded["fileId"]] = data
    elif step["do"] == "end":
        await client.end(chat_id)
    else:
        raise AssertionError(f"unknown agent step {step}")


def without_id(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "id"}


def part_bytes(size: int) -> bytes:
    """A text file of the recorded size (the recording keeps the size, not the content)."""
    line = b"Parcel A-1009: leave it at the door.\n"
    return (line * (size // len(line) + 1))[:size]


async def replay_http(step: dict[str, Any], http: aiohttp.ClientSession, server: RunningServer,
                      customer: Customer, agent_files: dict[str, bytes], where: str,
                      origin: str) -> None:
    request = step["http"]
    url = server.url + customer.fill(request["path"])
    if request.get("query"):
        url += "?" + request["query"]
    headers = customer.fill(request.get("headers") or {})
    body: Any
    if "form" in request:
        body = urlencode([tuple(pair) for pair in customer.fill(request["form"])])
        headers["Content-Type"] = request["content_type"]
    else:
        body = aiohttp.FormData(default_to_multipart=True)
        for part in request["parts"]:
            if "filename" in part:
                body.add_field(part["name"], part_bytes(part["size"]),
                               filename=part["filename"], content_type=part["content_type"])
            else:
                body.add_field(part["name"], customer.fill(part["value"]))
    # The bundle's REST and chat-ntf XHRs are cross-origin without credentials; its download
    # is a form navigation, which CORS does not govern.
    navigation = bool(request.get("navigation"))
    if not navigation:
        await browser_cors(http, url, origin, {
            **headers, "Content-Type": request["content_type"]}, credentials=False)
    async with http.request(request["method"], url, data=body,
                            headers={**headers, "Origin": origin}) as resp:
        payload = await resp.read()
        status, content_type = resp.status, resp.content_type
        if not navigation:
            check_cors(resp.headers, url, origin, credentials=False)
    if step.get("failed"):
        # The widget shows a refusal from HTTP 400 + errors[] only.
        assert status == 400, (where, status, payload)
        assert check_refusal(json.loads(payload), where=where) == recorded_codes(step), where
        return
    assert status == 200, (where, status, payload[:300])
    if "download" in step.get("label", "").lower():
        file_id = customer.values["fileId"]
        assert payload == agent_files[file_id], where
        return
    # The bundle reads uploads' replies as text and parses them itself.
    reply = json.loads(payload)
    assert content_type == "application/json", where
    check_chat_reply(reply, where=where)
    if "(restore)" in step.get("label", ""):
        assert reply["chatEnded"] is False, where
    if "limits" in step.get("label", "") or "GetLimits" in step.get("label", ""):
        limits = reply["messages"][-1]
        assert limits["text"] == "file-client-cfg-get", where
        for key in ("upload-file-types", "upload-need-agent", "upload-max-file-size"):
            assert key in limits["userData"], (where, key)
    if "file-id" in (reply.get("userData") or {}):
        assert reply["userData"]["file-id"], where
    customer.learn(reply)


async def replay_bayeux(step: dict[str, Any], bayeux: Bayeux, customer: Customer,
                        where: str) -> None:
    messages = customer.fill(step["bayeux"], numbers=True)
    if messages[0]["channel"] == "/meta/connect":
        # The session's first connect (advice.timeout 0) goes as recorded; from its reply on,
        # the connect loop keeps the held one outstanding, as the bundle's client does. The
        # recording must agree with that model: every later connect is the held one.
        [connect] = step["bayeux"]
        if "advice" not in connect:
            assert without_id(connect) == bayeux.held, where
            return
        bayeux.connect_path = (step.get("http") or {}).get("path", "")
        bayeux.open = True
        await bayeux.send(messages, step.get("http"), step.get("websocket"))
        first = await bayeux.reply_to(str(messages[0]["id"]))
        assert first["successful"] is True, (where, first)
        return
    delivered = len(bayeux.deliveries)
    await bayeux.send(messages, step.get("http"), step.get("websocket"))
    for msg in messages:
        reply = await bayeux.reply_to(str(msg["id"]))
        if step.get("failed") and msg["channel"].startswith("/service/"):
            assert reply["successful"] is False, (where, reply)
            assert [int(reply["error"].split(":")[1])] == recorded_codes(step), (where, reply)
            # ... and the GMS refusal is delivered too: that is what the bundle shows.
            assert check_refusal(await bayeux.delivery(delivered), where=where) == \
                recorded_codes(step)
            continue
        assert reply["successful"] is True, (where, reply)
        if msg["channel"] == "/meta/disconnect":
            await bayeux.close()
        operation = msg.get("data", {}).get("operation")
        if operation == "requestChat":
            # The bundle's startChat resolves with the first delivery: the new chat.
            answer = await bayeux.delivery(delivered)
            assert answer["messages"][0]["type"] == "ParticipantJoined", where
        elif operation == "requestNotifications":
            answer = await bayeux.delivery(delivered)
            assert answer["chatEnded"] is False, (where, answer)
            assert answer["secureKey"] == customer.values["secureKey"], where


async def settle(server: RunningServer, customer: Customer, bayeux: Bayeux,
                 transport: str) -> None:
    """Over CometD, wait until everything the chat holds has been pushed to the client."""
    chat_id = customer.values.get("chatId")
    if transport == "rest" or chat_id is None or not bayeux.open:
        return
    chat = server.engine.chats[chat_id]
    await customer.wait(lambda: set(range(1, chat.next_index)) <= set(customer.seen[chat_id]))
    # Exactly once per session: no index pushed twice (replies are snapshots).
    assert len(customer.session_seen) == len(set(customer.session_seen)), customer.session_seen


@pytest.mark.parametrize("name", RECORDINGS)
async def test_the_recorded_genesys_widgets_conversation_replays(
        name: str, server_config: ServerConfig, agent_factory: Any) -> None:
    recording = load(name)
    keys = (recording["apikey"],) if "apikey" in recording else ()
    server = await start_server(replace(server_config, api_keys=keys,
                                        services=(recording["service"],)))
    try:
        await server.add_agent("grace", nickname="Grace")
        agent = await agent_factory(server.url, "grace")
        customer = await replay(name, server, agent)
        chats = [c for c in server.engine.chats.values()]
        assert len(chats) == 2 and all(c.ended for c in chats)
        first, second = sorted(chats, key=lambda c: c.created_ms)
        # Every index of both chats reached the customer (up to the customer's own leaving:
        # the bundle stops listening when it disconnects); each event is stored once.
        for chat in (first, second):
            left = [m.index for m in chat.events
                    if m.type == "ParticipantLeft" and m.from_.type == "Client"]
            last = left[0] - 1 if left else chat.next_index - 1
            assert set(range(1, last + 1)) <= set(customer.seen[chat.chat_id])
            assert [m.index for m in chat.events] == list(range(1, chat.next_index))
        said = [(m.from_.type, m.text) for m in first.events if m.type == "Message"]
        customer_said = [text for who, text in said if who == "Client"]
        assert customer_said == ["Where is my parcel A-1009?", "Thanks!"]
        assert ("Agent", "Hello Ada, how can I help?") in said
        assert "It ships tomorrow." in customer.texts and "Hello again, Ada." in customer.texts
        assert [f.name for f in first.files.values()] == ["parcel-note.txt", "return-label.txt"]
        # The page context the bundle sends reaches the agent with the chat.
        assert first.user_data["_genesys_source"] == "web"
        assert first.user_data["_genesys_url"].startswith("http://site.test")
        if transport_is_cometd(recording):
            previews = [m.text for m in first.events
                        if m.type == "TypingStarted" and m.from_.type == "Client"]
            assert previews and previews[-1] == "Where is my parcel A-1009?"
        ended_by = [m.from_.type for m in second.events if m.type == "ParticipantLeft"]
        assert ended_by[0] == "Agent"
    finally:
        await server.runner.cleanup()


def transport_is_cometd(recording: dict[str, Any]) -> bool:
    return recording["transport"] in ("websocket", "long-polling")
