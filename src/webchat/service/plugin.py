"""WebChatService on the bus: every command of the original, registered under its own name.

The behaviour lives in the command modules (:mod:`~webchat.service.chat`,
:mod:`~webchat.service.restore`, :mod:`~webchat.service.files`) over the shared plumbing of
:mod:`~webchat.service.core`; this module only assembles them and names them.
"""

from __future__ import annotations

from webchat.bus.bus import Bus
from webchat.service.chat import ChatCommands
from webchat.service.config import WebChatConfig
from webchat.service.core import EVENTS, NAMESPACE, Transport
from webchat.service.files import FileCommands
from webchat.service.restore import RestoreCommands
from webchat.service.storage import SessionStorage

#: Bus command name -> method. ``restoreChat`` is the name our issues use for ``restore``.
_METHODS = {
    "configure": "configure", "startChat": "start_chat", "endChat": "end_chat",
    "sendMessage": "send_message", "sendCustomNotice": "send_custom_notice",
    "sendTyping": "send_typing", "sendFilteredMessage": "send_filtered_message",
    "addPrefilter": "add_prefilter", "updateUserData": "update_user_data", "poll": "poll",
    "startPoll": "start_poll", "stopPoll": "stop_poll",
    "resetPollExceptions": "reset_poll_exceptions", "restore": "restore",
    "restoreChat": "restore", "getTranscript": "get_transcript", "getAgents": "get_agents",
    "getStats": "get_stats", "sendFile": "send_file", "downloadFile": "download_file",
    "getFileLimits": "get_file_limits", "deleteFile": "delete_file",
    "getSessionData": "get_session_data", "fetchHistory": "fetch_history",
    "registerPreProcessor": "register_pre_processor", "verifySession": "verify_session",
}
COMMANDS = frozenset(_METHODS)

__all__ = ["COMMANDS", "EVENTS", "NAMESPACE", "WebChatService"]


class WebChatService(ChatCommands, RestoreCommands, FileCommands):
    def __init__(self, bus: Bus, config: WebChatConfig, *, transport: Transport | None = None,
                 storage: SessionStorage | None = None, auto_restore: bool = True) -> None:
        super().__init__(bus, config, transport=transport, storage=storage)
        self.auto_restore = auto_restore
        for name, method in _METHODS.items():
            self.plugin.register_command(name, getattr(self, method))
