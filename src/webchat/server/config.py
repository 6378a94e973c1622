"""Server settings. Every limit a client can run into is here, with its default."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from webchat.broker.base import default_node_id
from webchat.protocol.bayeux.server import ServerOptions as CometdOptions
from webchat.server.files import FileLimits
from webchat.server.inactivity import InactivityConfig


class HttpErrorMode(enum.StrEnum):
    """How errors map to HTTP statuses (protocols.md §1.9 leaves GMS's own choice unknown)."""

    GMS = "gms"
    """HTTP 400 for every refusal, with ``errors[]``: the only non-200 status the Genesys
    widgets read a refusal from (they show nothing for a 403, 429 or 503)."""
    STRICT = "strict"
    """4xx statuses: 400 validation, 403 unknown chat or bad key, 409 ended, 429 rate limit."""
    LENIENT = "lenient"
    """Always HTTP 200 with the error in the body, as some GMS deployments answer."""


@dataclass
class Limits:
    max_message_chars: int = 4096
    max_name_chars: int = 128
    max_subject_chars: int = 512
    max_email_chars: int = 254
    max_url_chars: int = 2048
    max_user_data_keys: int = 64
    max_user_data_key_chars: int = 128
    max_user_data_value_chars: int = 4096
    max_user_data_total_chars: int = 16 * 1024
    """A chat's userData in all (keys and values, after every update): it travels with the
    chat to every agent console's queue, so 150 chats of 234 kB each made one queue fetch
    33.6 MB. Enforced by the engine, the one place a chat's userData changes."""
    max_file_description_chars: int = 256
    """A file's description, from the customer (``userData[file-description]``) or an agent."""
    max_body_bytes: int = 256 * 1024
    max_form_fields: int = 200
    max_queue_per_service: int = 10_000
    max_chat_events: int = 10_000
    max_chat_bytes: int = 2 * 1024 * 1024
    """A chat's transcript, in events and in bytes of their JSON: past either, what a
    participant says is refused (1017), so no chat grows without end (joining, leaving and the
    server's notices still go in, so a full chat can still be answered and closed)."""
    # Token buckets: (sustained per second, burst).
    request_chat_rate: tuple[float, int] = (1.0, 20)
    chat_op_rate: tuple[float, int] = (20.0, 60)
    login_rate_per_name: tuple[float, int] = (1 / 60, 10)
    login_rate_per_address: tuple[float, int] = (0.2, 30)
    """Failed agent logins (a successful one gives its token back): per agent name and per
    client address. Once either runs dry the login is refused (429) before any password is
    checked, so guessing is slow and cannot tie up the password hashing."""
    queue_page_size: int = 50
    max_queue_page_size: int = 200
    """``GET /agent/v1/queue`` answers pages: ``limit`` defaults to the first, at most the
    second, so a console fetches what it shows, not every waiting chat."""


@dataclass
class ServerConfig:
    data_dir: str = "./data"
    node_id: str = field(default_factory=default_node_id)
    """This process's name in the cluster (``/healthz`` says it, so which process answered a
    request through a load balancer can be seen; replication skips its own commits by it).
    Must differ between processes."""
    advertise_url: str | None = None
    """Where the other processes of a cluster reach this one (``http://10.0.0.5:8080``): they
    pass it the CometD long-polling requests of its sessions that a load balancer sent them
    (``server/cometd_forward.py``). None: they cannot, and those clients handshake again
    where their requests land."""
    services: tuple[str, ...] = ("customer-support",)
    api_prefix: str = "/genesys"
    api_keys: tuple[str, ...] = ()
    """When non-empty, every chat API call must carry one of these in ``apikey``/``x-api-key``."""
    cors_origins: tuple[str, ...] = ("*",)
    """Origins that may call the customer side (chat API, CometD, the widget's files) from
    the browser; ``*`` allows any, its origin echoed without credentials. Only origins listed
    by name also get ``Access-Control-Allow-Credentials`` (see ``server/cors.py``)."""
    header_timeout_s: float = 10.0
    """A connection must send a complete request head within this of opening or of its last
    response (also how long an idle keep-alive connection stays open)."""
    body_timeout_s: float = 30.0
    """A request body must be complete within this of its head (else HTTP 408, closed)."""
    agent_cors_origins: tuple[str, ...] = ()
    """Foreign origins allowed to call the agent API from a browser (with credentials).
    Empty by default: the agent API is same-origin, the console being served here."""
    cors_extra_headers: tuple[str, ...] = ()
    http_errors: HttpErrorMode = HttpErrorMode.GMS
    strict_fields: bool = False
    """Refuse (1005) form and CometD fields an operation does not know. Off by default, as on
    GMS, which ignores them: real clients send fields of their own (the Genesys widgets send
    ``text``, blank identity fields and a typing preview). Useful while developing a client."""
    max_ignored_field_chars: int = 4096
    """Even an ignored field is bounded."""
    typing_timeout_s: float = 10.0
    """A customer who started typing and sent nothing for this long stops typing: the Genesys
    widgets over CometD send ``startTyping`` and never ``stopTyping``."""
    limits: Limits = field(default_factory=Limits)
    offer_timeout_s: float = 30.0
    """How long an offered chat waits for the agent to accept before it is offered elsewhere."""
    ended_cache_s: float = 600.0
    """How long an ended chat stays in memory for final refreshes before it is reloaded lazily."""
    alias: str = "1"
    default_language: str = "en"
    language_user_data_key: str = "GCTI_LanguageCode"
    """userData key carrying the customer's language (a GMS convention, protocols.md §1.4);
    system messages in that chat are written in it (en, fr, de, es, ja; else the default)."""
    system_nickname: str = "system"
    default_agent_capacity: int = 3
    agent_token_lifetime_s: float = 12 * 3600
    """How long an agent's bearer token is good for. ``POST /agent/v1/refresh`` swaps a valid
    token for a new one (the agent console and AgentClient do so before it runs out); logout
    revokes it."""
    trust_forwarded_for: bool = False
    cometd_handshake_rate: tuple[float, int] = (5.0, 50)
    """Bayeux handshakes one client address may make: per second and burst (flood guard)."""
    cometd: CometdOptions = field(default_factory=CometdOptions)
    """Bayeux settings (timeouts, queue bound, ack extension, error spelling)."""
    files: FileLimits = field(default_factory=FileLimits)
    """Upload limits and allowed types (reported by ``file/limits``, enforced on upload)."""
    inactivity: InactivityConfig = field(default_factory=InactivityConfig)
    async_user_data_key: str = "GCTI_Chat_AsyncMode"
    """userData key ("true") marking an asynchronous chat, which customer inactivity never
    closes ([U]: the key GMS uses is not confirmed; configurable)."""
    drain_timeout_s: float = 10.0
    """How long a stop may take to drain (``server/ops.py``): CometD clients told to reconnect
    and collect what is queued for them, requests in flight finished; then connections are
    cut."""
    chat_ntf_requires_cookie: bool = False
    """The CometD file side door also wants the ``BAYEUX_BROWSER`` cookie of a session that
    follows the chat ([C] in protocols.md §2.5), not only the secureKey. Off by default: the
    Genesys widgets' file requests from another origin carry no cookies, and their download is
    a cross-site form POST, which browsers send without the (SameSite) cookie anyway."""
