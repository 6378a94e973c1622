"""The WebChatService plugin: the original's commands, events and configuration, in Python."""

from webchat.service.config import ConfigError, WebChatConfig
from webchat.service.plugin import WebChatService

__all__ = ["ConfigError", "WebChatConfig", "WebChatService"]
