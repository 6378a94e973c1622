"""The agent API as an attacker tries it: who may read a chat, how long a token lives, how
logins are throttled, and the rules the agent API shares with the customer API (issue 12).

Time is simulated where a rule depends on it (token lifetime, login buckets): the server gets
a clock the test moves, so nothing here waits for real time to pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec
import pytest

from tests.conftest import SERVICE, RunningServer, start_server
from tests.test_files import PNG
from webchat.server.config import ServerConfig
from webchat.transport.agent import AgentApiError, AgentClient

DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000


class SimClock:
    """Milliseconds since the epoch, moved only by the test."""

    def __init__(self) -> None:
        self.now_ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms

    def seconds(self) -> float:
        """The same clock for AgentClient, which counts in seconds."""
        return self.now_ms / 1000


async def agent_call(http: aiohttp.ClientSession, server: RunningServer, method: str,
                     path: str, token: str = "", body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = msgspec.json.encode(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with http.request(method, f"{server.url}/agent/v1{path}", data=data,
                            headers=headers) as resp:
        payload = await resp.read()
        return resp.status, msgspec.json.decode(payload) if payload else None


async def login(http: aiohttp.ClientSession, server: RunningServer, name: str,
                password: str = "pw") -> tuple[int, Any]:
    return await agent_call(http, server, "POST", "/login",
                            body={"username": name, "password": password})


async def token_of(http: aiohttp.ClientSession, server: RunningServer, name: str) -> str:
    status, body = await login(http, server, name)
    assert status == 200, body
    return str(body["token"])


# ---- authorization by chat state --------------------------------------------------------------

async def test_a_chat_reserved_for_another_agent_and_its_files_stay_with_that_agent(
        server, customer_factory, agent_factory):
    for name in ("a", "b", "c"):
        await server.add_agent(name, nickname=name.upper())
    await server.add_agent("sam", supervisor=True)
    customer = await customer_factory(server.data_url)
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    a = await agent_factory(server.url, "a")
    b = await agent_factory(server.url, "b", ready=False)
    c = await agent_factory(server.url, "c", ready=False)
    sam = await agent_factory(server.url, "sam", ready=False)
    await a.client.accept(chat_id)
    sent = await customer.command("sendFile", {"data": PNG, "fileName": "passport.png"})
    file_id = sent["userData"]["file-id"]
    await a.client.transfer(chat_id, "b")  # queued again, reserved for b

    # Neither a bystander nor the agent who handed it over reads it or its files any more.
    for outsider in (c, a):
        with pytest.raises(AgentApiError) as refused:
            await outsider.client.chat(chat_id)
        assert (refused.value.status, refused.value.code) == (404, "chat_not_found")
        with pytest.raises(AgentApiError) as refused:
            await outsider.client.download_file(chat_id, file_id)
        assert (refused.value.status, refused.value.code) == (404, "chat_not_found")
        with pytest.raises(AgentApiError):
            await outsider.client.accept(chat_id)
    # The agent it is reserved for does, and so does a supervisor (by role).
    assert (await b.client.chat(chat_id))["targetAgent"] == "b"
    assert (await b.client.download_file(chat_id, file_id))[0] == PNG
    assert (await sam.client.download_file(chat_id, file_id))[0] == PNG

    # Offered to b once b is ready: still b's alone; after accepting it is b's chat.
    await b.client.set_state(True, 3)
    await b.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
    with pytest.raises(AgentApiError):
        await c.client.chat(chat_id)
    await b.client.accept(chat_id)
    assert (await b.client.chat(chat_id))["agentId"] == "b"
    with pytest.raises(AgentApiError):
        await c.client.download_file(chat_id, file_id)


async def test_a_waiting_chat_nobody_was_offered_can_be_taken_but_not_read(server, http):
    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    async with http.post(server.data_url, data={"nickname": "Ada"}) as resp:
        chat_id = msgspec.json.decode(await resp.read())["chatId"]
    status, _ = await agent_call(http, server, "GET", f"/chats/{chat_id}", token)
    assert status == 404
    status, accepted = await agent_call(http, server, "POST", f"/chats/{chat_id}/accept", token)
    assert status == 200 and accepted["agentId"] == "grace"
    status, _ = await agent_call(http, server, "GET", f"/chats/{chat_id}", token)
    assert status == 200


# ---- token lifetime, refresh and logout --------------------------------------------------------

async def test_a_token_expires_also_across_a_restart(server_config, http):
    clock = SimClock()
    running = await start_server(server_config, clock=clock)
    try:
        await running.add_agent("grace")
        token = await token_of(http, running, "grace")
        assert (await agent_call(http, running, "GET", "/me", token))[0] == 200
    finally:
        await running.runner.cleanup()
    clock.advance(400 * DAY_MS)
    running = await start_server(server_config, clock=clock)
    try:
        status, body = await agent_call(http, running, "GET", "/me", token)
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        status, body = await login(http, running, "grace")
        assert body["expiresInS"] == server_config.agent_token_lifetime_s
    finally:
        await running.runner.cleanup()


async def test_refresh_swaps_a_valid_token_for_a_new_one(server_config, http):
    clock = SimClock()
    lifetime_ms = int(server_config.agent_token_lifetime_s * 1000)
    running = await start_server(server_config, clock=clock)
    try:
        await running.add_agent("grace")
        first = await token_of(http, running, "grace")
        clock.advance(lifetime_ms - HOUR_MS)
        status, fresh = await agent_call(http, running, "POST", "/refresh", first)
        assert status == 200 and fresh["expiresInS"] == server_config.agent_token_lifetime_s
        second = fresh["token"]
        assert second != first
        assert (await agent_call(http, running, "GET", "/me", first))[0] == 401  # swapped
        clock.advance(lifetime_ms - HOUR_MS)  # past the first token's end, not the second's
        assert (await agent_call(http, running, "GET", "/me", second))[0] == 200
        clock.advance(2 * HOUR_MS)
        assert (await agent_call(http, running, "GET", "/me", second))[0] == 401
        assert (await agent_call(http, running, "POST", "/refresh", second))[0] == 401
    finally:
        await running.runner.cleanup()


async def test_logout_revokes_the_token_closes_its_stream_and_survives_a_restart(
        server_config, http):
    running = await start_server(server_config)
    try:
        await running.add_agent("grace")
        token = await token_of(http, running, "grace")
        other = await token_of(http, running, "grace")  # another tab of the same agent
        ws_url = running.url.replace("http", "ws", 1) + "/agent/v1/events"
        async with http.ws_connect(ws_url, params={"token": token}) as ws:
            assert (await ws.receive_json())["type"] == "hello"
            assert (await agent_call(http, running, "POST", "/logout", token))[0] == 200
            async with asyncio.timeout(5):
                closed = await ws.receive()
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert (await agent_call(http, running, "GET", "/me", token))[0] == 401
        assert (await agent_call(http, running, "GET", "/me", other))[0] == 200
        async with http.ws_connect(ws_url, params={"token": token}) as ws:
            pass
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 401
    else:
        raise AssertionError("a logged-out token opened the event stream")
    finally:
        await running.runner.cleanup()
    running = await start_server(server_config)
    try:
        assert (await agent_call(http, running, "GET", "/me", token))[0] == 401
        assert (await agent_call(http, running, "GET", "/me", other))[0] == 200
    finally:
        await running.runner.cleanup()


async def test_the_python_agent_client_refreshes_before_expiry_and_logs_in_again_after(
        server_config, customer_factory):
    clock = SimClock()
    lifetime_ms = int(server_config.agent_token_lifetime_s * 1000)
    running = await start_server(server_config, clock=clock)
    client = AgentClient(running.url, "grace", "pw", clock=clock.seconds)
    try:
        await running.add_agent("grace")
        await client.login()
        first = client.token
        clock.advance(lifetime_ms * 3 // 4)
        await client.set_state(True, 3)  # refreshed on the way
        assert client.token != first
        clock.advance(2 * lifetime_ms)  # asleep for a long time: the token is gone
        assert (await client.me())["ready"] is True  # logged in again with the password
        customer = await customer_factory(running.data_url)
        await customer.command("startChat", {"nickname": "Ada"})
        assert len(await client.queue()) == 1
    finally:
        await client.close()
        await running.runner.cleanup()


# ---- login throttling, constant work, hashing off the event loop -------------------------------

async def test_login_attempts_are_throttled_per_name_and_per_address(server_config, http):
    clock = SimClock()
    running = await start_server(server_config, clock=clock)
    per_name_rate, per_name_burst = server_config.limits.login_rate_per_name
    per_address_rate, per_address_burst = server_config.limits.login_rate_per_address
    try:
        await running.add_agent("grace", "secret")
        for _ in range(3):  # honest logins cost nothing
            assert (await login(http, running, "grace", "secret"))[0] == 200
        for _ in range(per_name_burst):
            assert (await login(http, running, "grace", "guess"))[0] == 401
        status, body = await login(http, running, "grace", "guess")
        assert (status, body["error"]["code"]) == (429, "too_many_attempts")
        # Even the right password waits: the throttle answers before any password is checked.
        assert (await login(http, running, "grace", "secret"))[0] == 429
        clock.advance(int(1000 / per_name_rate) + 1)
        assert (await login(http, running, "grace", "secret"))[0] == 200

        # One address trying many names runs out too, whatever the names.
        clock.advance(DAY_MS)
        tried = 0
        while (await login(http, running, f"nobody{tried}", "guess"))[0] == 401:
            tried += 1
            assert tried <= per_address_burst
        assert tried == per_address_burst
        clock.advance(int(1000 / per_address_rate) + 1)
        assert (await login(http, running, "grace", "secret"))[0] == 200
    finally:
        await running.runner.cleanup()


async def test_an_unknown_name_costs_the_same_work_as_a_known_one(server, http, monkeypatch):
    await server.add_agent("grace", "secret")
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    assert (await login(http, server, "grace", "wrong"))[0] == 401
    known = len(calls)
    calls.clear()
    assert (await login(http, server, "nobody", "wrong"))[0] == 401
    assert (known, len(calls)) == (1, 1)


async def test_healthz_answers_while_16_bad_logins_hash(server_config, http):
    # Enough room in the buckets that all 16 are really hashed.
    limits = replace(server_config.limits, login_rate_per_address=(1.0, 100))
    running = await start_server(replace(server_config, limits=limits))
    try:
        started = time.perf_counter()
        logins = [asyncio.create_task(login(http, running, f"nobody{n}", "guess"))
                  for n in range(16)]
        await asyncio.sleep(0)
        health_started = time.perf_counter()
        async with http.get(f"{running.url}/healthz") as resp:
            assert resp.status == 200
        health_s = time.perf_counter() - health_started
        assert [status for status, _ in await asyncio.gather(*logins)] == [401] * 16
        logins_s = time.perf_counter() - started
        print(f"healthz {health_s * 1000:.0f} ms while 16 bad logins took "
              f"{logins_s * 1000:.0f} ms")
        # Generous: on the event loop the 16 hashes delay /healthz about as long as they take.
        assert health_s < logins_s / 2
    finally:
        await running.runner.cleanup()


# ---- rules shared with the customer API --------------------------------------------------------

async def accepted(server: RunningServer, http: aiohttp.ClientSession, token: str) -> str:
    async with http.post(server.data_url, data={"nickname": "Ada"}) as resp:
        chat_id = str(msgspec.json.decode(await resp.read())["chatId"])
    assert (await agent_call(http, server, "POST", f"/chats/{chat_id}/accept", token))[0] == 200
    return chat_id


@pytest.mark.parametrize("url", ["http://", "https:///no-host", "javascript:alert(1)", ""])
async def test_agent_push_url_follows_the_customer_api_rule(server, http, url):
    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    chat_id = await accepted(server, http, token)
    status, body = await agent_call(http, server, "POST", f"/chats/{chat_id}/pushUrl", token,
                                    {"url": url})
    assert status == 400, body
    status, _ = await agent_call(http, server, "POST", f"/chats/{chat_id}/pushUrl", token,
                                 {"url": " https://example.com/help "})
    assert status == 200  # surrounding blanks are trimmed on both APIs


async def test_an_agent_file_description_over_the_limit_is_refused_not_cut(server, http):
    await server.add_agent("grace")
    client = AgentClient(server.url, "grace", "pw")
    try:
        await client.login()
        chat_id = await accepted(server, http, client.token)
        limit = server.config.limits.max_file_description_chars
        with pytest.raises(AgentApiError) as refused:
            await client.upload_file(chat_id, "a.txt", b"hi\n", "text/plain", "d" * (limit + 1))
        assert refused.value.status == 400
        assert (await client.chat(chat_id))["messages"][-1]["type"] != "FileUploaded"
        await client.upload_file(chat_id, "a.txt", b"hi\n", "text/plain", "d" * limit)
    finally:
        await client.close()


async def test_capacity_null_is_refused(server, http):
    await server.add_agent("grace")
    token = await token_of(http, server, "grace")
    status, body = await agent_call(http, server, "POST", "/state", token,
                                    {"ready": True, "capacity": None})
    assert (status, body["error"]["code"]) == (400, "bad_request")
    status, me = await agent_call(http, server, "POST", "/state", token, {"ready": True})
    assert status == 200 and me["capacity"] == server.config.default_agent_capacity


# ---- queue size ------------------------------------------------------------------------------

async def test_user_data_is_bounded_per_chat_in_total(server, http):
    limits = server.config.limits
    per_value = limits.max_user_data_value_chars
    count = limits.max_user_data_total_chars // per_value + 1
    big = {f"userData[k{n}]": "v" * per_value for n in range(count)}
    async with http.post(server.data_url, data=urlencode({"nickname": "Ada", **big}),
                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
        reply = msgspec.json.decode(await resp.read())
    assert [e["code"] for e in reply["errors"]] == [1010], reply
    assert server.engine.queued() == []

    # Merged updates are bounded by the same total.
    async with http.post(server.data_url, data={"nickname": "Ada"}) as resp:
        chat = msgspec.json.decode(await resp.read())
    ident = {k: chat[k] for k in ("userId", "secureKey", "alias")}
    url = f"{server.data_url}/{chat['chatId']}/updateData"
    for n in range(count):
        async with http.post(url, data={**ident, f"userData[u{n}]": "v" * per_value}) as resp:
            reply = msgspec.json.decode(await resp.read())
    assert [e["code"] for e in reply["errors"]] == [1010], reply
    total = sum(len(k) + len(v) for k, v in server.engine.chats[chat["chatId"]].user_data.items())
    assert total <= limits.max_user_data_total_chars


@pytest.fixture
def busy_config(server_config: ServerConfig) -> ServerConfig:
    limits = replace(server_config.limits, request_chat_rate=(1000.0, 1000))
    return replace(server_config, limits=limits)


async def test_the_queue_is_paged(busy_config, http):
    running = await start_server(busy_config)
    page = busy_config.limits.queue_page_size
    waiting = page + 7
    try:
        await running.add_agent("grace")
        token = await token_of(http, running, "grace")
        for n in range(waiting):
            async with http.post(running.data_url, data={"nickname": f"c{n}"}) as resp:
                assert resp.status == 200
        status, first = await agent_call(http, running, "GET", "/queue", token)
        assert status == 200
        assert (len(first["chats"]), first["total"]) == (page, waiting)
        assert [c["position"] for c in first["chats"]] == list(range(1, page + 1))
        status, rest = await agent_call(http, running, "GET", f"/queue?offset={page}&limit=5",
                                        token)
        assert [c["position"] for c in rest["chats"]] == list(range(page + 1, page + 6))
        status, one = await agent_call(
            http, running, "GET", f"/queue?service={SERVICE}&offset={waiting - 1}", token)
        assert [c["customer"]["nickname"] for c in one["chats"]] == [f"c{waiting - 1}"]
        for bad in ("limit=0", f"limit={busy_config.limits.max_queue_page_size + 1}",
                    "offset=-1", "limit=x", "service=nope"):
            status, body = await agent_call(http, running, "GET", f"/queue?{bad}", token)
            assert (status, body["error"]["code"]) == (400, "bad_request"), bad
    finally:
        await running.runner.cleanup()


async def test_an_account_stored_by_another_process_logs_in_before_its_news_arrives(
        server, http):
    """In a cluster an account is created on one process; a login on another may come before
    the broker's news of it. The store is the source of truth: the login there succeeds."""
    from pathlib import Path

    from webchat.server.accounts import hash_password
    from webchat.store.records import AgentRecord
    from webchat.store.sqlite import SqliteStore

    assert server.engine.agent("late") is None
    other = SqliteStore(Path(server.config.data_dir) / "webchat.sqlite3")  # "another process"
    await other.open()
    try:
        await other.put_agent(AgentRecord("late", "Late", hash_password("pw")))
    finally:
        await other.close()
    status, body = await login(http, server, "late")
    assert status == 200, body
    status, _ = await login(http, server, "nobody")
    assert status == 401
