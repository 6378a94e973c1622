"""The WebChat plugin on the bus, in real headless Chromium: page scripts written for the
original Genesys Widgets (tests/fixtures/webchat/, our own text in the reference's API shape:
an extension with its own plugin, configuration objects) drive <webchat-widget> with WebChat
commands, hear its events, and configure it through window._genesys.widgets.webchat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests import test_browser
from tests.test_browser import (
    PHONE_DEVICE,
    embedding_site,
    grace,
    offered,
    open_page,
    widget,
)

browser = test_browser.browser
"""Headless Debian Chromium (the fixture of the browser tests)."""
pytestmark = test_browser.pytestmark
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "webchat"


def page_script(name: str) -> str:
    return (FIXTURES / name).read_text()


@contextlib.asynccontextmanager
async def site(server: Any, browser: Any, *scripts: str, config: dict[str, Any] | None = None,
               head: str = "", **context: Any) -> AsyncIterator[Page]:
    """A customer's site embedding the widget with the site plugin of site-plugin.js and the
    named page scripts; the page once WebChat has said it is ready."""
    base = {"dataURL": server.data_url, "pollInterval": 100, **(config or {})}
    texts = tuple(page_script(s) for s in ("site-plugin.js", *scripts))
    async with embedding_site(server, base, head=head, scripts=texts) as url:
        page = await open_page(browser, url, **context)
        await page.wait_for_function("() => window.acmeEvents?.some(e => e.event === 'ready')")
        yield page


async def command(page: Page, name: str, options: Any = None) -> dict[str, Any]:
    """What the site's button gets back from WebChat.<name>: resolved, or the reason."""
    result: dict[str, Any] = await page.evaluate(
        "([name, options]) => acmeCommand(name, options)", [name, options])
    return result


async def events(page: Page, *names: str) -> list[str]:
    seen = await page.evaluate("() => acmeEvents.map(e => e.event)")
    return [e for e in seen if not names or e in names]


async def event_data(page: Page, name: str) -> list[Any]:
    return list(await page.evaluate("name => acmeEvents.filter(e => e.event === name)"
                                    ".map(e => e.data)", name))


async def until_event(page: Page, name: str, count: int = 1) -> None:
    await page.wait_for_function(
        "([name, count]) => acmeEvents.filter(e => e.event === name).length >= count",
        arg=[name, count])


PREFILLED = {"autoSubmit": True, "firstname": "John", "lastname": "Smith",
             "email": "John@mail.com", "subject": "Customer Satisfaction"}


async def started_by_open(page: Page, server: Any) -> Any:
    """WebChat.open with the form filled in and sent at once; the chat the server then has."""
    assert await command(page, "open", {"userData": {"account": "A-1009"}, "form": PREFILLED}) \
        == {"resolved": True}
    await expect(widget(page).locator(".composer")).to_be_visible()
    return only_chat(server)


def only_chat(server: Any) -> Any:
    """The one chat on the server (the widget shows the transcript once startChat resolved)."""
    [chat] = server.engine.chats.values()
    return chat


@pytest.mark.conformance("WebChat.command:open", "WebChat.event:ready", "WebChat.event:opened",
                         "WebChat.event:submitted", "WebChat.event:started",
                         "CXBus.api:extensions")
async def test_open_fills_in_and_sends_the_form_and_rejects_a_second_open(server, browser):
    async with site(server, browser) as page:
        w = widget(page)
        await expect(w.locator(".panel")).to_be_hidden()
        chat = await started_by_open(page, server)
        assert {k: chat.customer[k] for k in ("firstName", "lastName", "emailAddress", "subject")} \
            == {"firstName": "John", "lastName": "Smith", "emailAddress": "John@mail.com",
                "subject": "Customer Satisfaction"}
        assert chat.user_data["account"] == "A-1009"  # WebChat.open's userData reaches the agent
        assert await events(page, "ready", "opened", "submitted", "started") == [
            "ready", "opened", "submitted", "started"]
        assert await event_data(page, "opened") == [{"account": "A-1009"}]
        [submitted] = await event_data(page, "submitted")
        assert (submitted["firstname"], submitted["email"], submitted["userData"]["account"]) \
            == ("John", "John@mail.com", "A-1009")
        assert await command(page, "open") == {"resolved": False, "reason": "already opened"}
        # The bus's registry names what the plugin offers, as the original's does.
        registry = await page.evaluate("() => CXBus.registry().WebChat")
        assert set(registry["commands"]) == {
            "open", "close", "minimize", "endChat", "configure", "invite", "reInvite",
            "injectMessage", "showChatButton", "hideChatButton", "showOverlay", "hideOverlay"}
        assert {"ready", "opened", "closed", "messageAdded", "chatButtonDisplayed"} \
            <= set(registry["events"])
        assert page.errors == []  # type: ignore[attr-defined]


