"""The widget, its WebChatService and the agent console in real headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright), against the real server on loopback — over CometD
WebSocket, CometD long-polling and REST polling. Screenshots land in artifacts/screenshots."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.conftest import RunningServer, caller_data, free_port, start_server
from webchat.server import ServerConfig
from webchat.server.app import ACCOUNTS, AGENT_API
from webchat.server.files import FileLimits
from webchat.transport.agent import AgentApiError

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
TRANSPORTS = ["websocket", "long-polling", "rest"]
PHONE = {"width": 390, "height": 844}
PHONE_DEVICE = {"viewport": PHONE, "is_mobile": True, "has_touch": True, "user_agent": (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36")}
# Waiting, not timing: a loaded 2-core CI machine can take longer than Playwright's 5 s default.
expect.set_options(timeout=15_000)

pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM) and not os.environ.get("CI"),
    reason="Debian chromium is not installed (scripts/setup test installs it)")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


async def open_page(browser: Browser, url: str, **context: Any) -> Page:
    return await open_tab(await browser.new_context(**context), url)


async def open_tab(context: BrowserContext, url: str) -> Page:
    """A page whose script errors and console errors are kept in ``page.errors``."""
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(url)
    return page


async def service_ready(page: Page) -> None:
    """Until the page's WebChatService has registered on the bus and reported ready."""
    await page.wait_for_function("() => window.CXBus?.plugins.get('WebChatService')?.isReady")


@contextlib.asynccontextmanager
async def embedding_site(server: Any, config: dict[str, Any], port: int | None = None, *,
                         main: dict[str, Any] | None = None, head: str = "",
                         scripts: tuple[str, ...] = ()) -> AsyncIterator[str]:
    """Another origin (a second loopback port) whose page embeds the widget from the chat
    server with the given ``webchat`` configuration (the chat button enabled and shown at once
    unless it says otherwise; and ``main``, the page-wide one), as a customer's own website
    would; ``head`` is more of the site's markup (its stylesheets), ``scripts`` are the site's
    own page scripts, run after the configuration and before the widget loads."""
    config = {**config, "chatButton": {"enabled": True, "openDelay": 0,
                                       **config.get("chatButton", {})}}
    own = "".join(f"<script src='/page-script-{i}.js'></script>" for i in range(len(scripts)))
    html = (f"<!doctype html>{head}<script>window._genesys = {{widgets: {{webchat: "
            f"{json.dumps(config)}, main: {json.dumps(main or {})}}}}};</script>{own}"
            f"<script type=module "
            f"src='{server.url}/webchat/webchat.js'></script><webchat-widget></webchat-widget>")

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    async def no_icon(_: web.Request) -> web.Response:
        return web.Response(status=204)

    async def page_script(request: web.Request) -> web.Response:
        return web.Response(text=scripts[int(request.match_info["i"])],
                            content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get(r"/page-script-{i:\d+}.js", page_script)
    app.router.add_get("/favicon.ico", no_icon)
    runner = web.AppRunner(app)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


def widget(page: Page):
    return page.locator("webchat-widget")


async def start_chat(page: Page, first: str = "Ada", last: str = "Byron", *,
                     launch: bool = True) -> None:
    w = widget(page)
    if launch:
        await w.locator("button.launcher").click()
    await w.locator("input[name=firstname]").fill(first)
    await w.locator("input[name=lastname]").fill(last)
    await w.locator("input[name=subject]").fill("Parcel A-1009")
    await w.locator("form button[type=submit]").click()
    await expect(w.locator(".log .msg.system").nth(1)).to_be_visible()  # the queue notice


async def say(page: Page, text: str) -> None:
    box = widget(page).locator("textarea")
    await box.fill(text)
    await box.press("Enter")


async def indexes(page: Page) -> list[int]:
    raw = await widget(page).locator(".log [data-index]").evaluate_all(
        "nodes => nodes.map(n => Number(n.dataset.index))")
    return [int(n) for n in raw]


async def grace(server: Any, agent_factory: Any) -> Any:
    """Agent "grace" (Grace), logged in through the agent API and recording her events."""
    await server.add_agent("grace", nickname="Grace")
    return await agent_factory(server.url, "grace")


async def offered(agent: Any) -> str:
    """The id of the first chat offered to the agent, once it has been."""
    await agent.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
    return str(next(e for e in agent.events if e["type"] == "offer")["chat"]["chatId"])


async def accepted_on_page(page: Page, agent: Any) -> str:
    """The customer on ``page`` starts a chat; the agent accepts it and follows its transcript."""
    await start_chat(page)
    chat_id = await offered(agent)
    agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
    return chat_id


def shot(page_or_locator: Any, name: str) -> Any:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return page_or_locator.screenshot(path=str(SHOTS / f"{name}.png"))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_customer_page_and_agent_console_chat(server, browser, transport):
    await server.add_agent("grace", nickname="Grace")
    customer = await open_page(browser, f"{server.url}/?transport={transport}")
    console = await log_in(browser, server.url, "grace")
    await expect(console.locator("#me")).to_have_text("Grace")
    await expect(console.locator("#queue-empty")).to_have_text("No chats are waiting.")
    # The console sends its chat writes on its open event stream, not as HTTP requests.
    posted: list[str] = []
    console.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)

    await start_chat(customer)
    # The queue shows the waiting chat with its data; the agent accepts it.
    item = console.locator("#queue li")
    await expect(item).to_contain_text("Parcel A-1009")
    await expect(console.locator("#queue-count")).to_have_text("1")
    await expect(console.locator("#queue-empty")).to_be_hidden()
    await expect(item).to_contain_text("demo-page")  # userData from the page's configuration
    await item.locator("button").click()
    w = widget(customer)
    await expect(w.locator(".log")).to_contain_text("Grace joined")

    # Typing and messages, both ways.
    reply = console.locator(".chat:not([hidden]) textarea")
    await reply.press_sequentially("Hello Ada")
    await expect(w.locator(".typing")).to_contain_text("Grace")
    await reply.press("Enter")
    await expect(w.locator(".msg.Agent")).to_contain_text("Hello Ada")
    await expect(w.locator(".typing")).to_have_text("")
    await w.locator("textarea").press_sequentially("My parcel")
    await expect(console.locator(".chat:not([hidden]) .typing")).to_contain_text("is typing")
    await w.locator("textarea").press("Enter")
    await expect(console.locator(".chat:not([hidden]) .log")).to_contain_text("My parcel")
    await shot(customer, f"widget-desktop-{transport}")
    await shot(console, f"console-desktop-{transport}")

    # The agent ends the chat; the customer is told.
    await console.locator(".chat:not([hidden])").get_by_role("button", name="End",
                                                           exact=True).click()
    await expect(w.locator(".log")).to_contain_text("Chat ended")
    await expect(w.locator(".composer")).to_be_hidden()
    assert customer.errors == [] and console.errors == []  # type: ignore[attr-defined]
    assert [u for u in posted if "/chats/" in u] == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_reload_mid_chat_restores_the_transcript_once(server, browser, agent_factory,
                                                              transport):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport={transport}")
    chat_id = await accepted_on_page(page, agent)
    await agent.client.send(chat_id, "first answer")
    await say(page, "my question")
    await expect(widget(page).locator(".log")).to_contain_text("first answer")
    await expect(widget(page).locator(".msg.Client")).to_have_count(1)

    await page.reload()
    w = widget(page)
    await expect(w.locator(".log")).to_contain_text("first answer")
    await agent.client.send(chat_id, "after the reload")
    await expect(w.locator(".log")).to_contain_text("after the reload")
    seen = await indexes(page)
    assert seen == sorted(set(seen))  # each event shown once, in order
    texts = [m.index for m in server.engine.chats[chat_id].events if m.type == "Message"]
    assert set(texts) <= set(seen)  # every message, from before and after the reload
    await expect(w.locator(".msg.Client")).to_have_text(["You saidmy question"])
    await say(page, "still here")
    await agent.wait_message(chat_id, lambda m: m.get("text") == "still here")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_page_script_drives_webchatservice_with_bus_commands(server, browser,
                                                                    agent_factory, transport):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport={transport}")
    await service_ready(page)
    result = await page.evaluate("""async () => {
        const events = [];
        CXBus.subscribe("WebChatService.messageReceived",
                        e => events.push(...e.data.messages.map(m => m.type)));
        CXBus.subscribe("WebChatService.started", e => events.push("started"));
        const started = await new Promise((resolve, reject) =>
            CXBus.command("WebChatService.startChat", {nickname: "Script", userData: {via: "bus"}})
                 .done(resolve).fail(reject));
        let rejected = null;
        await CXBus.command("WebChatService.startChat", {nickname: "Again"})
              .fail(e => { rejected = e.reason; }).catch(() => {});
        await CXBus.command("WebChatService.sendMessage", {message: "sent by a script"});
        const transcript = await CXBus.command("WebChatService.getTranscript");
        return {chatId: started.chatId, rejected, events,
                types: transcript.messages.map(m => m.type)};
    }""")
    assert result["rejected"] == "There is already an active chat session"
    assert result["events"][0] == "started" and "ParticipantJoined" in result["events"]
    chat = server.engine.chats[result["chatId"]]
    assert caller_data(chat.user_data) == {"source": "demo-page", "via": "bus"}
    assert [m.text for m in chat.events if m.type == "Message"] == ["sent by a script"]
    await page.evaluate("""() => { window.agentJoined = new Promise(resolve =>
        CXBus.subscribe("WebChatService.agentConnected",
                        e => resolve(e.data.numAgentsConnected))); }""")
    await agent.client.accept(result["chatId"])
    got = await asyncio.wait_for(page.evaluate("() => window.agentJoined"), 10)
    assert got == 1


