"""The documented surface of the original Genesys Widgets we implement, as data.

``docs/conformance.md`` is generated from this list, the code and the test suite
(``scripts/conformance.py``), so a documented item cannot silently go missing: every entry
here must be implemented and proved by a passing test marked
``@pytest.mark.conformance("<key>")``.

Four plugins (``Item.plugin``), each a section of the table:

* ``WebChatService`` — the chat service: options, commands, events. Keys keep their
  historical form ``"<kind>:<name>"`` (``"command:startChat"``, ``"event:disconnected"``).
* ``WebChat`` — the chat widget on the bus: its commands, events, options (the same
  ``_genesys.widgets.webchat`` object as the service's) and localization strings.
* ``main`` — the widgets-wide configuration ``_genesys.widgets.main``.
* ``CXBus`` — the bus API itself (kind ``api``).

Keys of the last three are ``"<plugin>.<kind>:<name>"``: ``"WebChat.command:open"``,
``"WebChat.option:chatButton.enabled"``, ``"WebChat.string:ChatTitle"``,
``"WebChat.string:Errors.ChatUnavailable"``, ``"main.option:i18n"``,
``"CXBus.api:registerEvents"``. A string is addressed as the site's ``main.i18n`` override
reaches it (``{en: {webchat: {Errors: {ChatUnavailable: ...}}}}``); our catalogs hold it as
``webchat.<name>``.

Sources (``Item.source``):

* ``R`` — the Genesys Widgets reference pages, read through the search tool: WebChat
  (Configuration, Localization, API Commands, API Events), WebChatService (Configuration,
  API Commands, API Events, and the page revisions that list every command and event), the
  widgets ``main`` configuration and localization pages, the Widget Bus (CXBus) API overview
  and the Extensions page (``registerPlugin``, ``registerCommand``, ``republish``,
  ``command(...).done().fail()``, ``ready``; the ``_genesys.widgets.onReady`` callback and
  ``_genesys.widgets.extensions``, the other two ways a page reaches the bus). Names were
  cross-checked against the public 8.5 bundle (names only, nothing copied): its WebChat
  string set is the 97 keys below, its WebChat plugin registers the 12 commands below and
  publishes 7 of the events (the other 5 are the current reference's); its
  WebChatService publishes ``disconnected``, ``reconnected``, ``restoredOffline``,
  ``chatServerTimeout`` and ``ajaxResponse`` and registers ``getFileLimits``; its CXBus plugin
  interface has ``publish``, ``publishDirect``, ``republish``, ``subscribe``,
  ``unsubscribe``, ``command``, ``registerCommand``, ``registerEvents``, and the bus itself
  ``configure`` (``debug``) and ``registerPlugin``.
* ``I`` — named by our issue tracker for behaviour the reference implies but does not name
  (e.g. ``deleteFile``, which the reference's file dialogs need; the bus ``after`` hook).
* ``D`` — ours: options a Python client needs that a browser does not.

Deliberately not listed: WebChatService's ``transport.*`` options (9.0.008+: they select a
Genesys Cloud or Engage cloud chat transport, not the GMS Chat v2 API we implement), the 8.5
bundle's undocumented leftovers (WebChatService ``id``/``serverURL``, WebChat
``transferLink``/``inviteLink``), and the bus internals the 8.5 interface exposes for
debugging (``parsePluginName``, ``namespace``, ``subscribers``, ``data``, ``registry``).

``scope`` says where an item lives: ``both`` (Python and browser), ``browser`` (meaningful
only in a page: the widget, the page's configuration, a DOM element), or ``python``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["option", "command", "event", "string", "api"]
Scope = Literal["both", "browser", "python"]
PluginName = Literal["WebChatService", "WebChat", "main", "CXBus"]
PLUGINS: tuple[PluginName, ...] = ("WebChatService", "WebChat", "main", "CXBus")


@dataclass(frozen=True)
class Item:
    kind: Kind
    name: str
    source: str
    scope: Scope = "both"
    summary: str = ""
    plugin: PluginName = "WebChatService"

    @property
    def key(self) -> str:
        local = f"{self.kind}:{self.name}"
        return local if self.plugin == "WebChatService" else f"{self.plugin}.{local}"


def _items(kind: Kind, source: str, scope: Scope, names: str,
           plugin: PluginName = "WebChatService") -> list[Item]:
    return [Item(kind, n, source, scope, plugin=plugin) for n in names.split()]


# ---- WebChatService -----------------------------------------------------------------------

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
        registerPreProcessor verifySession getFileLimits"""),
    Item("command", "registerTypingPreviewInput", "R", "browser",
         "binds a text input so its content is sent as the typing preview"),
    *_items("command", "I", "both", "deleteFile restoreChat"),
]

