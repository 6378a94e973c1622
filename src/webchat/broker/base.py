from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Protocol, runtime_checkable

Handler = Callable[[str, bytes], None]
Unsubscribe = Callable[[], None]


class Broker(Protocol):
    """Topic pub/sub. Delivery is in publish order per topic; handlers must not block."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish(self, topic: str, payload: bytes) -> None: ...

    def subscribe(self, topic: str, handler: Handler) -> Unsubscribe: ...


@runtime_checkable
class Pingable(Protocol):
    """A broker that can say whether it is reachable (``/readyz``). Optional: a broker without
    ``ping`` (one that lives in the process) is taken to be reachable."""

    async def ping(self) -> None:
        """Raise unless the broker answers a round trip."""
        ...


def default_node_id() -> str:
    """``<hostname>-<pid>``: unique among the processes of a cluster on any number of hosts,
    and it says where to look for the process (in logs, in Redis's CLIENT LIST)."""
    return f"{socket.gethostname()}-{os.getpid()}"
