"""nginx in front of three webchat hosts made with network namespaces (scripts/cluster_netns.py).

What a deployment behind a load balancer needs from it, checked through a real nginx with
the shipped configuration (deploy/nginx/webchat.conf): requests spread over every host with
no stickiness, CometD over WebSocket and long-polling through it, a held long-poll not cut
by the proxy, and a dead or vanished host routed around. The hosts reach PostgreSQL and
Redis on this machine's loopback through the forwarder on the bridge.

Needs root (network namespaces): elsewhere the cluster tests skip and say why; under CI as
root they run, and a machine that cannot make namespaces fails them. The checks of the
configuration itself (rendering, ``nginx -t``) only need nginx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from scripts.cluster_netns import (
    TEMPLATE,
    Cluster,
    ClusterError,
    Topology,
    check_can_run,
    cluster,
    free_subnet,
    get,
    nginx_main_conf,
    parse_access_log,
    render_nginx,
    serve_options,
    through_bridge,
)

from tests.conftest import SERVICE, free_port
from tests.services import POSTGRES_START, POSTGRES_URL, fail_or_skip, with_database
from tests.test_end_to_end import transport_options

COMETD = "/genesys/cometd"
_pg = urlsplit(POSTGRES_URL)
POSTGRES = (_pg.hostname or "127.0.0.1", _pg.port or 5432)
REDIS = ("127.0.0.1", 6379)
REDIS_START = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''"
HELD_AT_LEAST_S = 25.0
"""A held /meta/connect must come back no sooner: the server holds it 30 s
(ServerOptions.timeout_ms), and a proxy cutting it at a common 25-30 s default would show."""


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"  # as tests/services.py reads it


def _unavailable() -> str | None:
    """Why the cluster cannot be brought up here, or None. Under CI as root it always is
    tried: a machine that cannot make namespaces then fails the tests, never skips them."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if _in_ci():
        return None
    try:
        check_can_run()
    except ClusterError as exc:
        return str(exc)
    return None


def _reachable(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=2.0).close()
    except OSError:
        return False
    return True


def _require(address: tuple[str, int], what: str, start: str) -> None:
    """The services rule (tests/services.py): fail under CI, else skip saying how to start."""
    if not _reachable(address):
        fail_or_skip(f"{what} not reachable at {address[0]}:{address[1]}; start it with {start}")


