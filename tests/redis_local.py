"""A stand-in for the shared Redis fixtures of ``tests/services.py`` (written concurrently by
the "ci" helper, with the same fixture names): delete this module and the imports of it once
that one is merged.

``redis_url`` is ``WEBCHAT_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``); ``redis_prefix``
is a key and channel prefix for one test, whose keys are deleted after it. An unreachable
Redis fails the test under ``CI=true`` and skips it, with the reason, elsewhere.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import redis

REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
REDIS_START = ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
               "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("WEBCHAT_TEST_REDIS", REDIS_DEFAULT)
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        message = f"Redis not reachable at {url} ({exc!r}); start it with: {REDIS_START}"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message + " [CI=true: fails, never skips]", pytrace=False)
        pytest.skip(message)
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"webchat-t-{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()
