"""CometD long-polling on a cluster without load-balancer stickiness: requests for a session
held by another node are passed on to it (``server/cometd_forward.py``).

Three in-process nodes on PostgreSQL and Redis (``tests/cluster.py``), the customer behind a
round-robin front (``tests/round_robin.py``) that sends each request to the next node."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import secrets
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from click.testing import CliRunner

from tests.cluster import Deployment, start_deployment
from tests.conftest import Customer, RunningServer
from tests.polling import eventually
from tests.round_robin import RoundRobin
from tests.test_cli_workers import serve_workers
from tests.test_end_to_end import transport_options
from webchat.cli.serve import Launch, serve_command
from webchat.protocol.bayeux.server import ServerOptions, ServerSession
from webchat.server import addresses
from webchat.server.app import COMETD
from webchat.server.cometd_forward import (
    CLIENT_HEADER,
    CLIENT_ID_CHARS,
    PROOF_HEADER,
    TAG_CHARS,
    Forwarder,
)
from webchat.server.config import ServerConfig

COMETD_PATH = "/genesys/cometd"


@contextlib.asynccontextmanager
async def _cluster(kind: str, config: ServerConfig, request: pytest.FixtureRequest
                   ) -> AsyncIterator[Deployment]:
    running = await start_deployment(
        kind, config, postgres_dsn=request.getfixturevalue("postgres_dsn"),
        redis_url=request.getfixturevalue("redis_url"),
        redis_prefix=request.getfixturevalue("redis_prefix"))
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def fronted(request: pytest.FixtureRequest, server_config: ServerConfig
                  ) -> AsyncIterator[Deployment]:
    """Three nodes behind a round-robin front."""
    async with _cluster("round-robin", server_config, request) as running:
        yield running


@pytest.fixture
async def nodes(request: pytest.FixtureRequest, server_config: ServerConfig
                ) -> AsyncIterator[Deployment]:
    """Three nodes, reached directly."""
    async with _cluster("cluster", server_config, request) as running:
        yield running


def forwarder(node: RunningServer) -> Forwarder:
    fwd = node.app[COMETD].forwarder
    assert fwd is not None
    return fwd


def owner_of(deployment: Deployment, client_id: str) -> RunningServer:
    """The node whose tag the clientId carries."""
    (node,) = [n for n in deployment.nodes if forwarder(n).tag == client_id[:TAG_CHARS]]
    return node


def front_of(deployment: Deployment) -> RoundRobin:
    assert deployment.front is not None
    return deployment.front


def client_id_of(customer: Customer) -> str:
    client_id = customer.service.transport.client.bayeux.client_id
    assert isinstance(client_id, str)
    return client_id


def handshakes_of(customer: Customer) -> int:
    return int(customer.service.transport.client.bayeux.handshakes)


async def long_polling_customer(deployment: Deployment, customer_factory: Callable[..., Any]
                                ) -> Customer:
    customer: Customer = await customer_factory(
        deployment.data_url, **transport_options(deployment, "long-polling"))
    return customer


async def bayeux(http: aiohttp.ClientSession, url: str, messages: list[dict[str, Any]],
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.post(url + COMETD_PATH, json=messages, headers=headers or {}) as resp:
        text = await resp.text()
        return resp.status, (await resp.json() if resp.content_type == "application/json"
                             else text)


async def handshake(http: aiohttp.ClientSession, url: str,
                    headers: dict[str, str] | None = None) -> str:
    status, replies = await bayeux(http, url, [
        {"channel": "/meta/handshake", "version": "1.0",
         "supportedConnectionTypes": ["long-polling"]}], headers)
    assert status == 200 and replies[0]["successful"] is True, replies
    client_id = replies[0]["clientId"]
    assert isinstance(client_id, str)
    return client_id


def connect(client_id: str, msg_id: str = "c") -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": client_id, "id": msg_id,
            "connectionType": "long-polling", "advice": {"timeout": 0}}


def session_of(node: RunningServer, client_id: str) -> ServerSession:
    return node.app[COMETD].bayeux.sessions[client_id]


async def test_a_long_polling_chat_through_a_round_robin_front_keeps_its_session(
        fronted, customer_factory, agent_factory):
    await fronted.add_agent("grace", nickname="Grace")
    agent = await agent_factory(fronted.agent_url, "grace")
    customer = await long_polling_customer(fronted, customer_factory)
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
    agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
    await customer.wait_event("agentConnected")
    for n in range(3):  # deliveries in held connects, held by whichever node got them
        await agent.client.send(chat_id, f"agent {n}")
        await customer.wait_for(lambda c, n=n: ("Agent", f"agent {n}") in c.texts())
        await customer.command("sendMessage", {"message": f"customer {n}"})
    await agent.wait_for(lambda _: any(m.get("text") == "customer 2"
                                       for m in agent.messages(chat_id)))
    await customer.command("endChat")
    await customer.wait_event("ended")

    assert customer.texts() == [t for n in range(3)
                                for t in (("Agent", f"agent {n}"), ("Client", f"customer {n}"))]
    indexes = customer.indexes()
    assert indexes == list(range(1, len(indexes) + 1))
    # Every request went to the next node, CometD's included, and yet the first session
    # served the whole chat: no node ever answered "unknown session".
    served = front_of(fronted).served
    assert all(a.node != b.node for a, b in itertools.pairwise(served))
    cometd = [s for s in served if s.path.startswith(COMETD_PATH)]
    assert {s.node for s in cometd} == {n.url for n in fronted.nodes}
    assert handshakes_of(customer) == 1
    owner = owner_of(fronted, client_id_of(customer))
    others = [n for n in fronted.nodes if n is not owner]
    assert sum(forwarder(n).forwarded for n in others) >= len(cometd) // 2
    assert forwarder(owner).forwarded == 0  # its own sessions' requests stay with it


async def test_when_the_owner_of_a_held_connect_stops_the_client_resumes_elsewhere(
        fronted, customer_factory, agent_factory):
    front = front_of(fronted)
    customer = await long_polling_customer(fronted, customer_factory)
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    owner = owner_of(fronted, client_id_of(customer))
    survivors = [n for n in fronted.nodes if n is not owner]
    await survivors[0].add_agent("grace", nickname="Grace")
    agent = await agent_factory(survivors[-1].url, "grace")
    await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
    agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
    await customer.wait_event("agentConnected")
    await agent.client.send(chat_id, "before")
    await customer.wait_for(lambda c: ("Agent", "before") in c.texts())

    # From now on the front sends the customer only to the other nodes, which pass every
    # request on to the owner: wait until one of them holds a connect there.
    front.avoid(owner.url)
    await eventually(lambda: any(forwarder(n).in_flight for n in survivors),
                     "a connect held by the owner through another node")
    tag = forwarder(owner).tag
    await owner.runner.cleanup()
    fronted.nodes.remove(owner)  # stopped: the deployment must not stop it again
    assert await forwarder(survivors[0]).directory.lookup(tag) is None  # gave its tag up

    for n in range(3):
        await agent.client.send(chat_id, f"after {n}")
    await customer.wait_for(lambda c: ("Agent", "after 2") in c.texts(), within=15)
    await customer.command("sendMessage", {"message": "still here"})
    await agent.wait_for(lambda _: any(m.get("text") == "still here"
                                       for m in agent.messages(chat_id)))
    await customer.wait_for(lambda c: ("Client", "still here") in c.texts())

    assert handshakes_of(customer) == 2  # once more, with a node that is still up
    assert owner_of(fronted, client_id_of(customer)) in survivors
    assert customer.texts() == [("Agent", "before"), ("Agent", "after 0"),
                                ("Agent", "after 1"), ("Agent", "after 2"),
                                ("Client", "still here")]
    indexes = customer.indexes()  # nothing lost, nothing twice
    assert indexes == list(range(1, len(indexes) + 1))


async def test_a_node_stopping_under_a_connect_it_passed_on_leaves_the_session_alive(
        nodes, http):
    """Its client is told to connect again (503), not that its session is gone: the owner
    still holds it, and the next connect reaches it through another node."""
    owner, passer, other = nodes.nodes
    client_id = await handshake(http, owner.url)
    _, (first,) = await bayeux(http, passer.url, [connect(client_id, "1")])
    assert first["successful"] is True
    held = asyncio.create_task(bayeux(http, passer.url, [
        {"channel": "/meta/connect", "clientId": client_id, "id": "2",
         "connectionType": "long-polling"}]))
    await eventually(lambda: forwarder(passer).in_flight == 1, "the connect held at the owner")
    await passer.runner.cleanup()
    nodes.nodes.remove(passer)
    status, _ = await held
    assert status == 503
    status, replies = await bayeux(http, other.url, [connect(client_id, "3")])
    assert (status, replies[0]["successful"]) == (200, True)
    assert session_of(owner, client_id).client_id == client_id


async def test_an_owner_that_is_gone_is_answered_as_an_unknown_session(nodes, http,
                                                                       redis_url, redis_prefix):
    here = nodes.nodes[0]
    unknown_tag = "Z" * TAG_CHARS
    dead_tag = "D" * TAG_CHARS
    # A tag whose process died without a word: its key still names it, nothing listens.
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.set(f"{redis_prefix}cometd:node:{dead_tag}", "http://127.0.0.1:9", px=60_000)
    finally:
        await redis.aclose()
    answers = []
    for tag in (unknown_tag, dead_tag, ""):
        client_id = (tag + secrets.token_urlsafe(18)) if tag else secrets.token_urlsafe(18)
        answers.append(await bayeux(http, here.url, [connect(client_id)]))
    expected = (200, [{"channel": "/meta/connect", "id": "c", "successful": False,
                       "error": "402::session_unknown",
                       "advice": {"reconnect": "handshake", "interval": 0}}])
    assert answers == [expected] * 3
    assert forwarder(here).unreachable == 1  # the dead one was tried, then answered here


async def test_forged_forwarding_headers_from_a_client_are_ignored(nodes, http):
    a, b = nodes.nodes[0], nodes.nodes[1]
    forged = {CLIENT_HEADER: "203.0.113.7", PROOF_HEADER: "0" * 64}
    # A handshake claiming another address keeps the one it came from (per-address rules).
    forged_session = await handshake(http, a.url, forged)
    assert session_of(a, forged_session).attachments[addresses.CLIENT] == "127.0.0.1"
    # ... and a forged proof is no loop guard either: node b still passes the connect on.
    status, replies = await bayeux(http, b.url, [connect(forged_session)], forged)
    assert (status, replies[0]["successful"]) == (200, True)
    assert forwarder(b).forwarded == 1
    # A peer's proof (made with the cluster's secret) is believed: the original client's
    # address counts on the owner, and the request is never passed on again.
    secret = await forwarder(a).directory.shared_secret()
    proof = hmac.new(secret, b"203.0.113.7", hashlib.sha256).hexdigest()
    peer = {CLIENT_HEADER: "203.0.113.7", PROOF_HEADER: proof}
    relayed = await handshake(http, a.url, peer)
    assert session_of(a, relayed).attachments[addresses.CLIENT] == "203.0.113.7"
    status, replies = await bayeux(http, b.url, [connect(relayed)], peer)
    assert replies[0]["error"] == "402::session_unknown"  # b does not hold it, nor forwards
    assert forwarder(b).forwarded == 1


async def test_a_request_naming_sessions_of_two_nodes_is_refused(nodes, http):
    a, b = nodes.nodes[0], nodes.nodes[1]
    on_a, on_b = await handshake(http, a.url), await handshake(http, b.url)
    status, text = await bayeux(http, a.url, [connect(on_a, "1"), connect(on_b, "2")])
    assert status == 400
    assert "several processes" in text
    status, replies = await bayeux(http, b.url, [connect(on_a, "1")])
    assert (status, replies[0]["successful"]) == (200, True)  # one session: passed on


async def test_the_node_a_client_talks_to_applies_its_rules_to_what_it_passes_on(nodes, http):
    """CORS is answered once, by that node; a body over the size bound is refused there."""
    a, b = nodes.nodes[0], nodes.nodes[1]
    client_id = await handshake(http, a.url)
    origin = {"Origin": "https://shop.example"}
    async with http.post(b.url + COMETD_PATH, json=[connect(client_id)], headers=origin) as resp:
        assert resp.status == 200 and (await resp.json())[0]["successful"] is True
        assert resp.headers.getall("Access-Control-Allow-Origin") == ["https://shop.example"]
        assert resp.headers.getall("Access-Control-Allow-Credentials") == ["true"]
    assert forwarder(b).forwarded == 1
    big = [{**connect(client_id), "ext": {"pad": "x" * nodes.config.limits.max_body_bytes}}]
    async with http.post(b.url + COMETD_PATH, json=big) as resp:
        assert resp.status == 413
    assert forwarder(b).forwarded == 1  # refused before anything was passed on


async def test_cookies_travel_with_a_forwarded_request(request, server_config, http):
    """With sessions bound to their browser cookie, a forwarded connect carries it."""
    config = replace(server_config, cometd=ServerOptions(require_browser_cookie=True))
    async with _cluster("cluster", config, request) as deployment:
        a, b = deployment.nodes[0], deployment.nodes[1]
        client_id = await handshake(http, a.url)  # the jar keeps BAYEUX_BROWSER
        status, replies = await bayeux(http, b.url, [connect(client_id)])
        assert (status, replies[0]["successful"]) == (200, True)
        http.cookie_jar.clear()
        _, replies = await bayeux(http, b.url, [connect(client_id, "2")])
        assert replies[0]["error"] == "402::session_unknown"


async def test_one_process_forwards_nothing_and_tags_nothing(server, http):
    assert server.app[COMETD].forwarder is None
    client_id = await handshake(http, server.url)
    assert len(client_id) == CLIENT_ID_CHARS - TAG_CHARS  # as before clusters: 144 bits
    _, replies = await bayeux(http, server.url, [connect("T" * CLIENT_ID_CHARS)])
    assert replies[0]["error"] == "402::session_unknown"


async def test_cluster_client_ids_carry_their_node_tag_and_all_their_randomness(nodes, http):
    client_ids = [await handshake(http, n.url) for n in nodes.nodes]
    assert [c[:TAG_CHARS] for c in client_ids] == [forwarder(n).tag for n in nodes.nodes]
    assert len(set(c[:TAG_CHARS] for c in client_ids)) == 3
    assert all(len(c) == CLIENT_ID_CHARS for c in client_ids)


# ---- serve --advertise-url --------------------------------------------------------------------

def _launch(host: str, port: int, advertise: str | None = None) -> Launch:
    return Launch(ServerConfig(), host, port, None, "redis://127.0.0.1:6379/0", (), False, None,
                  1, 0, advertise)


def test_the_advertised_url_defaults_to_host_and_port_unless_the_host_is_a_wildcard():
    assert _launch("10.0.0.5", 8080).advertise(None) == ("http://10.0.0.5:8080", None)
    assert _launch("::1", 8080).advertise(None) == ("http://[::1]:8080", None)
    assert _launch("0.0.0.0", 8080).advertise(None) == (None, None)
    assert _launch("0.0.0.0", 8080, "http://web-a:9000").advertise(None) == (
        "http://web-a:9000", None)


def test_each_worker_advertises_a_port_of_its_own():
    """The shared port reaches any worker: a peer needs the one holding the session."""
    urls = []
    for slot in (0, 1):
        url, own = _launch("127.0.0.1", 8080, "http://web-a:8080").advertise(slot)
        assert own is not None
        try:
            port = own.getsockname()[1]
            assert own.getsockname()[0] == "127.0.0.1"
            assert url == f"http://web-a:{port}"
            urls.append(url)
        finally:
            own.close()
    assert len(set(urls)) == 2


@pytest.mark.parametrize("bad", ["ftp://web-a:1", "http://web-a:1/cometd", "web-a:8080",
                                 "http://:8080"])
def test_an_advertise_url_that_is_not_a_host_is_refused(bad):
    result = CliRunner().invoke(serve_command, ["--advertise-url", bad])
    assert result.exit_code == 2
    assert "expected http://HOST:PORT" in result.output


def _post(port: int, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One long-polling request on a new connection: the kernel picks the worker."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{COMETD_PATH}", data=json.dumps(messages).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        replies: list[dict[str, Any]] = json.loads(resp.read())
        return replies


def test_the_sessions_of_each_worker_are_served_whichever_worker_a_request_reaches(
        tmp_path, postgres_dsn, redis_url, redis_prefix):
    with serve_workers(tmp_path, postgres_dsn, redis_url, redis_prefix) as (_, port, _, _):
        by_tag: dict[str, str] = {}
        for _ in range(200):  # until both workers have made a session
            (reply,) = _post(port, [{"channel": "/meta/handshake", "version": "1.0",
                                     "supportedConnectionTypes": ["long-polling"]}])
            by_tag.setdefault(reply["clientId"][:TAG_CHARS], reply["clientId"])
            if len(by_tag) == 2:
                break
        assert len(by_tag) == 2
        # Each worker listens on a port of its own for its peers (the shared one would
        # reach either), and every connect is served, by its session's worker.
        client = redis.Redis.from_url(redis_url)
        try:
            urls = [client.get(f"{redis_prefix}cometd:node:{tag}") for tag in by_tag]
        finally:
            client.close()
        ports = {urlsplit(url.decode()).port for url in urls if url is not None}
        assert len(ports) == 2 and port not in ports
        for client_id in by_tag.values():
            replies = [_post(port, [connect(client_id, str(n))])[0] for n in range(8)]
            assert [r["successful"] for r in replies] == [True] * 8, replies