@pytest.mark.conformance("WebChat.command:close", "WebChat.event:closed",
                         "WebChat.event:cancelled", "WebChat.option:confirmFormCloseEnabled")
async def test_close_asks_first_when_the_form_is_filled_in(server, browser):
    async with site(server, browser) as page:
        w = widget(page)
        assert await command(page, "close") == {"resolved": False, "reason": "already closed"}
        await command(page, "open")
        await w.locator("input[name=firstname]").fill("Ada")
        pending = asyncio.ensure_future(command(page, "close"))
        question = w.locator(".close-question")
        await expect(question).to_contain_text("Close the chat window?")  # ConfirmCloseWindow
        await expect(question.locator("button").first).to_be_focused()  # ConfirmCloseCancel
        await page.keyboard.press("Escape")  # answers it, as the end-chat question
        assert await pending == {"resolved": False, "reason": "cancelled"}
        await expect(w.locator(".panel")).to_be_visible()
        await expect(w.locator("input[name=firstname]")).to_have_value("Ada")

        pending = asyncio.ensure_future(command(page, "close"))
        await question.locator("button.primary").click()  # ConfirmCloseConfirm
        assert await pending == {"resolved": True}
        await expect(w.locator(".panel")).to_be_hidden()
        assert await events(page, "closed", "cancelled") == ["cancelled", "closed"]  # no chat

        # Without the option, closing a filled-in form asks nothing.
        assert await command(page, "configure", {"confirmFormCloseEnabled": False}) \
            == {"resolved": True}
        await command(page, "open")
        await w.locator("input[name=firstname]").fill("Ada")
        assert await command(page, "close") == {"resolved": True}
        await expect(w.locator(".panel")).to_be_hidden()
        await expect(question).to_be_hidden()


@pytest.mark.conformance("WebChat.command:minimize", "WebChat.event:minimized",
                         "WebChat.event:unminimized")
async def test_minimize_takes_minimized_or_toggles(server, browser):
    async with site(server, browser) as page:
        w = widget(page)
        not_open = "WebChat is not currently open. Ignoring command."
        assert await command(page, "minimize") == {"resolved": False, "reason": not_open}
        await command(page, "open")
        assert await command(page, "minimize", {"minimized": True}) == {"resolved": True}
        await expect(w.locator(".panel")).to_be_hidden()
        await expect(w.locator("button.launcher")).to_be_visible()  # the way back
        assert await command(page, "minimize") == {"resolved": True}  # no argument: toggles
        await expect(w.locator(".panel")).to_be_visible()
        assert await command(page, "minimize", {"minimized": False}) == {"resolved": True}
        await w.locator("header button").first.click()  # the widget's own minimize button
        await expect(w.locator(".panel")).to_be_hidden()
        await w.locator("button.launcher").click()
        await expect(w.locator(".panel")).to_be_visible()
        assert await events(page, "opened", "minimized", "unminimized") == [
            "opened", "minimized", "unminimized", "minimized", "unminimized"]


@pytest.mark.conformance("WebChat.command:endChat", "WebChat.event:ended")
async def test_end_chat_ends_the_active_chat(server, browser):
    async with site(server, browser) as page:
        assert await command(page, "endChat") == {
            "resolved": False, "reason": "there is no active chat session to end"}
        chat = await started_by_open(page, server)
        assert await command(page, "endChat") == {"resolved": True}
        await expect(widget(page).locator(".log")).to_contain_text("Chat ended")
        assert server.engine.chats[chat.chat_id].ended
        await until_event(page, "ended")
        await command(page, "close")  # after the chat: closed, not cancelled
        assert await events(page, "ended", "closed", "cancelled") == ["ended", "closed"]
        assert await command(page, "endChat") == {
            "resolved": False, "reason": "there is no active chat session to end"}


