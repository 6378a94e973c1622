"""The documented surface of the original WebChatService, as data.

``docs/conformance.md`` is generated from this list, the code and the test suite
(``scripts/conformance.py``), so a documented item cannot silently go missing: every entry
here must be implemented and proved by a passing test marked
``@pytest.mark.conformance("<kind>:<name>")``.

Sources (the shared spec has no WebChatService digest; see ``docs/webchatservice.md``):

* ``R`` — the Genesys Widgets reference pages for WebChatService (configuration, API commands,
  API events; read through the search tool, including the page revisions that list every
  command and event) and the widget tag guide that lists every ``webchat.*`` service option.
* ``I`` — named by our issue tracker for behaviour the reference implies but does not name
  (e.g. ``getFileLimits``, which the reference's file dialogs need).
* ``D`` — ours: options a Python client needs that a browser does not.

``scope`` says where an item lives: ``both`` (Python service and browser service),
``browser`` (meaningful only in a page, e.g. it takes a DOM element), or ``python``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["option", "command", "event"]
Scope = Literal["both", "browser", "python"]


@dataclass(frozen=True)
class Item:
    kind: Kind
    name: str
    source: str
    scope: Scope = "both"
    summary: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"


def _items(kind: Kind, source: str, scope: Scope, names: str) -> list[Item]:
    return [Item(kind, n, source, scope) for n in names.split()]


OPTIONS: list[Item] = [
    *_items("option", "R", "both", """
        dataURL apikey enableCustomHeader userData ajaxTimeout pollExceptionLimit restoreTimeout
        cometD.enabled cometD.cometURL cometD.channel cometD.apiURL cometD.websocketEnabled
        cometD.logLevel async.enabled async.newMessageRestoreState async.getSessionData
        async.setSessionData endpoint"""),
    Item("option", "xhrFields", "R", "browser", "extra XMLHttpRequest fields (withCredentials)"),
    *_items("option", "D", "python", "pollInterval typingStopDelay"),
    Item("option", "async.userDataKey", "D", "both",
         "userData key marking an asynchronous chat ([U] in GMS; the server's must match)"),
    Item("option", "stateStorageKey", "D", "browser",
         "localStorage key of the saved session ([U]: the original's key is unverified)"),
]

COMMANDS: list[Item] = [
    *_items("command", "R", "both", """
        configure startChat endChat sendMessage sendCustomNotice sendTyping sendFilteredMessage
        addPrefilter updateUserData poll startPoll stopPoll resetPollExceptions restore
        getTranscript getAgents getStats sendFile downloadFile getSessionData fetchHistory
        registerPreProcessor verifySession"""),
    Item("command", "registerTypingPreviewInput", "R", "browser",
         "binds a text input so its content is sent as the typing preview"),
    *_items("command", "I", "both", "getFileLimits deleteFile restoreChat"),
]

EVENTS: list[Item] = [
    *_items("event", "R", "both", """
        ready restored restoreTimeout restoreFailed messageReceived error started ended
        agentTypingStarted agentTypingStopped pollingStarted pollingStopped clientConnected
        clientDisconnected agentConnected agentDisconnected supervisorConnected
        supervisorDisconnected clientTypingStarted clientTypingStopped chatServerWentOffline
        chatServerBackOnline"""),
    *_items("event", "I", "both", "fileUploaded"),
]

ALL: list[Item] = [*OPTIONS, *COMMANDS, *EVENTS]
KEYS: frozenset[str] = frozenset(item.key for item in ALL)
