"""CometD long-polling behind a load balancer without stickiness: a request for a session that
another process holds is passed on to that process, and its answer passed back.

A round-robin load balancer sends a long-polling client's handshake, its held
``/meta/connect``, its publishes and its disconnect to different processes, but a Bayeux
session lives in the process that handshook it. Rather than copy sessions around (a
session's queue, held connect, acknowledgement batches and followed chats change on every
delivery; sharing them would cost a Redis round trip per delivery and per connect), the
process a request reaches passes it on, as it came, to the one that holds the session — as
Vault's standbys forward to the active node. It costs an HTTP hop only for requests that
land on the wrong process, and nothing for a WebSocket (one connection, one process, never
forwarded) or for a process alone (no forwarder at all: :func:`for_cluster`).

- **Which process.** Each process draws a short random *tag* when it starts, reserves it in
  Redis and puts it in front of every clientId it makes (``BayeuxServer.node_tag``; the
  clientId keeps its 144 random bits). The tag's key, ``<prefix>cometd:node:<tag>``, holds
  the URL peers reach the process at (``ServerConfig.advertise_url``, ``serve
  --advertise-url``), with a TTL the process keeps renewing and a delete when it stops.
- **Forwarding.** A long-polling request whose messages name a clientId with another
  process's tag is sent to that process with its body, content type and cookies, and the
  owner's status, headers (``Set-Cookie`` included) and body are the answer. A held connect
  is simply a request that takes long: the forwarder waits as long as the owner holds it.
  A request naming sessions of several processes is refused (400): a Bayeux batch is one
  client's, so it names one session. A handshake is never forwarded: it makes a session
  where it lands.
- **Trust.** The forwarder also says who the client is (its address, as the forwarding
  process determined it, so per-address rules on the owner see the client and not the
  peer), in :data:`CLIENT_HEADER`, with an HMAC of it under a secret every process reads from
  Redis (made once, ``SET NX``, by the first process) in :data:`PROOF_HEADER`. The secret
  itself never travels. A request with a valid proof is never forwarded again (no loops);
  headers that do not verify — a client writing them itself — are ignored: the request is
  treated as any client's, with the address the connection shows.
- **Failures.** When the owner is unknown (its key expired or was deleted) or cannot be
  reached (refused, reset, timed out: it died or is cut off), the request is processed here,
  where its session is unknown: the client gets exactly the ``402`` with advice to handshake
  that any unknown session gets, handshakes again — with whichever process — and resumes
  from its own transcript position (the Python and browser WebChatService publish
  ``requestNotifications`` with it after every re-handshake). As with any lost answer, a
  publish whose owner died after receiving it may or may not have been acted on; the
  transcript the client resumes from says which. When it is the *forwarding* process that
  stops, the requests it has passed on are answered ``503`` instead: the session is alive
  where it is, so the client only connects again, through another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from msgspec import UNSET
from multidict import CIMultiDict
from redis.exceptions import RedisError

from webchat.protocol.bayeux.messages import BayeuxMessage
from webchat.protocol.bayeux.server import CLIENT_ID_RANDOM_BYTES, META_HANDSHAKE

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from webchat.broker.base import Broker
    from webchat.server.config import ServerConfig

log = logging.getLogger(__name__)

TAG_BYTES = 6
TAG_CHARS = 8
"""A node tag: 6 random bytes, URL-safe base64 (48 bits: reserved with ``SET NX`` anyway)."""
CLIENT_ID_CHARS = TAG_CHARS + (CLIENT_ID_RANDOM_BYTES * 4 + 2) // 3
"""Length of a tagged clientId; any other length is no session of a cluster's process."""
CLIENT_HEADER = "X-Webchat-Client"
"""The original client's address, on a forwarded request."""
PROOF_HEADER = "X-Webchat-Forwarded"
"""HMAC-SHA256 (hex) of :data:`CLIENT_HEADER` under the cluster's secret."""
_NOT_PASSED_BACK = frozenset({
    # hop-by-hop (RFC 9110 §7.6.1), or computed again for the client's own connection
    "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
    "proxy-connection", "content-length", "date", "server",
    # CORS: answered by the process the client talks to (its middleware), from its Origin
    "vary"})
_MIXED = "a Bayeux request is one client's: these messages name sessions of several processes"


def _stopping_answer() -> web.Response:
    """What a request passed on gets when this process stops under it: a failure CometD
    clients retry (connect again, no new handshake), with nothing to wait for."""
    return web.Response(status=503, text="this process is stopping; connect again",
                        headers={"Retry-After": "0"})


