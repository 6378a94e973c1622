"""`_genesys.widgets.main` options about where the widget keeps state and what it loads, in
headless Chromium: `cookieOptions` (the saved chat in a cookie with those attributes, and the
`Cookie` helper handed to the async session-data callbacks) and `downloadGoogleFont`."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest
from playwright.async_api import Page, Route, expect

from tests import test_browser
from tests.test_browser import (
    accepted_on_page,
    embedding_site,
    grace,
    open_page,
    service_ready,
    start_chat,
    widget,
)

browser = test_browser.browser
"""Headless Debian Chromium (the fixture of the browser tests)."""
pytestmark = test_browser.pytestmark

KEY = "_genesys.widgets.webchat.state.keys"
GOOGLE_FONT = "https://fonts.googleapis.com/css?family=Roboto:400,300,100"


async def saved_cookie(page: Page, name: str) -> dict | None:
    cookies = await page.context.cookies()
    return next((c for c in cookies if c["name"] == name), None)


@pytest.mark.conformance("main.option:cookieOptions")
async def test_with_cookie_options_the_chat_is_kept_in_a_cookie_and_restored_from_it(
        server, browser, agent_factory):
    agent = await grace(server, agent_factory)
    config = {"dataURL": server.data_url, "pollInterval": 100}
    main = {"cookieOptions": {"path": "/", "secure": True, "sameSite": "Strict"}}
    async with embedding_site(server, config, main=main) as site:
        page = await open_page(browser, site)
        chat_id = await accepted_on_page(page, agent)
        await agent.client.send(chat_id, "first answer")
        await expect(widget(page).locator(".msg.Agent")).to_have_count(1)
        cookie = await saved_cookie(page, KEY)
        assert cookie is not None
        assert (cookie["path"], cookie["secure"], cookie["sameSite"]) == ("/", True, "Strict")
        assert cookie["expires"] == -1  # a session cookie, as the original's
        assert json.loads(unquote(cookie["value"]))["sessionID"] == chat_id
        assert KEY not in await page.evaluate("() => Object.keys(localStorage)")

        await page.reload()  # restored from the cookie: the transcript comes back, once
        await expect(widget(page).locator(".msg.Agent")).to_have_text(["Gracefirst answer"])
    assert page.errors == []  # type: ignore[attr-defined]
    async with embedding_site(server, config) as site:  # without cookieOptions: as before
        page = await open_page(browser, site)
        await start_chat(page)
        await page.wait_for_function(f"() => localStorage.getItem({json.dumps(KEY)})")
        assert await saved_cookie(page, KEY) is None


# The reference's own example, as a site writes it: the widget calls getSessionData to hand the
# data over (the site keeps it in its cookie) and setSessionData to get it back.
SITE_KEEPS_THE_CHAT = """
window.handed = [];
Object.assign(window._genesys.widgets.webchat, {async: {enabled: true,
  getSessionData(sessionData, Cookie, CookieOptions) {
    window.handed.push({sessionData, CookieOptions});
    Cookie.set('customer-defined-session-cookie', JSON.stringify(sessionData), CookieOptions);
  },
  setSessionData(Open, Cookie, CookieOptions) {
    return Cookie.get('customer-defined-session-cookie');
  }}});
"""


@pytest.mark.conformance("option:async.getSessionData", "option:async.setSessionData",
                         "main.option:cookieOptions")
async def test_the_site_keeps_the_chat_through_the_async_callbacks_and_cookie_helper(
        server, browser, agent_factory):
    agent = await grace(server, agent_factory)
    config = {"dataURL": server.data_url, "pollInterval": 100}
    options = {"path": "/", "sameSite": "Lax"}
    async with embedding_site(server, config, main={"cookieOptions": options},
                              scripts=(SITE_KEEPS_THE_CHAT,)) as site:
        page = await open_page(browser, site)
        chat_id = await accepted_on_page(page, agent)
        await agent.client.send(chat_id, "first answer")
        await expect(widget(page).locator(".msg.Agent")).to_have_count(1)
        handed = await page.evaluate("() => window.handed")
        assert handed[-1]["sessionData"]["sessionID"] == chat_id
        assert handed[-1]["CookieOptions"] == options
        cookie = await saved_cookie(page, "customer-defined-session-cookie")
        assert cookie is not None and (cookie["path"], cookie["sameSite"]) == ("/", "Lax")
        assert await saved_cookie(page, KEY) is None  # the site keeps it, we do not
        assert KEY not in await page.evaluate("() => Object.keys(localStorage)")

        await page.reload()  # setSessionData gives it back: the chat is restored
        await expect(widget(page).locator(".msg.Agent")).to_have_text(["Gracefirst answer"])
    assert page.errors == []  # type: ignore[attr-defined]


async def font_requests(server, browser, main: dict) -> tuple[list[str], str]:
    """The Google Fonts requests a page with this `main` makes (answered here: no internet),
    and the widget's font-family."""
    asked: list[str] = []

    async def fonts(route: Route) -> None:
        asked.append(route.request.url)
        await route.fulfill(status=200, content_type="text/css", body="")

    async with embedding_site(server, {"dataURL": server.data_url}, main=main) as site:
        context = await browser.new_context()
        await context.route("https://fonts.googleapis.com/**", fonts)
        page = await context.new_page()
        await page.goto(site)
        await service_ready(page)
        await expect(widget(page).locator("button.launcher")).to_be_visible()
        family = await widget(page).evaluate("w => getComputedStyle(w).fontFamily")
        linked = await page.evaluate(
            "() => [...document.head.querySelectorAll('link[rel=stylesheet]')].map(l => l.href)")
        await context.close()
    return asked + [f"head:{href}" for href in linked], family


@pytest.mark.conformance("main.option:downloadGoogleFont")
async def test_roboto_is_fetched_from_google_only_when_the_site_asks(server, browser):
    asked, family = await font_requests(server, browser, {"downloadGoogleFont": True})
    assert asked == [GOOGLE_FONT, f"head:{GOOGLE_FONT}"]
    assert family.startswith("Roboto")
    for main in ({}, {"downloadGoogleFont": False}):  # ours: no third party unless asked
        asked, family = await font_requests(server, browser, main)
        assert asked == [] and "Roboto" not in family
