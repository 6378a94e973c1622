"""Assembles the aiohttp application: storage, broker, engine and the HTTP surfaces."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from webchat import web as web_pages
from webchat.broker.base import Broker
from webchat.broker.lease import Lease
from webchat.broker.memory import MemoryBroker
from webchat.protocol.gms.errors import ErrorCode
from webchat.server import metrics, ops
from webchat.server.accounts import Accounts
from webchat.server.addresses import client_address
from webchat.server.agent_api import PREFIX as AGENT_PREFIX
from webchat.server.agent_api import AgentApi, chat_error_body, error_body
from webchat.server.chat_api import ChatApi
from webchat.server.cometd import CometdEndpoint
from webchat.server.cometd_chat import ChatChannel
from webchat.server.config import ServerConfig
from webchat.server.connections import body_deadline, response_headers
from webchat.server.cors import cors_middleware
from webchat.server.engine import ChatEngine, Clock, wall_clock
from webchat.server.errors import ChatError
from webchat.server.gms.gateway import Gateway
from webchat.server.openapi import openapi_document
from webchat.store.base import Store
from webchat.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

ENGINE: web.AppKey[ChatEngine] = web.AppKey("engine", ChatEngine)
ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts", Accounts)
CHAT_API: web.AppKey[ChatApi] = web.AppKey("chat_api", ChatApi)
AGENT_API: web.AppKey[AgentApi] = web.AppKey("agent_api", AgentApi)
COMETD: web.AppKey[CometdEndpoint] = web.AppKey("cometd", CometdEndpoint)


def _error_middleware(chat_api: ChatApi) -> Middleware:
    """Answer every failure under the API prefixes in that API's own error shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        in_chat = path.startswith(chat_api.base)
        in_agent = path.startswith(AGENT_PREFIX)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or not (in_chat or in_agent):
                raise
            if in_chat:
                code = ErrorCode.UNKNOWN_OPERATION if exc.status in (404, 405) \
                    else ErrorCode.MALFORMED_REQUEST
                if exc.status == 413:
                    code = ErrorCode.TOO_LARGE
                resp = chat_api.error(ChatError(code, f"{exc.reason}: {request.method} {path}"))
                if exc.status == 405:
                    resp.set_status(405)
            else:
                resp = error_body("http_error", exc.reason, exc.status)
            if "Allow" in exc.headers:  # a 405 names what is allowed (RFC 9110 §15.5.6)
                resp.headers["Allow"] = exc.headers["Allow"]
            return resp
        except ChatError as exc:
            # A domain refusal no adapter mapped (an agent writing to a full transcript).
            if in_agent:
                return chat_error_body(exc)
            if in_chat:
                return chat_api.error(exc)
            raise
        except Exception:
            log.exception("unhandled error in %s %s", request.method, path)
            if in_chat:
                return chat_api.error(ChatError(ErrorCode.INTERNAL, "internal server error"))
            if in_agent:
                return error_body("internal", "internal server error", 500)
            raise

    return middleware


def build_app(config: ServerConfig, *, store: Store | None = None,
              broker: Broker | None = None, clock: Clock = wall_clock,
              cluster: Broker | None = None, leadership: Lease | None = None
              ) -> web.Application:
    """``broker``: this process's fan-out (in memory by default). ``cluster``: the broker
    the processes of a cluster share (Redis), with ``leadership`` saying which of them runs
    routing and timers; both None for one process."""
    store = store or SqliteStore(Path(config.data_dir) / "webchat.sqlite3")
    broker = broker or MemoryBroker()
    engine = ChatEngine(store, broker, config, clock, cluster=cluster, leadership=leadership,
                        node=config.node_id)
    services: list[Broker | Lease] = [s for s in (cluster, leadership) if s is not None]
    accounts = Accounts(engine, store)
    gateway = Gateway(engine, config)
    chat_api = ChatApi(gateway, config)
    agent_api = AgentApi(engine, accounts)
    forwarder = None
    if cluster is not None:  # imported only then: a process alone loads no Redis client
        from webchat.server.cometd_forward import for_cluster

        forwarder = for_cluster(cluster, config)
    cometd = CometdEndpoint(f"{config.api_prefix}/cometd", config.cometd,
                            max_body_bytes=config.limits.max_body_bytes,
                            handshake_rate=config.cometd_handshake_rate,
                            client_address=client_address(config.trust_forwarded_for),
                            forwarder=forwarder)
    channel = ChatChannel(gateway, cometd)
    chat_api.bayeux_follows = channel.followed_by

    app = web.Application(
        client_max_size=config.limits.max_body_bytes,
        middlewares=[cors_middleware(config.cors_origins, config.cors_extra_headers,
                                     config.agent_cors_origins),
                     _error_middleware(chat_api), body_deadline(config.body_timeout_s)])
    app.on_response_prepare.append(response_headers)
    app[ENGINE] = engine
    app[ACCOUNTS] = accounts
    app[CHAT_API] = chat_api
    app[AGENT_API] = agent_api
    app[COMETD] = cometd
    chat_api.add_routes(app)
    cometd.add_routes(app)
    agent_api.add_routes(app)

    document = openapi_document(config)

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document)

    async def health(_: web.Request) -> web.Response:
        # node and pid: which process answered, behind a load balancer or a shared port.
        return web.json_response({**engine.health(), "node": config.node_id,
                                  "pid": os.getpid()})

    web_pages.add_routes(app, service=config.services[0], api_prefix=config.api_prefix)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/healthz", health)
    # Operations: /readyz, the drain before a stop, /metrics (server/ops.py, server/metrics.py).
    # Ready means the shared broker answers, when there is one.
    readiness = ops.install(app, store, cluster or broker, config.drain_timeout_s, [cometd])
    metrics.install(app, engine, cometd, chat_api, readiness)

    async def startup(_: web.Application) -> None:
        await store.open()
        await broker.start()
        for service in services:
            await service.start()
        await engine.start()
        await cometd.start()

    async def cleanup(_: web.Application) -> None:
        await agent_api.close()
        await cometd.stop()
        await engine.stop()
        for service in reversed(services):
            await service.stop()
        await broker.stop()
        await store.close()
        accounts.close()

    app.on_startup.append(startup)
    app.on_shutdown.append(lambda _: agent_api.close())
    app.on_shutdown.append(lambda _: cometd.stop())
    app.on_cleanup.append(cleanup)
    return app
