"""What one HTTP connection may cost before the application sees a request, and the headers
every response carries.

- The request head must be complete within ``header_timeout_s`` of the connection opening or
  of its previous response: aiohttp's ``keepalive_timeout`` is armed when the connection is
  made and is not extended while a head trickles in, so one setting bounds both idle
  keep-alive connections and slow headers.
- The body must be complete within ``body_timeout_s`` of its head (:func:`body_deadline`).
  A slow body and a truncated one (a ``Content-Length`` larger than what is sent, a chunked
  body without its last chunk) look the same until then; both get HTTP 408 and the connection
  is closed.
- A client that goes away mid-body is not an error of ours: no traceback, nothing answered.
- ``Server`` names no versions; JSON and JavaScript are sent with ``nosniff``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from webchat.server.config import ServerConfig
from webchat.server.ops import DrainingRunner

log = logging.getLogger(__name__)

SERVER = "webchat"
_NOSNIFF_TYPES = ("application/json", "text/javascript", "application/javascript")


class BodyTimeout(TimeoutError):
    """The request body did not arrive in time. A TimeoutError so that aiohttp's own
    lingering read after the response stops on it quietly and closes the connection."""


def body_deadline(timeout_s: float) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        content = request.content

        def expire() -> None:
            if not content.is_eof():
                content.set_exception(BodyTimeout(f"request body not complete in {timeout_s} s"))

        timer = asyncio.get_running_loop().call_later(timeout_s, expire)
        try:
            return await handler(request)
        except BodyTimeout:
            return web.Response(status=408, text="request body not received in time",
                                headers={"Connection": "close"})
        except ConnectionResetError:
            if request.transport is not None and not request.transport.is_closing():
                raise
            log.debug("client went away during %s %s", request.method, request.path)
            return web.Response(status=400, text="connection lost")  # nobody to read it
        finally:
            timer.cancel()

    return middleware


async def response_headers(_: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: one place for the headers of every response."""
    response.headers["Server"] = SERVER
    if response.content_type in _NOSNIFF_TYPES:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


def make_runner(app: web.Application, config: ServerConfig, **options: Any) -> web.AppRunner:
    """The runner for :func:`webchat.server.build_app`'s app, with the head deadline; its
    ``cleanup()`` drains first (:mod:`webchat.server.ops`)."""
    return DrainingRunner(app, keepalive_timeout=config.header_timeout_s,
                          shutdown_timeout=config.drain_timeout_s, **options)
