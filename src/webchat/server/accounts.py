"""Agent accounts: scrypt password hashes and opaque bearer tokens (stored only as hashes)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from webchat.server.engine import ChatEngine
from webchat.server.errors import AgentError
from webchat.store.records import AgentRecord

_N, _R, _P = 2**14, 8, 1


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


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine
        self._tokens: dict[str, str] = {}
        """token hash -> agent id, so a busy agent does not cost a query per request."""

    async def upsert(self, agent_id: str, password: str, nickname: str | None = None, *,
                     supervisor: bool | None = None) -> None:
        existing = self.engine.agents.get(agent_id)
        record = AgentRecord(
            agent_id=agent_id, nickname=nickname or (existing.nickname if existing else agent_id),
            password_hash=hash_password(password),
            ready=existing.ready if existing else False,
            capacity=existing.capacity if existing else self.engine.config.default_agent_capacity,
            supervisor=supervisor if supervisor is not None else
            bool(existing and existing.supervisor))
        await self.engine.store.put_agent(record)
        self.engine.agents[agent_id] = record

    async def login(self, agent_id: str, password: str) -> str:
        agent = self.engine.agents.get(agent_id)
        # Hash even for unknown names so timing does not reveal which agents exist.
        stored = agent.password_hash if agent else hash_password("unknown-agent")
        if not check_password(password, stored) or agent is None:
            raise AgentError(401, "bad_credentials", "unknown agent or wrong password")
        token = secrets.token_urlsafe(32)
        await self.engine.store.add_token(token_hash(token), agent_id, self.engine.clock())
        return token

    async def authenticate(self, token: str) -> str:
        hashed = token_hash(token)
        agent_id = self._tokens.get(hashed)
        if agent_id is None and token:
            agent_id = await self.engine.store.agent_for_token(hashed)
            if agent_id is not None:
                self._tokens[hashed] = agent_id
        if agent_id is None or agent_id not in self.engine.agents:
            raise AgentError(401, "unauthorized", "missing or invalid bearer token")
        return agent_id

    async def logout(self, token: str) -> None:
        self._tokens.pop(token_hash(token), None)
        await self.engine.store.delete_token(token_hash(token))
