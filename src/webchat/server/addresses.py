"""Who is asking: the client address every per-address rule (rate limits, flood guards) keys on.

One function for every surface (REST, CometD over HTTP and WebSocket), so a trusted proxy's
``X-Forwarded-For`` counts on all of them or on none.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

ClientAddress = Callable[[web.Request], str]


def client_address(trust_forwarded_for: bool) -> ClientAddress:
    """The address of a request's client: the first ``X-Forwarded-For`` hop when the server
    sits behind a proxy it trusts (``trust_forwarded_for``), else the peer address."""

    def address(request: web.Request) -> str:
        if trust_forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For", "")
            if forwarded:
                return forwarded.split(",")[0].strip()[:64]
        return request.remote or "?"

    return address


#: The ``ServerSession.attachments`` key holding the address that handshook the session.
CLIENT = "client"