EVENTS: list[Item] = [
    *_items("event", "R", "both", """
        ready restored restoreTimeout restoreFailed messageReceived error started ended
        agentTypingStarted agentTypingStopped pollingStarted pollingStopped clientConnected
        clientDisconnected agentConnected agentDisconnected supervisorConnected
        supervisorDisconnected clientTypingStarted clientTypingStopped chatServerWentOffline
        chatServerBackOnline"""),
    Item("event", "disconnected", "R", "both",
         "a request failed at the network level, or a CometD connect failed"),
    Item("event", "reconnected", "R", "both",
         "the first success after disconnected; the client refreshes from its position"),
    Item("event", "restoredOffline", "R", "both",
         "the restore found the server unreachable, the chat still restorable"),
    Item("event", "chatServerTimeout", "R", "both", "resynchronising with the server gave up"),
    Item("event", "ajaxResponse", "R", "both", "every successful request, with its response"),
    *_items("event", "I", "both", "fileUploaded"),
]

SERVICE: list[Item] = [*OPTIONS, *COMMANDS, *EVENTS]

# ---- WebChat (the widget) -----------------------------------------------------------------

WEBCHAT_COMMANDS: list[Item] = [
    Item("command", "open", "R", "browser",
         "opens the widget; userData, form (autoSubmit, field values), formJSON", "WebChat"),
    Item("command", "close", "R", "browser", "closes the widget", "WebChat"),
    Item("command", "minimize", "R", "browser",
         "minimizes or restores ({minimized}: true/false; none toggles)", "WebChat"),
    Item("command", "endChat", "R", "browser", "ends the chat (after the question)", "WebChat"),
    Item("command", "configure", "R", "browser", "the webchat options at run time", "WebChat"),
    Item("command", "invite", "R", "browser", "shows the chat invitation", "WebChat"),
    Item("command", "reInvite", "R", "browser",
         "invites back into a chat that is still running", "WebChat"),
    Item("command", "injectMessage", "R", "browser",
         "adds a message to the transcript: type text/html (sanitized), name, text, custom, "
         "bubble", "WebChat"),
    Item("command", "showChatButton", "R", "browser", "shows the launcher (openDelay, duration)",
         "WebChat"),
    Item("command", "hideChatButton", "R", "browser", "hides the launcher (duration)", "WebChat"),
    Item("command", "showOverlay", "R", "browser", "shows site HTML over the transcript",
         "WebChat"),
    Item("command", "hideOverlay", "R", "browser", "hides the overlay", "WebChat"),
]

WEBCHAT_EVENTS: list[Item] = [
    *_items("event", "R", "browser", """
        ready opened closed minimized unminimized messageAdded chatButtonDisplayed""",
            "WebChat"),
    Item("event", "started", "R", "browser", "the chat session started", "WebChat"),
    Item("event", "submitted", "R", "browser", "the registration form was submitted", "WebChat"),
    Item("event", "ended", "R", "browser", "the chat session ended", "WebChat"),
    Item("event", "cancelled", "R", "browser",
         "the widget was closed before the chat started", "WebChat"),
    Item("event", "chatButtonHidden", "R", "browser", "the launcher was hidden", "WebChat"),
]

