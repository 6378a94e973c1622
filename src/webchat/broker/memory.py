from __future__ import annotations

import logging

from webchat.broker.base import Handler, Unsubscribe

log = logging.getLogger(__name__)


class MemoryBroker:
    """Synchronous in-process fan-out: a publish reaches every handler before it returns."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._handlers.clear()

    async def ping(self) -> None:
        """In the process: always reachable."""
        return None

    def publish(self, topic: str, payload: bytes) -> None:
        for handler in list(self._handlers.get(topic, ())):
            try:
                handler(topic, payload)
            except Exception:
                log.exception("broker handler for %s failed", topic)

    def subscribe(self, topic: str, handler: Handler) -> Unsubscribe:
        handlers = self._handlers.setdefault(topic, [])
        handlers.append(handler)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)
            if not handlers:
                self._handlers.pop(topic, None)

        return unsubscribe

    def subscriber_count(self, topic: str) -> int:
        return len(self._handlers.get(topic, ()))
