"""``webchat serve``: the chat server with its embedded SQLite store."""

from __future__ import annotations

import asyncio
import secrets
import signal

import click
from aiohttp import web
from rich.console import Console

from webchat.protocol.bayeux.server import ServerOptions as CometdOptions
from webchat.server import ServerConfig, build_app
from webchat.server.app import ACCOUNTS, ENGINE
from webchat.server.config import HttpErrorMode, Limits
from webchat.server.connections import make_runner


def _agent_pair(value: str) -> tuple[str, str]:
    name, sep, password = value.partition(":")
    if not sep or not name or not password:
        raise click.BadParameter(f"expected NAME:PASSWORD, got {value!r}")
    return name, password


def _rate(value: str) -> tuple[float, int]:
    try:
        rate, burst = value.split(":")
        return float(rate), int(burst)
    except ValueError:
        raise click.BadParameter(f"expected PER_S:BURST, got {value!r}") from None


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--data-dir", default="./data", show_default=True,
              help="Where the SQLite database lives.")
@click.option("--service", "services", multiple=True, default=["customer-support"],
              show_default=True, help="Chat service names (repeatable).")
@click.option("--agent", "agents", multiple=True, metavar="NAME:PASSWORD",
              help="Create or update an agent account (repeatable).")
@click.option("--api-key", "api_keys", multiple=True,
              help="Require this apikey (header apikey or x-api-key) on REST chat and "
                   "chat-ntf calls, downloads excepted (repeatable). CometD publishes carry "
                   "no key (the Genesys widgets send none there): they are guarded by the "
                   "per-address and per-chat limits.")
@click.option("--cors-origin", "cors_origins", multiple=True, default=["*"], show_default=True,
              help="Origins whose pages may use the chat API and CometD (repeatable); * is any "
                   "origin, without credentials; a named origin also gets credentials.")
@click.option("--agent-cors-origin", "agent_cors_origins", multiple=True,
              help="A foreign origin allowed to call the agent API (repeatable); none by "
                   "default: the agent API is same-origin.")
@click.option("--http-errors", type=click.Choice([m.value for m in HttpErrorMode]),
              default="gms", show_default=True,
              help="HTTP status of refusals: gms = 400 with errors[] (what the Genesys widgets "
                   "read), strict = a 4xx/5xx per kind, lenient = always 200.")
@click.option("--strict-fields", is_flag=True,
              help="Refuse fields an operation does not know (1005) instead of ignoring them "
                   "as GMS does; for developing clients.")
@click.option("--typing-timeout", default=10.0, show_default=True, type=float,
              help="Seconds after which a customer's typing that nothing followed ends.")
@click.option("--cometd-browser-cookie", is_flag=True,
              help="CometD long-polling requests must carry the session's BAYEUX_BROWSER "
                   "cookie, not only its clientId (breaks cross-origin long-polling).")
@click.option("--cometd-broadcast", is_flag=True,
              help="Let CometD clients publish to broadcast channels (pub/sub rooms, as in the "
                   "CometD benchmark). Off by default: GMS chat needs none, and it would make "
                   "the server an open relay to every /** subscriber.")
@click.option("--chat-ntf-cookie", is_flag=True,
              help="CometD file requests (chat-ntf) also need the BAYEUX_BROWSER cookie of a "
                   "session following the chat (breaks the Genesys widgets cross-origin).")
@click.option("--header-timeout", default=10.0, show_default=True, type=float,
              help="Seconds a connection has to send a complete request head (and how long "
                   "an idle keep-alive connection stays open).")
@click.option("--body-timeout", default=30.0, show_default=True, type=float,
              help="Seconds a request body has to arrive completely (else 408).")
@click.option("--max-message-chars", default=4096, show_default=True, type=int)
@click.option("--offer-timeout", default=30.0, show_default=True, type=float,
              help="Seconds an agent has to accept an offered chat.")
@click.option("--chat-start-rate", default="1:20", show_default=True, metavar="PER_S:BURST",
              help="Chats one client address may request: sustained per second and burst.")