class RedisDirectory:
    """Which process holds the sessions of each tag, in Redis under the cluster's prefix.

    ``<prefix>cometd:node:<tag>`` is the URL of the process that reserved the tag (empty:
    a process peers cannot reach, which still owns its tag), expiring after ``ttl_s``
    unless renewed; ``<prefix>cometd:secret`` is the cluster's forwarding secret."""

    def __init__(self, client: Redis, prefix: str, *, ttl_s: float = 15.0) -> None:
        self._client = client
        self._nodes = f"{prefix}cometd:node:"
        self._secret = f"{prefix}cometd:secret"
        self._ttl_ms = int(ttl_s * 1000)

    async def reserve(self, url: str) -> str:
        """A new tag, unknown to every other process, now pointing at ``url``."""
        for _ in range(8):
            tag = secrets.token_urlsafe(TAG_BYTES)
            if await self._client.set(self._nodes + tag, url, nx=True, px=self._ttl_ms):
                return tag
        raise RuntimeError("no free CometD node tag after 8 tries")  # 2^48 tags: never

    async def renew(self, tag: str, url: str) -> None:
        # Unconditional: the key may be gone (expired while Redis was away, or flushed).
        await self._client.set(self._nodes + tag, url, px=self._ttl_ms)

    async def release(self, tag: str) -> None:
        await self._client.delete(self._nodes + tag)

    async def lookup(self, tag: str) -> str | None:
        """The URL of the process holding ``tag``'s sessions, or None (gone, or none)."""
        url = await self._client.get(self._nodes + tag)
        if url is None:
            return None
        return _text(url) or None  # empty: a process peers cannot reach

    async def shared_secret(self) -> bytes:
        """The cluster's secret: made by the first process to ask, read by every other."""
        await self._client.set(self._secret, secrets.token_hex(32), nx=True)
        value = await self._client.get(self._secret)
        if value is None:  # deleted between the two commands: take part in making it again
            return await self.shared_secret()
        return _text(value).encode()


def _text(value: bytes | str) -> str:
    """A Redis reply as text (redis-py types replies as either, by client option)."""
    return value.decode() if isinstance(value, bytes) else value


