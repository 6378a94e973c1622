"""Thin aiohttp adapters that carry the sans-I/O protocol objects over real sockets."""

from webchat.transport.rest import RestTransport, TransportError

__all__ = ["RestTransport", "TransportError"]
