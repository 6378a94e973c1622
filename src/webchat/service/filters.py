"""What the customer is shown versus what the server sent.

``messageReceived`` carries both: ``originalMessages`` exactly as they came, ``messages`` after
the prefilters (``addPrefilter``, and the pattern given with each ``sendFilteredMessage``)
dropped the ones the customer must not see — codes and tokens meant for the agent — and the
registered preprocessors (``registerPreProcessor``) transformed the rest.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

Preprocessor = Callable[[dict[str, Any]], dict[str, Any] | None]


class FilterError(ValueError):
    pass


def compile_patterns(value: object) -> list[re.Pattern[str]]:
    """One pattern or a list of them, as strings or compiled expressions."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise FilterError("no filter given")
    patterns = []
    for item in items:
        if isinstance(item, re.Pattern):
            patterns.append(item)
        elif isinstance(item, str) and item:
            try:
                patterns.append(re.compile(item))
            except re.error as exc:
                raise FilterError(f"invalid regular expression {item!r}: {exc}") from None
        else:
            raise FilterError("a filter must be a regular expression (str or re.Pattern)")
    return patterns


class MessageView:
    def __init__(self) -> None:
        self.prefilters: list[re.Pattern[str]] = []
        self.preprocessors: list[Preprocessor] = []

    def add_prefilters(self, patterns: Iterable[re.Pattern[str]]) -> int:
        self.prefilters.extend(patterns)
        return len(self.prefilters)

    def hidden(self, message: dict[str, Any]) -> bool:
        text = message.get("text")
        return isinstance(text, str) and any(p.search(text) for p in self.prefilters)

    def show(self, originals: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shown = []
        for original in originals:
            if self.hidden(original):
                continue
            message: dict[str, Any] | None = copy.deepcopy(original)
            for preprocess in self.preprocessors:
                try:
                    message = preprocess(message)  # type: ignore[arg-type]
                except Exception:
                    log.exception("a registered preprocessor failed; message shown unchanged")
                    message = copy.deepcopy(original)
                    break
                if message is None:
                    break  # the preprocessor chose to hide it
            if message is not None:
                shown.append(message)
        return shown
