"""CORS for the widget's cross-origin calls (protocols.md §1.1): preflights and echoed origins.

The allowed origin is echoed rather than answered with ``*`` so that credentialed requests
(the widgets' ``xhrFields.withCredentials``) work too.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

BASE_HEADERS = ("Content-Type", "apikey", "x-api-key", "gms_user", "Authorization",
                "ContactCenterId")


def cors_middleware(origins: tuple[str, ...], extra_headers: tuple[str, ...] = ()
                    ) -> Middleware:
    allow_any = "*" in origins
    allowed = frozenset(origins)
    headers = ", ".join((*BASE_HEADERS, *extra_headers))

    def origin_ok(origin: str) -> bool:
        return allow_any or origin in allowed

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin and \
                "Access-Control-Request-Method" in request.headers:
            if not origin_ok(origin):
                return web.Response(status=403, text="origin not allowed")
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": headers,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            })
        response = await handler(request)
        if origin and origin_ok(origin) and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    return middleware
