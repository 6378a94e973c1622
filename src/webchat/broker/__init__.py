"""Pub/sub between the parts of the server: an in-process default behind one interface.

Payloads are bytes so that a network broker (Redis) can stand in without changing callers.
"""

from webchat.broker.base import Broker, Handler
from webchat.broker.memory import MemoryBroker

__all__ = ["Broker", "Handler", "MemoryBroker"]