@contextlib.contextmanager
def _shared_services() -> Iterator[tuple[str | None, str | None]]:
    """A fresh PostgreSQL database and Redis for the hosts when this checkout's ``webchat
    serve`` can use them (``--store``/``--broker``) and they run; else (None, None): every
    host on its own SQLite, which the network checks here do not mind."""
    options = serve_options()
    if "--store" not in options or not _reachable(POSTGRES):
        yield None, None
        return
    import asyncpg

    name = f"webchat_netns_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        broker = ("redis://127.0.0.1:6379/0"
                  if "--broker" in options and _reachable(REDIS) else None)
        yield with_database(POSTGRES_URL, name), broker
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def lb(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Three hosts and nginx, on a name and subnet of this run's own (a cluster started by
    hand, or another test run's, is left alone), torn down after the module however it
    ends; one left by a run that was killed is taken down first. Its state folder (logs of
    nginx, the forwarder and each server) is kept when a test failed."""
    reason = _unavailable()
    if reason is not None:
        pytest.skip(reason)
    topology = Topology(name=f"wt{os.getpid() % 100_000}",
                        subnet=free_subnet(seed=os.getpid()), lb_port=free_port())
    failed_before = request.session.testsfailed
    with _shared_services() as (store, broker), cluster(
            topology, store=store, broker=broker, forward_ports=(POSTGRES[1], REDIS[1])) as c:
        yield c
    if request.session.testsfailed == failed_before:
        shutil.rmtree(topology.state_dir, ignore_errors=True)
    else:
        print(f"cluster logs kept in {topology.state_dir}")


def _tag() -> str:
    return f"t={secrets.token_hex(6)}"


def _served(c: Cluster, tag: str, count: int) -> list[str]:
    """The host (upstream) that answered each of the ``count`` requests holding ``tag``."""
    return [e.answered_by for e in c.tagged(tag, count)]


def wait_in_rotation(c: Cluster, within_s: float = 30.0) -> None:
    """Until requests through nginx are answered by every host (one taken out of the
    rotation comes back ``fail_timeout`` after it answers again)."""
    tag = _tag()
    deadline = time.monotonic() + within_s
    sent = 0
    while True:
        for _ in c.hosts:
            get(f"{c.url}/healthz?{tag}")
            sent += 1
        missing = {h.upstream for h in c.hosts} - set(_served(c, tag, sent))
        if not missing:
            return
        assert time.monotonic() < deadline, f"not back in nginx's rotation: {missing}"
        time.sleep(0.5)


def _post_json(url: str, body: object) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return int(resp.status), json.loads(resp.read())


def _handshake(connection_type: str) -> list[dict[str, Any]]:
    return [{"channel": "/meta/handshake", "version": "1.0", "id": "1",
             "supportedConnectionTypes": [connection_type]}]


# ---- the configuration itself ---------------------------------------------------------------

def test_the_template_renders_one_server_line_per_host_and_keeps_its_comments() -> None:
    text = render_nginx(TEMPLATE.read_text(), listen="127.0.0.1:9", log_dir="/x",
                        upstreams=["10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"])
    servers = [line.split()[1] for line in text.splitlines()
               if line.strip().startswith("server ") and "max_fails" in line]
    assert servers == ["10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"]
    assert "listen 127.0.0.1:9;" in text
    assert "access_log /x/webchat-access.log webchat_upstream;" in text
    # the header still names the placeholders for someone filling them by hand
    assert "#   ${WEBCHAT_UPSTREAM}" in text
    with pytest.raises(ClusterError, match="WEBCHAT_TYPO"):
        render_nginx("listen ${WEBCHAT_TYPO};\n", listen="", upstreams=[], log_dir="")


def test_loopback_services_are_reached_at_the_bridge_address() -> None:
    gw = "10.231.7.1"
    assert through_bridge("postgresql://postgres:pw@127.0.0.1/test?sslmode=disable", gw) == (
        "postgresql://postgres:pw@10.231.7.1:5432/test?sslmode=disable", 5432)
    assert through_bridge("redis://localhost:6380/2", gw) == ("redis://10.231.7.1:6380/2", 6380)
    assert through_bridge("postgresql://db.example:5432/x", gw) == (
        "postgresql://db.example:5432/x", None)


def test_the_access_log_names_every_host_tried() -> None:
    log = ('127.0.0.1 [01/Dec/2026:10:00:00 +0000] "GET /healthz HTTP/1.1" 200 '
           "upstream=10.231.7.12:8080, 10.231.7.13:8080 upstream_status=502, 200 rt=0.004\n")
    (entry,) = parse_access_log(log)
    assert entry.upstreams == ("10.231.7.12:8080", "10.231.7.13:8080")
    assert entry.answered_by == "10.231.7.13:8080"
    assert entry.upstream_statuses == ("502", "200")


def test_nginx_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    nginx = shutil.which("nginx")
    if nginx is None:
        if _in_ci():
            pytest.fail("nginx not installed (scripts/setup test installs it)")
        pytest.skip("nginx not installed (scripts/setup test installs it)")
    (tmp_path / "nginx-temp").mkdir()
    (tmp_path / "webchat.conf").write_text(render_nginx(
        TEMPLATE.read_text(), listen=f"127.0.0.1:{free_port()}", log_dir=str(tmp_path),
        upstreams=["10.231.7.11:8080", "10.231.7.12:8080", "10.231.7.13:8080"]))
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_main_conf(tmp_path, "www-data" if os.geteuid() == 0 else "nobody"))
    done = subprocess.run([nginx, "-t", "-c", str(conf), "-e", str(tmp_path / "error.log")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


# ---- the cluster ----------------------------------------------------------------------------

def test_requests_through_nginx_reach_every_host(lb: Cluster) -> None:
    tag = _tag()
    answers = [get(f"{lb.url}/healthz?{tag}") for _ in range(3 * len(lb.hosts))]
    assert [a[0] if a else None for a in answers] == [200] * len(answers)
    served = _served(lb, tag, len(answers))
    assert len(served) == len(answers)
    assert set(served) == {h.upstream for h in lb.hosts}
    nodes = {json.loads(a[1]).get("node") for a in answers if a is not None}
    if nodes != {None}:  # /healthz names its node once `serve --node-id` exists
        assert len(nodes) == len(lb.hosts)


PROBE = """
import asyncio, json, socket, sys
import asyncpg, redis.asyncio as aioredis

async def main(postgres, postgres_port, gateway, redis_port, key):
    conn = await asyncpg.connect(postgres, timeout=5)
    try:
        one = await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    r = aioredis.Redis(host=gateway, port=redis_port, socket_timeout=5)
    try:
        seen = (await r.get(key)).decode()
    finally:
        await r.aclose()
    with socket.socket() as s:
        s.settimeout(2)
        loopback = s.connect_ex(("127.0.0.1", postgres_port))
    print(json.dumps({"postgres": one, "redis": seen, "own_loopback": loopback}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]))
