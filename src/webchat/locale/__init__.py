"""Localized text: gettext catalogs (``<lang>/LC_MESSAGES/webchat.po``) read with Babel.

Message ids are keys, not English sentences: ``webchat.<Key>`` for the WebChat widget's
strings under the original's key names (``webchat.Errors.<code>`` for its error table),
``console.<Key>`` for the agent console, and ``server.<key>`` for the system messages the server
writes into transcripts. English is the fallback for any key a catalog lacks. Placeholders are
``{name}`` (server and console) or the original's ``<%Name%>`` (widget).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

LANGUAGES = ("en", "fr", "de", "es", "ja", "ar")
DEFAULT = "en"
_ROOT = Path(__file__).parent


@cache
def catalog(lang: str) -> dict[str, str]:
    with open(_ROOT / lang / "LC_MESSAGES" / "webchat.po", "rb") as f:
        po = read_po(f, locale=lang, domain="webchat")
    return {str(m.id): str(m.string) for m in po if m.id and m.string}


def negotiate(requested: str | None) -> str:
    """Our language for what a client asked for: ``fr-CA`` -> ``fr``; unknown -> English."""
    if not requested:
        return DEFAULT
    primary = re.split(r"[-_;,\s]", requested.strip().lower(), maxsplit=1)[0]
    return primary if primary in LANGUAGES else DEFAULT


def text(lang: str, key: str, **params: Any) -> str:
    message = catalog(lang).get(key) or catalog(DEFAULT)[key]
    return message.format(**params) if params else message


def widget_strings(lang: str) -> dict[str, Any]:
    """The browser's strings for ``lang`` shaped like the original's i18n object, one entry
    per plugin: ``{"webchat": {"ChatButton": ..., "Errors": {"102": ...}}, "console": {...}}``
    (the server's own messages stay on the server)."""
    merged = {**catalog(DEFAULT), **catalog(lang)}
    out: dict[str, Any] = {}
    for key, value in merged.items():
        plugin, *path, leaf = key.split(".")
        if plugin == "server":
            continue
        node = out.setdefault(plugin, {})
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