@pytest.mark.conformance("WebChat.command:configure", "WebChat.option:chatButton.enabled")
async def test_configure_changes_the_widget_at_run_time(server, browser):
    async with site(server, browser, config={"chatButton": {"openDelay": 0}}) as page:
        w = widget(page)
        await expect(w.locator("button.launcher")).to_be_visible()
        assert await command(page, "configure") == {"resolved": False,
                                                    "reason": "Invalid configuration"}
        assert await command(page, "configure", {"chatButton": {"enabled": False}}) \
            == {"resolved": True}
        await expect(w.locator("button.launcher")).to_be_hidden()
        assert await command(page, "showChatButton") == {
            "resolved": False,
            "reason": "The chat button has been disabled in the configuration. Ignoring command."}
        assert await command(page, "configure", {"chatButton": {
            "enabled": True, "template": "<b class='acme'>Ask us</b>"}}) == {"resolved": True}
        await expect(w.locator("button.launcher")).to_be_visible()
        await expect(page.locator("webchat-widget > [slot=chat-button] b.acme")).to_have_text(
            "Ask us")
        assert await events(page, "chatButtonDisplayed", "chatButtonHidden") == [
            "chatButtonDisplayed", "chatButtonHidden", "chatButtonDisplayed"]


@pytest.mark.conformance("WebChat.command:showChatButton", "WebChat.command:hideChatButton",
                         "WebChat.event:chatButtonDisplayed", "WebChat.event:chatButtonHidden")
async def test_show_and_hide_the_chat_button(server, browser):
    async with site(server, browser, config={"chatButton": {"openDelay": 0}}) as page:
        w = widget(page)
        await until_event(page, "chatButtonDisplayed")
        assert await command(page, "showChatButton") == {
            "resolved": False, "reason": "Chat button is already visible. Ignoring command."}
        assert await command(page, "hideChatButton", {"duration": 0}) == {"resolved": True}
        await expect(w.locator("button.launcher")).to_be_hidden()
        assert await command(page, "hideChatButton") == {
            "resolved": False, "reason": "Chat button is already hidden. Ignoring command."}
        assert await command(page, "showChatButton", {"openDelay": 0, "duration": 0}) \
            == {"resolved": True}
        await expect(w.locator("button.launcher")).to_be_visible()
        await w.locator("button.launcher").click()  # opening the chat puts the button away
        await expect(w.locator("button.launcher")).to_be_hidden()
        assert await events(page, "chatButtonDisplayed", "chatButtonHidden") == [
            "chatButtonDisplayed", "chatButtonHidden", "chatButtonDisplayed", "chatButtonHidden"]


@pytest.mark.conformance("WebChat.option:chatButton.template", "WebChat.option:chatButton.effect",
                         "WebChat.option:chatButton.openDelay",
                         "WebChat.option:chatButton.effectDuration")
async def test_the_sites_chat_button_template_after_its_delay(server, browser):
    async with site(server, browser, "chat-button.js") as page:
        w = widget(page)
        await until_event(page, "chatButtonDisplayed")
        # Shown no sooner than openDelay after the page began (timers never fire early).
        shown_at = (await page.evaluate(
            "() => acmeEvents.find(e => e.event === 'chatButtonDisplayed').at"))
        assert shown_at >= 1500
        template = page.locator("webchat-widget > [slot=chat-button]")
        await expect(template.locator(".acme-label")).to_have_text("Talk to Acme")
        assert await template.locator("script").count() == 0
        assert await template.locator("img").get_attribute("onerror") is None
        launcher = w.locator("button.launcher")
        assert await launcher.get_attribute("data-effect") == "slide"
        assert await launcher.evaluate("b => b.style.transitionDuration") == "200ms"
        await template.locator(".acme-label").click()  # the site's markup opens the chat
        await expect(w.locator(".panel")).to_be_visible()
        assert await page.evaluate("() => window.templateRan") is None
        assert await events(page, "opened") == ["opened"]


@pytest.mark.conformance("WebChat.command:invite", "WebChat.option:chatButton.hideDuringInvite")
async def test_invite_hides_the_button_and_accepting_opens_the_chat(server, browser):
    async with site(server, browser, config={"chatButton": {"openDelay": 0}}) as page:
        w = widget(page)
        await until_event(page, "chatButtonDisplayed")
        assert await command(page, "invite") == {"resolved": True}
        card = w.get_by_role("alertdialog", name="Need help?")  # InviteTitle
        await expect(card).to_contain_text("Let us know if we can help.")  # InviteBody
        await expect(w.locator("button.launcher")).to_be_hidden()  # hideDuringInvite
        await card.get_by_role("button", name="Start chat").click()  # InviteAccept
        await expect(card).to_be_hidden()
        await expect(w.locator(".panel")).to_be_visible()
        assert await events(page, "opened") == ["opened"]
        assert await command(page, "invite") == {
            "resolved": False, "reason": "Chat is already open. Ignoring invite command."}


