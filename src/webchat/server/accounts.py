"""Agent accounts: scrypt password hashes, bearer tokens with a lifetime, login throttling.

Tokens are opaque to clients and stored only as hashes. A token carries the moment it was
issued (``<issued ms, hex>.<random>``); since only the hash of the whole token is stored, that
moment cannot be altered, so a token is good for ``ServerConfig.agent_token_lifetime_s`` from
it, across restarts. Tokens of the earlier format carry no such moment and are refused: they
never expired. ``refresh`` swaps a valid token for a new one, ``logout`` revokes one.

A login costs one scrypt whether or not the name exists (unknown names are checked against a
hash no password matches), runs it on a small thread pool (it takes ~40 ms and 16 MB: on the
event loop, 16 bad logins stalled every other request), and is throttled per name and per
client address before any hashing, charging failures only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from webchat.server.engine import ChatEngine
from webchat.server.errors import AgentError, Refusal
from webchat.server.ratelimit import RateLimiter
from webchat.store.records import AgentRecord

_N, _R, _P = 2**14, 8, 1
_HASH_WORKERS = 2
"""Password hashes computed at once: bounds their memory (16 MB each) and leaves the default
executor (file I/O) alone; further logins wait their turn off the event loop."""
_MAX_NAME_KEY = 256
"""Characters of a login name used as its throttle key (longer names exist nowhere anyway)."""

T = TypeVar("T")


class TokenStore(Protocol):
    """Where token hashes live (the store's part accounts need)."""

    async def add_token(self, token_hash: str, agent_id: str, created_ms: int) -> None: ...

    async def agent_for_token(self, token_hash: str) -> str | None: ...

    async def delete_token(self, token_hash: str) -> None: ...


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), n=_N, r=_R, p=_P)
    return hmac.compare_digest(digest.hex(), digest_hex)


_NO_PASSWORD = f"scrypt${secrets.token_hex(16)}${secrets.token_hex(64)}"
"""What an unknown name is checked against: the same work as a real hash (one scrypt), and no
password matches a random digest."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _issued_ms(token: str) -> int | None:
    """When a token was issued, from its prefix; None for a token not of our format."""
    issued, dot, _ = token.partition(".")
    if not dot or not 0 < len(issued) <= 16:
        return None
    try:
        return int(issued, 16)
    except ValueError:
        return None


@dataclass(frozen=True)
class Grant:
    """What a valid token stands for."""

    agent_id: str
    token_hash: str
    expires_ms: int


class Accounts:
    def __init__(self, engine: ChatEngine, tokens: TokenStore) -> None:
        self.engine = engine
        self._tokens = tokens
        self._grants: dict[str, Grant] = {}
        """token hash -> grant, so a busy agent does not cost a query per request. A token
        revoked in one process is dropped from every process's cache (control news)."""
        engine.notifier.on("revoked", self._revoked)
        limits = engine.config.limits

        def seconds() -> float:
            return engine.clock() / 1000

        self._per_name = RateLimiter(*limits.login_rate_per_name, clock=seconds)
        self._per_address = RateLimiter(*limits.login_rate_per_address, clock=seconds)
        self._hasher = ThreadPoolExecutor(max_workers=_HASH_WORKERS,
                                          thread_name_prefix="webchat-scrypt")

    @property
    def lifetime_ms(self) -> int:
        return int(self.engine.config.agent_token_lifetime_s * 1000)

    async def _off_loop(self, fn: Callable[..., T], *args: str) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._hasher, fn, *args)

    def close(self) -> None:
        self._hasher.shutdown(wait=False, cancel_futures=True)

    async def upsert(self, agent_id: str, password: str, nickname: str | None = None, *,
                     supervisor: bool | None = None) -> None:
        existing = self.engine.agent(agent_id)
        record = AgentRecord(
            agent_id=agent_id, nickname=nickname or (existing.nickname if existing else agent_id),
            password_hash=await self._off_loop(hash_password, password),
            ready=existing.ready if existing else False,
            capacity=existing.capacity if existing else self.engine.config.default_agent_capacity,
            supervisor=supervisor if supervisor is not None else
            bool(existing and existing.supervisor))
        await self.engine.save_agent(record)

    async def login(self, agent_id: str, password: str, address: str) -> tuple[str, Grant]:
        """A new token for these credentials. Charged to the name's and the address's bucket
        up front (so concurrent guesses cannot all get through), refunded on success."""
        name_key = agent_id[:_MAX_NAME_KEY]
        if not self._per_name.allow(name_key):
            raise AgentError(Refusal.THROTTLED, "too_many_attempts",
                             "too many failed logins for this name: try again later")
        if not self._per_address.allow(address):
            self._per_name.refund(name_key)
            raise AgentError(Refusal.THROTTLED, "too_many_attempts",
                             "too many failed logins from this address: try again later")
        agent = await self.engine.find_agent(agent_id)
        stored = agent.password_hash if agent is not None else _NO_PASSWORD
        if not await self._off_loop(check_password, password, stored) or agent is None:
            raise AgentError(Refusal.UNAUTHORIZED, "bad_credentials",
                             "unknown agent or wrong password")
        self._per_name.refund(name_key)
        self._per_address.refund(address)
        return await self._issue(agent_id)

    async def _issue(self, agent_id: str) -> tuple[str, Grant]:
        now = self.engine.clock()
        token = f"{now:x}.{secrets.token_urlsafe(32)}"
        grant = Grant(agent_id, token_hash(token), now + self.lifetime_ms)
        await self._tokens.add_token(grant.token_hash, agent_id, now)
        self._grants[grant.token_hash] = grant
        return token, grant

    async def authenticate(self, token: str) -> Grant:
        hashed = token_hash(token)
        grant = self._grants.get(hashed)
        if grant is None and (issued := _issued_ms(token)) is not None:
            agent_id = await self._tokens.agent_for_token(hashed)
            if agent_id is not None:
                grant = self._grants[hashed] = Grant(agent_id, hashed,
                                                     issued + self.lifetime_ms)
        if grant is not None and grant.expires_ms <= self.engine.clock():
            await self._revoke(hashed)  # expired: gone from the store too
            grant = None
        return self._valid(grant)

    def current(self, hashed: str) -> Grant:
        """The grant of a token authenticated before (an event stream's), while it is still
        valid: what a write on the stream is authorized by."""
        grant = self._grants.get(hashed)
        return self._valid(None if grant is None or grant.expires_ms <= self.engine.clock()
                           else grant)

    def _valid(self, grant: Grant | None) -> Grant:
        if grant is None or self.engine.agent(grant.agent_id) is None:
            raise AgentError(Refusal.UNAUTHORIZED, "unauthorized",
                             "missing, invalid or expired bearer token")
        return grant

    def expires_ms(self, hashed: str) -> int | None:
        """When the token with this hash expires; None once it is revoked."""
        grant = self._grants.get(hashed)
        return None if grant is None else grant.expires_ms

    async def refresh(self, token: str) -> tuple[Grant, str, Grant]:
        """Swap a valid token for a new one: (old grant, new token, new grant)."""
        old = await self.authenticate(token)
        new_token, new = await self._issue(old.agent_id)
        await self._revoke(old.token_hash)
        return old, new_token, new

    async def logout(self, token: str) -> None:
        await self._revoke(token_hash(token))

    def _revoked(self, news: dict[str, Any]) -> None:
        self._grants.pop(news["token"], None)

    async def _revoke(self, hashed: str) -> None:
        self._grants.pop(hashed, None)
        await self._tokens.delete_token(hashed)
        self.engine.notifier.send({"kind": "revoked", "token": hashed})
