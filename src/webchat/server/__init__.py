"""The chat server: GMS Chat v2 over REST for customers, an agent API, routing and storage."""

from webchat.server.app import build_app
from webchat.server.config import ServerConfig

__all__ = ["ServerConfig", "build_app"]