"""


def test_hosts_reach_postgres_and_redis_through_the_bridge(lb: Cluster) -> None:
    _require(POSTGRES, "PostgreSQL", POSTGRES_START)
    _require(REDIS, "Redis", REDIS_START)
    import redis

    key = f"webchat-netns:{secrets.token_hex(6)}"
    root = redis.Redis(*REDIS)
    root.set(key, "written in the root namespace", ex=60)
    try:
        for host in lb.hosts:
            postgres = through_bridge(POSTGRES_URL, lb.topology.gateway)[0]
            done = host.exec([sys.executable, "-c", PROBE, postgres, str(POSTGRES[1]),
                              lb.topology.gateway, str(REDIS[1]), key])
            assert done.returncode == 0, done.stderr
            seen = json.loads(done.stdout)
            assert seen["postgres"] == 1
            assert seen["redis"] == "written in the root namespace"
            # a host's own loopback has no PostgreSQL: it is reached over the "network"
            assert seen["own_loopback"] != 0
    finally:
        root.delete(key)
        root.close()


@dataclass
class Held:
    reply: dict[str, Any]
    seconds: float


async def _long_poll(http: aiohttp.ClientSession, url: str, hosts: int, *, shared: bool
                     ) -> Held:
    """Handshake, then connect over HTTP long-polling through nginx until a connect is held
    and answered. Each request may go to any host. Hosts sharing a broker (``shared``) pass
    it on to the host holding the session (server/cometd_forward.py), so every connect must
    work at once; hosts each on their own answer 402 when they do not hold the session, and
    the connect is sent again, to the next host, until one does."""

    async def post(body: object) -> dict[str, Any]:
        async with http.post(url, json=body) as resp:
            assert resp.status == 200, await resp.text()
            replies: list[dict[str, Any]] = await resp.json()
            return replies[0]

    client_id = (await post(_handshake("long-polling")))["clientId"]
    connect = {"channel": "/meta/connect", "clientId": client_id,
               "connectionType": "long-polling"}

    async def connect_on_session_host() -> dict[str, Any]:
        for _ in range(3 * hosts):  # ample for a round robin over ``hosts``
            reply = await post([connect])
            if shared or reply.get("successful") \
                    or not str(reply.get("error", "")).startswith("402"):
                return reply
        raise AssertionError("no host knew the session")

    first = await connect_on_session_host()  # the first connect is answered at once
    assert first["successful"] is True, first
    start = time.monotonic()
    held = await connect_on_session_host()
    return Held(held, time.monotonic() - start)


async def _websocket_poll(http: aiohttp.ClientSession, url: str) -> Held:
    """Handshake and connect on one WebSocket through nginx (one connection: one host),
    then a held connect, answered when the server's hold ends."""
    async with http.ws_connect(url) as ws:
        await ws.send_json(_handshake("websocket"))
        (hs,) = await ws.receive_json(timeout=10)
        assert hs["successful"] is True, hs
        connect = {"channel": "/meta/connect", "clientId": hs["clientId"],
                   "connectionType": "websocket"}
        await ws.send_json([connect])
        (first,) = await ws.receive_json(timeout=10)
        assert first["successful"] is True, first
        start = time.monotonic()
        await ws.send_json([connect])
        (held,) = await ws.receive_json(timeout=60)
        seconds = time.monotonic() - start
        assert not ws.closed
        return Held(held, seconds)


