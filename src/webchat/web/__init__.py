"""The browser side, served by the chat server: the demo site (``/``), the agent console
(``/agent``), the widget and its WebChatService as plain ES modules (``/webchat/...``), and the
widget's strings per language (``/webchat/i18n/{lang}.json``, from the gettext catalogs).

Pages are sent with a Content-Security-Policy that allows scripts and styles from this origin
only: no inline script, no eval, so a message that slipped through as markup still could not run.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from webchat import locale
from webchat.web import vendor

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# worker-src blob: — the CometD client runs its timers in a Worker it builds from a Blob.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self' ws: wss:; worker-src 'self' blob:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _page(name: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name, headers=PAGE_HEADERS)
    return handler


def _demo_page(service: str, api_prefix: str) -> Handler:
    """The demo site, told which chat service and URL prefix this server runs: the page's
    configuration script reads them from the root element (no inline script under the CSP)."""
    text = (STATIC / "index.html").read_text(encoding="utf-8").replace(
        "<html lang=\"en\">",
        f"<html lang=\"en\" data-service=\"{html.escape(service)}\" "
        f"data-api-prefix=\"{html.escape(api_prefix)}\">", 1)

    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/html", headers=PAGE_HEADERS)
    return handler


async def _strings(request: web.Request) -> web.Response:
    lang = locale.negotiate(request.match_info["lang"])
    return web.json_response(locale.widget_strings(lang),
                             headers={"Cache-Control": "public, max-age=300"})


async def _no_icon(_: web.Request) -> web.Response:
    return web.Response(status=204)


def add_routes(app: web.Application, *, service: str, api_prefix: str) -> None:
    if absent := vendor.missing():
        log.error("the browser's CometD client is missing (%s not in %s): every customer's "
                  "widget will chat over REST polling, never CometD. Run scripts/setup in a "
                  "clone, or install a complete webchat package", ", ".join(absent),
                  vendor.VENDOR)
    app.router.add_get("/", _demo_page(service, api_prefix))
    app.router.add_get("/agent", _page("agent.html"))
    app.router.add_get("/favicon.ico", _no_icon)
    app.router.add_get("/webchat/i18n/{lang}.json", _strings)
    app.router.add_static("/webchat/", STATIC, show_index=False, follow_symlinks=False,
                          append_version=False)
