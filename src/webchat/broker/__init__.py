"""Pub/sub between the parts of the server: an in-process default behind one interface.

Payloads are bytes so that a network broker (Redis) can stand in without changing callers.
"""

from __future__ import annotations

import importlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from webchat.broker.base import Broker, Handler, Pingable
from webchat.broker.memory import MemoryBroker

REDIS_SCHEMES = ("redis", "rediss", "unix")
PREFIX_PARAMETER = "prefix"


def from_url(url: str | None) -> Broker:
    """The broker a URL names: None (or ``memory``) is the in-process one, which reaches only
    this process; ``redis://``, ``rediss://`` (TLS) and ``unix://`` (a socket path) are Redis,
    whose client is imported only when asked for. A Redis URL may end in ``?prefix=NAME:``,
    the prefix of every channel and key, so that clusters (or test runs) sharing one Redis do
    not hear each other: Redis's pub/sub ignores the database number."""
    if url is None or (urlsplit(url).scheme or url) == "memory":
        return MemoryBroker()
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"unknown broker {url!r}: expected memory or redis://host:port/db")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for key, value in query if key == PREFIX_PARAMETER]
    rest = urlunsplit(parts._replace(query=urlencode(
        [(key, value) for key, value in query if key != PREFIX_PARAMETER])))
    # Imported by name: redis-py loads only when a Redis broker is asked for.
    redis_broker = importlib.import_module("webchat.broker.redis").RedisBroker
    broker: Broker = redis_broker(rest, prefix=prefixes[-1]) if prefixes else redis_broker(rest)
    return broker


__all__ = ["Broker", "Handler", "MemoryBroker", "Pingable", "from_url"]