@pytest.mark.conformance("command:startChat", "command:sendMessage", "command:sendTyping")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_page_script_calls_webchatservice_as_the_original_does(server, browser,
                                                                      transport):
    # What callers of the original 8.5 service pass: userData as a JSON string, sendMessage's
    # `type` (sent as messageType, "text" when absent), sendTyping's `isTyping`.
    page = await open_page(browser, f"{server.url}/?transport={transport}")
    await service_ready(page)
    result = await page.evaluate("""async () => {
        const refused = (name, options) => CXBus.command(`WebChatService.${name}`, options)
            .then(() => null, (e) => e.reason);
        const ended = new Promise((resolve) => CXBus.subscribe("WebChatService.ended", resolve));
        let stops = 0;
        CXBus.subscribe("WebChatService.clientTypingStopped", () => { stops += 1; });
        const send = (options) => CXBus.command("WebChatService.sendMessage", options);
        await CXBus.command("WebChatService.configure", {typingStopDelay: 60000});
        const bad = [await refused("startChat", {nickname: "Ada", userData: "{orderId: 1}"}),
                     await refused("startChat", {nickname: "Ada", userData: '{"a": {"b": 1}}'})];
        const first = await CXBus.command("WebChatService.startChat",
                                          {nickname: "Ada", userData: "[1]"});
        await CXBus.command("WebChatService.endChat");
        await ended;
        const second = await CXBus.command("WebChatService.startChat",
            {nickname: "Ada", userData: '{"orderId": "A-1009", "vip": true}'});
        await send({message: "plain"});
        await send({message: "as the original", type: "custom"});
        await send({message: "ours", messageType: "ours"});
        bad.push(await refused("sendMessage", {message: "?", type: "a", messageType: "b"}));
        const notTyping = await CXBus.command("WebChatService.sendTyping", {isTyping: false});
        await CXBus.command("WebChatService.sendTyping", {isTyping: true, message: "he"});
        await CXBus.command("WebChatService.sendTyping", {isTyping: false});  // not in a minute
        await CXBus.command("WebChatService.sendTyping", {message: "again"});
        return {first: first.chatId, second: second.chatId, bad, notTyping, stops};
    }""")
    assert result["bad"] == ["malformed JSON provided in userData property"] * 2 + [
        "options 'messageType' and 'type' differ; give one of them"]
    assert set(server.engine.chats) == {result["first"], result["second"]}  # no refused start
    first, second = (server.engine.chats[result[k]] for k in ("first", "second"))
    assert caller_data(first.user_data) == {"source": "demo-page"}  # "[1]" is no userData
    assert caller_data(second.user_data) == {"source": "demo-page", "orderId": "A-1009",
                                             "vip": "true"}
    assert [(m.text, m.messageType) for m in second.events if m.type == "Message"] == [
        ("plain", "text"), ("as the original", "custom"), ("ours", "ours")]
    assert [(m.type, m.text) for m in second.events if m.type.startswith("Typing")] == [
        ("TypingStarted", "he"), ("TypingStopped", None), ("TypingStarted", "again")]
    assert result["notTyping"] is None and result["stops"] == 1  # nothing to stop: not sent