@pytest.mark.conformance("WebChat.command:reInvite", "WebChat.option:inviteOnRestoreTimeout")
async def test_a_timed_out_restore_invites_to_a_new_chat(server, browser):
    config = {"restoreTimeout": 2000, "chatButton": {"openDelay": 0}}
    async with site(server, browser, config=config) as page:
        w = widget(page)
        await started_by_open(page, server)
        url = page.url
        await page.goto("about:blank")
        await asyncio.sleep(3)  # away from the page for longer than restoreTimeout
        await page.goto(url)
        card = w.locator(".invite[data-kind=reInvite]")
        await expect(card).to_contain_text("Chat ended")  # RestoreTimeoutTitle, not the chat
        await expect(w.locator(".panel")).to_be_hidden()
        await card.locator("button:not(.primary)").click()  # RestoreTimeoutReject
        await expect(card).to_be_hidden()
        await expect(w.locator("button.launcher")).to_be_visible()
        assert await command(page, "reInvite") == {"resolved": True}
        await expect(card).to_be_visible()
        await card.locator("button.primary").click()  # RestoreTimeoutAccept: a new chat
        await expect(w.locator("form.register")).to_be_visible()
        assert await command(page, "reInvite") == {
            "resolved": False, "reason": "Chat is already open. Ignoring invite command."}
        await command(page, "close")
        await command(page, "configure", {"inviteOnRestoreTimeout": False})
        assert (await command(page, "reInvite"))["resolved"] is False


@pytest.mark.conformance("WebChat.option:autoInvite.enabled",
                         "WebChat.option:autoInvite.timeToInviteSeconds",
                         "WebChat.option:autoInvite.inviteTimeoutSeconds",
                         "WebChat.option:proactive.enabled", "WebChat.option:proactive.idleTimer",
                         "WebChat.option:proactive.cancelTimer")
@pytest.mark.parametrize(("script", "idle_ms", "timeout_ms"), [
    ("auto-invite.js", 2000, 2000),  # autoInvite
    ("proactive.js", 1000, 2000),  # the same in the legacy names
])
async def test_auto_invite_after_idle_time_and_its_timeout(server, browser, script, idle_ms,
                                                           timeout_ms):
    async with site(server, browser, script) as page:
        w = widget(page)
        card = w.locator(".invite[data-kind=invite]")
        await expect(card).to_be_visible()
        # Not before the customer had been idle that long (the button makes way for it).
        invited_at = await page.evaluate(
            "() => acmeEvents.find(e => e.event === 'chatButtonHidden').at")
        assert invited_at >= idle_ms
        await expect(w.locator("button.launcher")).to_be_hidden()
        # Unanswered for that long: withdrawn, and the chat button is back.
        await expect(card).to_be_hidden()
        await expect(w.locator("button.launcher")).to_be_visible()
        await until_event(page, "chatButtonDisplayed", 2)
        back_at = await page.evaluate(
            "() => acmeEvents.filter(e => e.event === 'chatButtonDisplayed')[1].at")
        assert back_at - invited_at >= timeout_ms
        assert await events(page, "opened") == []


@pytest.mark.conformance("WebChat.command:invite")
async def test_declining_an_invitation_is_remembered(server, browser):
    async with site(server, browser, config={"chatButton": {"openDelay": 0}}) as page:
        w = widget(page)
        await command(page, "invite")
        card = w.locator(".invite[data-kind=invite]")
        await card.locator("button:not(.primary)").click()  # InviteReject
        await expect(card).to_be_hidden()
        await expect(w.locator("button.launcher")).to_be_visible()
        assert await page.evaluate(
            "() => localStorage.getItem('_webchat.widget.inviteAnswered')") == "true"
        assert await events(page, "opened") == []