WEBCHAT_OPTIONS: list[Item] = [
    *_items("option", "R", "browser", """
        chatButton.enabled chatButton.template chatButton.effect chatButton.openDelay
        chatButton.effectDuration chatButton.hideDuringInvite
        autoInvite.enabled autoInvite.timeToInviteSeconds autoInvite.inviteTimeoutSeconds
        emojis actionsMenu uploadsEnabled form confirmFormCloseEnabled maxMessageLength
        charCountEnabled markdown minimizeOnMobileRestore ariaIdleAlertIntervals
        ariaCharRemainingIntervals inviteOnRestoreTimeout timeFormat
        async.newMessageRestoreState""", "WebChat"),
    Item("option", "proactive.enabled", "R", "browser",
         "the legacy name of autoInvite.enabled", "WebChat"),
    Item("option", "proactive.idleTimer", "R", "browser",
         "the legacy name of autoInvite.timeToInviteSeconds", "WebChat"),
    Item("option", "proactive.cancelTimer", "R", "browser",
         "the legacy name of autoInvite.inviteTimeoutSeconds", "WebChat"),
]

# The 8.5 WebChat localization set: 75 top-level keys and the 22 of ``Errors``.
WEBCHAT_STRINGS: list[Item] = [
    *_items("string", "R", "browser", """
        ChatButton ChatStarted ChatEnded AgentNameDefault AgentConnected AgentDisconnected
        SupervisorNameDefault SupervisorConnected SupervisorDisconnected AgentTyping
        AgentUnavailable ChatTitle ChatEnd ChatClose ChatMinimize ChatFormFirstName
        ChatFormLastName ChatFormNickname ChatFormEmail ChatFormSubject
        ChatFormPlaceholderFirstName ChatFormPlaceholderLastName ChatFormPlaceholderNickname
        ChatFormPlaceholderEmail ChatFormPlaceholderSubject ChatFormSubmit ChatFormCancel
        ChatFormClose ChatInputPlaceholder ChatInputSend ChatEndQuestion ChatEndCancel
        ChatEndConfirm ConfirmCloseWindow ConfirmCloseCancel ConfirmCloseConfirm
        ActionsDownload ActionsEmail ActionsPrint ActionsCobrowseStart ActionsSendFile
        ActionsCobrowseStop ActionsVideo ActionsTransfer ActionsInvite InstructionsTransfer
        InstructionsInvite InviteTitle InviteBody InviteReject InviteAccept ChatError
        ChatErrorButton DownloadButton FileSent FileTransferRetry FileTransferError
        FileTransferCancel RestoreTimeoutTitle RestoreTimeoutBody RestoreTimeoutReject
        RestoreTimeoutAccept EndConfirmBody EndConfirmAccept EndConfirmReject
        SurveyOfferQuestion ShowSurveyAccept ShowSurveyReject UnreadMessagesTitle AriaYouSaid
        AriaSaid AriaSystemSaid AriaMinimize AriaMaximize AriaClose
        Errors.ChatUnavailable Errors.CriticalFault Errors.StartFailed Errors.MessageFailed
        Errors.RestoreFailed Errors.TransferFailed Errors.FileTransferSizeError
        Errors.InviteFailed Errors.ChatServerWentOffline Errors.RestoredOffline
        Errors.Disconnected Errors.Reconnected Errors.FileSendFailed Errors.Generic
        Errors.102 Errors.103 Errors.161 Errors.201 Errors.202 Errors.203 Errors.240
        Errors.364""", "WebChat"),
]

WEBCHAT: list[Item] = [*WEBCHAT_COMMANDS, *WEBCHAT_EVENTS, *WEBCHAT_OPTIONS, *WEBCHAT_STRINGS]

# ---- main (_genesys.widgets.main) ---------------------------------------------------------

