"""CORS for the widget's cross-origin calls (protocols.md §1.1): preflights and echoed origins,
and the agent API kept to its own origin.

Two audiences, two rules:

- The customer side (chat API, CometD, the widget's modules and strings) is called from the
  sites that embed the widget, so it answers cross-origin requests from ``cors_origins``
  (``*``: any origin), echoing the origin with ``Access-Control-Allow-Credentials``: the
  Genesys widgets' CometD long-polling requests are credentialed (``withCredentials``), and a
  browser hides the answer to them without it. That lets no page read anything it could not
  anyway: no customer-side answer is authorized by a cookie alone — the secureKey and the
  clientId, which travel in the body and which a foreign page does not have, are the
  credentials; the ``BAYEUX_BROWSER`` cookie at most narrows them further.
- The agent API (``/agent/``) is same-origin: the console is served by this server. A foreign
  origin gets no CORS headers (so the browser hides every answer) unless it is listed in
  ``agent_cors_origins``, and its JSON endpoints refuse bodies that are not JSON (415), which
  also stops the cross-site ``text/plain`` form POST that needs no preflight.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

BASE_HEADERS = ("Content-Type", "apikey", "x-api-key", "gms_user", "Authorization",
                "ContactCenterId")
AGENT_PREFIX = "/agent/"
JSON_EXEMPT = ("/files",)
"""Agent API paths (endings) whose POST body is not JSON: the file upload is multipart."""


class _Policy:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.named = frozenset(o for o in origins if o != "*")

    def headers(self, origin: str) -> dict[str, str] | None:
        """The CORS headers for this origin, or None when it is not allowed."""
        if origin in self.named or self.any:
            return {"Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
        return None


def cors_middleware(origins: tuple[str, ...], extra_headers: tuple[str, ...] = (),
                    agent_origins: tuple[str, ...] = ()) -> Middleware:
    customer = _Policy(origins)
    agent = _Policy(tuple(o for o in agent_origins if o != "*"))  # never any origin
    allow_headers = ", ".join((*BASE_HEADERS, *extra_headers))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        in_agent = request.path.startswith(AGENT_PREFIX)
        policy = agent if in_agent else customer
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin and \
                "Access-Control-Request-Method" in request.headers:
            allowed = policy.headers(origin)
            if allowed is None:
                return web.Response(status=403, text="origin not allowed")
            return web.Response(status=204, headers={
                **allowed,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": allow_headers,
                "Access-Control-Max-Age": "600",
            })
        if in_agent and request.method == "POST" and request.body_exists \
                and request.content_type != "application/json" \
                and not request.path.endswith(JSON_EXEMPT):
            return web.json_response(
                {"error": {"code": "unsupported_media_type",
                           "message": "the agent API takes application/json bodies"}},
                status=415)
        response = await handler(request)
        if origin and not response.prepared:
            allowed = policy.headers(origin)
            if allowed is not None:
                response.headers.update(allowed)
        return response

    return middleware
