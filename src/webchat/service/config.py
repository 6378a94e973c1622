"""The ``webchat`` configuration namespace, read from the same dict shape the widgets use.

The namespace is shared with the WebChat widget's UI options (``emojis``, ``actionsMenu`` …),
so unknown keys are kept and ignored, not rejected; known keys are type-checked, because a
misspelt type is a bug the integrator wants to hear about at start-up rather than mid-chat.
Defaults the reference does not state are marked in ``docs/webchatservice.md`` and are
configurable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """The configuration cannot work; the message names the option."""


@dataclass(frozen=True)
class CometDConfig:
    enabled: bool = False
    cometURL: str = ""
    channel: str = ""
    apiURL: str = ""
    websocketEnabled: bool = True
    logLevel: str = "info"


@dataclass(frozen=True)
class AsyncConfig:
    """``webchat.async``: a chat that outlives the customer's connection."""

    enabled: bool = False
    newMessageRestoreState: str = "minimized"
    """How the widget shows itself when it restores for a message that arrived while the
    customer was away (``minimized`` or ``maximized``); reported in ``restored``."""
    getSessionData: Callable[..., Any] | None = None
    """Called ``(sessionData, Cookie, CookieOptions)`` to hand the site the data to keep."""
    setSessionData: Callable[..., Any] | None = None
    """Called ``(Open, Cookie, CookieOptions)``; returns what the site kept (object or JSON)."""
    userDataKey: str = "GCTI_Chat_AsyncMode"
    """Ours: the userData key sent ("true") with ``startChat`` so the server keeps the chat
    open while the customer is away. The key GMS uses is unverified ([U]), so it is an option;
    the server's ``--async-user-data-key`` must match."""


RESTORE_STATES = ("minimized", "maximized")


@dataclass(frozen=True)
class WebChatConfig:
    dataURL: str = ""
    endpoint: str = ""
    """A chat service name appended to ``dataURL`` (``{dataURL}/{endpoint}``) when set."""
    apikey: str = ""
    enableCustomHeader: bool = False
    userData: dict[str, str] = field(default_factory=dict)
    pollExceptionLimit: int = 5
    ajaxTimeout: int = 3000
    pollInterval: int = 1000
    """Ours: ms between refreshes in REST mode (the original's cadence is not documented)."""
    typingStopDelay: int = 5000
    """Ours: ms of silence after ``sendTyping`` before ``stopTyping`` is sent."""
    restoreTimeout: int = 60_000
    """ms after the last activity beyond which a saved chat is not restored (the reference
    states 60 seconds); asynchronous chats are exempt."""
    cometD: CometDConfig = field(default_factory=CometDConfig)
    async_: AsyncConfig = field(default_factory=AsyncConfig)
    """``webchat.async`` (``async`` is a Python keyword)."""
    headers: dict[str, str] = field(default_factory=dict)
    """The ``_genesys.widgets.main.header`` object, sent when ``enableCustomHeader`` is on."""
    cookieOptions: dict[str, Any] = field(default_factory=dict)
    """``_genesys.widgets.main.cookieOptions``, handed to the async callbacks as
    ``CookieOptions`` (``{path, domain, secure, sameSite, expires}``)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chat_url(self) -> str:
        base = self.dataURL.rstrip("/")
        return f"{base}/{self.endpoint.strip('/')}" if self.endpoint else base

    @classmethod
    def from_dict(cls, options: Mapping[str, Any], main: Mapping[str, Any] | None = None
                  ) -> WebChatConfig:
        if not isinstance(options, Mapping):
            raise ConfigError("webchat configuration must be an object")
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in options.items():
            if key in _TYPES:
                known[key] = _check(key, value, _TYPES[key])
            else:
                extra[key] = value
        if "userData" in known:
            known["userData"] = _string_map("userData", known["userData"])
        if "cometD" in known:
            comet = known["cometD"]
            unknown = set(comet) - set(CometDConfig.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"cometD: unknown option(s) {sorted(unknown)}")
            for key, value in comet.items():
                _check(f"cometD.{key}", value, bool if key in ("enabled", "websocketEnabled")
                       else str)
            if comet.get("logLevel", "info") not in ("debug", "info", "warn", "error"):
                raise ConfigError("cometD.logLevel must be one of debug, info, warn, error")
            known["cometD"] = CometDConfig(**comet)
        if "async" in known:
            known["async_"] = _async_config(known.pop("async"))
        for key in ("pollExceptionLimit", "ajaxTimeout", "pollInterval", "typingStopDelay",
                    "restoreTimeout"):
            if key in known and known[key] < (1 if key != "pollExceptionLimit" else 0):
                raise ConfigError(f"{key} must be positive")
        headers = dict((main or {}).get("header") or {})
        cookie_options = (main or {}).get("cookieOptions") or {}
        if not isinstance(cookie_options, Mapping):
            raise ConfigError("main.cookieOptions must be an object")
        config = cls(**known, headers=_string_map("main.header", headers),
                     cookieOptions=dict(cookie_options), extra=extra)
        if not config.dataURL and not (config.cometD.enabled and config.cometD.cometURL):
            raise ConfigError("dataURL is required (or cometD.enabled with cometURL)")
        if config.cometD.enabled and not (config.cometD.cometURL and config.cometD.channel):
            raise ConfigError("cometD.enabled needs cometD.cometURL and cometD.channel")
        return config


_TYPES: dict[str, type | tuple[type, ...]] = {
    "dataURL": str, "endpoint": str, "apikey": str, "enableCustomHeader": bool,
    "userData": dict, "pollExceptionLimit": int, "ajaxTimeout": int, "pollInterval": int,
    "typingStopDelay": int, "restoreTimeout": int, "cometD": dict, "async": dict,
}

#: Every option the Python service reads, dotted for nested objects (conformance table).
KNOWN_OPTIONS = frozenset(
    [k for k in _TYPES if k not in ("cometD", "async")]
    + [f"cometD.{k}" for k in CometDConfig.__dataclass_fields__]
    + [f"async.{k}" for k in AsyncConfig.__dataclass_fields__])


def _async_config(value: Mapping[str, Any]) -> AsyncConfig:
    unknown = set(value) - set(AsyncConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"async: unknown option(s) {sorted(unknown)}")
    if "enabled" in value:
        _check("async.enabled", value["enabled"], bool)
    if "userDataKey" in value and (not isinstance(value["userDataKey"], str)
                                   or not value["userDataKey"]):
        raise ConfigError("async.userDataKey must be a non-empty string")
    state = value.get("newMessageRestoreState", "minimized")
    if state not in RESTORE_STATES:
        raise ConfigError(f"async.newMessageRestoreState must be one of {list(RESTORE_STATES)}")
    for key in ("getSessionData", "setSessionData"):
        if value.get(key) is not None and not callable(value[key]):
            raise ConfigError(f"async.{key} must be a function")
    if (value.get("getSessionData") is None) != (value.get("setSessionData") is None):
        raise ConfigError("async.getSessionData and async.setSessionData go together")
    return AsyncConfig(**value)


def _check(key: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    if isinstance(value, bool) and expected is int:
        raise ConfigError(f"{key} must be a number, not a boolean")
    if not isinstance(value, expected):
        name = expected.__name__ if isinstance(expected, type) else str(expected)
        raise ConfigError(f"{key} must be {name}, not {type(value).__name__}")
    return value


def _string_map(name: str, value: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[str(key)] = "true" if item else "false"
        elif isinstance(item, str | int | float):
            out[str(key)] = str(item)
        else:
            raise ConfigError(f"{name}[{key}] must be a string or number")
    return out
