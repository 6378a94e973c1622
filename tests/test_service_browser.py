"""The browser WebChatService's connection events in real headless Chromium: the server goes
away mid-chat and comes back, a reload restores the chat while the server cannot be reached,
and a catch-up that never gets through gives up — each heard on the bus with the original's
names (``disconnected``, ``reconnected``, ``restoredOffline``, ``chatServerTimeout``,
``ajaxResponse``) and nothing lost or shown twice."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.conftest import free_port, start_server
from tests.test_browser import (
    TRANSPORTS,
    accepted_on_page,
    browser,
    grace,
    indexes,
    open_page,
    open_tab,
    pytestmark,
    running,
    say,
    widget,
)

__all__ = ["browser", "pytestmark"]  # the fixture and the Chromium skip, from test_browser

CHAT_API = "**/genesys/2/chat/**"


RECORD = """(bus) => {
    window.heard = [];
    bus.subscribe("WebChatService.*", (e) => window.heard.push(
        {name: e.event.split(".")[1], data: e.data === undefined ? null : e.data}));
}"""
"""Keep every WebChatService event the page hears (name and data) in ``window.heard``."""


async def record_events(page: Page) -> None:
    await page.wait_for_function("() => window.CXBus?.plugins.get('WebChatService')?.isReady")
    await page.evaluate(f"({RECORD})(window.CXBus)")


async def heard(page: Page) -> list[dict[str, Any]]:
    return list(await page.evaluate("() => window.heard"))


async def names(page: Page) -> list[str]:
    return [e["name"] for e in await heard(page)]


async def until_heard(page: Page, name: str, count: int = 1) -> None:
    await page.wait_for_function(
        "([name, count]) => window.heard.filter((e) => e.name === name).length >= count",
        arg=[name, count], timeout=30_000)


@pytest.mark.conformance("event:disconnected", "event:reconnected", "event:ajaxResponse")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_page_hears_the_server_go_away_and_come_back(server_config, browser,
                                                               agent_factory, transport):
    port = free_port()
    first = await start_server(server_config, port=port)
    agent = await grace(first, agent_factory)
    page = await open_page(browser, f"{first.url}/?transport={transport}")
    await record_events(page)
    w = widget(page)
    chat_id = await accepted_on_page(page, agent)
    # Every successful request is an ajaxResponse carrying the chat response.
    answers = [e["data"] for e in await heard(page) if e["name"] == "ajaxResponse"]
    assert answers and all(a["statusCode"] == 0 for a in answers)
    assert "disconnected" not in await names(page)

    await first.runner.cleanup()  # the server goes away mid-chat
    await until_heard(page, "disconnected")
    async with running(server_config, port=port) as second:
        await agent.client.send(chat_id, "after the outage")
        await until_heard(page, "reconnected")
        # ...then the page catches up from its position: the agent's message, once.
        await expect(w.locator(".msg.Agent")).to_have_text(["Graceafter the outage"],
                                                           timeout=30_000)
        got = await names(page)
        assert got.count("disconnected") == got.count("reconnected") == 1
        assert got.index("disconnected") < got.index("reconnected")
        seen = await indexes(page)
        assert seen == sorted(set(seen))
        await say(page, "glad you are back")
        await agent.wait_message(chat_id, lambda m: m.get("text") == "glad you are back",
                                 within=30)
        assert second.engine.chats[chat_id].events[-1].text == "glad you are back"


async def cut_off(context: BrowserContext) -> None:
    """The chat server unreachable from the page (its requests fail at the network level),
    while the page and its scripts still load."""
    await context.route(CHAT_API, lambda route: route.abort("internetdisconnected"))


@pytest.mark.conformance("event:restoredOffline", "event:restored",
                         "event:chatServerBackOnline")
async def test_a_reload_while_the_server_is_unreachable_restores_offline(server, browser,
                                                                         agent_factory):
    agent = await grace(server, agent_factory)
    context = await browser.new_context()
    page = await open_tab(context, f"{server.url}/?transport=rest")
    chat_id = await accepted_on_page(page, agent)
    await agent.client.send(chat_id, "before the reload")
    await expect(widget(page).locator(".msg.Agent")).to_have_text(["Gracebefore the reload"])

    await cut_off(context)
    # From the reload on, before the service restores: what it publishes then is heard too.
    await page.add_init_script(
        f'window.addEventListener("webchat:loaded", (e) => ({RECORD})(e.detail.bus));')
    await page.reload()
    await until_heard(page, "restoredOffline")
    got = await names(page)
    assert got.index("restored") < got.index("restoredOffline")
    assert "restoreFailed" not in got
    session = await page.evaluate("""async () => {
        const {service} = await import("/webchat/webchat.js");
        const saved = localStorage.getItem(service.config.stateStorageKey);
        return {active: service.active, saved};
    }""")
    assert session["active"] and chat_id in session["saved"]  # the chat is kept

    await agent.client.send(chat_id, "while you were offline")
    await context.unroute(CHAT_API)
    await until_heard(page, "chatServerBackOnline")
    w = widget(page)
    await expect(w.locator(".msg.Agent")).to_have_text(
        ["Gracebefore the reload", "Gracewhile you were offline"])
    assert "reconnected" in await names(page)
    seen = await indexes(page)
    assert seen == sorted(set(seen))
    await context.close()


@pytest.mark.conformance("event:chatServerTimeout")
async def test_a_catch_up_that_never_gets_through_gives_up(server, browser, agent_factory):
    """After the connection comes back the page refreshes from its position; when those
    refreshes keep failing it gives up with chatServerTimeout (the original tries every 3 s,
    30 times; this page is told to try 3 times, 100 ms apart)."""
    agent = await grace(server, agent_factory)
    context = await browser.new_context()
    page = await open_tab(context, f"{server.url}/?transport=rest")
    await record_events(page)
    await page.evaluate("""async () => {
        const {service} = await import("/webchat/webchat.js");
        Object.assign(service, {resyncInterval: 100, resyncAttempts: 3});
    }""")
    chat_id = await accepted_on_page(page, agent)
    await cut_off(context)
    await until_heard(page, "disconnected")
    await page.evaluate("() => CXBus.command('WebChatService.stopPoll')")
    # The network is back for everything but the catch-up (refresh) itself.
    await context.unroute(CHAT_API)
    await context.route("**/genesys/2/chat/**/refresh",
                        lambda route: route.abort("internetdisconnected"))
    await say(page, "anyone?")
    await agent.wait_message(chat_id, lambda m: m.get("text") == "anyone?")
    await until_heard(page, "chatServerTimeout")
    got = await names(page)
    assert got.index("reconnected") < got.index("chatServerTimeout")
    assert got.count("chatServerTimeout") == 1
    await context.close()