class Forwarder:
    """Passes long-polling requests on to the process holding their session (see the
    module docstring). ``advertise_url``: where peers reach this process (None: they
    cannot, and its sessions are served by it alone). ``hold_s``: the longest a connect
    is held (the owner's answer may take that long); ``idle_s``: how long an idle
    connection to a peer is kept, below the peers' own idle keep-alive, so that a request
    is never sent on a connection the peer is closing."""

    def __init__(self, directory: RedisDirectory, *, advertise_url: str | None, hold_s: float,
                 idle_s: float = 5.0, connect_s: float = 2.0, refresh_s: float = 5.0,
                 cache_s: float = 5.0) -> None:
        self.directory = directory
        self.url = (advertise_url or "").rstrip("/")
        self.tag = ""
        self.forwarded = 0
        """Requests passed on to their session's process and answered by it."""
        self.unreachable = 0
        """Requests whose session's process could not be reached (answered here)."""
        self.in_flight = 0
        """Requests passed on and not answered yet (held connects among them)."""
        self._hold_s = hold_s
        self._idle_s = idle_s
        self._connect_s = connect_s
        self._refresh_s = refresh_s
        self._cache_s = cache_s
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._secret = b""
        self._http: aiohttp.ClientSession | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> str:
        """Reserve this process's tag and read the cluster's secret; returns the tag."""
        if not self.url:
            log.warning("no advertise URL (serve --advertise-url): other processes cannot "
                        "pass this one's CometD long-polling requests on; its clients "
                        "handshake again where their requests land")
        self._secret = await self.directory.shared_secret()
        self.tag = await self.directory.reserve(self.url)
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=self._idle_s),
            cookie_jar=aiohttp.DummyCookieJar(),  # each request carries its client's own
            auto_decompress=False, trust_env=False)
        self._renewer = asyncio.create_task(self._renew(), name="cometd node tag")
        return self.tag

    async def stop(self) -> None:
        """Give the tag up, so peers stop passing requests on to this process at once (its
        clients then handshake again elsewhere). Idempotent."""
        renewer, self._renewer = self._renewer, None
        if renewer is None:
            return
        self._stopping = True
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            await self.directory.release(self.tag)
        except (RedisError, OSError) as exc:
            log.warning("could not release CometD node tag %s (it expires): %r", self.tag, exc)
        if self._http is not None:
            await self._http.close()

    async def _renew(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.directory.renew(self.tag, self.url)
                self._secret = await self.directory.shared_secret()
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("could not renew CometD node tag %s: %r", self.tag, exc)
                failing = True
            else:
                failing = False

    # ---- trust -----------------------------------------------------------------------------

    def _proof(self, address: str) -> str:
        return hmac.new(self._secret, address.encode(), hashlib.sha256).hexdigest()

    def client_of(self, request: web.Request) -> str | None:
        """The original client's address when a peer passed this request on (its proof
        verifies), else None: such headers from anyone else are ignored."""
        proof = request.headers.get(PROOF_HEADER)
        address = request.headers.get(CLIENT_HEADER)
        if proof is None or address is None or not self._secret:
            return None
        expected = self._proof(address).encode()
        return address if hmac.compare_digest(proof.encode(errors="replace"), expected) \
            else None

    # ---- routing ---------------------------------------------------------------------------

    async def route(self, request: web.Request, body: bytes, messages: list[BayeuxMessage],
                    remote: str) -> web.StreamResponse | str:
        """The answer of the process holding the request's session when that is another
        one; else the client address to process the request here with (``remote``, or the
        original client's when a peer passed it on: never passed on again)."""
        relayed = self.client_of(request)
        if relayed is not None:
            return relayed
        if any(m.channel == META_HANDSHAKE for m in messages):
            return remote  # processed alone, here: the new session is this process's
        tags = {_tag_of(m.clientId) for m in messages if m.clientId is not UNSET}
        if len(tags) > 1:
            return web.Response(status=400, text=_MIXED)
        tag = next(iter(tags), None)
        if tag is None or tag == self.tag:
            return remote
        url = await self._owner(tag)
        if url is None or url == self.url:
            return remote
        answer = await self._forward(request, body, url, remote)
        if answer is None:
            self._cache.pop(tag, None)
            return remote  # unknown here: 402, handshake again
        return answer

    async def _owner(self, tag: str) -> str | None:
        """The URL of the process holding ``tag``'s sessions, known for ``cache_s``: a
        tag's process never changes, and one that died is found out when it cannot be
        reached (and forgotten then)."""
        now = time.monotonic()
        cached = self._cache.get(tag)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            url = await self.directory.lookup(tag)
        except (RedisError, OSError) as exc:
            log.warning("CometD node directory unavailable: %r", exc)
            return None
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[tag] = (url, now + self._cache_s)
        return url

    async def _forward(self, request: web.Request, body: bytes, url: str, remote: str
                       ) -> web.Response | None:
        """The owner's answer to the request as it came, or None when it cannot be had.
        While this process stops, a retryable failure instead: the owner is fine, the
        session too, and the client's next connect reaches it through another process."""
        if self._http is None or self._stopping:
            return _stopping_answer()
        headers = {CLIENT_HEADER: remote, PROOF_HEADER: self._proof(remote)}
        for name in ("Content-Type", "Cookie"):
            value = request.headers.get(name)
            if value is not None:
                headers[name] = value
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_s,
                                        sock_read=self._hold_s + 10.0)
        self.in_flight += 1
        try:
            async with self._http.post(url + request.path_qs, data=body, headers=headers,
                                       timeout=timeout) as resp:
                payload = await resp.read()
                status = resp.status
                passed = CIMultiDict((k, v) for k, v in resp.headers.items()
                                     if k.lower() not in _NOT_PASSED_BACK
                                     and not k.lower().startswith("access-control-"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if self._stopping:  # cut by stop(): not the owner's doing
                return _stopping_answer()
            self.unreachable += 1
            log.info("CometD session owner %s unreachable (%r); answering here", url, exc)
            return None
        finally:
            self.in_flight -= 1
        self.forwarded += 1
        return web.Response(status=status, body=payload, headers=passed)


def _tag_of(client_id: object) -> str | None:
    """The node tag of a clientId a cluster's process made, or None for any other value."""
    if isinstance(client_id, str) and len(client_id) == CLIENT_ID_CHARS:
        return client_id[:TAG_CHARS]
    return None


def for_cluster(cluster: Broker | None, config: ServerConfig) -> Forwarder | None:
    """The forwarder of a process in a cluster whose broker is Redis; None for a process
    alone (no tags, no lookups: nothing is forwarded)."""
    from webchat.broker.redis import RedisBroker

    if not isinstance(cluster, RedisBroker):
        return None
    return Forwarder(RedisDirectory(cluster.client, cluster.prefix),
                     advertise_url=config.advertise_url,
                     hold_s=config.cometd.timeout_ms / 1000,
                     idle_s=config.header_timeout_s / 2)
