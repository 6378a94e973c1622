"""``/openapi.json`` describes every route the server serves, and the server keeps its word.

Routes were served but missing from the document (agent files, supervise, monitor, unmonitor,
bargeIn, leave, the customer file routes, chat-ntf, request-chat with a trailing slash), and
the document named customer file paths that did not exist (``file/upload``...). schemathesis then
runs against the document, bounded: no 5xx, 405 with ``Allow`` for undeclared methods, invalid
input refused.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port
from tests.test_restart import launch
from webchat.server.validation import FIELDS
from webchat.web import STATIC

_PARAM = re.compile(r"\{[^}]*\}")


def shape(path: str) -> str:
    """A path with its parameters unnamed: ``/a/{chat_id}`` and ``/a/{chatId}`` are one."""
    return _PARAM.sub("{}", path)


def served(app) -> set[tuple[str, str]]:
    """(method, path shape) of every route; aiohttp's implicit HEAD beside GET left out."""
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is None:  # a static directory
            path = info["prefix"].rstrip("/") + "/{path}"
        methods = ["POST", "GET"] if route.method == "*" else [route.method]
        routes |= {(m, shape(path)) for m in methods if m != "HEAD"}
    return routes


async def document(http, server) -> dict:
    async with http.get(f"{server.url}/openapi.json") as resp:
        assert resp.status == 200
        return await resp.json()


async def test_every_served_route_is_described(server, http):
    doc = await document(http, server)
    described = {(m.upper(), shape(p)) for p, ops in doc["paths"].items() for m in ops}
    generic = ("POST", shape(server.engine.config.api_prefix + "/2/chat/{s}/{c}/{op}"))
    missing = served(server.app) - described - {generic}
    assert not missing, f"served but not in /openapi.json: {sorted(missing)}"
    # The one route that serves every chat operation: each operation has its own path.
    operations = {op.get("x-gms-operation") for ops in doc["paths"].values()
                  for op in ops.values()}
    assert set(FIELDS) <= operations


async def test_every_described_route_is_served(server, http):
    doc = await document(http, server)
    static = next(p.name for p in STATIC.iterdir() if p.is_file())
    for path, ops in doc["paths"].items():
        url = server.url + _PARAM.sub("x", path.replace("{path}", static))
        for method in ops:
            if "bayeuxWebSocket" in ops[method].get("operationId", ""):
                async with http.ws_connect(url) as ws:  # served: the upgrade succeeds
                    await ws.close()
                continue
            async with http.request(method, url, headers={"Content-Type": "text/plain"}
                                    ) as resp:
                await resp.read()
            assert resp.status not in (404, 405), (method, path, resp.status)


async def test_an_undeclared_method_gets_405_with_allow(server, http):
    for url in (f"{server.data_url}", f"{server.data_url}/C/send", f"{server.url}/agent/v1/me",
                f"{server.url}/agent/v1/chats/C/accept"):
        async with http.request("TRACE", url) as resp:
            assert resp.status == 405, url
            assert resp.headers.get("Allow"), url  # RFC 9110: a 405 names what is allowed


def schemathesis() -> str:
    return str(Path(sys.executable).parent / "schemathesis")


@pytest.mark.skipif(not Path(schemathesis()).exists(), reason="schemathesis not installed")
async def test_schemathesis_finds_nothing(tmp_path):
    """Bounded: a few examples per operation and a deadline for each request and the run."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await launch(tmp_path, port)
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"{url}/agent/v1/login", json={"username": "grace", "password": "pw"}) as resp:
            token = (await resp.json())["token"]
        run = subprocess.run(  # noqa: ASYNC221 - the server is another process
            [schemathesis(), "run", f"{url}/openapi.json",
             "--checks", "not_a_server_error,unsupported_method,negative_data_rejection",
             "--max-examples", "5", "--request-timeout", "5",
             "--seed", "12", "--generation-database", "none", "--warnings", "off",
             "--header", f"Authorization: Bearer {token}",
             # These two revoke the token the rest of the run authenticates with.
             "--exclude-path", "/agent/v1/logout", "--exclude-path", "/agent/v1/refresh"],
            capture_output=True, text=True, timeout=180, cwd=tmp_path)
        assert run.returncode == 0, run.stdout[-6000:]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        _, log = proc.communicate(timeout=10)
    log_text = log.decode(errors="replace")
    assert "unhandled error" not in log_text, log_text[-4000:]