@pytest.mark.conformance("WebChat.command:injectMessage", "WebChat.event:messageAdded")
async def test_inject_message_shows_text_as_text_and_sanitizes_html(server, browser):
    async with site(server, browser) as page:
        w = widget(page)
        await command(page, "open")
        assert await command(page, "injectMessage", {"type": "text", "text": "hi"}) == {
            "resolved": False, "reason": "No chat session to inject into."}
        await command(page, "close")
        await started_by_open(page, server)
        assert await command(page, "injectMessage", {
            "type": "text", "name": "Acme", "text": "<b>not bold</b>"}) == {"resolved": True}
        hostile = ("<b>Your order</b> <a href='https://example.org/track'>track</a>"
                   "<a href='javascript:window.injectedRan=true'>bad</a>"
                   "<img src=x onerror='window.injectedRan=true'>"
                   "<script>window.injectedRan = true</script>"
                   "<div onclick='window.injectedRan=true' style='color:red'>tap</div>")
        assert await command(page, "injectMessage", {
            "type": "html", "name": "Acme", "text": hostile, "custom": True,
            "bubble": {"direction": "left", "radius": 4, "fill": "#fdf6e3"}}) == {"resolved": True}
        injected = w.locator(".log .msg.injected")
        await expect(injected).to_have_count(2)
        assert await injected.nth(0).locator("b").count() == 0  # text stays text
        await expect(injected.nth(0)).to_contain_text("<b>not bold</b>")
        html = injected.nth(1)
        await expect(html.locator("b")).to_have_text("Your order")
        await expect(html.locator("a[href='https://example.org/track']")).to_have_text("track")
        assert await html.locator("script").count() == 0
        assert await html.locator("[onerror], [onclick], [style]").count() == 0
        assert await html.locator("a", has_text="bad").get_attribute("href") is None
        await html.locator("div", has_text="tap").click()
        await html.locator("a", has_text="bad").click()
        assert await page.evaluate("() => window.injectedRan") is None
        assert "cx-custom" in (await html.get_attribute("class") or "")
        added = [d for d in await event_data(page, "messageAdded") if d["type"] == "injected"]
        assert [(d["name"], d["html"]) for d in added] == [("Acme", True), ("Acme", True)]
        assert any(d["type"] == "Client" or d["type"] != "injected"
                   for d in await event_data(page, "messageAdded"))  # the chat's own, too
        assert await command(page, "injectMessage", {"type": "video", "text": "x"}) == {
            "resolved": False, "reason": "Invalid message type or text"}


@pytest.mark.conformance("WebChat.command:showOverlay", "WebChat.command:hideOverlay")
async def test_an_overlay_over_the_chat(server, browser):
    async with site(server, browser) as page:
        w = widget(page)
        not_open = "WebChat is not currently open. Ignoring command."
        assert await command(page, "showOverlay", {"html": "x"}) == {"resolved": False,
                                                                     "reason": not_open}
        await started_by_open(page, server)
        assert await command(page, "showOverlay", {
            "html": "<div id='cx_chat_information'>Our terms<script>window.overlayRan=1"
                    "</script></div>", "hideFooter": True}) == {"resolved": True}
        overlay = w.locator(".overlay")
        await expect(overlay).to_have_text("Our terms")
        assert await overlay.locator("script").count() == 0
        await expect(w.locator(".composer")).to_be_hidden()  # hideFooter
        assert await command(page, "hideOverlay") == {"resolved": True}
        await expect(overlay).to_be_hidden()
        await expect(w.locator(".composer")).to_be_visible()
        assert await page.evaluate("() => window.overlayRan") is None


@pytest.mark.conformance("WebChat.option:form")
async def test_a_custom_registration_form_from_json_with_validation(server, browser):
    async with site(server, browser, "custom-form.js") as page:
        w = widget(page)
        await command(page, "open")
        form = w.locator("form.register")
        await expect(form.locator("table")).to_be_visible()  # the form's wrapper
        await expect(form.locator("label[for=cx_webchat_form_phonenumber]")).to_have_text(
            "Phone number")
        phone = form.locator("#cx_webchat_form_phonenumber")
        assert await phone.get_attribute("maxlength") == "14"
        await expect(form.locator("select[name=topic] option")).to_have_text(
            ["Delivery", "Returns"])
        await expect(form.locator("select[name=topic]")).to_have_value("returns")
        assert await form.locator("textarea[name=question]").get_attribute("maxlength") == "500"
        await expect(form.locator("input[name=source]")).to_be_hidden()

        await form.locator("input[name=firstname]").fill("Ada")
        await form.locator("input[name=lastname]").fill("Byron")
        await phone.press_sequentially("abc")  # validateWhileTyping
        await expect(phone).to_have_attribute("aria-invalid", "true")
        await expect(phone).to_have_class("cx-error")
        await form.locator("button[type=submit]").click()
        await expect(phone).to_be_focused()
        assert server.engine.chats == {}  # nothing sent while a field is invalid
        await phone.fill("")
        await phone.press_sequentially("020 7946 0000")
        await expect(phone).not_to_have_attribute("aria-invalid", "true")
        await form.locator("select[name=topic]").select_option("delivery")
        await form.locator("input[name=newsletter]").check()
        await form.locator("textarea[name=question]").fill("Where is A-1009?")
        await form.locator("button[type=submit]").click()
        await expect(form).to_be_hidden()
        chat = only_chat(server)
        assert chat.customer["firstName"] == "Ada"
        assert {k: chat.user_data[k] for k in ("phonenumber", "topic", "newsletter", "question",
                                               "source")} == {
            "phonenumber": "020 7946 0000", "topic": "delivery", "newsletter": "true",
            "question": "Where is A-1009?", "source": "custom-form-page"}


