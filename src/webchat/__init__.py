"""webchat: a Python WebChatService on an asyncio CXBus, and a GMS Chat v2 compatible server."""

__version__ = "0.1.0"
