"""Bayeux 1.0 as CometD implements it, as sans-I/O state machines (protocols.md §3)."""

from webchat.protocol.bayeux.messages import BayeuxMessage, ErrorStyle, decode_messages
from webchat.protocol.bayeux.server import (
    BayeuxServer,
    Event,
    ServerOptions,
    ServerSession,
    State,
)

__all__ = ["BayeuxMessage", "BayeuxServer", "ErrorStyle", "Event", "ServerOptions",
           "ServerSession", "State", "decode_messages"]
