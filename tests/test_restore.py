"""Restoring a chat: a customer process killed mid-chat, a new one picking the chat up; restore
timeouts, failures, and asynchronous chats kept by the integrator's own storage."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import accepted_chat, saved_chat
from tests.test_end_to_end import transport_options
from webchat.bus import Bus, CommandError
from webchat.service import WebChatConfig, WebChatService
from webchat.service.core import now_ms
from webchat.service.storage import COOKIES, FileStorage, MemoryStorage

WEBCHAT = str(Path(sys.executable).parent / "webchat")


def cli_transport_args(server, transport: str) -> list[str]:
    if transport == "rest":
        return []
    args = ["--cometd-url", f"{server.url}/genesys/cometd"]
    return [*args, "--long-polling"] if transport == "long-polling" else args


async def wait_until(predicate, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - another process writes the file
            await asyncio.sleep(0.02)


def saved(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.conformance("command:restore", "event:restored", "event:messageReceived",
                         "option:restoreTimeout")
@pytest.mark.parametrize("transport", ["rest", "websocket", "long-polling"])
async def test_chat_restores_in_a_new_process_after_the_first_was_killed(
        server, customer_factory, agent_factory, tmp_path, transport):
    await server.add_agent("grace", nickname="Grace")
    agent = await agent_factory(server.url, "grace")
    session_file = tmp_path / "chat.json"
    proc = await asyncio.create_subprocess_exec(
        WEBCHAT, "chat", "--url", server.data_url, "--name", "Ada",
        "--session-file", str(session_file), *cli_transport_args(server, transport),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev), within=10)
        chat_id = next(e for e in agent.events if e["type"] == "offer")["chat"]["chatId"]
        accepted = await agent.client.accept(chat_id)
        agent.client.track(chat_id, accepted["nextPosition"])
        assert proc.stdin is not None
        proc.stdin.write(b"hello one\nhello two\n")
        await proc.stdin.drain()
        await agent.wait_for(lambda _: [m.get("text") for m in agent.messages(chat_id)
                                        if m["type"] == "Message"][-2:]
                             == ["hello one", "hello two"])
        await agent.client.send(chat_id, "reply one")
        reply_index = server.engine.chats[chat_id].next_index - 1
        # The first process has seen the reply (and saved that) before it dies.
        await wait_until(lambda: saved(session_file).get("transcriptPosition", 0)
                         > reply_index)
    finally:
        proc.kill()
        await proc.wait()
    seen_before = saved(session_file)["transcriptPosition"]
    await agent.client.send(chat_id, "while away 1")
    await agent.client.send(chat_id, "while away 2")

    customer = await customer_factory(server.data_url, storage=FileStorage(session_file),
                                      **transport_options(server, transport))
    restored = await customer.wait_event("restored")
    assert restored.data["sessionData"]["sessionID"] == chat_id
    total = server.engine.chats[chat_id].next_index - 1
    await customer.wait_for(lambda c: sorted(c.indexes()) == list(range(1, total + 1)))
    received = [e.data for e in customer.events if e.event == "WebChatService.messageReceived"]
    old = [m for d in received if d["restoring"] for m in d["messages"]]
    new = [m for d in received if not d["restoring"] for m in d["messages"]]
    assert [m["index"] for m in old] == list(range(1, seen_before))
    assert [m["text"] for m in new if m["type"] == "Message"] == ["while away 1",
                                                                  "while away 2"]
    assert [m["text"] for m in old if m["type"] == "Message"] == [
        "hello one", "hello two", "reply one"]
    assert customer.indexes() == list(range(1, total + 1))  # each exactly once, in order

    # The restored chat goes on, and nothing was sent twice on the way.
    await customer.command("sendMessage", {"message": "back again"})
    await agent.wait_message(chat_id, lambda m: m.get("text") == "back again")
    texts = [m.text for m in server.engine.chats[chat_id].events if m.type == "Message"]
    assert texts.count("hello one") == 1 and texts.count("back again") == 1


@pytest.mark.conformance("event:restoreTimeout", "option:restoreTimeout")
async def test_a_chat_left_longer_than_restore_timeout_is_not_restored(
        server, customer_factory):
    storage = MemoryStorage()
    data = await saved_chat(customer_factory, server.data_url, storage)
    storage.save({**data, "savedAt": now_ms() - 61_000})  # the reference's default: 60 s

    second = await customer_factory(server.data_url, storage=storage)
    timeout = await second.wait_event("restoreTimeout")
    assert timeout.data["sessionData"]["sessionID"] == data["sessionID"]
    assert "restored" not in second.names() and "messageReceived" not in second.names()
    assert storage.load() is None
    with pytest.raises(CommandError, match="There is no chat session to restore"):
        await second.command("restore")

    # A longer restoreTimeout lets the same chat come back.
    storage.save({**data, "savedAt": now_ms() - 61_000})
    third = await customer_factory(server.data_url, storage=storage, restoreTimeout=120_000)
    await third.wait_event("restored")


async def test_restore_timeout_counts_from_when_the_process_left_not_the_last_message(
        server, customer_factory):
    storage = MemoryStorage()
    first = await customer_factory(server.data_url, storage=storage)
    await first.command("startChat", {"nickname": "Ada"})
    quiet = storage.load()
    assert quiet is not None
    storage.save({**quiet, "savedAt": now_ms() - 61_000})  # nothing new for over a minute
    await first.close()  # ...then the customer quits: that is when the time away starts
    left = storage.load()
    assert left is not None and now_ms() - left["savedAt"] < 61_000

    second = await customer_factory(server.data_url, storage=storage)
    await second.wait_event("restored")
    assert "restoreTimeout" not in second.names()


@pytest.mark.conformance("event:restoreFailed")
async def test_a_chat_the_server_refuses_fails_to_restore_and_is_forgotten(
        server, customer_factory):
    storage = MemoryStorage()
    data = await saved_chat(customer_factory, server.data_url, storage)
    storage.save({**data, "secureKey": "not-the-key"})

    second = await customer_factory(server.data_url, storage=storage)
    failed = await second.wait_event("restoreFailed")
    assert failed.data["error"]["errors"][0]["code"] == 1001
    assert storage.load() is None
    assert not second.service.session.active
    await second.command("startChat", {"nickname": "Ada"})  # a new chat can start


@pytest.mark.conformance("command:restoreChat", "option:async.enabled",
                         "option:async.getSessionData", "option:async.setSessionData",
                         "option:async.newMessageRestoreState")
async def test_async_chat_kept_by_the_site_resumes_the_next_day(
        server, customer_factory, agent_factory):
    # The reference's own example, the names the right way round: the service calls
    # getSessionData(sessionData, Cookie, CookieOptions) to hand the site the data, and
    # setSessionData(Open, Cookie, CookieOptions) to get it back (here as the JSON text).
    handed: list[object] = []

    def get_session_data(session_data, cookie, cookie_options):
        handed.append(session_data)
        cookie.set("customer-defined-session-cookie", json.dumps(session_data), cookie_options)

    def set_session_data(open_, cookie, cookie_options):
        return cookie.get("customer-defined-session-cookie")

    async_options = {"enabled": True, "getSessionData": get_session_data,
                     "setSessionData": set_session_data,
                     "newMessageRestoreState": "maximized"}
    first = await customer_factory(server.data_url, **{"async": async_options})
    agent, chat_id = await accepted_chat(server, first, agent_factory)
    await first.close()  # the customer closes the page
    kept = handed[-1]
    assert isinstance(kept, dict) and kept["sessionID"] == chat_id and kept["async"] is True
    a_day_later = {**kept, "savedAt": now_ms() - 26 * 3600 * 1000}
    COOKIES.set("customer-defined-session-cookie", json.dumps(a_day_later))
    await agent.client.send(chat_id, "your refund is on its way")

    second = await customer_factory(server.data_url, **{"async": async_options})
    restored = await second.wait_event("restored")
    assert restored.data["async"] is True
    assert restored.data["newMessageRestoreState"] == "maximized"
    await second.wait_for(lambda c: "your refund is on its way" in
                          [m.get("text") for m in _unseen(c)])
    # restoreChat (the name) refuses while the chat is already restored.
    with pytest.raises(CommandError, match="already an active chat session"):
        await second.command("restoreChat")



async def test_the_sites_callbacks_are_handed_main_cookie_options(server):
    # main.cookieOptions reach the site's callbacks as CookieOptions, as in the browser.
    handed: list[object] = []
    options = {"domain": ".example.org", "path": "/", "secure": True}
    config = WebChatConfig.from_dict(
        {"dataURL": server.data_url, "async": {
            "enabled": True,
            "getSessionData": lambda data, cookie, cookie_options: handed.append(cookie_options),
            "setSessionData": lambda open_, cookie, cookie_options: None}},
        main={"cookieOptions": options})
    bus = Bus()
    service = WebChatService(bus, config)
    await service.start()
    try:
        await bus.command("WebChatService.startChat", {"nickname": "Ada"})
        assert handed and all(o == options for o in handed)
    finally:
        await service.close()


def _unseen(customer) -> list[dict]:
    return [m for e in customer.events if e.event == "WebChatService.messageReceived"
            and not e.data["restoring"] for m in e.data["messages"]]


@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_processes_sharing_a_session_file_are_one_chat(server, customer_factory,
                                                             agent_factory, tmp_path, transport):
    # Two services with nothing in common but the session file (as two processes would be):
    # the second is idle and follows whatever chat the first starts, like a second browser tab.
    path = tmp_path / "session.json"
    options = transport_options(server, transport)
    first = await customer_factory(server.data_url, storage=FileStorage(path), **options)
    second = await customer_factory(server.data_url, storage=FileStorage(path), **options)
    second.service.follow_shared_session(0.05)
    agent, chat_id = await accepted_chat(server, first, agent_factory)
    restored = await second.wait_event("restored")
    assert restored.data["sessionData"]["sessionID"] == chat_id
    await agent.client.send(chat_id, "to both")
    for customer in (first, second):
        await customer.wait_for(lambda c: ("Agent", "to both") in c.texts())
    await second.command("sendMessage", {"message": "from the second process"})
    await first.wait_for(lambda c: ("Client", "from the second process") in c.texts())
    await agent.wait_message(chat_id, lambda m: m.get("text") == "from the second process")
    await first.command("endChat")
    await second.wait_event("ended")
    sent = [m["text"] for m in agent.messages(chat_id)
            if m.get("type") == "Message" and m["from"]["type"] == "Client"]
    assert sent == ["from the second process"]  # once, though two processes follow the chat
    for customer in (first, second):
        assert customer.texts().count(("Agent", "to both")) == 1
    await asyncio.sleep(0.2)  # the ended chat is not joined again
    assert second.names().count("restored") == 1


async def test_webchat_chat_follow_joins_a_chat_another_process_started(
        server, customer_factory, agent_factory, tmp_path):
    session_file = tmp_path / "chat.json"
    proc = await asyncio.create_subprocess_exec(
        WEBCHAT, "chat", "--url", server.data_url, "--name", "unused", "--follow",
        "--session-file", str(session_file), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    output = b""

    async def read_until(text: bytes) -> None:
        nonlocal output
        async with asyncio.timeout(15):
            while text not in output:
                chunk = await proc.stdout.read(4096)
                assert chunk, f"webchat chat exited; it printed {output!r}"
                output += chunk

    try:
        await read_until(b"waiting for a chat")
        assert server.engine.chats == {}  # following starts no chat of its own
        customer = await customer_factory(server.data_url, storage=FileStorage(session_file))
        agent, chat_id = await accepted_chat(server, customer, agent_factory)
        await agent.client.send(chat_id, "hello to every window")
        await read_until(b"hello to every window")
        proc.stdin.write(b"typed in the terminal\n")
        await proc.stdin.drain()
        await customer.wait_for(lambda c: any(
            m.get("text") == "typed in the terminal" for e in c.events
            if e.event == "WebChatService.messageReceived" for m in e.data["messages"]))
        assert len(server.engine.chats) == 1
    finally:
        proc.kill()
        await proc.wait()
