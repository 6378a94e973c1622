"""The connection events of WebChatService: the network between the customer and a real server
(on loopback, behind tests/tcp_proxy.py) drops and comes back, and the customer hears
``disconnected``, ``reconnected``, ``restoredOffline``, ``chatServerTimeout`` and, for every
request that succeeds, ``ajaxResponse`` — and loses no message sent while it was away."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import Customer, accepted_chat, saved_chat
from tests.tcp_proxy import TcpProxy
from tests.test_end_to_end import transport_options
from webchat.service.storage import MemoryStorage


@pytest.fixture
async def proxy(server) -> AsyncIterator[TcpProxy]:
    front = TcpProxy(server.url)
    await front.start()
    yield front
    await front.close()


def through(proxy: TcpProxy, url: str) -> str:
    """``url`` with the proxy's address in place of the server's."""
    return urlunsplit(urlsplit(url)._replace(netloc=f"127.0.0.1:{proxy.port}"))


def options_through(proxy: TcpProxy, server, transport: str) -> dict:
    options = transport_options(server, transport)
    if "cometD" in options:
        options["cometD"]["cometURL"] = through(proxy, options["cometD"]["cometURL"])
    return options


@pytest.mark.conformance("event:disconnected", "event:reconnected", "event:ajaxResponse")
@pytest.mark.parametrize("transport", ["rest", "websocket", "long-polling"])
async def test_a_network_drop_and_return_is_heard_and_loses_nothing(
        server, proxy, customer_factory, agent_factory, transport):
    customer = await customer_factory(through(proxy, server.data_url),
                                      **options_through(proxy, server, transport))
    agent, chat_id = await accepted_chat(server, customer, agent_factory)
    started = next(e for e in customer.events if e.event == "WebChatService.started")
    # Every successful request is an ajaxResponse with the chat response itself.
    answers = [e.data for e in customer.events if e.event == "WebChatService.ajaxResponse"]
    assert answers and answers[0]["chatId"] == started.data["sessionID"]
    assert answers[0]["statusCode"] == 0

    await proxy.cut()
    await customer.wait_event("disconnected", within=10)
    await agent.client.send(chat_id, "sent while you were away")
    if transport == "rest":
        # Polls keep failing while the network is down: one disconnected, not one per poll.
        await customer.wait_for(lambda c: sum(1 for e in c.events
                                               if e.event == "WebChatService.error") >= 3)
    assert customer.names().count("disconnected") == 1
    assert "reconnected" not in customer.names()

    await proxy.restore()
    await customer.wait_event("reconnected", within=20)
    # The client then catches up from its position: the message sent meanwhile, once.
    await customer.wait_for(lambda c: ("Agent", "sent while you were away") in c.texts(),
                            within=10)
    names = customer.names()
    assert names.index("disconnected") < names.index("reconnected")
    assert names.count("disconnected") == names.count("reconnected") == 1
    assert customer.texts().count(("Agent", "sent while you were away")) == 1
    await customer.command("sendMessage", {"message": "back"})
    await agent.wait_for(lambda _: any(m.get("text") == "back"
                                       for m in agent.messages(chat_id)))


@pytest.mark.conformance("event:restoredOffline", "event:chatServerBackOnline")
async def test_a_restore_while_the_server_is_unreachable_is_restored_offline(
        server, proxy, customer_factory, agent_factory):
    storage = MemoryStorage()
    data = await saved_chat(customer_factory, through(proxy, server.data_url), storage)
    await proxy.cut()
    await server.add_agent("grace", nickname="Grace")
    agent = await agent_factory(server.url, "grace")
    await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
    agent.client.track(data["sessionID"],
                       (await agent.client.accept(data["sessionID"]))["nextPosition"])
    await agent.client.send(data["sessionID"], "are you there?")

    second = await customer_factory(through(proxy, server.data_url), storage=storage)
    await second.wait_event("restoredOffline")
    names = second.names()
    assert names.index("restored") < names.index("restoredOffline")
    assert "restoreFailed" not in names
    assert second.service.session.active  # still the chat, still saved
    assert storage.load() is not None and storage.load()["sessionID"] == data["sessionID"]
    assert ("Agent", "are you there?") not in second.texts()

    await proxy.restore()
    await second.wait_event("chatServerBackOnline", within=10)
    await second.wait_for(lambda c: ("Agent", "are you there?") in c.texts())
    assert "reconnected" in second.names()
    replayed = [e.data for e in second.events if e.event == "WebChatService.messageReceived"]
    # What the first process had shown comes back as restoring; the agent's words as news.
    assert replayed[0]["restoring"] is True
    assert any(not r["restoring"] and any(m.get("text") == "are you there?"
                                          for m in r["messages"]) for r in replayed)


@pytest.mark.conformance("event:chatServerTimeout")
async def test_a_catch_up_that_never_gets_through_gives_up_with_chat_server_timeout(
        server, proxy, customer_factory):
    """Over CometD a restored-offline chat is caught up by refreshes every few seconds; when
    none gets through, the service gives up and says so."""
    storage = MemoryStorage()
    options = options_through(proxy, server, "websocket")
    await saved_chat(customer_factory, through(proxy, server.data_url), storage)
    await proxy.cut()
    customer = Customer(through(proxy, server.data_url), storage=storage, **options)
    # Our defaults are the original's (every 3 s, 30 times); this test shortens them.
    customer.service.resync_interval_ms = 50
    customer.service.resync_attempts = 3
    try:
        await customer.start()
        await customer.wait_event("restoredOffline")
        await customer.wait_event("chatServerTimeout", within=20)
        assert customer.names().count("chatServerTimeout") == 1
        assert "reconnected" not in customer.names()
        assert customer.service.session.active  # given up on catching up, not on the chat
    finally:
        await customer.close()