@pytest.mark.conformance("WebChat.command:open")
async def test_open_takes_a_form_for_this_time(server, browser):
    async with site(server, browser) as page:
        w = widget(page)
        assert await page.evaluate("""() => acmeCommand("open", {formJSON: {inputs: [
            {id: "cx_webchat_form_nickname", name: "nickname", label: "Nickname"},
            {name: "order", label: "Order number", maxlength: "12"}]}})""") == {"resolved": True}
        form = w.locator("form.register")
        await expect(form.locator("input")).to_have_count(2)
        await form.locator("input[name=nickname]").fill("Ada")
        await form.locator("input[name=order]").fill("A-1009")
        await form.locator("button[type=submit]").click()
        await expect(form).to_be_hidden()
        chat = only_chat(server)
        assert chat.user_data["order"] == "A-1009"


@pytest.mark.conformance("WebChat.option:async.newMessageRestoreState")
async def test_a_new_message_brings_an_async_chat_back_maximized(server, browser,
                                                                 agent_factory):
    agent = await grace(server, agent_factory)
    async with site(server, browser, "async-chat.js") as page:
        w = widget(page)
        await command(page, "open", {"form": PREFILLED})
        chat_id = await offered(agent)
        await agent.client.accept(chat_id)
        await command(page, "minimize", {"minimized": True})
        await expect(w.locator(".panel")).to_be_hidden()
        await agent.client.send(chat_id, "Your parcel is on its way")
        await expect(w.locator(".panel")).to_be_visible()  # maximized, as configured
        await expect(w.locator(".msg.Agent")).to_contain_text("Your parcel is on its way")
        assert (await events(page, "minimized", "unminimized"))[-1] == "unminimized"


@pytest.mark.conformance("WebChat.option:minimizeOnMobileRestore")
async def test_on_a_phone_a_restored_chat_comes_back_minimized(server, browser):
    config = {"minimizeOnMobileRestore": True}
    phone_site = "<meta name='viewport' content='width=device-width, initial-scale=1'>"
    async with site(server, browser, config=config, head=phone_site, **PHONE_DEVICE) as page:
        w = widget(page)
        await started_by_open(page, server)
        await expect(w.locator(".panel")).to_be_visible()
        await page.reload()
        await page.wait_for_function("() => window.acmeEvents?.some(e => e.event === 'ready')")
        await expect(w.locator("button.launcher")).to_be_visible()
        await expect(w.locator(".panel")).to_be_hidden()
        assert await events(page, "opened", "minimized") == ["opened", "minimized"]
        await w.locator("button.launcher").click()
        await expect(w.locator(".log")).to_contain_text("Waiting for an agent")


@pytest.mark.conformance("WebChat.option:uploadsEnabled")
async def test_uploads_enabled_shows_the_send_file_button(server, browser):
    async with site(server, browser) as page:
        w = widget(page)
        await started_by_open(page, server)
        attach = w.locator("button.attach")
        await expect(attach).to_be_hidden()  # off unless the site turns it on
        assert await command(page, "configure", {"uploadsEnabled": True}) == {"resolved": True}
        await expect(attach).to_be_visible()
        await w.locator("input[type=file]").set_input_files(
            files=[{"name": "receipt.txt", "mimeType": "text/plain", "buffer": b"A-1009\n"}])
        await expect(w.locator(".log")).to_contain_text("receipt.txt")
        assert await command(page, "configure", {"uploadsEnabled": False}) == {"resolved": True}
        await expect(attach).to_be_hidden()