@click.option("--cometd-handshake-rate", default="5:50", show_default=True,
              metavar="PER_S:BURST", help="Bayeux handshakes one client address may make.")
@click.option("--async-user-data-key", default="GCTI_Chat_AsyncMode", show_default=True,
              help="userData key (\"true\") marking an asynchronous chat; must match the "
                   "clients' webchat.async.userDataKey.")
@click.option("--with-bot", is_flag=True, help="Also run an echo bot agent in this process.")
def serve_command(host: str, port: int, data_dir: str, services: tuple[str, ...],
                  agents: tuple[str, ...], api_keys: tuple[str, ...],
                  cors_origins: tuple[str, ...], agent_cors_origins: tuple[str, ...],
                  http_errors: str, strict_fields: bool,
                  typing_timeout: float, cometd_browser_cookie: bool, cometd_broadcast: bool,
                  chat_ntf_cookie: bool, header_timeout: float, body_timeout: float,
                  max_message_chars: int,
                  offer_timeout: float, chat_start_rate: str, cometd_handshake_rate: str,
                  async_user_data_key: str, with_bot: bool) -> None:
    """Run the chat server."""
    from webchat.cli.main import run

    start_rate = _rate(chat_start_rate)
    config = ServerConfig(
        data_dir=data_dir, services=services, api_keys=api_keys, cors_origins=cors_origins,
        agent_cors_origins=agent_cors_origins, header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
        http_errors=HttpErrorMode(http_errors), strict_fields=strict_fields,
        typing_timeout_s=typing_timeout, chat_ntf_requires_cookie=chat_ntf_cookie,
        cometd=CometdOptions(require_browser_cookie=cometd_browser_cookie,
                             broadcast=cometd_broadcast),
        offer_timeout_s=offer_timeout,
        limits=Limits(max_message_chars=max_message_chars, request_chat_rate=start_rate),
        cometd_handshake_rate=_rate(cometd_handshake_rate),
        async_user_data_key=async_user_data_key)
    run(_serve(config, host, port, [_agent_pair(a) for a in agents], with_bot))


async def _serve(config: ServerConfig, host: str, port: int,
                 agents: list[tuple[str, str]], with_bot: bool) -> None:
    console = Console(highlight=False, soft_wrap=True)
    app = build_app(config)
    runner = make_runner(app, config, handle_signals=False, access_log=None)
    await runner.setup()
    accounts = app[ACCOUNTS]
    for name, password in agents:
        await accounts.upsert(name, password)
    engine = app[ENGINE]
    if not engine.has_agents():
        password = secrets.token_urlsafe(9)
        await accounts.upsert("agent", password, "Agent")
        console.print(f"created agent account [bold]agent[/] with password [bold]{password}[/]")
    site = web.TCPSite(runner, host, port)
    await site.start()
    base = f"http://{host}:{port}"
    console.print(f"demo site   {base}/   (chat widget; ?transport=websocket|long-polling|rest)")
    console.print(f"console     {base}/agent   (agent console: log in, tick Ready, answer chats)")
    for service in config.services:
        console.print(f"chat API    {base}{config.api_prefix}/2/chat/{service}")
    console.print(f"CometD      {base}{config.api_prefix}/cometd   (channel /service/chatV2/"
                  f"{config.services[0]})")
    console.print(f"agent API   {base}/agent/v1   (OpenAPI: {base}/openapi.json)")
    console.print(f"data        {config.data_dir}")
    bot_task = None
    if with_bot:
        from webchat.cli.bot import Bot

        bot_password = secrets.token_urlsafe(12)
        await accounts.upsert("echo-bot", bot_password, "Echo bot")
        bot = Bot(base, "echo-bot", bot_password, capacity=1000)
        bot_task = asyncio.create_task(bot.run())
        console.print("echo bot    logged in as echo-bot")
    console.print(f"chat with it: webchat chat --url {base}{config.api_prefix}/2/chat/"
                  f"{config.services[0]} --name 'Your Name'")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if bot_task is not None:
            bot_task.cancel()
        await runner.cleanup()