@pytest.mark.conformance("command:startChat", "option:userData")
async def test_agents_see_the_customers_page_in_the_chats_user_data(server, browser):
    # The original adds the page it runs on to every chat's userData (_genesys_*); here the
    # page is a customer's own site on another origin, which the console shows the agent
    # after the site's own userData.
    await server.add_agent("grace", nickname="Grace")
    console = await log_in(browser, server.url, "grace")
    referrer = "https://search.example/?q=parcel"
    config = {"dataURL": server.data_url, "pollInterval": 100, "userData": {"shop": "acme"}}
    async with embedding_site(server, config) as site:
        url = f"{site}?product=42"
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(url, referer=referrer)
        await service_ready(page)
        await page.evaluate("document.title = 'Parcel tracking'")
        await start_chat(page)
        chat = next(iter(server.engine.chats.values()))
        assert {k: v for k, v in chat.user_data.items() if k.startswith("_genesys_")} == {
                    "_genesys_source": "web", "_genesys_referrer": referrer,
                      "_genesys_url": url, "_genesys_pageTitle": "Parcel tracking",
                      "_genesys_browser": "Chrome", "_genesys_OS": "Linux"}
        item = console.locator("#queue li")
        await expect(item.locator("dt:text-is('_genesys_url') + dd")).to_have_text(url)
        await expect(item.locator("dt:text-is('_genesys_pageTitle') + dd")).to_have_text(
            "Parcel tracking")
        await item.get_by_role("button", name="Accept").click()
        meta = console.locator(".chat:not([hidden]) .meta")
        await expect(meta).to_contain_text(f"_genesys_url: {url}")
        await expect(meta).to_contain_text("shop: acme · GCTI_LanguageCode: en · _genesys_")
        await context.close()
        # On a phone the source says so, and the names follow its user agent.
        phone = await browser.new_context(**PHONE_DEVICE)
        page = await phone.new_page()
        await page.goto(site)
        await service_ready(page)
        chat_id = await page.evaluate("""async () => (await CXBus.command(
            "WebChatService.startChat", {nickname: "Bo"})).chatId""")
        data = server.engine.chats[chat_id].user_data
        assert (data["_genesys_source"], data["_genesys_browser"], data["_genesys_OS"],
                data["_genesys_referrer"]) == ("mobile", "Chrome", "Android", "")
        await expect(item.locator("dt:text-is('_genesys_OS') + dd")).to_have_text("Android")
        await expect(item.locator("dt:text-is('_genesys_referrer')")).to_have_count(0)  # empty
        await phone.close()


@pytest.mark.conformance("command:registerTypingPreviewInput")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_typing_preview_input_sends_what_is_typed(server, browser, agent_factory, transport):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport={transport}")
    chat_id = await accepted_on_page(page, agent)
    await page.evaluate("""async () => {
        const input = document.createElement("input");
        input.id = "preview";
        document.body.append(input);
        await CXBus.command("WebChatService.registerTypingPreviewInput", {input});
    }""")
    await page.locator("#preview").press_sequentially("order 42")
    await agent.wait_message(chat_id, lambda m: m["type"] == "TypingStarted" and m.get("text"))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_markup_in_messages_is_shown_as_text_and_runs_nothing(server, browser,
                                                                    agent_factory, transport):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport={transport}")
    chat_id = await accepted_on_page(page, agent)
    attack = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    await agent.client.send(chat_id, attack)
    await agent.client.send(chat_id, "see javascript:alert(1) or https://example.org/track?a=1")
    with pytest.raises(AgentApiError, match="http"):  # the server refuses script URLs
        await agent.client.push_url(chat_id, "javascript:window.__pwned=3")
    await agent.client.push_url(chat_id, "https://example.org/order/1")
    await say(page, "<b>bold?</b>")
    w = widget(page)
    await expect(w.locator(".msg.Agent").first).to_contain_text(attack)
    await expect(w.locator(".msg.Client")).to_contain_text("<b>bold?</b>")
    await expect(w.locator(".log")).to_contain_text("https://example.org/order/1")
    assert await page.evaluate("window.__pwned") is None
    assert await w.locator(".log img, .log script, .log b").count() == 0
    links = await w.locator(".log a").evaluate_all("as => as.map(a => [a.href, a.rel])")
    assert links == [["https://example.org/track?a=1", "noopener noreferrer nofollow"],
                     ["https://example.org/order/1", "noopener noreferrer nofollow"]]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unread_counter_minimize_and_phone_layout(server, browser, agent_factory, transport):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport={transport}&lang=fr",
                           viewport=PHONE, is_mobile=True, has_touch=True)
    w = widget(page)
    await expect(w.locator("button.launcher")).to_contain_text("Discuter")  # French strings
    chat_id = await accepted_on_page(page, agent)
    await agent.client.send(chat_id, "Bonjour Ada")
    await expect(w.locator(".msg.Agent")).to_contain_text("Bonjour Ada")
    await expect(w.locator(".log")).to_contain_text("Vous êtes numéro 1")  # server, in French
    box = await w.locator(".panel").bounding_box()
    assert box is not None and round(box["width"]) == PHONE["width"]  # full screen on a phone
    await shot(page, f"widget-phone-{transport}")

    await w.locator("header button").first.click()  # minimize
    await expect(w.locator(".panel")).to_be_hidden()
    await agent.client.send(chat_id, "Vous êtes là ?")
    await agent.client.send(chat_id, "Votre colis arrive demain.")
    await expect(w.locator(".badge")).to_have_text("2")
    await page.reload()  # minimized state and chat survive a reload
    await expect(w.locator(".panel")).to_be_hidden()
    await w.locator("button.launcher").click()
    await expect(w.locator(".badge")).to_be_hidden()
    await expect(w.locator(".log")).to_contain_text("Votre colis arrive demain.")
    # Keyboard: Escape minimizes, and the launcher is a focusable button.
    await w.locator("textarea").press("Escape")
    await expect(w.locator(".panel")).to_be_hidden()
    await w.locator("button.launcher").focus()
    await page.keyboard.press("Enter")
    await expect(w.locator(".panel")).to_be_visible()


