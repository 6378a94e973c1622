"""``webchat serve``: the chat server, one process or several (``--workers``).

Alone it keeps everything in an embedded SQLite file and tells its parts what changed in
memory. Beyond one process (``--workers N`` on one host, or many hosts behind a load
balancer) every process uses the same PostgreSQL (``--store``) and Redis (``--broker``). Every
option can also come from ``WEBCHAT_<OPTION>`` or a ``--config`` TOML file
(:mod:`webchat.cli.settings`; documented in docs/configuration.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import click
from aiohttp import web
from rich.console import Console

from webchat import broker as brokers
from webchat import store as stores
from webchat.broker.base import default_node_id
from webchat.broker.memory import MemoryBroker
from webchat.broker.redis import RedisBroker
from webchat.cli.settings import configurable
from webchat.cli.workers import Supervisor
from webchat.protocol.bayeux.server import ServerOptions as CometdOptions
from webchat.server import ServerConfig, build_app, gc_policy
from webchat.server.app import ACCOUNTS, ENGINE
from webchat.server.config import HttpErrorMode, Limits
from webchat.server.connections import make_runner

if TYPE_CHECKING:
    from webchat.cli.bot import Bot


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


def _gc_thresholds(value: str) -> tuple[int, int, int] | None:
    try:
        return gc_policy.parse_thresholds(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gc-thresholds") from None


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
"""``--host`` values that listen on every address, and so name none peers could use."""


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _advertise_url(_ctx: click.Context, _param: click.Parameter, value: str | None
                   ) -> str | None:
    """``--advertise-url`` checked: an http(s) URL of a host (and port), nothing more."""
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname \
            or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise click.BadParameter(f"expected http://HOST:PORT, got {value!r}")
    return urlunsplit(parts._replace(path="")).rstrip("/")


@configurable
@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--data-dir", default="./data", show_default=True,
              help="Where the SQLite database (without --store) and uploaded files live.")
@click.option("--store", "store_url", metavar="URL",
              help="Where chats, accounts and tokens live: sqlite:///path/file.sqlite3 or "
                   "postgresql://user@host:port/database (shared by every process). Default: "
                   "SQLite in --data-dir.")
@click.option("--broker", "broker_url", metavar="URL",
              help="How processes tell each other what changed: redis://host:port/db (also "
                   "rediss://, unix://). Default: in this process only (memory).")
@click.option("--node-id", metavar="NAME",
              help="This process's name in the cluster, shown by /healthz; with --workers, "
                   "NAME-<n> for worker n. Default: <hostname>-<pid>.")
@click.option("--advertise-url", metavar="URL", callback=_advertise_url,
              help="Where the other processes of a cluster reach this one: a CometD "
                   "long-polling request the load balancer sent to another process for a "
                   "session of this one is passed on to it there. Default: http://HOST:PORT "
                   "of --host and --port, unless --host is 0.0.0.0 or ::. With --workers, "
                   "each worker also listens on a port of its own (chosen by the system, on "
                   "--host) and advertises it with this URL's host.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Server processes sharing --port (SO_REUSEPORT), restarted if one dies. "
                   "More than 1 needs --store postgresql://... and --broker redis://...")
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
@click.option("--trust-forwarded-for", is_flag=True,
              help="Take each client's address (for the per-address limits) from the first "
                   "X-Forwarded-For hop: only behind a load balancer that sets that header, "
                   "else a client could choose its own address.")
@click.option("--drain-timeout", default=10.0, show_default=True, type=float,
              help="Seconds a stop (SIGTERM) may spend draining: /readyz says draining, no "
                   "new connections, CometD clients told to reconnect (elsewhere, behind a "
                   "load balancer) with nothing queued lost, requests in flight finished.")
@click.option("--gc-thresholds", default=",".join(map(str, gc_policy.DEFAULT_THRESHOLDS)),
              show_default=True, metavar="G0,G1,G2|default",
              help="The garbage collector's thresholds (gc.set_threshold) in each server "
                   "process, after freezing what start-up built; 'default' keeps Python's "
                   "700,10,10, whose full collections pause a busy server for a second. See "
                   "docs/configuration.md.")
@click.option("--gc-pace", default=gc_policy.DEFAULT_PACE_S, show_default=True,
              type=click.FloatRange(min=0),
              metavar="SECONDS",
              help="Collect the garbage collector's young generation this often, on a "
                   "clock, rather than every G0 allocations (which then only bound a burst); "
                   "0 collects by the thresholds alone. See docs/configuration.md.")
@click.option("--with-bot", is_flag=True, help="Also run an echo bot agent in this process.")
def serve_command(host: str, port: int, data_dir: str, store_url: str | None,
                  broker_url: str | None, node_id: str | None, advertise_url: str | None,
                  workers: int, services: tuple[str, ...],
                  agents: tuple[str, ...], api_keys: tuple[str, ...],
                  cors_origins: tuple[str, ...], agent_cors_origins: tuple[str, ...],
                  http_errors: str, strict_fields: bool,
                  typing_timeout: float, cometd_browser_cookie: bool, cometd_broadcast: bool,
                  chat_ntf_cookie: bool, header_timeout: float, body_timeout: float,
                  max_message_chars: int,
                  offer_timeout: float, chat_start_rate: str, cometd_handshake_rate: str,
                  async_user_data_key: str, trust_forwarded_for: bool,
                  drain_timeout: float, gc_thresholds: str, gc_pace: float,
                  with_bot: bool) -> None:
    """Run the chat server.

    Every option can also be set as an environment variable WEBCHAT_<OPTION> (--data-dir is
    WEBCHAT_DATA_DIR; a repeatable option takes space-separated values) or in the TOML file
    of --config (data-dir = "/var/lib/webchat"; a list for a repeatable option). The command
    line wins over the environment, which wins over the file. See docs/configuration.md.
    """
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
        async_user_data_key=async_user_data_key, trust_forwarded_for=trust_forwarded_for,
        drain_timeout_s=drain_timeout)
    launch = Launch(config, host, port, store_url, broker_url,
                    tuple(_agent_pair(a) for a in agents), with_bot, node_id, workers,
                    logging.getLogger().level, advertise_url, _gc_thresholds(gc_thresholds),
                    gc_pace)
    _check(launch)
    if workers == 1:
        run(_serve(launch))
        return
    supervisor = Supervisor(functools.partial(_worker, launch), workers,
                            on_ready=functools.partial(_print_banner, launch))
    sys.exit(supervisor.run())


@dataclass(frozen=True)
class Launch:
    """What a server process is started with: picklable, for the spawned workers."""

    config: ServerConfig
    host: str
    port: int
    store_url: str | None
    broker_url: str | None
    agents: tuple[tuple[str, str], ...]
    with_bot: bool
    node_id: str | None
    workers: int
    log_level: int
    advertise_url: str | None = None
    """``--advertise-url`` as given (normalized), or None for the default."""
    gc_thresholds: tuple[int, int, int] | None = gc_policy.DEFAULT_THRESHOLDS
    """``--gc-thresholds``; None keeps Python's."""
    gc_pace_s: float = gc_policy.DEFAULT_PACE_S
    """``--gc-pace``; 0 collects by the thresholds alone."""

    def backends(self) -> tuple[stores.Store, brokers.Broker]:
        """A new store and broker as ``--store`` and ``--broker`` say (not yet opened)."""
        try:
            store = stores.from_url(self.store_url, self.config.data_dir)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--store") from None
        try:
            broker = brokers.from_url(self.broker_url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--broker") from None
        return store, broker

    def node(self, slot: int | None) -> str:
        """This process's node id: worker ``slot``'s, or the single process's."""
        if self.node_id is None:
            return default_node_id()
        return self.node_id if slot is None else f"{self.node_id}-{slot}"

    def advertise(self, slot: int | None) -> tuple[str | None, socket.socket | None]:
        """The URL this process's cluster peers reach it at (None: they cannot), and, for
        a worker, the socket of its own it listens on for them: the shared port reaches
        whichever worker the kernel picks, never one in particular. (So does a process on
        ``--port 0``, whose port is known only once it listens.)"""
        url = self.advertise_url
        if url is None and self.host not in WILDCARD_HOSTS:
            url = f"http://{_netloc(self.host, self.port)}"
        if url is None or (slot is None and self.port):
            return url, None
        parts = urlsplit(url)
        own = socket.create_server(
            (self.host, 0), family=socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        port = own.getsockname()[1]
        return urlunsplit(parts._replace(netloc=_netloc(parts.hostname or "", port))), own


def _check(launch: Launch) -> None:
    """Refuse, before starting anything, what cannot work (bad URLs, workers that could not
    share their state)."""
    store, broker = launch.backends()
    if launch.workers == 1:
        return
    if store.dialect == "sqlite" or isinstance(broker, MemoryBroker):
        raise click.UsageError(
            f"--workers {launch.workers} needs a store and a broker that every process "
            "shares: --store postgresql://... and --broker redis://... (a SQLite file has "
            "one writer, in one process, and the memory broker reaches only its own process)")
    if launch.port == 0:
        raise click.UsageError("--workers needs a fixed --port to share (not 0)")


def hidden_password(url: str) -> str:
    """``url`` with its password, if any, as ``***``: for banners, logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def _print_banner(launch: Launch, pids: list[int] | None = None) -> None:
    """Where everything is, once the server (every worker) listens."""
    console = Console(highlight=False, soft_wrap=True)
    config = launch.config
    base = f"http://{launch.host}:{launch.port}"
    console.print(f"demo site   {base}/   (chat widget; ?transport=websocket|long-polling|rest)")
    console.print(f"console     {base}/agent   (agent console: log in, tick Ready, answer chats)")
    for service in config.services:
        console.print(f"chat API    {base}{config.api_prefix}/2/chat/{service}")
    console.print(f"CometD      {base}{config.api_prefix}/cometd   (channel /service/chatV2/"
                  f"{config.services[0]})")
    console.print(f"agent API   {base}/agent/v1   (OpenAPI: {base}/openapi.json)")
    if launch.store_url is None:
        console.print(f"data        {config.data_dir}")
    else:
        console.print(f"store       {hidden_password(launch.store_url)}")
    if launch.broker_url is not None:
        console.print(f"broker      {hidden_password(launch.broker_url)}")
    if pids is not None:
        console.print(f"workers     {len(pids)} processes sharing port {launch.port} "
                      f"(pids {' '.join(map(str, pids))})")
    console.print(f"chat with it: webchat chat --url {base}{config.api_prefix}/2/chat/"
                  f"{config.services[0]} --name 'Your Name'")


def _worker(launch: Launch, slot: int, lifeline: Connection) -> None:
    """A worker process of ``--workers`` (see :mod:`webchat.cli.workers`)."""
    from webchat.cli.main import configure_logging, run

    configure_logging(launch.log_level)
    run(_serve(launch, slot=slot, lifeline=lifeline))


async def _serve(launch: Launch, *, slot: int | None = None,
                 lifeline: Connection | None = None) -> None:
    """One server process: alone (``slot`` None) or worker ``slot`` of ``--workers``. The
    first (alone, or worker 0) also sets up the accounts and runs the echo bot: one process
    doing it means one generated password, printed once."""
    console = Console(highlight=False, soft_wrap=True)
    config = replace(launch.config, node_id=launch.node(slot))
    store, broker = launch.backends()
    own: socket.socket | None = None
    if isinstance(broker, MemoryBroker):  # alone: the broker is this process's fan-out
        app = build_app(config, store=store, broker=broker)
    else:  # shared: it carries the cluster's commits and news; fan-out stays in memory
        advertised, own = launch.advertise(slot)
        config = replace(config, advertise_url=advertised)
        lease = broker.lease() if isinstance(broker, RedisBroker) else None
        app = build_app(config, store=store, cluster=broker, leadership=lease)
    runner = make_runner(app, config, handle_signals=False, access_log=None)
    await runner.setup()
    gc_policy.pauses().report_on(asyncio.get_running_loop())  # long pauses: warnings
    gc_policy.tune(launch.gc_thresholds, launch.gc_pace_s)
    pacer = gc_policy.Pacer(launch.gc_pace_s) if launch.gc_pace_s > 0 else None
    if pacer is not None:
        pacer.start()
    first = not slot
    bot_task = None
    try:
        bot = await _set_up_accounts(app, launch, console) if first else None
        if own is not None:  # before the shared port: peers may need it from then on
            await web.SockSite(runner, own).start()
        site = web.TCPSite(runner, launch.host, launch.port, reuse_port=slot is not None)
        await site.start()
        if bot is not None:  # only now: its login before the server listened would be refused
            bot_task = asyncio.create_task(bot.run())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if lifeline is None:
            _print_banner(launch)
        else:
            lifeline.send(os.getpid())
            # The parent never writes: readable means closed, the supervisor gone.
            loop.add_reader(lifeline.fileno(), stop.set)
        await stop.wait()
    finally:
        if bot_task is not None:
            bot_task.cancel()
        if pacer is not None:
            pacer.stop()
        await runner.cleanup()


async def _set_up_accounts(app: web.Application, launch: Launch, console: Console
                           ) -> Bot | None:
    """``--agent`` accounts, an ``agent`` account with a new password when there is none at
    all, and the echo bot's account and the bot to run (when ``--with-bot``)."""
    accounts = app[ACCOUNTS]
    for name, password in launch.agents:
        await accounts.upsert(name, password)
    if not app[ENGINE].has_agents():
        password = secrets.token_urlsafe(9)
        await accounts.upsert("agent", password, "Agent")
        console.print(f"created agent account [bold]agent[/] with password [bold]{password}[/]")
    if not launch.with_bot:
        return None
    from webchat.cli.bot import Bot

    bot_password = secrets.token_urlsafe(12)
    await accounts.upsert("echo-bot", bot_password, "Echo bot")
    bot = Bot(f"http://{launch.host}:{launch.port}", "echo-bot", bot_password, capacity=1000)
    console.print("echo bot    logged in as echo-bot")
    return bot
