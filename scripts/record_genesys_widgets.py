"""Record what the real Genesys Widgets 8.5 bundle sends to ``webchat serve``.

    .venv/bin/python scripts/record_genesys_widgets.py --bundle-dir /tmp/gw
    .venv/bin/python scripts/record_genesys_widgets.py --bundle-dir /tmp/gw --transport rest

The bundle (``widgets.min.js`` and ``widgets.min.css``, third-party code) is read from
``--bundle-dir`` at run time and is never copied into this repository. The tool starts a real
``webchat serve`` on loopback (``chat.test``), serves a customer page embedding the bundle from
a second origin (``site.test``; both names are mapped to 127.0.0.1 by Chromium's
``--host-resolver-rules``, because the bundle writes its cookies with ``domain=.<host>``, which
a browser drops for an IP literal), drives the bundle's WebChat widget in headless Debian
Chromium through one scenario per transport and plays the agent itself through the agent API.

Every request the page makes to the chat server (HTTP: method, path, bundle-set headers, the
urlencoded form as ordered pairs or the multipart parts; WebSocket: each frame's Bayeux
messages) is written with its reply to ``tests/fixtures/genesys-widgets/<transport>.json``,
with the values the client learned from replies replaced by placeholders (``{chatId}``,
``{secureKey}``, ``{userId}``, ``{alias}``, ``{clientId}``, ``{fileId}``, ``{nextPosition}``).
A step the server refused is marked ``"failed"``; when the conversation cannot go on, the file
still holds everything seen until then and ``"outcome"`` says where and why it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import email.parser
import email.policy
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web
from playwright.async_api import (
    Browser,
    BrowserContext,
    Download,
    Page,
    Request,
    Response,
    WebSocket,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from webchat.transport.agent import AgentApiError, AgentClient  # noqa: E402

PEER = "Genesys Widgets 8.5.007.03 widgets.min.js"
SERVICE = "customer-support"
SITE_HOST = "site.test"
CHAT_HOST = "chat.test"
CHROMIUM = "/usr/bin/chromium"
AGENT_USER, AGENT_PASSWORD = "recorder", "recorder-pw"
API_KEY = "recorder-key-0042"
TRANSPORTS = ("rest", "websocket", "long-polling")
WAIT_S = 20.0
PLACEHOLDER_KEYS = ("chatId", "secureKey", "userId", "alias", "clientId", "fileId")
CUSTOMER_FILE = ("parcel-note.txt", "text/plain", b"Parcel A-1009: left at the door?\n")
AGENT_FILE = ("return-label.txt", "text/plain", "Return label for parcel A-1009\n")
Json = Any
SETTLED = """() => {
  const w = document.querySelector(".cx-widget.cx-webchat");
  if (!w) return false;
  const r = w.getBoundingClientRect(), now = [r.top, r.left, r.height].join();
  const faded = [...w.querySelectorAll(".cx-message")].every(
    m => getComputedStyle(m).opacity === "1");
  const still = window.__recorderLastRect === now;
  window.__recorderLastRect = now;
  return still && faded && r.bottom <= innerHeight + 1;
}"""
# Chromium does not hand the bytes of a File in an XHR's FormData to the recorder, so the page
# reports each FormData body it sends (entries, with a file's name, type and size).
FORM_DATA_PROBE = """(() => {
  const open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.__recorderUrl = new URL(String(url), location.href).href;
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function (body) {
    if (body instanceof FormData && window.__recorderFormData) {
      const parts = [];
      for (const [name, value] of body.entries()) {
        parts.push(value instanceof File
          ? {name, filename: value.name, content_type: value.type || null, size: value.size}
          : {name, value: String(value)});
      }
      window.__recorderFormData(this.__recorderUrl || "", parts);
    }
    return send.apply(this, arguments);
  };
})();"""


class Stuck(Exception):
    """The scenario cannot go on (the server refused something, or the page never showed
    what was expected)."""


# ---- the recording --------------------------------------------------------------------------


@dataclass
class Recording:
    transport: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    phase: str = ""
    seq: int = 0
    known: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in
                                                                 PLACEHOLDER_KEYS})
    # (seq, chatId, index) of every transcript event a reply or delivery carried to the page.
    received: list[tuple[int, str, int]] = field(default_factory=list)
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ws_outstanding: list[dict[str, Any]] = field(default_factory=list)
    form_data: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add(self, step: dict[str, Any]) -> dict[str, Any]:
        step["_seq"] = self.next_seq()
        step["_phase"] = self.phase
        self.steps.append(step)
        self.changed.set()
        return step

    def agent(self, do: str, **fields: Any) -> None:
        self.add({"actor": "agent", "do": do, **fields})

    def customer_steps(self) -> list[dict[str, Any]]:
        return [s for s in self.steps if s["actor"] == "customer" and "do" not in s]

    async def wait_for(self, what: str, predicate: Callable[[], bool],
                       within: float = WAIT_S) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise Stuck(f"waited {within:.0f}s for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))

    def learn(self, value: Json) -> None:
        """Remember the identifiers a reply gave the client, and the transcript indexes."""
        if isinstance(value, list):
            for item in value:
                self.learn(item)
            return
        if not isinstance(value, dict):
            return
        for key in PLACEHOLDER_KEYS:
            found = value.get(key)
            if isinstance(found, str | int) and not isinstance(found, bool) and str(found):
                self.known[key].add(str(found))
        file_id = value.get("file-id")
        if isinstance(file_id, str) and file_id:
            self.known["fileId"].add(file_id)
        for nested in value.values():
            self.learn(nested)

    def saw_messages(self, seq: int, chat_id: str, payload: Json) -> None:
        messages = payload.get("messages") if isinstance(payload, dict) else None
        for message in messages or []:
            if isinstance(message, dict) and isinstance(message.get("index"), int):
                self.received.append((seq, chat_id, message["index"]))

    def track(self, task: Awaitable[None]) -> None:
        t = asyncio.ensure_future(task)
        self.pending.add(t)
        t.add_done_callback(self.pending.discard)

    async def settle(self) -> None:
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)


def _parse_multipart(content_type: str, body: bytes) -> list[dict[str, Any]]:
    raw = b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts: list[dict[str, Any]] = []
    for part in message.iter_parts():
        disposition = part.get("content-disposition", "")
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        entry: dict[str, Any] = {"name": str(name) if name is not None else None}
        if filename is not None or "filename=" in str(disposition):
            entry["filename"] = filename or ""
            entry["content_type"] = part.get("content-type")
            entry["size"] = len(data)
        else:
            entry["value"] = data.decode("utf-8", "replace")
        parts.append(entry)
    return parts


def _reply_failure(reply: Json) -> str | None:
    """Why a GMS reply (or a chatV2 delivery's data) says the operation failed, if it does."""
    if not isinstance(reply, dict):
        return None
    errors = reply.get("errors")
    if errors:
        return "; ".join(f"{e.get('code')} {e.get('advice', e.get('message', ''))}".strip()
                         for e in errors if isinstance(e, dict)) or "errors"
    status = reply.get("statusCode")
    if status not in (None, 0):
        return f"statusCode {status}"
    return None


class Recorder:
    """Follows one browser context's traffic to the chat server."""

    def __init__(self, rec: Recording, chat_origin: str) -> None:
        self.rec = rec
        self.chat_origin = chat_origin
        self.by_request: dict[int, dict[str, Any]] = {}

    async def attach(self, context: BrowserContext) -> None:
        await context.expose_function("__recorderFormData", self.on_form_data)
        await context.add_init_script(FORM_DATA_PROBE)
        context.on("request", self.on_request)
        context.on("response", self.on_response)
        context.on("requestfailed", self.on_failed)
        context.on("page", self.on_page)

    def on_form_data(self, url: str, parts: list[dict[str, Any]]) -> None:
        self.rec.form_data.append((url, parts))

    def on_page(self, page: Page) -> None:
        page.on("websocket", self.on_websocket)

    # HTTP

    def on_request(self, request: Request) -> None:
        url = urlsplit(request.url)
        origin = f"{url.scheme}://{url.netloc}"
        if origin != self.chat_origin:
            if not origin.startswith(f"http://{SITE_HOST}:") and url.scheme in ("http", "https"):
                self.rec.unexpected.append(f"{request.method} {request.url}")
            return
        if request.url.startswith("ws"):
            return
        content_type = request.headers.get("content-type", "")
        http: dict[str, Any] = {"method": request.method, "path": url.path, "query": url.query,
                                "content_type": content_type.split(";")[0].strip()}
        headers = {k: v for k, v in request.headers.items() if k.lower() == "apikey"}
        http["headers"] = headers
        if request.is_navigation_request():
            http["navigation"] = True
        body = request.post_data_buffer or b""
        step: dict[str, Any] = {"actor": "customer", "label": "", "http": http,
                                "_url": request.url}
        if http["content_type"] == "application/x-www-form-urlencoded":
            http["form"] = [list(pair) for pair in
                            parse_qsl(body.decode(), keep_blank_values=True)]
        elif http["content_type"] == "multipart/form-data":
            http["parts"] = _parse_multipart(content_type, body)
        elif http["content_type"] == "application/json" or body[:1] in (b"[", b"{"):
            try:
                decoded = json.loads(body)
            except ValueError:
                http["body"] = body.decode("utf-8", "replace")
            else:
                step["bayeux"] = decoded if isinstance(decoded, list) else [decoded]
        elif body:
            http["body"] = body.decode("utf-8", "replace")
        step["label"] = _label(step)
        self.rec.add(step)
        self.by_request[id(request)] = step

    def on_response(self, response: Response) -> None:
        step = self.by_request.get(id(response.request))
        if step is None:
            return
        step["_reply_seq"] = self.rec.next_seq()
        self.rec.track(self._read_reply(step, response))

    async def _read_reply(self, step: dict[str, Any], response: Response) -> None:
        reply: dict[str, Any] = {"status": response.status}
        try:
            body = await response.body()
        except Exception as exc:  # the page navigated away before the body was read
            reply["body_unavailable"] = str(exc).splitlines()[0][:120]
            body = b""
        ctype = response.headers.get("content-type", "")
        if "json" in ctype or body[:1] in (b"{", b"["):
            try:
                reply["json"] = json.loads(body)
            except ValueError:
                reply["text"] = body[:300].decode("utf-8", "replace")
        elif body:
            reply["content_type"] = ctype
            reply["size"] = len(body)
            if ctype.startswith("text/"):
                reply["text"] = body[:300].decode("utf-8", "replace")
        if "content-disposition" in response.headers:
            reply["content_disposition"] = response.headers["content-disposition"]
        step["reply"] = reply
        payload = reply.get("json")
        self.rec.learn(payload)
        if "bayeux" in step and isinstance(payload, list):
            for message in payload:
                self._saw_delivery(step["_reply_seq"], message)
        elif isinstance(payload, dict):
            self.rec.saw_messages(step["_reply_seq"], str(payload.get("chatId", "")), payload)
        self.rec.changed.set()

    def on_failed(self, request: Request) -> None:
        step = self.by_request.get(id(request))
        if step is not None and "reply" not in step:
            step["reply"] = {"status": 0, "error": request.failure or "failed"}
            self.rec.changed.set()

    # WebSocket

    def on_websocket(self, ws: WebSocket) -> None:
        url = urlsplit(ws.url)
        if f"{url.hostname}" != CHAT_HOST:
            self.rec.unexpected.append(f"WebSocket {ws.url}")
            return
        opened = {"path": url.path, "query": url.query}
        first = [True]

        def sent(payload: str | bytes) -> None:
            text = payload.decode() if isinstance(payload, bytes) else payload
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = text
            messages = decoded if isinstance(decoded, list) else [decoded]
            step: dict[str, Any] = {"actor": "customer", "label": "", "bayeux": messages}
            if first[0]:
                step["websocket"] = opened
                first[0] = False
            step["label"] = _label(step)
            self.rec.add(step)
            self.rec.ws_outstanding.append(step)

        def received(payload: str | bytes) -> None:
            seq = self.rec.next_seq()
            text = payload.decode() if isinstance(payload, bytes) else payload
            try:
                decoded = json.loads(text)
            except ValueError:
                return
            for message in decoded if isinstance(decoded, list) else [decoded]:
                self._ws_reply(seq, message)
            self.rec.changed.set()

        ws.on("framesent", sent)
        ws.on("framereceived", received)

    def _ws_reply(self, seq: int, message: Json) -> None:
        self.rec.learn(message)
        self._saw_delivery(seq, message)
        target = None
        if isinstance(message, dict) and "id" in message:
            for step in reversed(self.rec.ws_outstanding):
                if any(isinstance(m, dict) and m.get("id") == message["id"]
                       and m.get("channel") == message.get("channel")
                       for m in step["bayeux"]):
                    target = step
                    break
        if target is None:  # a delivery: it rides on the outstanding /meta/connect
            for step in reversed(self.rec.ws_outstanding):
                if any(isinstance(m, dict) and m.get("channel") == "/meta/connect"
                       for m in step["bayeux"]):
                    target = step
                    break
        if target is None and self.rec.ws_outstanding:
            target = self.rec.ws_outstanding[-1]
        if target is None:
            return
        reply = target.setdefault("reply", {"bayeux": []})
        if isinstance(message, dict) and "id" not in message:
            reply.setdefault("deliveries", []).append(message)
        else:
            reply["bayeux"].append(message)
        target.setdefault("_reply_seq", seq)
        answered = {m.get("id") for m in reply["bayeux"] if isinstance(m, dict)}
        if all(not isinstance(m, dict) or m.get("id") in answered for m in target["bayeux"]):
            with contextlib.suppress(ValueError):
                self.rec.ws_outstanding.remove(target)

    def _saw_delivery(self, seq: int, message: Json) -> None:
        if not isinstance(message, dict):
            return
        data = message.get("data")
        if isinstance(data, dict) and str(message.get("channel", "")).startswith("/service"):
            self.rec.saw_messages(seq, str(data.get("chatId", "")), data)
            why = _reply_failure(data)
            if why:  # blame the latest operation the page published before this delivery
                for step in reversed(self.rec.customer_steps()):
                    if step["_seq"] < seq and any(
                            isinstance(m, dict) and str(m.get("channel", "")).startswith(
                                "/service") for m in step.get("bayeux", [])):
                        step.setdefault("_delivery_failures", []).append(
                            f"{message.get('channel')} delivery: {why}")
                        break


def _label(step: dict[str, Any]) -> str:
    if "bayeux" in step:
        names = []
        for m in step["bayeux"]:
            if not isinstance(m, dict):
                names.append("?")
                continue
            channel = str(m.get("channel", "?"))
            data = m.get("data")
            if isinstance(data, dict) and "operation" in data:
                names.append(f"{channel} {data['operation']}")
            else:
                names.append(channel)
        return ", ".join(names)
    http = step["http"]
    path = str(http["path"])
    base = f"/genesys/2/chat/{SERVICE}"
    if path.rstrip("/") == base:
        return "requestChat"
    if path.startswith(base + "/"):
        rest = path[len(base) + 1:].split("/", 1)
        op = rest[1] if len(rest) > 1 else ""
        return "file download" if op.endswith("/download") else op
    if path.endswith("/chat-ntf"):
        for part in http.get("parts", []):
            if part.get("name") == "operation":
                return f"chat-ntf {part.get('value')}"
        return "chat-ntf"
    return f"{http['method']} {path}"


# ---- writing the fixture --------------------------------------------------------------------


def _placeholders(rec: Recording) -> Callable[[str, str], str]:
    long_values = {v: k for k in ("chatId", "secureKey", "clientId", "fileId", "userId")
                   for v in rec.known[k] if len(v) >= 8}

    def sub(key: str, value: str) -> str:
        if key in rec.known and value in rec.known[key]:
            return "{" + key + "}"
        if value in long_values:
            return "{" + long_values[value] + "}"
        return value

    return sub


def _expected_position(rec: Recording, chat_id: str, before: int) -> int:
    indexes = [i for seq, chat, i in rec.received if seq < before and chat == chat_id]
    return max(indexes, default=0) + 1


def _position(rec: Recording, step: dict[str, Any], chat_id: str, value: str) -> str:
    try:
        sent = int(value)
    except ValueError:
        return value
    expected = _expected_position(rec, chat_id, step["_seq"])
    if sent == expected:
        return "{nextPosition}"
    note = (f"transcriptPosition {sent} kept literal: the replies so far had carried this "
            f"chat's transcript up to index {expected - 1}, so the next position was "
            f"{expected}")
    step["note"] = (step["note"] + "; " + note) if "note" in step else note
    return value


def _rewrite(rec: Recording, step: dict[str, Any]) -> dict[str, Any]:
    sub = _placeholders(rec)
    out: dict[str, Any] = {k: v for k, v in step.items() if not k.startswith("_")}
    if "label" in out:  # multipart parts may have been filled in since the request
        restore = str(out["label"]).endswith(" (restore)")
        out["label"] = _label(step) + (" (restore)" if restore else "")
    if "phase" not in out and step.get("_phase"):
        out = {"actor": out.pop("actor"), "phase": step["_phase"], **out}
    chat_id = ""
    if "http" in step:
        http = dict(step["http"])
        segments = str(http["path"]).split("/")
        for seg in segments:
            if seg in rec.known["chatId"]:
                chat_id = seg
        http["path"] = "/".join(sub("chatId", s) if s in rec.known["chatId"] else
                                sub("fileId", s) if s in rec.known["fileId"] else s
                                for s in segments)
        if "form" in http:
            form = []
            for key, value in http["form"]:
                if key == "transcriptPosition":
                    form.append([key, _position(rec, step, chat_id, value)])
                else:
                    form.append([key, sub(key, value)])
            http["form"] = form
        if "parts" in http:
            parts = []
            for part in http["parts"]:
                part = dict(part)
                if "value" in part:
                    part["value"] = sub(str(part["name"]), part["value"])
                parts.append(part)
            http["parts"] = parts
        if not http.get("headers"):
            http.pop("headers", None)
        out["http"] = http
    if "bayeux" in step:
        out["bayeux"] = [_rewrite_bayeux(rec, step, m, sub) for m in step["bayeux"]]
    if "note" in step:
        out["note"] = step["note"]
    if "reply" in step:
        out["reply"] = step["reply"]
    failure = _step_failure(step)
    if failure:
        out["failed"] = failure
    return out


def _rewrite_bayeux(rec: Recording, step: dict[str, Any], message: Json,
                    sub: Callable[[str, str], str]) -> Json:
    if not isinstance(message, dict):
        return message
    out = dict(message)
    if isinstance(out.get("clientId"), str):
        out["clientId"] = sub("clientId", out["clientId"])
    data = out.get("data")
    if isinstance(data, dict):
        new = {}
        chat_id = str(data.get("chatId", ""))
        for key, value in data.items():
            if key == "transcriptPosition" and isinstance(value, int | str):
                sent = _position(rec, step, chat_id, str(value))
                new[key] = sent if sent.startswith("{") else value
            elif isinstance(value, str):
                new[key] = sub(key, value)
            else:
                new[key] = value
        out["data"] = new
    return out


def _step_failure(step: dict[str, Any]) -> str | None:
    reply = step.get("reply")
    if step.get("actor") != "customer" or "do" in step:
        return None
    if reply is None:
        return "no reply seen"
    delivered = list(step.get("_delivery_failures", []))
    if "bayeux" in reply:
        reasons = [f"{m.get('channel')}: {m.get('error', 'unsuccessful')}"
                   for m in reply["bayeux"]
                   if isinstance(m, dict) and m.get("successful") is False]
        return "; ".join(reasons + delivered) or None
    status = int(reply.get("status", 0))
    payload = reply.get("json")
    if isinstance(payload, list):
        reasons = [f"{m.get('channel')}: {m.get('error', 'unsuccessful')}" for m in payload
                   if isinstance(m, dict) and m.get("successful") is False] + delivered
        if status >= 400:
            reasons.insert(0, f"HTTP {status}")
        return "; ".join(reasons) or None
    why = _reply_failure(payload)
    if status >= 400 or status == 0 or why:
        return f"HTTP {status}" + (f": {why}" if why else "")
    return None


def _collapse(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive identical REST refreshes and CometD /meta/connect steps become one step
    with ``repeat`` (Bayeux ``id`` values are not compared; the first step's are kept). A
    handshake/connect pair the client repeats (a reconnect loop) is kept once, both steps
    with ``repeat`` and ``repeat_cycle: 2``."""

    def key(step: dict[str, Any]) -> str | None:
        if step.get("actor") != "customer" or "do" in step:
            return None
        if "bayeux" in step:
            if not all(isinstance(m, dict) and m.get("channel") in ("/meta/connect",
                                                                     "/meta/handshake")
                       for m in step["bayeux"]):
                return None
            bare = [{k: v for k, v in m.items() if k != "id"} for m in step["bayeux"]]
            return json.dumps([bare, step.get("http"), step.get("phase"), step.get("failed")],
                              sort_keys=True)
        if step.get("label") == "refresh":
            return json.dumps([step["http"], step.get("phase"), step.get("note"),
                               step.get("failed")], sort_keys=True)
        return None

    out: list[dict[str, Any]] = []
    keys: list[str | None] = []
    i = 0
    while i < len(steps):
        step, k = steps[i], key(steps[i])
        single = k is not None and keys and keys[-1] == k and "repeat_cycle" not in out[-1] \
            and all(m.get("channel") == "/meta/connect" for m in step.get("bayeux", []))
        if single:
            out[-1]["repeat"] = out[-1].get("repeat", 1) + 1
            i += 1
            continue
        if k is not None and i + 1 < len(steps) and len(keys) >= 2 and keys[-2] == k \
                and keys[-1] == key(steps[i + 1]) and keys[-1] is not None \
                and out[-1].get("repeat", 1) == out[-2].get("repeat", 1):
            for done in out[-2:]:
                done["repeat"] = done.get("repeat", 1) + 1
                done["repeat_cycle"] = 2
            i += 2
            continue
        out.append(step)
        keys.append(k)
        i += 1
    for step in out:
        if step.get("repeat_cycle") == 2 and "note" not in step:
            step["note"] = ("sent as a pair with the neighbouring step, the pair repeated "
                            f"{step['repeat']} times (a reconnect loop)")
    return out


def _fill_form_data(rec: Recording, steps: list[dict[str, Any]]) -> None:
    """XHR multipart bodies: the parts as the page built them (the browser does not expose a
    File's bytes to the recorder), matched to the requests by URL, in order."""
    reports = list(rec.form_data)
    for step in steps:
        http = step.get("http")
        if not http or http.get("content_type") != "multipart/form-data" or \
                http.get("navigation"):
            continue
        for n, (url, parts) in enumerate(reports):
            if url == step.get("_url"):
                del reports[n]
                seen = http.get("parts") or []
                if len(parts) != len(seen) or any(p.get("name") != q.get("name")
                                                   for p, q in zip(parts, seen, strict=False)):
                    http["parts"] = parts
                    http["parts_from"] = "the page's FormData (the browser withheld the body)"
                break


def fixture(rec: Recording, outcome: dict[str, Any]) -> dict[str, Any]:
    steps = sorted(rec.steps, key=lambda s: int(s["_seq"]))
    _fill_form_data(rec, steps)
    written = _collapse([_rewrite(rec, s) for s in steps])
    failures = [{"phase": s.get("phase"), "label": s.get("label"), "failed": s["failed"]}
                for s in written if s.get("failed")]
    result: dict[str, Any] = {
        "peer": PEER, "transport": rec.transport.removesuffix("-apikey"),
        "recorded": datetime.date.today().isoformat(), "service": SERVICE,
        "outcome": outcome, "failures": failures}
    if rec.transport.endswith("-apikey"):
        result["apikey"] = API_KEY
    if rec.unexpected:
        result["unexpected_requests"] = sorted(set(rec.unexpected))
    result["steps"] = written
    return result


# ---- the pieces: chat server, customer site, browser ----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def chat_server(api_key: str | None) -> AsyncIterator[int]:
    """A real ``webchat serve`` from this checkout, on a loopback port, in its own process."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gw-record-") as data_dir:
        exe = Path(sys.executable).with_name("webchat")
        cmd = [str(exe) if exe.exists() else "webchat", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", data_dir,
               "--agent", f"{AGENT_USER}:{AGENT_PASSWORD}"]
        if api_key:
            cmd += ["--api-key", api_key]
        log = Path(data_dir) / "serve.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=out,
                                                        stderr=asyncio.subprocess.STDOUT)
            try:
                async with aiohttp.ClientSession() as http:
                    deadline = time.monotonic() + 20
                    while True:
                        if proc.returncode is not None:
                            raise RuntimeError(f"webchat serve exited: {log.read_text()}")
                        with contextlib.suppress(aiohttp.ClientError):
                            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                                if r.status == 200:
                                    break
                        if time.monotonic() > deadline:
                            raise RuntimeError("webchat serve did not start")
                        await asyncio.sleep(0.1)
                yield port
            finally:
                if proc.returncode is None:
                    proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), 10)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()


def page_html(webchat: dict[str, Any]) -> str:
    config = {"main": {"downloadGoogleFont": False, "theme": "light",
                       "plugins": ["cx-webchat", "cx-webchat-service"]},
              "webchat": webchat}
    return ("<!doctype html><html><head><meta charset=utf-8><title>Parcel help</title>"
            "<link rel=stylesheet href=/gw/widgets.min.css></head><body>"
            "<h1>Parcel help</h1><p>A customer page embedding the Genesys widget.</p>"
            f"<script>window._genesys = {{widgets: {json.dumps(config)}}};</script>"
            "<script src=/gw/widgets.min.js></script></body></html>")


@contextlib.asynccontextmanager
async def customer_site(bundle_dir: Path, html: Callable[[], str]) -> AsyncIterator[int]:
    async def index(_: web.Request) -> web.Response:
        return web.Response(text=html(), content_type="text/html")

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ("widgets.min.js", "widgets.min.css"):
            raise web.HTTPNotFound()
        return web.FileResponse(bundle_dir / name)

    async def no_icon(_: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/gw/{name}", asset)
    app.router.add_get("/favicon.ico", no_icon)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def webchat_config(transport: str, chat: str, api_key: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "dataURL": f"{chat}/genesys/2/chat/{SERVICE}",
        "uploadsEnabled": True,
        "chatButton": {"enabled": True, "openDelay": 0, "effectDuration": 0},
        "userData": {"source": "gw-recorder"},
    }
    if transport == "rest":
        config["cometD"] = {"enabled": False}
    else:
        config["cometD"] = {"enabled": True, "cometURL": f"{chat}/genesys/cometd",
                            "channel": f"/service/chatV2/{SERVICE}",
                            "apiURL": f"{chat}/genesys/2/chat-ntf",
                            "websocketEnabled": transport == "websocket"}
    if api_key:
        config["apikey"] = api_key
    return config


# ---- the agent ------------------------------------------------------------------------------


class Agent:
    def __init__(self, url: str) -> None:
        self.client = AgentClient(url, AGENT_USER, AGENT_PASSWORD)
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def start(self) -> None:
        await self.client.login()
        self.client.listen(self.handle, retry_s=0.1)
        await self.client.wait_connected()
        await self.client.set_state(True, 3)

    def handle(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait(self, what: str, predicate: Callable[[dict[str, Any]], bool],
                   within: float = WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise Stuck(f"the agent waited {within:.0f}s for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))

    async def offered(self, known: set[str]) -> str:
        event = await self.wait("a chat offer", lambda e: e.get("type") == "offer"
                                and e["chat"]["chatId"] not in known)
        return str(event["chat"]["chatId"])

    def from_client(self, chat_id: str, kind: str, text: str | None = None
                    ) -> Callable[[dict[str, Any]], bool]:
        def check(e: dict[str, Any]) -> bool:
            if e.get("type") != "message" or e.get("chatId") != chat_id:
                return False
            m = e["message"]
            return bool(m.get("type") == kind and m.get("from", {}).get("type") == "Client"
                        and (text is None or m.get("text") == text))
        return check

    async def close(self) -> None:
        await self.client.close()


# ---- the scenario ---------------------------------------------------------------------------


class Scenario:
    def __init__(self, rec: Recording, agent: Agent, context: BrowserContext, page: Page,
                 site: str, shots: Path) -> None:
        self.rec = rec
        self.agent = agent
        self.context = context
        self.page = page
        self.site = site
        self.shots = shots
        self.chats: set[str] = set()
        self.notes: list[str] = []
        self.reached: list[str] = []

    async def barrier(self) -> None:
        """Every browser event from before this point has reached the recorder (Playwright
        delivers events in order, ahead of the reply to this evaluation)."""
        with contextlib.suppress(PlaywrightError):
            await self.page.evaluate("0")

    async def agent_step(self, do: str, **fields: Any) -> None:
        await self.barrier()
        self.rec.agent(do, **fields)

    async def phase(self, name: str) -> None:
        await self.barrier()
        self.rec.phase = name
        self.reached.append(name)
        print(f"  [{self.rec.transport}] {name}", flush=True)

    def widget(self) -> Any:
        return self.page.locator(".cx-widget.cx-webchat")

    async def visible(self, what: str, selector: str, *, text: str | None = None,
                      within: float = WAIT_S) -> None:
        locator = self.page.locator(selector)
        if text is not None:
            locator = locator.filter(has_text=text)
        try:
            await locator.first.wait_for(state="visible", timeout=within * 1000)
        except Exception as exc:
            alert = await self.alert_text()
            raise Stuck(f"the page never showed {what}"
                        + (f" (widget alert: {alert!r})" if alert else "")) from exc

    async def alert_text(self) -> str:
        alert = self.page.locator(".cx-webchat .cx-alert.cx-general:visible p, "
                                  ".cx-webchat .cx-alert:visible .cx-reason")
        if await alert.count():
            return " ".join((await alert.first.inner_text()).split())
        return ""

    async def dismiss_alert(self) -> str:
        text = await self.alert_text()
        button = self.page.locator(".cx-webchat .cx-alert:visible button").first
        if text and await button.count():
            await button.click()
        return text

    async def shot(self, name: str) -> None:
        """A screenshot once the widget stopped moving and its messages faded in."""
        with contextlib.suppress(PlaywrightError):
            await self.page.wait_for_function(SETTLED, polling=150, timeout=5000)
        self.shots.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(self.shots / f"{self.rec.transport}-{name}.png"))

    def last_customer(self, predicate: Callable[[dict[str, Any]], bool]
                      ) -> dict[str, Any] | None:
        steps: list[dict[str, Any]] = self.rec.customer_steps()
        return next((step for step in reversed(steps) if predicate(step)), None)

    async def answered(self, what: str, predicate: Callable[[dict[str, Any]], bool],
                       after: int) -> dict[str, Any]:
        """The first customer step after ``after`` matching ``predicate``, once answered."""
        def found() -> dict[str, Any] | None:
            for step in self.rec.customer_steps():
                if step["_seq"] > after and predicate(step) and "reply" in step:
                    return step
            return None
        await self.rec.wait_for(what, lambda: found() is not None)
        step = found()
        assert step is not None
        return step

    def is_op(self, *ops: str) -> Callable[[dict[str, Any]], bool]:
        def check(step: dict[str, Any]) -> bool:
            label = str(step.get("label", ""))
            return any(label == op or label.endswith(" " + op) or f" {op}," in label
                       or label.startswith(op) for op in ops)
        return check

    # the steps

    async def open_widget(self, phase: str = "open the widget") -> None:
        await self.phase(phase)
        await self.visible("the chat button", ".cx-webchat-chat-button")
        await self.page.locator(".cx-webchat-chat-button").first.click()
        await self.visible("the registration form", ".cx-webchat .cx-form")

    async def fill_form(self, first: str, last: str, email: str, subject: str) -> None:
        form = self.page.locator(".cx-webchat .cx-form")
        if not await form.locator("input[name=lastname]").is_enabled():
            alert = await self.alert_text()
            raise Stuck("the widget disabled its registration form"
                        + (f" and says {alert!r}" if alert else ""))
        await form.locator("input[name=firstname]").fill(first)
        await form.locator("input[name=lastname]").fill(last)
        await form.locator("input[name=email]").fill(email)
        await form.locator("input[name=subject]").fill(subject)

    async def register_without_first_name(self) -> None:
        await self.phase("register with the first name empty")
        await self.fill_form("", "Byron", "ada@example.org", "Parcel A-1009")
        mark = self.rec.seq
        await self.page.locator(".cx-webchat .cx-form .cx-submit").click()
        try:
            step = await self.answered("the chat request", self.is_op("requestChat"), mark)
        except Stuck:
            self.notes.append("registration with an empty first name: no request went out")
            return
        await asyncio.sleep(0.5)  # let the widget show its reaction to the reply
        started = await self.page.locator(".cx-webchat .cx-transcript-wrapper").is_visible()
        alert = await self.dismiss_alert()
        marked = await self.page.locator(".cx-webchat .cx-form input.cx-error").evaluate_all(
            "els => els.map(e => e.name)")
        step["widget"] = {"alert": alert, "fields_marked": marked, "chat_started": started}
        if started:
            raise Stuck("the server started a chat with an empty first name")

    async def register(self, phase: str = "register") -> str:
        await self.phase(phase)
        await self.fill_form("Ada", "Byron", "ada@example.org", "Parcel A-1009")
        mark = self.rec.seq
        await self.page.locator(".cx-webchat .cx-form .cx-submit").click()
        request = await self.answered("the chat request", self.is_op("requestChat"), mark)
        if request.get("reply") and _step_failure(request):
            await asyncio.sleep(0.5)
            alert = await self.dismiss_alert()
            raise Stuck(f"the chat request was refused: {_step_failure(request)}"
                        + (f"; the widget says {alert!r}" if alert else ""))
        chat_id = await self.agent.offered(self.chats)
        self.chats.add(chat_id)
        return chat_id

    async def accept(self, chat_id: str, phase: str = "agent accepts") -> None:
        await self.phase(phase)
        await self.agent_step("accept")
        accepted = await self.agent.client.accept(chat_id)
        self.agent.client.track(chat_id, int(accepted.get("nextPosition", 1)))
        await self.visible("the agent joining", ".cx-webchat .cx-transcript",
                           text=f"{AGENT_USER} Connected")

    async def agent_says(self, chat_id: str, text: str) -> None:
        await self.agent_step("send", text=text)
        await self.agent.client.send(chat_id, text)
        await self.visible(f"the agent's {text!r}", ".cx-webchat .cx-transcript .cx-message",
                           text=text)

    async def agent_typing(self, chat_id: str) -> None:
        await self.phase("agent types")
        await self.agent_step("typing", on=True)
        await self.agent.client.typing(chat_id, True)
        await self.visible("the agent typing", ".cx-webchat .cx-agent-typing")
        await self.agent_step("typing", on=False)
        await self.agent.client.typing(chat_id, False)
        try:
            await self.page.locator(".cx-webchat .cx-agent-typing").wait_for(
                state="detached", timeout=WAIT_S * 1000)
        except Exception as exc:
            raise Stuck("the agent's typing indicator never went away") from exc

    async def customer_types_and_sends(self, chat_id: str, text: str) -> None:
        await self.phase("customer types")
        box = self.page.locator(".cx-webchat textarea.cx-input")
        mark = self.rec.seq
        await box.press_sequentially(text[:12], delay=60)
        # The typing preview: REST refreshes carry the box's text as ``message``; CometD
        # sends startTyping (every 5 s while the text changes).
        try:
            await self.rec.wait_for(
                "a request carrying the typed text",
                lambda: any(s["_seq"] > mark and text[:4] in json.dumps(s.get("http", {}).get(
                    "form", s.get("bayeux", ""))) for s in self.rec.customer_steps()),
                within=12)
        except Stuck as exc:
            self.notes.append(f"typing preview: {exc}")
        await box.press_sequentially(text[12:], delay=20)
        await self.phase("customer sends")
        await box.press("Enter")
        await self.agent.wait(f"the customer's {text!r}",
                              self.agent.from_client(chat_id, "Message", text))

    async def reload(self) -> None:
        await self.phase("reload mid-chat")
        self.rec.add({"actor": "customer", "do": "reload"})
        mark = self.rec.seq
        await self.page.reload()
        await self.visible("the restored transcript", ".cx-webchat .cx-transcript .cx-message",
                           text="It ships tomorrow")
        first = next((st for st in self.rec.customer_steps() if st["_seq"] > mark
                      and not str(st["label"]).startswith("/meta")), None)
        if first is not None:
            first["label"] = f"{first['label']} (restore)"

    async def upload(self, chat_id: str) -> None:
        await self.phase("customer uploads a file")
        name, ctype, data = CUSTOMER_FILE
        await self.rec.wait_for("the file limits request", lambda: self.last_customer(
            self.is_op("file/limits", "fileGetLimits")) is not None, within=10)
        files = [{"name": name, "mimeType": ctype, "buffer": data}]
        # As a customer does it: the actions menu, "Send File", the file chooser.
        await self.page.locator(".cx-webchat .cx-tooltip-menu.cx-actions > button").click()
        send_file = self.page.locator(".cx-webchat .cx-actions .cx-sendFile")
        if await send_file.is_visible():
            async with self.page.expect_file_chooser(timeout=WAIT_S * 1000) as chooser:
                await send_file.click()
            await (await chooser.value).set_files(files=files)  # type: ignore[arg-type]
        else:
            self.notes.append("the actions menu offered no 'Send File' (the widget hides it "
                              "unless it understood the file limits reply); the file was set "
                              "on the widget's hidden file input instead")
            await self.page.locator(".cx-webchat input.cx-browseFile").set_input_files(
                files=files)  # type: ignore[arg-type]
        try:
            await self.agent.wait("the customer's file",
                                  self.agent.from_client(chat_id, "FileUploaded"))
        except Stuck:
            await asyncio.sleep(0.5)
            alert = await self.dismiss_alert()
            raise Stuck("the customer's file never reached the agent"
                        + (f"; the widget says {alert!r}" if alert else "")) from None

    async def download(self, chat_id: str) -> None:
        await self.phase("agent sends a file, customer downloads it")
        name, ctype, text = AGENT_FILE
        await self.agent_step("file", name=name, content_type=ctype, text=text)
        uploaded = await self.agent.client.upload_file(chat_id, name, text.encode(), ctype)
        self.rec.known["fileId"].add(str(uploaded["fileId"]))
        bubble = self.page.locator(".cx-webchat .cx-message.cx-them").filter(has_text=name)
        await self.visible("the agent's file", ".cx-webchat .cx-message.cx-them",
                           text=name)
        mark = self.rec.seq
        popups: list[Page] = []
        downloads: list[Download] = []

        def on_download(download: Download) -> None:
            downloads.append(download)

        def on_page(page: Page) -> None:
            popups.append(page)
            page.on("download", on_download)

        self.context.on("page", on_page)
        self.page.on("download", on_download)
        await bubble.locator(".cx-download-btn").first.click()
        step = await self.answered("the download form post", self.is_op("file download",
                                                                          "chat-ntf fileDownload"),
                                   mark)
        await self.rec.wait_for("a download", lambda: bool(downloads) or "reply" in step,
                                within=5)
        with contextlib.suppress(Stuck):
            await self.rec.wait_for("a download", lambda: bool(downloads), within=3)
        if downloads:
            path = await downloads[0].path()
            body = await asyncio.to_thread(Path(path).read_bytes) if path else b""
            step["downloaded"] = {"filename": downloads[0].suggested_filename,
                                  "matches": body == text.encode()}
        for popup in popups:
            with contextlib.suppress(Exception):
                await popup.close()
        self.context.remove_listener("page", on_page)
        self.page.remove_listener("download", on_download)

    async def customer_ends(self) -> None:
        await self.phase("customer ends the chat")
        await self.page.locator(".cx-webchat .cx-button-close").first.click()
        await self.visible("the end question", ".cx-webchat .cx-alert.cx-chat-end")
        mark = self.rec.seq
        await self.page.locator(".cx-webchat .cx-end-confirm").click()
        await self.answered("the disconnect", self.is_op("disconnect"), mark)
        await self.visible("'Chat Ended'", ".cx-webchat .cx-transcript", text="Chat Ended")

    async def second_chat(self) -> None:
        await self.phase("second chat: start")
        close = self.page.locator(".cx-webchat .cx-button-close").first
        if await close.is_visible():
            await close.click()
        await self.page.locator(".cx-webchat").first.wait_for(state="detached",
                                                                 timeout=WAIT_S * 1000)
        await self.open_widget("second chat: open the widget")
        chat_id = await self.register("second chat: register")
        await self.accept(chat_id, "second chat: agent accepts")
        await self.phase("second chat: talk")
        await self.agent_says(chat_id, "Hello again, Ada.")
        await self.phase("second chat: the agent ends it")
        await self.agent_step("end")
        await self.agent.client.end(chat_id)
        await self.visible("'Chat Ended'", ".cx-webchat .cx-transcript", text="Chat Ended")
        # A last poll or two after the end, then the bundle stops on its own.
        await asyncio.sleep(1.0)

    async def run(self) -> None:
        await self.page.goto(self.site)
        await self.open_widget()
        await self.register_without_first_name()
        chat_id = await self.register()
        await self.accept(chat_id)
        await self.phase("agent greets")
        await self.agent_says(chat_id, "Hello Ada, how can I help?")
        await self.shot("greeting")
        await self.agent_typing(chat_id)
        await self.customer_types_and_sends(chat_id, "Where is my parcel A-1009?")
        await self.phase("agent answers")
        await self.agent_says(chat_id, "It ships tomorrow.")
        await self.reload()
        await self.shot("after-reload")
        await self.phase("customer sends after the reload")
        box = self.page.locator(".cx-webchat textarea.cx-input")
        await box.fill("Thanks!")
        await box.press("Enter")
        await self.agent.wait("the customer's 'Thanks!'",
                              self.agent.from_client(chat_id, "Message", "Thanks!"))
        try:
            await self.upload(chat_id)
        except Stuck as exc:
            self.notes.append(f"customer upload: {exc}")
        try:
            await self.download(chat_id)
        except Stuck as exc:
            self.notes.append(f"agent file download: {exc}")
        await self.customer_ends()
        await self.second_chat()


async def record(transport: str, bundle_dir: Path, shots: Path, chromium: str,
                 browser: Browser | None = None) -> dict[str, Any]:
    api_key = API_KEY if transport.endswith("-apikey") else None
    base = transport.removesuffix("-apikey")
    rec = Recording(transport)
    async with chat_server(api_key) as chat_port:
        chat = f"http://{CHAT_HOST}:{chat_port}"
        config = webchat_config(base, chat, api_key)
        async with customer_site(bundle_dir, lambda: page_html(config)) as site_port:
            agent = Agent(f"http://127.0.0.1:{chat_port}")
            await agent.start()
            assert browser is not None
            context = await browser.new_context(accept_downloads=True,
                                                viewport={"width": 1100, "height": 760})
            recorder = Recorder(rec, chat)
            await recorder.attach(context)
            context.set_default_timeout(WAIT_S * 1000)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)[:300]))
            scenario = Scenario(rec, agent, context, page, f"http://{SITE_HOST}:{site_port}/",
                                shots)
            outcome: dict[str, Any] = {}
            try:
                await scenario.run()
                outcome["completed"] = True
            except Stuck as exc:
                outcome.update(completed=False, stopped_in=rec.phase, reason=str(exc))
                with contextlib.suppress(Exception):
                    await scenario.shot("stuck")
            except AgentApiError as exc:
                outcome.update(completed=False, stopped_in=rec.phase,
                               reason=f"agent API: {exc}")
            except PlaywrightError as exc:
                outcome.update(completed=False, stopped_in=rec.phase,
                               reason=f"browser: {str(exc).splitlines()[0]}")
                with contextlib.suppress(Exception):
                    await scenario.shot("stuck")
            finally:
                await asyncio.sleep(0.3)
                await rec.settle()
                await context.close()
                await agent.close()
            outcome["phases"] = scenario.reached
            if scenario.notes:
                outcome["notes"] = scenario.notes
            if errors:
                outcome["page_errors"] = errors[:10]
    return fixture(rec, outcome)


def write(out_dir: Path, name: str, data: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


async def main_async(args: argparse.Namespace) -> int:
    bundle_dir = Path(args.bundle_dir)
    runs = list(args.transport or [*TRANSPORTS, "rest-apikey"])
    rules = f"MAP {SITE_HOST} 127.0.0.1, MAP {CHAT_HOST} 127.0.0.1"
    failed = 0
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=args.chromium,
                                          args=["--no-sandbox", f"--host-resolver-rules={rules}"])
        try:
            for transport in runs:
                print(f"recording {transport}", flush=True)
                data = await record(transport, bundle_dir, Path(args.shots), args.chromium,
                                    browser)
                path = write(Path(args.out), transport, data)
                outcome = data["outcome"]
                size = path.stat().st_size
                print(f"  wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
                      f" ({len(data['steps'])} steps, {size // 1024} kB): "
                      + ("completed" if outcome.get("completed") else
                         f"stopped in {outcome.get('stopped_in')!r}: {outcome.get('reason')}"))
                for failure in data["failures"]:
                    print(f"    refused: {failure['label']}: {failure['failed']}")
                failed += not outcome.get("completed")
        finally:
            await browser.close()
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle-dir", required=True,
                        help="directory holding widgets.min.js and widgets.min.css")
    parser.add_argument("--transport", action="append",
                        choices=[*TRANSPORTS, "rest-apikey"],
                        help="record only this transport (repeatable; default: all four)")
    parser.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "genesys-widgets"))
    parser.add_argument("--shots", default="/tmp/gw-shots",
                        help="where the screenshots go (not the repository)")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", CHROMIUM))
    args = parser.parse_args()
    bundle = Path(args.bundle_dir)
    missing = [n for n in ("widgets.min.js", "widgets.min.css") if not (bundle / n).is_file()]
    if missing:
        parser.error(f"--bundle-dir {bundle}: missing {', '.join(missing)}")
    if not shutil.which(args.chromium) and not Path(args.chromium).exists():
        parser.error(f"no browser at {args.chromium} (Debian chromium; none is downloaded)")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
