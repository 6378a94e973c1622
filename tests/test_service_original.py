"""What the original Genesys Widgets 8.5 WebChatService sends that its callers do not pass:
the page context (``_genesys_*``) it adds to every chat's userData — checked where it lands,
on the server."""

from __future__ import annotations

import platform

import pytest

import webchat
from tests.conftest import accepted_chat


@pytest.mark.conformance("command:startChat", "option:userData")
async def test_start_chat_sends_the_page_context_under_the_callers_user_data(
        server, customer_factory, agent_factory):
    plain = await customer_factory(server.data_url)
    agent, chat_id = await accepted_chat(server, plain, agent_factory)
    context = {"_genesys_source": "api", "_genesys_referrer": "", "_genesys_url": "",
               "_genesys_pageTitle": "", "_genesys_OS": platform.system(),
               "_genesys_browser": f"webchat-python/{webchat.__version__}"}
    assert server.engine.chats[chat_id].user_data == context
    assert (await agent.client.chat(chat_id))["userData"] == context  # agents see it
    # Configured userData wins over the context, the caller's over both.
    page = await customer_factory(server.data_url, userData={
        "_genesys_url": "https://shop.example/cart", "_genesys_source": "kiosk"})
    chat_id = (await page.command("startChat", {"nickname": "Bo", "userData": {
        "_genesys_source": "till", "orderId": "A-1"}}))["chatId"]
    assert server.engine.chats[chat_id].user_data == {
        **context, "_genesys_url": "https://shop.example/cart", "_genesys_source": "till",
        "orderId": "A-1"}