MAIN: list[Item] = [
    Item("option", "i18n", "R", "browser",
         "language packs by language code (inline object or a URL); overrides by key", "main"),
    Item("option", "lang", "R", "browser", "the language code to display", "main"),
    Item("option", "theme", "R", "browser", "the theme by name (dark, light, or a custom one)",
         "main"),
    Item("option", "themes", "R", "browser", "custom themes: name -> CSS class", "main"),
    Item("option", "mobileMode", "R", "browser", "true, false or 'auto'", "main"),
    Item("option", "mobileModeBreakpoint", "R", "browser",
         "the width in pixels under which auto mobile mode applies", "main"),
    Item("option", "customStylesheetID", "R", "browser",
         "the id of the site's <style> with CSS overrides", "main"),
    Item("option", "cookieOptions", "R", "browser",
         "domain, path, secure... for what the widgets keep in cookies", "main"),
    Item("option", "debug", "R", "browser", "logs bus commands and events to the console",
         "main"),
    Item("option", "header", "R", "browser",
         "the custom authorization header (WebChatService's enableCustomHeader)", "main"),
    Item("option", "timeFormat", "R", "browser", "12 or 24 hour timestamps for all widgets",
         "main"),
    Item("option", "downloadGoogleFont", "R", "browser",
         "whether the Roboto font is fetched (we never fetch a font)", "main"),
]

# ---- CXBus (the bus API) ------------------------------------------------------------------

CXBUS: list[Item] = [
    Item("api", "registerPlugin", "R", "both",
         "registers a namespace; returns the plugin interface (false if taken)", "CXBus"),
    Item("api", "registerCommand", "R", "both",
         "a plugin's command; the handler resolves or rejects it", "CXBus"),
    Item("api", "registerEvents", "R", "both",
         "declares the event names a plugin publishes (the bus registry)", "CXBus"),
    Item("api", "command", "R", "both",
         "calls Namespace.command; a promise with .done/.fail", "CXBus"),
    Item("api", "subscribe", "R", "both",
         "Namespace.event, Namespace.* or *; handlers get {event, data, publisher, time}",
         "CXBus"),
    Item("api", "unsubscribe", "R", "both", "removes a subscription", "CXBus"),
    Item("api", "publish", "R", "both", "publishes Namespace.event to its subscribers",
         "CXBus"),
    Item("api", "republish", "R", "both",
         "publishes and replays the event to whoever subscribes later", "CXBus"),
    Item("api", "publishDirect", "R", "both",
         "publishes without the debug log line unless someone listens (frequent events)",
         "CXBus"),
    Item("api", "ready", "R", "both", "the plugin accepts commands; publishes Namespace.ready",
         "CXBus"),
    Item("api", "before", "R", "both",
         "a hook before a command: new options, or false to veto", "CXBus"),
    Item("api", "after", "I", "both",
         "a hook after a command resolved, with its options and result", "CXBus"),
    Item("api", "configure", "R", "both", "bus settings: {debug} logs commands and events",
         "CXBus"),
    Item("api", "loadPlugin", "R", "both",
         "resolves when the named plugin is on the bus and ready; rejects if none can be",
         "CXBus"),
    Item("api", "onReady", "R", "browser",
         "_genesys.widgets.onReady(CXBus): the page's callback once the widgets started",
         "CXBus"),
    Item("api", "extensions", "R", "browser",
         "_genesys.widgets.extensions[name]($, CXBus, Common): page plugins run at start",
         "CXBus"),
]

ALL: list[Item] = [*SERVICE, *WEBCHAT, *MAIN, *CXBUS]
KEYS: frozenset[str] = frozenset(item.key for item in ALL)
WILDCARD_KINDS: frozenset[str] = frozenset({"string"})
"""Kinds a test may prove in bulk with a ``"<plugin>.<kind>:*"`` marker (every such item)."""


def by_plugin(plugin: PluginName) -> list[Item]:
    return [item for item in ALL if item.plugin == plugin]
