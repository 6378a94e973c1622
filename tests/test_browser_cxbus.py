"""The browser's CXBus (web/static/cxbus.js) in Chromium, driven by page scripts in the shape
of the Genesys Widgets reference examples (the Widget Bus API overview and the Extensions
page): a page that loads only /webchat/cxbus.js, as a site loads the original's bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route

from tests.test_browser import browser, pytestmark  # noqa: F401  (Chromium, and its skip)

PAGE = """<!doctype html><meta charset=utf-8><title>bus</title>
<script type=module src="/webchat/cxbus.js"></script>"""
# The original's onReady access: a callback given the bus once the widgets have started.
ON_READY_PAGE = """<!doctype html><meta charset=utf-8><title>onReady</title>
<script>
window._genesys = {widgets: {webchat: {}, onReady: function (CXBus) {
  window.onReadyCalls = (window.onReadyCalls || 0) + 1;
  CXBus.command("WebChatService.getSessionData")
    .done(function (e) { window.onReadyResult = ["done", e]; })
    .fail(function (e) { window.onReadyResult = [e.reason, CXBus === window.CXBus]; });
}}};
</script>
<script type=module src="/webchat/webchat.js"></script>"""
# A site's own plugin, loaded lazily by name: it registers, then becomes ready a turn later.
SITE_PLUGIN = """
const plugin = window.CXBus.registerPlugin("MyPlugin");
plugin.registerCommand("hello", (e) => `hello ${e.data.name}`);
setTimeout(() => { window.myPluginReadyAt = performance.now(); plugin.ready(); }, 0);
"""


@pytest.fixture
async def bus_page(server: Any, browser: Browser) -> AsyncIterator[Page]:  # noqa: F811
    """A page of the chat server's origin with nothing but the bus; its console lines are
    kept in ``page.lines`` as (type, text)."""
    async def site(route: Route) -> None:
        if route.request.url.endswith("/site/bus.html"):
            await route.fulfill(body=PAGE, content_type="text/html")
        elif route.request.url.endswith("/site/on-ready.html"):
            await route.fulfill(body=ON_READY_PAGE, content_type="text/html")
        elif route.request.url.endswith("/site/plugins/MyPlugin.js"):
            await route.fulfill(body=SITE_PLUGIN, content_type="text/javascript")
        else:
            await route.fulfill(status=404, body="")

    context = await browser.new_context()
    await context.route(f"{server.url}/site/**", site)
    lines: list[tuple[str, str]] = []
    page = await context.new_page()
    page.on("console", lambda msg: lines.append((msg.type, msg.text)))
    page.lines = lines  # type: ignore[attr-defined]
    await page.goto(f"{server.url}/site/bus.html")
    await page.wait_for_function("() => window.CXBus")
    yield page
    await context.close()


@pytest.mark.conformance("CXBus.api:registerPlugin", "CXBus.api:registerCommand",
                         "CXBus.api:command", "CXBus.api:ready", "CXBus.api:republish",
                         "CXBus.api:subscribe", "CXBus.api:publish")
async def test_the_extensions_example_runs_unmodified(bus_page):
    # The reference's extension: registerPlugin, subscribe, republish("ready"),
    # command().done().fail(), registerCommand settling e.deferred, ready().
    result = await bus_page.evaluate("""async () => {
        const log = [];
        var oTestExtension = CXBus.registerPlugin("TestExtension");
        oTestExtension.subscribe("Other.opened", function (e) {
            log.push(["opened", e.event, e.publisher, e.data, typeof e.time]);
        });
        oTestExtension.registerCommand("demo", function (e) {
            if (e.data.fail) { e.deferred.reject("told to fail"); return; }
            log.push(["demo by", e.commander, e.command]);
            e.deferred.resolve({echo: e.data.text});
        });
        oTestExtension.republish("ready");
        oTestExtension.ready();

        var other = CXBus.registerPlugin("Other");
        other.ready();
        const done = await new Promise((resolve) => other
            .command("TestExtension.demo", {text: "hi"})
            .done(function (e) { resolve(e); }).fail(function (e) { resolve("failed " + e); }));
        const failed = await new Promise((resolve) => CXBus
            .command("TestExtension.demo", {fail: true})
            .done(function () { resolve("resolved"); }).fail(function (e) { resolve(e); }));
        const viaRoot = await CXBus.command("cx.plugin.TestExtension.demo", {text: "root"});
        other.publish("opened");
        // A late subscriber still hears the republished ready, a turn later.
        const late = await new Promise((resolve) =>
            CXBus.subscribe("TestExtension.ready", (e) => resolve(e.event)));
        return {log, done, failed, viaRoot, late, taken: CXBus.registerPlugin("Other")};
    }""")
    assert result["done"] == {"echo": "hi"}
    assert result["failed"] == "told to fail"         # the original's string rejection
    assert result["viaRoot"] == {"echo": "root"}
    assert result["log"] == [["demo by", "Other", "TestExtension.demo"],
                             ["demo by", "", "TestExtension.demo"],
                             ["opened", "Other.opened", "Other", {}, "number"]]
    assert result["late"] == "TestExtension.ready"
    assert result["taken"] is False                   # a taken name: false, as the original


@pytest.mark.conformance("CXBus.api:registerEvents", "CXBus.api:configure")
async def test_registered_events_are_in_the_registry_and_debug_reports_the_others(bus_page):
    result = await bus_page.evaluate("""async () => {
        const chat = CXBus.registerPlugin("Chat");
        chat.registerEvents(["ready", "opened"]);
        chat.registerEvents("closed");
        chat.registerCommand("open", () => true);
        CXBus.configure({debug: true});
        CXBus.subscribe("Chat.opened", () => {});
        CXBus.subscribe("Chat.teleported", () => {});
        chat.publish("vanished");
        return CXBus.registry().Chat;
    }""")
    assert result == {"events": ["ready", "opened", "closed"], "commands": ["open"]}
    warnings = [text for kind, text in bus_page.lines if kind == "warning"]
    assert warnings == [
        "CXBus: subscribed to Chat.teleported, which Chat has not registered (registerEvents)",
        "CXBus: published Chat.vanished, which Chat has not registered (registerEvents)"]


@pytest.mark.conformance("CXBus.api:configure", "CXBus.api:publishDirect")
async def test_debug_logs_commands_and_events_and_publish_direct_only_when_heard(bus_page):
    await bus_page.evaluate("""async () => {
        const clock = CXBus.registerPlugin("Watchman");
        clock.registerCommand("now", () => 42);
        clock.ready();
        await CXBus.command("Watchman.now");              // before debug: not logged
        CXBus.configure({debug: true});
        clock.publishDirect("tick");                      // nobody listens: no line
        clock.publish("tock");
        const heard = new Promise((resolve) => CXBus.subscribe("Watchman.tick", resolve));
        clock.publishDirect("tick", {n: 2});
        await heard;
        await CXBus.command("Watchman.now");
        await CXBus.command("Watchman.nothing").catch(() => {});
        CXBus.configure({debug: false});
        clock.publish("tock");
    }""")
    logged = [text for kind, text in bus_page.lines if kind == "log"]
    assert logged == [
        "CXBus: Watchman published Watchman.tock",
        "CXBus: (page) subscribed to Watchman.tick",
        "CXBus: Watchman published Watchman.tick",
        "CXBus: (page) called the command Watchman.now",
        "CXBus: (page) called the command Watchman.nothing",
    ]


@pytest.mark.conformance("CXBus.api:unsubscribe")
async def test_unsubscribe_by_id_or_by_name_for_one_plugin(bus_page):
    got = await bus_page.evaluate("""async () => {
        const got = [];
        const chat = CXBus.registerPlugin("Chat");
        const mine = CXBus.registerPlugin("Mine"), theirs = CXBus.registerPlugin("Theirs");
        const one = mine.subscribe("Chat.x", () => got.push("mine-1"));
        mine.subscribe("Chat.x", () => got.push("mine-2"));
        theirs.subscribe("Chat.x", () => got.push("theirs"));
        chat.publish("x");
        got.push(CXBus.unsubscribe(one), CXBus.unsubscribe(one));
        chat.publish("x");
        got.push(mine.unsubscribe("Chat.x"));             // every one of Mine's, not Theirs'
        chat.publish("x");
        return got;
    }""")
    assert got == ["mine-1", "mine-2", "theirs", True, False, "mine-2", "theirs", True,
                   "theirs"]


@pytest.mark.conformance("CXBus.api:before", "CXBus.api:after")
async def test_before_changes_or_vetoes_and_after_sees_the_result_first(bus_page):
    result = await bus_page.evaluate("""async () => {
        const seen = [];
        const shop = CXBus.registerPlugin("Shop");
        shop.registerCommand("order", (e) => ({ordered: e.item}));
        shop.ready();
        const page = CXBus.registerPlugin("Page");
        page.before("Shop.order", (options) => ({...options, item: options.item.toUpperCase()}));
        page.before("Shop.order", (options) => options.item !== "FORBIDDEN");
        page.after("Shop.order", async (options, result) => {
            await null;
            seen.push(["after", options.item, result.ordered]);
        });
        page.after("cx.plugin.Shop.order", () => { throw new Error("after-hook crashed"); });
        const first = await CXBus.command("Shop.order", {item: "tea"});
        seen.push(["caller", first.ordered]);
        const vetoed = await CXBus.command("Shop.order", {item: "forbidden"}).then(
            () => "ran", (e) => e.reason);
        return {seen, vetoed};
    }""")
    assert result["seen"] == [["after", "TEA", "TEA"], ["caller", "TEA"]]
    assert result["vetoed"] == "rejected by a before-hook"    # and no after for it
    assert any("an after-hook of Shop.order failed" in text
               for kind, text in bus_page.lines if kind == "error")


@pytest.mark.conformance("CXBus.api:loadPlugin", "CXBus.api:configure")
async def test_load_plugin_imports_by_name_and_waits_until_the_plugin_is_ready(bus_page):
    result = await bus_page.evaluate("""async () => {
        await CXBus.loadPlugin("widgets-core");           // the core is the bus itself
        CXBus.loadTimeout = 200;
        const waited = await CXBus.loadPlugin("Nowhere").then(() => "loaded", (e) => e.reason);
        CXBus.configure({pluginsPath: "/site/plugins/"});
        await new Promise((resolve, reject) =>
            CXBus.loadPlugin("MyPlugin").done(resolve).fail(reject));
        const readyFirst = window.myPluginReadyAt !== undefined;
        const hello = await CXBus.command("MyPlugin.hello", {name: "Ada"});
        const missing = await CXBus.loadPlugin("Gone").then(() => "loaded", (e) => e.reason);
        // The original's lazy loading of our bundle: the service arrives, then is ready.
        CXBus.configure({pluginsPath: "/webchat/"});
        await CXBus.loadPlugin("webchat");
        await CXBus.loadPlugin("webchat-service");
        const service = CXBus.plugins.get("WebChatService").isReady;
        return {waited, readyFirst, hello, missing, service};
    }""")
    assert result["waited"] == "plugin Nowhere was not loaded within 0.2 s"
    assert result["readyFirst"] and result["hello"] == "hello Ada"
    assert result["missing"].startswith("plugin Gone could not be loaded from ")
    assert result["service"] is True


@pytest.mark.conformance("CXBus.api:onReady")
async def test_on_ready_hands_the_page_the_bus_once_the_widgets_started(bus_page, server):
    page = bus_page
    await page.goto(f"{server.url}/site/on-ready.html")
    await page.wait_for_function("() => window.onReadyResult")
    # The service itself answered (no chat yet), not the bus's "plugin ... is not ready": it
    # was ready when the callback ran, and the callback had the page's bus.
    assert await page.evaluate("() => [window.onReadyResult, window.onReadyCalls]") == [
        ["There is no active chat session", True], 1]
