"""What the configuration says about one chat: its language, the server's notices in that
language, and whether it is asynchronous (exempt from the customer's inactivity close)."""

from __future__ import annotations

from webchat import locale
from webchat.server.config import ServerConfig
from webchat.store.records import ChatRecord


class ChatFacts:
    def __init__(self, config: ServerConfig) -> None:
        self._config = config

    def language(self, chat: ChatRecord) -> str:
        """The chat's language: what the customer asked for in userData, else the default."""
        requested = chat.user_data.get(self._config.language_user_data_key)
        return locale.negotiate(requested or self._config.default_language)

    def notice(self, chat: ChatRecord, key: str, **params: object) -> str:
        return locale.text(self.language(chat), f"server.{key}", **params)

    def is_async(self, chat: ChatRecord) -> bool:
        return chat.user_data.get(self._config.async_user_data_key, "").lower() == "true"
