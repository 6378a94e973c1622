"""Channel names and patterns (protocols.md §3.1).

Segments are ``[A-Za-z0-9_\\-!~()$@]+``; a wildcard ``*`` (one segment) or ``**`` (one or more)
may only be the last segment.
"""

from __future__ import annotations

import re

_SEGMENT = re.compile(r"^[A-Za-z0-9_\-!~()$@.]+$")


def is_valid(name: str, *, allow_wildcard: bool = False) -> bool:
    if not name.startswith("/") or len(name) > 512:
        return False
    segments = name[1:].split("/")
    for i, seg in enumerate(segments):
        if seg in ("*", "**"):
            if not allow_wildcard or i != len(segments) - 1:
                return False
        elif not _SEGMENT.match(seg):
            return False
    return True


def is_meta(name: str) -> bool:
    return name.startswith("/meta/")


def is_service(name: str) -> bool:
    return name.startswith("/service/") or name == "/service"


def is_wild(name: str) -> bool:
    return name.endswith("/*") or name.endswith("/**")


def matches(pattern: str, channel: str) -> bool:
    """Whether a subscription ``pattern`` covers a concrete ``channel``."""
    if pattern == channel:
        return True
    if pattern.endswith("/**"):
        prefix = pattern[:-2]
        return channel.startswith(prefix) and len(channel) > len(prefix)
    if pattern.endswith("/*"):
        prefix = pattern[:-1]
        return channel.startswith(prefix) and "/" not in channel[len(prefix):] \
            and len(channel) > len(prefix)
    return False


def patterns_for(channel: str) -> list[str]:
    """Every subscription name that covers ``channel``: itself, ``parent/*``, ancestors' ``/**``.

    Used to look subscribers up by key instead of testing every pattern.
    """
    out = [channel]
    segments = channel[1:].split("/")
    out.append("/" + "/".join([*segments[:-1], "*"]) if len(segments) > 1 else "/*")
    for i in range(len(segments) - 1, -1, -1):
        out.append("/" + "/".join([*segments[:i], "**"]) if i else "/**")
    return out
