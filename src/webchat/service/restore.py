"""Restoring a chat in a new process (or page): the original's ``restore`` and its events.

The service saves the chat's identity and read position on every change. Restoring asks the
server for the whole transcript: what the customer had already seen comes back once with
``restoring: true`` (to rebuild a transcript view), what arrived while they were away once with
``restoring: false`` — nothing is lost and nothing is shown twice. A saved chat older than
``restoreTimeout`` is not restored (``restoreTimeout``) unless the chat is asynchronous; a chat
the server no longer knows is forgotten (``restoreFailed``). A chat that could be restored but
whose server cannot be reached right now is restored offline (``restored``, then
``restoredOffline``): it stays saved and active, and the first request that reaches the server
again brings ``chatServerBackOnline``, ``reconnected`` and the transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from webchat.bus.bus import CommandError
from webchat.protocol.gms.session import ChatSession
from webchat.service.core import ALREADY_ACTIVE, ServiceCore, builtins, check_options, now_ms
from webchat.service.storage import SessionData

NOTHING_TO_RESTORE = "There is no chat session to restore"
TIMED_OUT = "The chat session was not restored: it has been inactive longer than restoreTimeout"
FAILED = "The chat session could not be restored"


class RestoreCommands(ServiceCore):
    auto_restore = True

    def save(self) -> None:
        session = self.session
        if not session.active or session.chat_id is None:
            return
        data: SessionData = {**session.session_data(), "savedAt": now_ms(),
                             "async": self.config.async_.enabled}
        self.storage.save(data)

    def forget(self) -> None:
        self.storage.clear()

    async def restore(self, options: dict[str, Any]) -> Any:
        check_options(options, {})
        if self.session.active:
            raise CommandError(ALREADY_ACTIVE)
        saved = self.storage.load()
        if saved is None:
            raise CommandError(NOTHING_TO_RESTORE)
        return await self.restore_saved(saved)

    async def restore_saved(self, saved: SessionData) -> Any:
        asynchronous = self.config.async_.enabled or saved.get("async") is True
        if not asynchronous and now_ms() - saved["savedAt"] > self.config.restoreTimeout:
            self.forget()
            self.plugin.publish("restoreTimeout", {"sessionData": _public(saved)})
            raise CommandError(TIMED_OUT)
        session = ChatSession.resume(saved["sessionID"], saved["userId"], saved["secureKey"],
                                     saved["alias"], next_position=1,
                                     restoring_below=saved["transcriptPosition"])
        request = session.refresh()
        self.session = session
        try:
            response = await self.carry(request)
        except CommandError:
            # The server could not be reached: the chat stays restorable. Restored offline,
            # it is caught up as soon as the server answers (polling, or CometD's resync).
            self.plugin.publish("restored", {
                "sessionData": _public(saved), "async": asynchronous,
                "newMessageRestoreState": self.config.async_.newMessageRestoreState})
            self.offline = True
            self.plugin.publish("restoredOffline", None)
            if self.transport.pushes:
                self.resync()
            else:
                self.start_polling()
            return self.session.session_data()
        if not response.ok:
            self.session = ChatSession()
            self.forget()
            self.plugin.publish("restoreFailed", {"sessionData": _public(saved),
                                                  "error": builtins(response)})
            raise CommandError(f"{FAILED}: {self.reason(response)}", builtins(response))
        self.plugin.publish("restored", {
            "sessionData": _public(saved), "async": asynchronous,
            "newMessageRestoreState": self.config.async_.newMessageRestoreState})
        self.apply(request, response)
        self.start_polling()
        return self.session.session_data()

    async def start(self) -> None:
        """Ready on the bus, then pick up a saved chat as the original does on page load."""
        self.plugin.ready()
        if not self.auto_restore:
            return
        saved = self.storage.load()
        if saved is not None:
            with contextlib.suppress(CommandError):  # reported by restoreTimeout/restoreFailed
                await self.restore_saved(saved)

    def follow_shared_session(self, interval_s: float = 1.0) -> None:
        """Ours, beyond the original: while no chat is active here, look at the storage every
        ``interval_s`` and join a chat another process saved there — what a browser tab does
        on a ``storage`` event — so several processes sharing a session file are one chat."""
        if self._follower is None:
            self._follower = asyncio.ensure_future(self._follow(interval_s))

    async def _follow(self, interval_s: float) -> None:
        while True:
            saved = None if self.session.active else self.storage.load()
            # An ended chat stays in session.chat_id: only a different chat is joined.
            if saved is not None and saved["sessionID"] != self.session.chat_id:
                with contextlib.suppress(CommandError):  # published as restoreFailed/Timeout
                    await self.restore_saved(saved)
            await asyncio.sleep(interval_s)


def _public(saved: SessionData) -> dict[str, Any]:
    """Session data as ``getSessionData`` shapes it (without our bookkeeping fields)."""
    return {k: saved[k] for k in ("sessionID", "alias", "secureKey", "userId",
                                  "transcriptPosition")}