async def test_agent_console_on_a_phone_and_several_chats_in_tabs(server, browser,
                                                                  customer_factory):
    await server.add_agent("grace", nickname="Grace")
    await server.engine.set_ready("grace", True, 3)
    first = await customer_factory(server.data_url)
    second = await customer_factory(server.data_url)
    await first.command("startChat", {"nickname": "Ada", "userData": {"orderId": "A-1"}})
    await second.command("startChat", {"nickname": "Bo", "userData": {"orderId": "B-2"}})
    console = await log_in(browser, server.url, "grace", viewport=PHONE)
    # Ready before this login (set elsewhere): the console says so from the start.
    await expect(console.locator("#ready")).to_be_checked()
    await expect(console.locator("#status")).to_have_text("Ready for chats")
    await expect(console.locator("#queue li")).to_have_count(2)
    await console.locator("#queue li", has_text="A-1").locator("button").click()
    await console.locator("#queue li", has_text="B-2").locator("button").click()
    await expect(console.locator("[role=tab]")).to_have_text(["Ada", "Bo"])
    await second.command("sendMessage", {"message": "hello from Bo"})
    await expect(console.locator("[role=tab]", has_text="Bo")).to_have_class("attention")
    await console.locator("[role=tab]", has_text="Bo").click()
    await expect(console.locator(".chat:not([hidden]) .log")).to_contain_text("hello from Bo")
    # Only the selected chat is on screen.
    await expect(console.locator(".chat", has_text="orderId: A-1")).to_be_hidden()
    await expect(console.locator(".chat", has_text="orderId: B-2")).to_be_visible()
    await shot(console, "console-phone")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_files_and_the_end_confirmation(server, browser, agent_factory, transport):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport={transport}")
    chat_id = await accepted_on_page(page, agent)
    w = widget(page)
    await expect(w.locator(".log")).to_contain_text("Grace")
    await w.locator("input[type=file]").set_input_files(
        files=[{"name": "receipt.txt", "mimeType": "text/plain", "buffer": b"order A-1009\n"}])
    await expect(w.locator(".log")).to_contain_text("receipt.txt")
    file_id = (await agent.wait_message(chat_id, lambda m: m["type"] == "FileUploaded"))["text"]
    assert (await agent.client.download_file(chat_id, file_id))[0] == b"order A-1009\n"
    # A forbidden type is refused with the widget's localized error, and nothing is stored.
    await w.locator("input[type=file]").set_input_files(
        files=[{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"}])
    await expect(w.locator(".log")).to_contain_text("not allowed")
    assert len(server.engine.chats[chat_id].files) == 1

    # Closing asks first; cancelling keeps the chat, confirming ends it.
    await w.get_by_role("button", name="Close chat").click()
    dialog = w.locator(".dialog")
    await expect(dialog).to_contain_text("Do you want to end this chat?")
    await dialog.get_by_role("button", name="Keep chatting").click()
    await expect(dialog).to_be_hidden()
    assert not server.engine.chats[chat_id].ended
    await w.get_by_role("button", name="Close chat").click()
    await dialog.get_by_role("button", name="End chat").click()
    await expect(w.locator(".log")).to_contain_text("Chat ended")
    assert server.engine.chats[chat_id].ended


async def signed_in(console: Page, user: str) -> Page:
    """The agent console page, signed in through its form as ``user`` (password "pw")."""
    await console.fill("input[name=username]", user)
    await console.fill("input[name=password]", "pw")
    await console.click("#login button[type=submit]")
    await expect(console.locator("#console")).to_be_visible()
    return console


async def log_in(browser: Browser, url: str, user: str, **context: Any) -> Page:
    return await signed_in(await open_page(browser, f"{url}/agent", **context), user)


async def test_agent_console_refreshes_its_token_and_logs_out_when_it_is_revoked(
        server_config, browser):
    # Tokens that live 2 s: the console swaps its token every second, so it keeps working
    # past the first token's end; revoked on the server, the console is back at its login form.
    running = await start_server(replace(server_config, agent_token_lifetime_s=2.0))
    try:
        await running.add_agent("grace")
        grace = await log_in(browser, running.url, "grace")
        seen = [await grace.evaluate("sessionStorage.getItem('webchat.agent.token')")]
        async with asyncio.timeout(10):
            while len(set(seen)) < 4:  # three refreshes: well past the first token's life
                await asyncio.sleep(0.1)
                seen.append(await grace.evaluate(
                    "sessionStorage.getItem('webchat.agent.token')"))
        await grace.locator("#ready").check()
        await expect(grace.locator("#status")).to_have_text("Ready for chats")
        await running.app[ACCOUNTS].logout(seen[-1])
        await expect(grace.locator("#login")).to_be_visible()
        assert await grace.evaluate("sessionStorage.getItem('webchat.agent.token')") is None
    finally:
        await running.runner.cleanup()


async def test_agent_ready_state_arrival_notice_and_transfer(server, browser, customer_factory):
    await server.add_agent("grace", nickname="Grace")
    await server.add_agent("alan", nickname="Alan")
    grace = await log_in(browser, server.url, "grace")
    alan = await log_in(browser, server.url, "alan")
    # Ready is the agent's routing state on the server, both ways.
    await grace.locator("#ready").check()
    await expect(grace.locator("#status")).to_have_text("Ready for chats")
    assert server.engine.router.presence("grace").ready
    await grace.locator("#ready").uncheck()
    await expect(grace.locator("#status")).to_have_text("Not ready")
    assert not server.engine.router.presence("grace").ready
    await grace.locator("#ready").check()
    await expect(grace.locator("#status")).to_have_text("Ready for chats")

    # A chat offered to a ready agent is announced in the page and in its title.
    ada = await customer_factory(server.data_url)
    await ada.command("startChat", {"nickname": "Ada"})
    await expect(grace.locator("#status")).to_have_text("New chat from Ada")
    await expect(grace).to_have_title("● New chat from Ada")
    await grace.locator("#queue li", has_text="Ada").locator("button").click()
    await expect(grace.locator("[role=tab]")).to_have_text(["Ada"])

    # Transfer to Alan: Grace's tab is closed for her, Alan finds it waiting and takes it.
    panel = grace.locator(".chat:not([hidden])")
    await panel.get_by_label("Transfer to").fill("alan")
    await panel.get_by_role("button", name="Transfer").click()
    await expect(grace.locator("[role=tab]")).to_have_text(["Ada (transferred)"])
    await expect(alan.locator("#queue li", has_text="Ada")).to_be_visible()
    await alan.locator("#queue li", has_text="Ada").locator("button").click()
    await expect(alan.locator(".chat:not([hidden]) .log")).to_contain_text("Alan joined")
    await alan.locator(".chat:not([hidden]) textarea").fill("Alan here, I can help.")
    await alan.locator(".chat:not([hidden]) textarea").press("Enter")
    await ada.wait_for(lambda c: ("Agent", "Alan here, I can help.") in c.texts())
    joined = [m["from"]["nickname"] for e in ada.events
              if e.event == "WebChatService.messageReceived"
              for m in e.data["messages"] if m["type"] == "ParticipantJoined"]
    assert joined[1:] == ["Grace", "Alan"]
    # A transfer to nobody known is refused and the chat stays with Alan.
    panel = alan.locator(".chat:not([hidden])")
    await panel.get_by_label("Transfer to").fill("nobody")
    await panel.get_by_role("button", name="Transfer").click()
    await expect(alan.locator("#status")).to_contain_text("Transfer failed")
    await expect(alan.locator("[role=tab]")).to_have_text(["Ada"])
    assert grace.errors == []  # type: ignore[attr-defined]
    # The refused transfer was a write on the event stream, answered 404 there: no failed
    # HTTP request for the browser to log.
    assert alan.errors == []  # type: ignore[attr-defined]


@pytest.mark.conformance("option:xhrFields")
@pytest.mark.parametrize("with_credentials", [True, False])
async def test_xhr_fields_with_credentials_sends_cookies_cross_origin(
        server_config, browser, with_credentials):
    # A site on another origin of the same host (another port) embeds the service; the chat
    # server's cookies (a load balancer's sticky-session cookie, say) travel only when asked,
    # and only to a server that lists the site's origin by name (credentials are never for *).
    port = free_port()
    server = await start_server(replace(server_config,
                                        cors_origins=("*", f"http://127.0.0.1:{port}")))
    try:
        await _with_credentials(server, browser, with_credentials, port)
    finally:
        await server.runner.cleanup()


async def _with_credentials(server: Any, browser: Any, with_credentials: bool, port: int
                            ) -> None:
    config = {"dataURL": server.data_url, "pollInterval": 100,
              "xhrFields": {"withCredentials": with_credentials}}
    context = await browser.new_context()
    await context.add_cookies([{"name": "lb", "value": "node-2", "url": server.url}])
    page = await context.new_page()
    requests: list[Any] = []
    page.on("request", lambda r: requests.append(r) if r.url.startswith(server.data_url) else None)
    async with embedding_site(server, config, port) as site:
        await page.goto(site)
        await service_ready(page)
        chat_id = await page.evaluate("""async () => {
            const started = await CXBus.command("WebChatService.startChat", {nickname: "Cross"});
            await CXBus.command("WebChatService.sendMessage", {message: "from another origin"});
            return started.chatId;
        }""")
    assert server.engine.chats[chat_id].customer["nickname"] == "Cross"
    cookies = {(await r.all_headers()).get("cookie") for r in requests}
    assert requests and cookies == ({"lb=node-2"} if with_credentials else {None})
    await context.close()


@pytest.mark.conformance("option:stateStorageKey")
async def test_the_session_is_kept_under_the_configured_storage_key(server, browser,
                                                                     agent_factory):
    agent = await grace(server, agent_factory)
    config = {"dataURL": server.data_url, "pollInterval": 100, "stateStorageKey": "acme.chat"}
    async with embedding_site(server, config) as site:
        page = await open_page(browser, site)
        chat_id = await accepted_on_page(page, agent)
        await agent.client.send(chat_id, "first answer")
        await expect(widget(page).locator(".msg.Agent")).to_have_count(1)
        saved = await page.evaluate("() => Object.keys(localStorage)")
        assert "acme.chat" in saved and "_genesys.widgets.webchat.state.keys" not in saved
        await page.reload()  # restored from that key: the transcript comes back, once
        await expect(widget(page).locator(".msg.Agent")).to_have_text(["Gracefirst answer"])
        seen = await indexes(page)
        assert seen == sorted(set(seen))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_one_chat_in_two_tabs_stays_in_sync(server, browser, agent_factory, transport):
    agent = await grace(server, agent_factory)
    context = await browser.new_context()  # one browser profile, two tabs of the site
    tabs = [await open_tab(context, f"{server.url}/?transport={transport}") for _ in range(2)]
    a, b = widget(tabs[0]), widget(tabs[1])
    await b.locator("button.launcher").click()  # opening the chat in one tab opens it in both
    await expect(a.locator(".panel")).to_be_visible()
    await start_chat(tabs[0], launch=False)
    # B, already open, follows the chat A started: no form, the transcript instead.
    await expect(b.locator("form.register")).to_be_hidden()
    await expect(b.locator(".log")).to_contain_text("Waiting for an agent")
    chat_id = await offered(agent)
    agent.client.track(chat_id, (await agent.client.accept(chat_id))["nextPosition"])
    await agent.client.send(chat_id, "hello both")
    for w in (a, b):
        await expect(w.locator(".msg.Agent")).to_have_text(["Gracehello both"])
    await say(tabs[1], "typed in tab B")
    await expect(a.locator(".msg.Client")).to_have_text(["You saidtyped in tab B"])
    await agent.wait_message(chat_id, lambda m: m.get("text") == "typed in tab B")

    # Minimizing in one tab minimizes both; unread counts agree; reading in one clears both.
    await a.locator("header button").first.click()
    await expect(b.locator(".panel")).to_be_hidden()
    await agent.client.send(chat_id, "one")
    await agent.client.send(chat_id, "two")
    for w in (a, b):
        await expect(w.locator(".badge")).to_have_text("2")
    await tabs[1].reload()  # the count survives a reload too
    await expect(b.locator(".badge")).to_have_text("2")
    await b.locator("button.launcher").click()
    for w in (a, b):
        await expect(w.locator(".panel")).to_be_visible()
    await a.locator("header button").first.click()
    for w in (a, b):
        await expect(w.locator(".badge")).to_be_hidden()  # read in B, so nothing unread

    # The end-chat question is one question: asked in both, answered from either.
    await b.locator("button.launcher").click()
    await a.get_by_role("button", name="Close chat").click()
    await expect(b.locator(".dialog")).to_be_visible()
    await b.locator(".dialog").get_by_role("button", name="Keep chatting").click()
    await expect(a.locator(".dialog")).to_be_hidden()
    assert not server.engine.chats[chat_id].ended
    await b.get_by_role("button", name="Close chat").click()
    await a.locator(".dialog").get_by_role("button", name="End chat").click()
    for w in (a, b):
        await expect(w.locator(".log")).to_contain_text("Chat ended")
        await expect(w.locator(".dialog")).to_be_hidden()
    assert server.engine.chats[chat_id].ended
    texts = [m["text"] for m in agent.messages(chat_id) if m.get("type") == "Message"
             and m["from"]["type"] == "Client"]
    assert texts == ["typed in tab B"]  # sent once, whichever tab it came from
    for tab in tabs:
        seen = await indexes(tab)
        assert seen == sorted(set(seen))  # nothing shown twice in either tab
        assert tab.errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_a_slow_strings_file_does_not_lose_the_restored_chat(server, browser,
                                                                   agent_factory):
    # The widget fetches its strings before it can subscribe; a restore finishing first used
    # to leave the reloaded page with an empty transcript.
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport=rest")
    chat_id = await accepted_on_page(page, agent)
    await agent.client.send(chat_id, "before the reload")
    await expect(widget(page).locator(".msg.Agent")).to_have_count(1)

    async def slowly(route: Any) -> None:
        await asyncio.sleep(1.5)
        await route.continue_()

    await page.route("**/webchat/i18n/*.json", slowly)
    await page.reload()
    await expect(widget(page).locator(".msg.Agent")).to_have_text(["Gracebefore the reload"])
    await expect(widget(page).locator("form.register")).to_be_hidden()
    seen = await indexes(page)
    assert seen == sorted(set(seen))


@contextlib.asynccontextmanager
async def running(config: ServerConfig, port: int = 0) -> AsyncIterator[RunningServer]:
    """A server with a configuration of the test's own, stopped afterwards."""
    started = await start_server(config, port=port)
    try:
        yield started
    finally:
        await started.runner.cleanup()


@pytest.mark.parametrize("transport", ["websocket", "rest"])
async def test_the_demo_page_chats_on_the_service_the_server_runs(server_config, browser,
                                                                   agent_factory, transport):
    # webchat serve --service sales: the demo page must talk to "sales", not a built-in name.
    async with running(replace(server_config, services=("sales",))) as sales:
        agent = await grace(sales, agent_factory)
        page = await open_page(browser, f"{sales.url}/?transport={transport}")
        chat_id = await accepted_on_page(page, agent)
        assert sales.engine.chats[chat_id].service == "sales"
        await agent.client.send(chat_id, "sales here")
        await expect(widget(page).locator(".msg.Agent")).to_have_text(["Gracesales here"])
        assert page.errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_file_limits_are_named_and_a_large_file_never_leaves_the_page(
        server_config, browser, agent_factory, transport):
    limits = FileLimits(max_file_size=2048, max_files=2)
    async with running(replace(server_config, files=limits)) as server:
        agent = await grace(server, agent_factory)
        page = await open_page(browser, f"{server.url}/?transport={transport}")
        uploads: list[str] = []
        page.on("request", lambda r: uploads.append(r.url) if r.headers.get(
            "content-type", "").startswith("multipart/form-data") else None)  # uploads only
        chat_id = await accepted_on_page(page, agent)
        w = widget(page)
        picker = w.locator("input[type=file]")
        await expect(picker).to_have_attribute("accept", ".jpg,.jpeg,.png,.gif,.pdf,.txt")

        await picker.set_input_files(files=[{"name": "scan.pdf", "mimeType": "application/pdf",
                                             "buffer": b"%PDF-1.4\n" + b"0" * 4096}])
        await expect(w.locator(".log")).to_contain_text("larger than 2 KB")
        assert uploads == [] and server.engine.chats[chat_id].files == {}

        for name in ("a.txt", "b.txt"):
            await picker.set_input_files(files=[{"name": name, "mimeType": "text/plain",
                                                 "buffer": name.encode()}])
            await expect(w.locator(".log")).to_contain_text(name)
        await picker.set_input_files(files=[{"name": "c.txt", "mimeType": "text/plain",
                                             "buffer": b"third"}])
        await expect(w.locator(".log")).to_contain_text("at most 2 files can be attached")
        assert len(server.engine.chats[chat_id].files) == 2
        assert len(uploads) == 3  # the count refusal is the server's: those bytes did travel
        assert "Errors." not in await w.locator(".log").inner_text()


@pytest.mark.conformance("event:restoreTimeout")
async def test_restore_timeout_counts_the_time_away_from_the_page(server, browser,
                                                                  agent_factory):
    agent = await grace(server, agent_factory)
    config = {"dataURL": server.data_url, "pollInterval": 100, "restoreTimeout": 3000,
              "inviteOnRestoreTimeout": False}  # told on the form, not invited again
    async with embedding_site(server, config) as site:
        page = await open_page(browser, site)
        w = widget(page)
        chat_id = await accepted_on_page(page, agent)
        await agent.client.send(chat_id, "hold on")
        await expect(w.locator(".msg.Agent")).to_have_count(1)
        # Quiet for longer than restoreTimeout, but on the page all along: a reload keeps it.
        await asyncio.sleep(4)
        await page.reload()
        await expect(w.locator(".msg.Agent")).to_have_text(["Gracehold on"])
        await expect(w.locator("form.register")).to_be_hidden()

        # Away from the page for longer than restoreTimeout: not restored, and the customer
        # is told so where a new chat starts.
        await page.goto("about:blank")
        await asyncio.sleep(4)
        await page.goto(site)
        await expect(w.locator("form.register")).to_be_visible()
        await expect(w.locator("form.register [role=alert]")).to_have_text(
            "Your previous chat has timed out. Start a new one?")
        assert "_genesys.widgets.webchat.state.keys" not in await page.evaluate(
            "() => Object.keys(localStorage)")
        assert page.errors == []  # type: ignore[attr-defined]


async def console_with_chat(browser: Browser, server: Any, customer: Any) -> tuple[Page, Any]:
    """Grace's console, ready, with the customer's new chat accepted; its open chat panel."""
    await server.add_agent("grace", nickname="Grace")
    console = await log_in(browser, server.url, "grace")
    await console.locator("#ready").check()
    await customer.command("startChat", {"nickname": "Ada"})
    await console.locator("#queue li", has_text="Ada").locator("button").click()
    return console, console.locator(".chat:not([hidden])")


async def test_the_console_catches_up_after_its_event_stream_drops(server, browser,
                                                                   customer_factory):
    ada = await customer_factory(server.data_url)
    console, panel = await console_with_chat(browser, server, ada)
    await ada.command("sendMessage", {"message": "before the drop"})
    await expect(panel.locator(".log")).to_contain_text("before the drop")

    # The agent's network goes away and the server drops the event stream; Ada writes meanwhile.
    await console.context.set_offline(True)
    sockets = server.app[AGENT_API].sockets
    for ws in list(sockets):
        await ws.close()
    async with asyncio.timeout(10):
        while sockets:  # noqa: ASYNC110 - the server forgets the socket on its own
            await asyncio.sleep(0.02)
    await ada.command("sendMessage", {"message": "while you were away"})
    await console.context.set_offline(False)

    await expect(panel.locator(".log")).to_contain_text("while you were away")
    await ada.command("sendMessage", {"message": "after the drop"})
    await expect(panel.locator(".log")).to_contain_text("after the drop")
    lines = panel.locator(".line:not(.system)")
    await expect(lines).to_have_count(3)  # each once, in order
    assert [t.split(":", 1)[1].strip() for t in await lines.all_inner_texts()] == [
        "before the drop", "while you were away", "after the drop"]


async def test_the_console_downloads_a_customer_file_and_closes_an_ended_tab(
        server, browser, customer_factory):
    ada = await customer_factory(server.data_url)
    console, panel = await console_with_chat(browser, server, ada)
    await expect(panel.locator(".log")).to_contain_text("Grace joined")
    await ada.command("sendFile", {"data": b"order A-1009\n", "fileName": "receipt.txt"})
    await expect(panel.locator(".log")).to_contain_text("Ada sent receipt.txt")
    async with console.expect_download() as info:
        await panel.get_by_role("button", name="Download").click()
    download = await info.value
    assert download.suggested_filename == "receipt.txt"
    assert await asyncio.to_thread(Path(await download.path()).read_bytes) == b"order A-1009\n"

    # Once Ada ends the chat, the agent can no longer write in it and can close its tab.
    await ada.command("endChat")
    await expect(console.locator("[role=tab]")).to_have_text(["Ada (ended)"])
    await expect(panel.locator("textarea")).to_be_disabled()
    for control in ("Send", "Transfer"):
        await expect(panel.get_by_role("button", name=control, exact=True)).to_be_disabled()
    await expect(panel.get_by_label("Transfer to")).to_be_disabled()
    await panel.get_by_role("button", name="Close tab").click()
    await expect(console.locator("[role=tab]")).to_have_count(0)
    await expect(console.locator(".chat")).to_have_count(0)
    assert console.errors == []  # type: ignore[attr-defined]


async def focused(page: Page) -> str:
    """What has keyboard focus inside the widget: a field's name, else a button's text."""
    return str(await page.evaluate("""() => {
        const a = document.querySelector("webchat-widget").shadowRoot.activeElement;
        return a ? (a.name || a.getAttribute("aria-label") || a.textContent.trim()) : "";
    }"""))


async def test_the_widget_is_usable_with_the_keyboard_alone(server, browser, agent_factory):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport=rest")
    w = widget(page)
    await w.locator("button.launcher").focus()
    await page.keyboard.press("Enter")
    assert await focused(page) == "firstname"
    await page.keyboard.type("Ada")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Byron")
    await page.keyboard.press("Enter")  # submits the form
    chat_id = await offered(agent)
    await agent.client.accept(chat_id)
    await expect(w.locator(".log")).to_contain_text("Grace joined")
    assert await focused(page) == "Type your message here"
    await page.keyboard.type("typed, not clicked")
    await page.keyboard.press("Enter")
    await expect(w.locator(".msg.Client")).to_have_text(["You saidtyped, not clicked"])

    await page.keyboard.press("Escape")  # minimize: focus goes back to the chat button
    await expect(w.locator(".panel")).to_be_hidden()
    assert await focused(page) == "Open chat"
    await page.keyboard.press("Enter")
    await expect(w.locator(".panel")).to_be_visible()
    assert await focused(page) == "Type your message here"

    # The end-chat question takes focus on its harmless answer; Escape answers it.
    await w.get_by_role("button", name="Close chat").focus()
    await page.keyboard.press("Enter")
    await expect(w.locator(".dialog")).to_be_visible()
    assert await focused(page) == "Keep chatting"
    await page.keyboard.press("Escape")
    await expect(w.locator(".dialog")).to_be_hidden()
    await expect(w.locator(".panel")).to_be_visible()
    assert await focused(page) == "Type your message here"
    await w.get_by_role("button", name="Close chat").focus()
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    assert await focused(page) == "End chat"
    await page.keyboard.press("Enter")
    await expect(w.locator(".log")).to_contain_text("Chat ended")
    assert server.engine.chats[chat_id].ended


async def transport_in_use(page: Page) -> str:
    """How the page's WebChatService carries the chat: websocket, long-polling or rest."""
    return str(await page.evaluate("""async () => {
        const {service} = await import("/webchat/webchat.js");
        return service.transport.pushes ? service.transport.connectionType : "rest";
    }"""))


@pytest.mark.parametrize(("broken", "fallback"), [
    ("cometd endpoint refused", "rest"),
    ("websocket blocked", "long-polling"),
    ("cometd client missing", "rest"),
])
async def test_a_customer_still_chats_when_cometd_is_unavailable(server, browser, agent_factory,
                                                                 broken, fallback):
    agent = await grace(server, agent_factory)
    context = await browser.new_context()
    if broken != "cometd client missing":
        await context.route_web_socket("**/genesys/cometd", lambda ws: ws.close())
    if broken == "cometd endpoint refused":
        await context.route("**/genesys/cometd**", lambda route: route.fulfill(status=404))
    elif broken == "cometd client missing":
        await context.route("**/vendor/cometd/cometd.js", lambda route: route.abort())
    page = await open_tab(context, f"{server.url}/?transport=websocket")
    w = widget(page)
    chat_id = await accepted_on_page(page, agent)
    assert await transport_in_use(page) == fallback
    await agent.client.send(chat_id, "can you read me?")
    await expect(w.locator(".msg.Agent")).to_have_text(["Gracecan you read me?"])
    await say(page, "loud and clear")
    await agent.wait_message(chat_id, lambda m: m.get("text") == "loud and clear")
    # Files follow the transport actually in use, not the configured one.
    await w.locator("input[type=file]").set_input_files(
        files=[{"name": "note.txt", "mimeType": "text/plain", "buffer": b"note"}])
    await agent.wait_message(chat_id, lambda m: m["type"] == "FileUploaded")
    errors = [e for e in page.errors if not e.startswith("Failed to load resource")]  # type: ignore[attr-defined]
    # A missing CometD client is the site's fault: it says so loudly in the console.
    assert errors == ([] if broken != "cometd client missing" else [
        "webchat: the CometD client did not load (Failed to fetch dynamically imported module: "
        f"{server.url}/webchat/vendor/cometd/cometd.js); using REST polling"])
    await context.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_widget_carries_on_across_a_server_restart(server_config, browser,
                                                              agent_factory, transport):
    port = free_port()
    first = await start_server(server_config, port=port)
    agent = await grace(first, agent_factory)
    page = await open_page(browser, f"{first.url}/?transport={transport}")
    w = widget(page)
    chat_id = await accepted_on_page(page, agent)
    await agent.client.send(chat_id, "before the restart")
    await say(page, "question one")
    await agent.wait_message(chat_id, lambda m: m.get("text") == "question one")

    await first.runner.cleanup()  # the server goes away mid-chat...
    # What the customer writes meanwhile is not lost in silence: they are told, and keep it.
    await say(page, "question two")
    await expect(w.locator(".log")).to_contain_text("Your message was not delivered")
    await expect(w.locator("textarea")).to_have_value("question two")
    async with running(server_config, port=port) as second:  # ...and comes back on its data
        await agent.client.send(chat_id, "after the restart")
        await expect(w.locator(".msg.Agent")).to_have_text(
            ["Gracebefore the restart", "Graceafter the restart"], timeout=30_000)
        await w.locator("textarea").press("Enter")  # sent again, now that it can be
        await agent.wait_message(chat_id, lambda m: m.get("text") == "question two", within=30)
        await expect(w.locator(".msg.Client")).to_have_text(
            ["You saidquestion one", "You saidquestion two"])
        seen = await indexes(page)
        assert seen == sorted(set(seen))  # nothing shown twice
        texts = [m.text for m in second.engine.chats[chat_id].events if m.type == "Message"]
        assert texts == ["before the restart", "question one", "after the restart",
                         "question two"]  # each stored once


async def test_customer_markup_is_text_in_the_agent_console(server, browser, customer_factory):
    attack = '<img src=x onerror="window.__pwned=1">'
    mallory = await customer_factory(server.data_url)
    await server.add_agent("grace", nickname="Grace")
    console = await log_in(browser, server.url, "grace")
    script = "<script>window.__pwned=2</script>"
    await mallory.command("startChat", {"nickname": attack, "userData": {"<b>order</b>": script}})
    item = console.locator("#queue li")
    await expect(item).to_contain_text(attack)
    await expect(item).to_contain_text("<b>order</b>")
    await item.locator("button").click()
    await mallory.command("sendMessage", {"message": f"{attack} and <i>more</i>"})
    panel = console.locator(".chat:not([hidden])")
    await expect(panel.locator(".log")).to_contain_text(f"{attack} and <i>more</i>")
    await expect(console.locator("[role=tab]")).to_have_text([attack])
    assert await console.evaluate("window.__pwned") is None
    assert await console.locator("#queue img, #queue script, #queue b, .chat img, .chat i, "
                                 "[role=tab] img").count() == 0


@pytest.mark.parametrize("transport", ["websocket", "rest"])
async def test_the_registration_form_explains_what_is_wrong(server, browser, transport):
    page = await open_page(browser, f"{server.url}/?transport={transport}")
    w = widget(page)
    await w.locator("button.launcher").click()
    form = w.locator("form.register")
    await form.locator("input[name=lastname]").fill("Byron")
    await form.locator("button[type=submit]").click()
    await expect(form.locator("[role=alert]")).to_have_text("First name is required")
    await form.locator("input[name=firstname]").fill("Ada")
    await form.locator("input[name=email]").fill("not-an-address")
    await form.locator("button[type=submit]").click()  # the server refuses it (GMS code 364)
    await expect(form.locator("[role=alert]")).to_have_text("Invalid email address")
    assert server.engine.chats == {}
    await form.locator("input[name=email]").fill("ada@example.org")
    await form.locator("button[type=submit]").click()
    await expect(form).to_be_hidden()
    chat = next(iter(server.engine.chats.values()))
    assert (chat.customer["firstName"], chat.customer["emailAddress"]) == ("Ada", "ada@example.org")


@pytest.mark.parametrize("transport", ["websocket", "rest"])
async def test_a_second_chat_after_the_first_ended_starts_clean(server, browser, agent_factory,
                                                                transport):
    agent = await grace(server, agent_factory)
    page = await open_page(browser, f"{server.url}/?transport={transport}")
    w = widget(page)
    first = await accepted_on_page(page, agent)
    await agent.client.send(first, "first chat")
    await expect(w.locator(".msg.Agent")).to_have_text(["Gracefirst chat"])
    await agent.client.end(first)
    await expect(w.locator(".log")).to_contain_text("Chat ended")

    await w.get_by_role("button", name="Close chat").click()  # nothing to confirm any more
    await expect(w.locator(".panel")).to_be_hidden()
    await w.locator("button.launcher").click()
    await expect(w.locator("form.register")).to_be_visible()
    await start_chat(page, "Ada", "Again", launch=False)
    second = next(cid for cid in server.engine.chats if cid != first)
    await agent.client.accept(second)
    await agent.client.send(second, "second chat")
    await expect(w.locator(".msg.Agent")).to_have_text(["Gracesecond chat"])  # no leftovers
    await expect(w.locator(".log")).not_to_contain_text("Chat ended")
    await page.reload()  # and it is the second chat that a reload restores
    await expect(w.locator(".msg.Agent")).to_have_text(["Gracesecond chat"])


async def test_no_attach_button_where_the_server_takes_no_files(server_config, browser,
                                                                agent_factory):
    async with running(replace(server_config, files=FileLimits(enabled=False))) as server:
        agent = await grace(server, agent_factory)
        page = await open_page(browser, f"{server.url}/?transport=rest")
        w = widget(page)
        await accepted_on_page(page, agent)
        await expect(w.locator(".log")).to_contain_text("Grace joined")
        await expect(w.locator("textarea")).to_be_visible()
        await expect(w.locator("button.attach")).to_be_hidden()


async def test_the_console_asks_for_notifications_when_ready_and_notifies_new_chats(
        server, browser, customer_factory):
    await server.add_agent("grace", nickname="Grace")
    context = await browser.new_context()
    # A stand-in for the browser's permission prompt and notifications, recording both.
    await context.add_init_script("""
        window.__asked = 0; window.__notes = [];
        window.Notification = class {
            static permission = "default";
            static async requestPermission() {
                window.__asked += 1; window.Notification.permission = "granted"; return "granted";
            }
            constructor(text) { window.__notes.push(text); }
        };""")
    console = await signed_in(await open_tab(context, f"{server.url}/agent"), "grace")
    await console.locator("#ready").check()
    await expect(console.locator("#status")).to_have_text("Ready for chats")
    assert await console.evaluate("window.__asked") == 1
    ada = await customer_factory(server.data_url)
    await ada.command("startChat", {"nickname": "Ada"})
    await expect(console.locator("#status")).to_have_text("New chat from Ada")
    assert await console.evaluate("window.__notes") == ["New chat from Ada"]
    await context.close()


@pytest.mark.parametrize("transport", ["long-polling", "rest"])
async def test_an_ended_chat_is_never_saved_again_nor_followed_back(server, browser,
                                                                     agent_factory, transport):
    agent = await grace(server, agent_factory)
    context = await browser.new_context()
    tabs = [await open_tab(context, f"{server.url}/?transport={transport}") for _ in range(2)]
    a, b = widget(tabs[0]), widget(tabs[1])
    await start_chat(tabs[0])
    chat_id = await offered(agent)
    await agent.client.accept(chat_id)
    for w in (a, b):
        await expect(w.locator(".log")).to_contain_text("Grace joined")
    key = "_genesys.widgets.webchat.state.keys"
    # From here on, tab A counts every write of this chat to the shared storage by tab B.
    await tabs[0].evaluate("""([key, chat]) => { window.rewrites = 0;
        window.addEventListener("storage", (e) => {
            if (e.key === key && e.newValue && JSON.parse(e.newValue).sessionID === chat)
                window.rewrites += 1;
        }); }""", [key, chat_id])
    saved = await tabs[1].evaluate("(key) => localStorage.getItem(key)", key)
    await agent.client.end(chat_id)
    for w in (a, b):
        await expect(w.locator(".log")).to_contain_text("Chat ended")
    assert await tabs[0].evaluate("window.rewrites") == 0  # the ending reply is not saved
    assert await tabs[1].evaluate("(key) => localStorage.getItem(key)", key) is None

    # Even a stale copy of the ended chat written by some other tab is not followed back.
    await tabs[0].evaluate("""() => { window.restoredAgain = 0;
        CXBus.subscribe("WebChatService.restored", () => { window.restoredAgain += 1; }); }""")
    await tabs[1].evaluate("([key, value]) => localStorage.setItem(key, value)", [key, saved])
    await tabs[0].wait_for_timeout(1000)  # room for a wrong restore to happen
    assert await tabs[0].evaluate("window.restoredAgain") == 0
    await expect(a.locator(".log")).to_contain_text("Chat ended")
    await expect(a.locator(".composer")).to_be_hidden()
    await context.close()
