"""The widget's presentation in Chromium: the original's string keys and main.i18n overrides,
a right-to-left language, themes, the message box's options, markdown, timestamps, mobile
mode, a site's custom stylesheet, and the agent console in other languages. Fixtures and
helpers come from tests/test_browser.py."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests import test_browser
from tests.test_browser import (
    SHOTS,
    accepted_on_page,
    embedding_site,
    grace,
    open_page,
    running,
    service_ready,
    shot,
    signed_in,
    start_chat,
    widget,
)
from webchat.server.inactivity import InactivityConfig

browser = test_browser.browser
"""Headless Debian Chromium (the fixture of the browser tests)."""
pytestmark = test_browser.pytestmark
DOCS_SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def config(server: Any, **options: Any) -> dict[str, Any]:
    return {"dataURL": server.data_url, "pollInterval": 100, **options}


async def css(page: Page, selector: str, prop: str, pseudo: str | None = None) -> str:
    return str(await widget(page).locator(selector).first.evaluate(
        "(node, [prop, pseudo]) => getComputedStyle(node, pseudo).getPropertyValue(prop)",
        [prop, pseudo]))


@pytest.mark.conformance("WebChat.option:maxMessageLength", "WebChat.option:charCountEnabled",
                         "WebChat.option:ariaCharRemainingIntervals")
async def test_max_message_length_with_the_character_counter(server, browser):
    options = config(server, maxMessageLength=20, charCountEnabled=True,
                     ariaCharRemainingIntervals=[15, 5])
    async with embedding_site(server, options) as site:
        page = await open_page(browser, site)
        await start_chat(page)
        w = widget(page)
        box, counter = w.locator("textarea"), w.locator(".char-count")
        await expect(counter).to_have_text("20")
        await box.press_sequentially("Hello")
        await expect(counter).to_have_text("15")
        # A screen reader hears the count at 15 left (an interval), not at every key.
        await expect(w.locator("[role=status]")).to_have_text(
            re.compile(r"Characters remaining\D*15"))
        await box.press_sequentially(" this is far too long for twenty")
        assert await box.input_value() == "Hello this is far to"  # the box takes 20 at most
        await expect(counter).to_have_text("0")
        await box.press("Enter")
        await expect(w.locator(".msg.Client")).to_contain_text("Hello this is far to")
        await expect(counter).to_have_text("20")
    async with embedding_site(server, config(server)) as site:  # no counter unless enabled
        page = await open_page(browser, site)
        await start_chat(page)
        await expect(widget(page).locator(".char-count")).to_be_hidden()
        assert await widget(page).locator("textarea").get_attribute("maxlength") == "5000"


@pytest.mark.conformance("WebChat.option:timeFormat", "main.option:timeFormat")
@pytest.mark.parametrize(("hours", "webchat", "main"), [
    (24, {}, {"timeFormat": "24"}),                   # main's, for every widget
    (12, {"timeFormat": 12}, {"timeFormat": 24}),     # the webchat's own wins
])
async def test_messages_carry_their_time_in_the_time_format(server, browser, agent_factory,
                                                            hours, webchat, main):
    agent = await grace(server, agent_factory)
    async with embedding_site(server, config(server, **webchat), main=main) as site:
        page = await open_page(browser, site, timezone_id="UTC")
        chat_id = await accepted_on_page(page, agent)
        await agent.client.send(chat_id, "Your parcel left the depot.")
        message = widget(page).locator(".msg.Agent")
        await expect(message.locator("time")).to_have_count(1)
        sent = next(m for m in server.engine.chats[chat_id].events if m.type == "Message")
        hour = (sent.utcTime // 3_600_000) % 24
        shown = await css(page, ".msg.Agent time", "content", "::after")
        if hours == 24:
            assert re.fullmatch(rf'"{hour:02d}:\d\d"', shown), shown
        else:
            assert re.fullmatch(rf'"{(hour % 12) or 12}:\d\d\s?(AM|PM)"', shown), shown
        # The time is drawn beside the message; the message's text stays what was said.
        await expect(message).to_have_text("GraceYour parcel left the depot.")


@pytest.mark.conformance("main.option:i18n", "main.option:lang")
async def test_main_i18n_overrides_strings_by_their_original_keys(server, browser):
    i18n = {"fr": {"webchat": {"ChatButton": "Une question ?",
                               "ChatFormPlaceholderFirstName": "Votre prénom",
                               "Errors": {"103": "Et votre nom ?"}}}}
    async with embedding_site(server, config(server), main={"lang": "fr", "i18n": i18n}) as site:
        page = await open_page(browser, site)
        w = widget(page)
        await expect(w.locator("button.launcher")).to_have_text(re.compile(r"^Une question \?"))
        await w.locator("button.launcher").click()
        await expect(w.locator("input[name=firstname]")).to_have_attribute(
            "placeholder", "Votre prénom")
        # Keys the site does not override stay in the served French.
        await expect(w.locator("input[name=lastname]")).to_have_attribute(
            "placeholder", "Obligatoire")
        await expect(w.locator("form button[type=submit]")).to_have_text("Démarrer")
        await w.locator("input[name=firstname]").fill("Ada")
        await w.locator("form button[type=submit]").click()
        await expect(w.locator(".error")).to_have_text("Et votre nom ?")
    # The URL form: a language pack the page fetches.
    pack = "data:application/json," + json.dumps(
        {"en": {"webchat": {"ChatButton": "Talk to us", "ChatInputSend": "Go"}}})
    async with embedding_site(server, config(server), main={"i18n": pack}) as site:
        page = await open_page(browser, site)
        await expect(widget(page).locator("button.launcher")).to_contain_text("Talk to us")


@pytest.mark.conformance("main.option:lang")
async def test_arabic_mirrors_the_widget(server, browser, agent_factory):
    agent = await grace(server, agent_factory)
    main = {"lang": "ar", "theme": "light"}
    async with embedding_site(server, config(server), main=main) as site:
        page = await open_page(browser, site, viewport={"width": 1000, "height": 700})
        w = widget(page)
        launcher = await w.locator("button.launcher").bounding_box()
        assert launcher is not None and launcher["x"] < 500  # bottom left, not bottom right
        await expect(w.locator("button.launcher")).to_have_text(re.compile("^محادثة"))
        chat_id = await accepted_on_page(page, agent)
        await agent.client.send(chat_id, "مرحبًا، كيف يمكنني مساعدتك؟")
        await widget(page).locator("textarea").fill("أين طردي؟")
        await widget(page).locator("textarea").press("Enter")
        await expect(w.locator(".msg.Client")).to_have_count(1)
        await expect(w.locator(".panel")).to_have_attribute("dir", "rtl")
        panel = await w.locator(".panel").bounding_box()
        mine = await w.locator(".msg.Client").bounding_box()
        theirs = await w.locator(".msg.Agent").bounding_box()
        assert panel and mine and theirs
        assert panel["x"] < 500  # the window opens on the left too
        # The customer's own bubbles sit on the left (the end of a right-to-left line), the
        # agent's on the right.
        assert mine["x"] < theirs["x"]
        # The server's notice, in Arabic.
        await expect(w.locator(".log")).to_contain_text("ترتيبك في قائمة الانتظار")
        await shot(page, "widget-rtl")
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHOTS / "widget-rtl.png", DOCS_SHOTS / "widget-rtl.png")


@pytest.mark.conformance("main.option:theme", "main.option:themes")
async def test_themes_switch_at_run_time_and_sites_add_their_own(server, browser):
    head = "<style>webchat-widget.acme-theme { --webchat-accent: rgb(122, 31, 162); }</style>"
    main = {"themes": {"acme": "acme-theme"}}
    async with embedding_site(server, config(server), main=main, head=head) as site:
        page = await open_page(browser, site)
        await service_ready(page)
        w = widget(page)
        await w.locator("button.launcher").click()
        await expect(w).to_have_class(re.compile(r"\bcx-theme-dark\b"))  # the original's default
        dark = await css(page, ".panel", "background-color")
        assert await page.evaluate("CXBus.command('App.getTheme')") == "dark"
        assert await page.evaluate("CXBus.command('App.setTheme', {theme: 'light'})") == "light"
        await expect(w).to_have_class(re.compile(r"\bcx-theme-light\b"))
        await expect(w).not_to_have_class(re.compile(r"\bcx-theme-dark\b"))
        assert await css(page, ".panel", "background-color") == "rgb(255, 255, 255)" != dark
        await page.evaluate("CXBus.command('App.setTheme', {theme: 'acme'})")
        assert await css(page, "header", "background-color") == "rgb(122, 31, 162)"
        refused = await page.evaluate("CXBus.command('App.setTheme', {theme: 'neon'})"
                                      ".then(() => 'resolved', () => 'rejected')")
        assert refused == "rejected"
        await shot(page, "widget-theme-acme")
    async with embedding_site(server, config(server), main={"theme": "light"}) as site:
        page = await open_page(browser, site)
        await expect(widget(page)).to_have_class(re.compile(r"\bcx-theme-light\b"))


@pytest.mark.conformance("WebChat.option:markdown")
async def test_markdown_is_rendered_as_elements_and_markup_stays_text(server, browser,
                                                                     agent_factory):
    agent = await grace(server, agent_factory)
    async with embedding_site(server, config(server, markdown=True)) as site:
        page = await open_page(browser, site)
        chat_id = await accepted_on_page(page, agent)
        await agent.client.send(
            chat_id, "Your parcel is **on its way** and _due Friday_: `A-1009`, "
                     "[track it](https://example.org/track?id=1) or [this](javascript:alert(1)) "
                     '<img src=x onerror="window.__pwned=1"> **<b>not bold markup</b>**')
        w = widget(page)
        message = w.locator(".msg.Agent")
        await expect(message.locator("strong").first).to_have_text("on its way")
        await expect(message.locator("em")).to_have_text("due Friday")
        await expect(message.locator("code")).to_have_text("A-1009")
        links = await message.locator("a").evaluate_all(
            "as => as.map(a => [a.textContent, a.href, a.rel])")
        assert links == [["track it", "https://example.org/track?id=1",
                          "noopener noreferrer nofollow"]]
        await expect(message).to_contain_text("[this](javascript:alert(1))")  # left as typed
        await expect(message.locator("strong").nth(1)).to_have_text("<b>not bold markup</b>")
        assert await w.locator(".log img, .log b, .log script").count() == 0
        assert await page.evaluate("window.__pwned") is None


async def test_without_the_markdown_option_asterisks_stay_as_typed(server, browser,
                                                                   agent_factory):
    agent = await grace(server, agent_factory)
    async with embedding_site(server, config(server)) as site:  # off by default, as the original
        page = await open_page(browser, site)
        chat_id = await accepted_on_page(page, agent)
        await agent.client.send(chat_id, "**plain** and _plain_")
        await expect(widget(page).locator(".msg.Agent")).to_contain_text("**plain** and _plain_")
        assert await widget(page).locator(".msg.Agent :is(strong, em)").count() == 0


@pytest.mark.conformance("WebChat.option:emojis", "WebChat.option:actionsMenu")
async def test_the_emoji_menu_and_the_actions_menu(server, browser):
    async with embedding_site(server, config(server, emojis=True, actionsMenu=False,
                                             uploadsEnabled=True)) as site:
        page = await open_page(browser, site)
        await start_chat(page)
        w = widget(page)
        await w.locator("textarea").fill("Thanks ")
        await w.locator(".emoji-toggle").click()
        await w.get_by_role("menuitem", name=re.compile("\N{THUMBS UP SIGN}")).click()
        assert await w.locator("textarea").input_value() == "Thanks \N{THUMBS UP SIGN}"
        await expect(w.locator(".emoji-menu")).to_be_hidden()
        await expect(w.locator(".attach")).to_be_hidden()  # no actions, though uploads are on
    async with embedding_site(server, config(server, uploadsEnabled=True)) as site:
        page = await open_page(browser, site)
        await start_chat(page)
        await expect(widget(page).locator(".emoji-toggle")).to_have_count(0)  # off by default
        await expect(widget(page).locator(".attach")).to_be_visible()


@pytest.mark.conformance("main.option:mobileMode", "main.option:mobileModeBreakpoint",
                         "main.option:customStylesheetID")
async def test_mobile_mode_and_a_custom_stylesheet(server, browser):
    desktop = {"width": 1000, "height": 800}
    head = "<style id='chat-look'>.launcher { background: rgb(0, 128, 0); }</style>"
    main = {"mobileMode": True, "customStylesheetID": "chat-look"}
    async with embedding_site(server, config(server), main=main, head=head) as site:
        page = await open_page(browser, site, viewport=desktop)
        w = widget(page)
        await expect(w).to_have_class(re.compile(r"\bcx-mobile\b"))
        assert await css(page, ".launcher", "background-color") == "rgb(0, 128, 0)"
        await w.locator("button.launcher").click()
        box = await w.locator(".panel").bounding_box()
        assert box is not None and round(box["width"]) == desktop["width"]  # full window
    # auto: a window at most mobileModeBreakpoint wide is a phone's.
    async with embedding_site(server, config(server), main={"mobileModeBreakpoint": 1200}) as site:
        page = await open_page(browser, site, viewport=desktop)
        await expect(widget(page)).to_have_class(re.compile(r"\bcx-mobile\b"))
    async with embedding_site(server, config(server)) as site:
        page = await open_page(browser, site, viewport=desktop)
        await expect(widget(page)).to_have_class(re.compile(r"\bcx-desktop\b"))
        await widget(page).locator("button.launcher").click()
        box = await widget(page).locator(".panel").bounding_box()
        assert box is not None and box["width"] < 500


async def test_the_agent_console_speaks_the_agents_language(server, browser, customer_factory):
    await server.add_agent("grace", nickname="Grace")
    german = await open_page(browser, f"{server.url}/agent", locale="de-DE")
    await expect(german.locator("#login button[type=submit]")).to_have_text("Anmelden")
    await signed_in(german, "grace")
    await expect(german.locator("#status")).to_have_text("Nicht bereit")
    await expect(german.locator("#queue-empty")).to_have_text("Keine Chats warten.")
    await german.close()

    arabic = await open_page(browser, f"{server.url}/agent?lang=ar")
    await expect(arabic.locator("html")).to_have_attribute("dir", "rtl")
    await expect(arabic.locator("#login button[type=submit]")).to_have_text("تسجيل الدخول")
    await signed_in(arabic, "grace")
    await arabic.locator("#ready").check()
    await expect(arabic.locator("#status")).to_have_text("جاهز للمحادثات")
    customer = await customer_factory(server.data_url)
    await customer.command("startChat", {"nickname": "Ada"})
    await expect(arabic.locator("#queue li button")).to_have_text("قبول")
    await arabic.locator("#queue li button").click()
    await expect(arabic.locator(".chat .log")).to_contain_text("انضم Ada")
    await expect(arabic.locator(".chat .composer button").first).to_have_text("إرسال")
    await shot(arabic, "console-rtl")
    await arabic.goto(f"{server.url}/agent")  # the choice is kept without ?lang=
    await expect(arabic.locator("#ready + span")).to_have_text("جاهز")


@pytest.mark.conformance("main.option:header")
async def test_main_header_goes_with_every_request_when_enable_custom_header(server, browser):
    options = config(server, enableCustomHeader=True)
    async with embedding_site(server, options, main={"header": {"Authorization": "Bearer s1"}}
                              ) as site:
        context = await browser.new_context()
        page = await context.new_page()
        sent: list[dict[str, str]] = []
        page.on("request", lambda r: sent.append(r.headers)
                if r.url.startswith(server.data_url) and r.method == "POST" else None)
        await page.goto(site)
        await start_chat(page)
        assert sent and all(h.get("authorization") == "Bearer s1" for h in sent)


@pytest.mark.conformance("WebChat.option:ariaIdleAlertIntervals")
async def test_a_screen_reader_hears_how_long_a_silent_chat_has_left(server_config, browser,
                                                                    agent_factory):
    # Warned after 1 s of silence, closed 4 s later; the widget warns at 3 and 1 s left.
    quick = InactivityConfig(customer_alert_s=1, customer_close_s=5, agent_alert_s=None,
                             sweep_s=0.05)
    async with running(replace(server_config, inactivity=quick)) as server:
        agent = await grace(server, agent_factory)
        options = config(server, ariaIdleAlertIntervals=[3, 1])
        async with embedding_site(server, options) as site:
            page = await open_page(browser, site)
            await accepted_on_page(page, agent)
            warning = widget(page).locator("[role=alert].visually-hidden")
            await expect(widget(page).locator(".log")).to_contain_text("Are you still there?")
            await expect(warning).to_have_text("This chat closes in 3 seconds unless you reply")
            await expect(warning).to_have_text("This chat closes in 1 seconds unless you reply")
            await expect(widget(page).locator(".log")).to_contain_text("Chat ended")


@pytest.mark.conformance("main.option:debug")
async def test_main_debug_logs_the_bus_traffic(server, browser):
    for debug in (True, False):
        async with embedding_site(server, config(server), main={"debug": debug}) as site:
            page = await browser.new_page()
            lines: list[str] = []
            page.on("console", lambda msg, lines=lines: lines.append(msg.text))
            await page.goto(site)
            await start_chat(page)
            bus_lines = [line for line in lines if line.startswith("CXBus: ")]
            if debug:
                assert any("called the command WebChatService.startChat" in line
                           for line in bus_lines), lines
                assert any("published WebChatService.started" in line for line in bus_lines)
            else:
                assert bus_lines == []
            await page.close()