async def test_cometd_polls_over_websocket_and_long_polling_are_held_through_nginx(
        lb: Cluster) -> None:
    async with aiohttp.ClientSession() as http:
        on_ws, on_http = await asyncio.gather(_websocket_poll(http, lb.url + COMETD),
                                              _long_poll(http, lb.url + COMETD, len(lb.hosts),
                                                         shared=lb.broker is not None))
    for held in (on_ws, on_http):
        assert held.reply["channel"] == "/meta/connect"
        assert held.reply["successful"] is True, held.reply
        assert held.seconds >= HELD_AT_LEAST_S, held


async def test_a_long_polling_chat_through_nginx_keeps_its_session_on_every_host(
        lb: Cluster, customer_factory: Any, agent_factory: Any) -> None:
    """The customer's CometD long-polling requests reach all three hosts (no stickiness);
    each host passes those of a session it does not hold on to the one that does, so the
    session that started the chat serves it to its end: no re-handshake."""
    if lb.store is None or lb.broker is None:
        fail_or_skip("a chat across hosts needs them to share PostgreSQL and Redis")
    wait_in_rotation(lb)
    before = len(lb.access_log())
    customer = await customer_factory(f"{lb.url}/genesys/2/chat/{SERVICE}",
                                      **transport_options(lb, "long-polling"))
    agent = await agent_factory(lb.url, "agent", lb.agent_password)
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    await agent.wait_for(lambda ev: any(e["type"] == "offer" and e["chat"]["chatId"] == chat_id
                                        for e in ev), within=15)
    agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
    await customer.wait_event("agentConnected", within=15)
    for n in range(3):
        await agent.client.send(chat_id, f"agent {n}")
        await customer.wait_for(lambda c, n=n: ("Agent", f"agent {n}") in c.texts(), within=15)
        await customer.command("sendMessage", {"message": f"customer {n}"})
        await customer.wait_for(lambda c, n=n: ("Client", f"customer {n}") in c.texts(),
                                within=15)
    await agent.client.end(chat_id)
    await customer.wait_event("ended", within=15)

    indexes = customer.indexes()
    assert indexes == list(range(1, len(indexes) + 1))
    assert customer.service.transport.client.bayeux.handshakes == 1
    cometd = [e for e in lb.access_log()[before:] if COMETD in e.request]
    assert {e.answered_by for e in cometd} == {h.upstream for h in lb.hosts}
    assert all(e.status == 200 for e in cometd), cometd


def test_a_killed_server_is_routed_around_then_rejoins(lb: Cluster) -> None:
    wait_in_rotation(lb)
    victim = lb.hosts[1]
    victim.kill()
    tag = _tag()
    # POSTs first: the round robin reaches the dead host within one turn, and a POST whose
    # connect was refused never reached a server, so nginx may and does send it elsewhere.
    posts = [_post_json(f"{lb.url}{COMETD}?{tag}", _handshake("long-polling"))
             for _ in lb.hosts]
    assert [status for status, _ in posts] == [200] * len(posts)
    assert all(replies[0]["successful"] for _, replies in posts)
    gets = [get(f"{lb.url}/healthz?{tag}") for _ in range(3 * len(lb.hosts))]
    assert [a[0] if a else None for a in gets] == [200] * len(gets)
    entries = lb.tagged(tag, len(posts) + len(gets))
    assert len(entries) == len(posts) + len(gets)
    assert all(e.answered_by != victim.upstream for e in entries)
    rerouted = [e for e in entries if victim.upstream in e.upstreams[:-1]]
    assert rerouted, "nginx never tried the dead host: nothing shows it was routed around"
    assert rerouted[0].request.startswith("POST")
    victim.start()
    wait_in_rotation(lb)


def test_a_host_cut_off_the_network_is_routed_around(lb: Cluster) -> None:
    """No RST: connects to it time out (proxy_connect_timeout) and a GET already sent on a
    kept-alive connection waits out proxy_read_timeout; both are then retried elsewhere."""
    wait_in_rotation(lb)
    victim = lb.hosts[2]
    victim.partition()
    try:
        tag = _tag()
        gets = [get(f"{lb.url}/healthz?{tag}", timeout_s=60) for _ in range(2 * len(lb.hosts))]
        assert [a[0] if a else None for a in gets] == [200] * len(gets)
        entries = lb.tagged(tag, len(gets))
        assert len(entries) == len(gets)
        assert all(e.answered_by != victim.upstream for e in entries)
        assert any(victim.upstream in e.upstreams[:-1] for e in entries)
    finally:
        victim.heal()
    wait_in_rotation(lb)
