"""The bus itself.

Names follow CXBus: a plugin owns a namespace (``WebChatService``); its commands and events are
addressed as ``Namespace.name``. Commands are coroutines that resolve with data or raise
:class:`CommandError` with a reason a person can read; events are fire-and-forget and delivered
to subscribers in publish order. Subscriptions may use ``Namespace.*`` or ``*``.

Handlers run on the event loop of whoever publishes. A failing subscriber is logged and never
breaks the publisher or the other subscribers: one bad widget must not take the chat down.

The rest of the original's bus API: ``register_events`` (a plugin declares what it publishes;
``registry()`` lists it), ``republish`` (a late subscriber still gets the last one),
``publish_direct`` (for frequent events: no debug line unless someone listens), ``before`` and
``after`` hooks around a command, ``configure({"debug": True})`` (every command, event and
subscription logged), and ``load_plugin`` (wait, bounded, until a plugin is on the bus and
ready). Names may carry the original's ``cx.plugin.`` root (``cx.plugin.WebChat.open``).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Options = dict[str, Any]
CommandHandler = Callable[[Options], Awaitable[Any]]
EventHandler = Callable[["BusEvent"], Awaitable[None] | None]
BeforeHook = Callable[[Options], Awaitable[Options | bool | None] | Options | bool | None]
AfterHook = Callable[[Options, Any], Awaitable[None] | None]

ROOT = "cx.plugin."
"""The original's namespace root: ``cx.plugin.WebChat.open`` is ``WebChat.open``."""
ALIASES: Mapping[str, str] = {"webchat": "WebChat", "webchat-service": "WebChatService"}
"""The original's plugin file names (``CXBus.loadPlugin("webchat")``) and their namespaces."""
CORE = "widgets-core"
"""The original's core bundle: part of this bus, so loading it resolves at once."""
LOAD_TIMEOUT = 10.0


class CommandError(Exception):
    """A command was rejected. ``reason`` is the human text; ``data`` optional details."""

    def __init__(self, reason: str, data: Any = None, *, command: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data
        self.command = command

    def __str__(self) -> str:
        return f"{self.command}: {self.reason}" if self.command else self.reason


@dataclass(frozen=True, slots=True)
class BusEvent:
    """What a subscriber receives: the full event name, its data, who published it and when
    (milliseconds since the epoch, as the original's ``time``)."""

    event: str
    data: Any
    publisher: str
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    pattern: str
    owner: str


def _normal(name: str) -> str:
    return name[len(ROOT):] if isinstance(name, str) and name.startswith(ROOT) else name


def _split(name: str) -> tuple[str, str]:
    namespace, sep, member = _normal(name).partition(".")
    if not sep or not namespace or not member:
        raise ValueError(f"expected 'Namespace.name', got {name!r}")
    return namespace, member


def _matches(pattern: str, event: str) -> bool:
    if pattern in ("*", event):
        return True
    if pattern.endswith(".*"):
        return event.startswith(pattern[:-1])
    return False


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@dataclass
class Plugin:
    """A plugin's handle on the bus. Created by :meth:`Bus.register_plugin`."""

    bus: Bus
    name: str
    is_ready: bool = False
    _commands: dict[str, CommandHandler] = field(default_factory=dict)
    _events: dict[str, None] = field(default_factory=dict)

    def register_command(self, command: str, handler: CommandHandler) -> None:
        if command in self._commands:
            raise ValueError(f"{self.name}.{command} is already registered")
        self._commands[command] = handler
        self.bus._debug("%s registered the command %s", self.name, command)

    def registered_commands(self) -> list[str]:
        return sorted(self._commands)

    def register_events(self, names: str | Iterable[str]) -> None:
        """Declare the events this plugin publishes (a name or several), as the original's
        ``registerEvents``: they appear in :meth:`Bus.registry`, and with ``debug`` on a
        subscription to, or a publication of, an undeclared one is reported."""
        for name in [names] if isinstance(names, str) else list(names):
            if not isinstance(name, str) or not name or "." in name or name == "*":
                raise ValueError(f"invalid event name {name!r}")
            self._events[name] = None
        self.bus._debug("%s registered the events %s", self.name, ", ".join(self._events))

    def registered_events(self) -> list[str]:
        return list(self._events)

    def publish(self, event: str, data: Any = None) -> None:
        """Publish ``Namespace.event`` under this plugin's namespace."""
        self.bus.publish(f"{self.name}.{event}", data, publisher=self.name)

    def republish(self, event: str, data: Any = None) -> None:
        """Publish, and keep it: whoever subscribes to it later receives this one at once."""
        self.bus.publish(f"{self.name}.{event}", data, publisher=self.name, retain=True)

    def publish_direct(self, event: str, data: Any = None) -> None:
        """Publish a frequent event: with ``debug`` on it is logged only if someone listens."""
        self.bus.publish(f"{self.name}.{event}", data, publisher=self.name, quiet=True)

    def ready(self) -> None:
        """Mark the plugin ready: commands are accepted from now on; ``ready`` is republished
        (as every plugin of the original does), so a later subscriber still hears it."""
        if not self.is_ready:
            self.is_ready = True
            self.bus._announce_ready(self.name)
            self.republish("ready")

    def not_ready(self) -> None:
        self.is_ready = False

    # The plugin also acts as a client of the bus, like CXBus plugins do.

    async def command(self, name: str, options: Mapping[str, Any] | None = None) -> Any:
        return await self.bus.command(name, options, caller=self.name)

    def subscribe(self, pattern: str, handler: EventHandler) -> Subscription:
        return self.bus.subscribe(pattern, handler, owner=self.name)

    def unsubscribe(self, sub: Subscription | str) -> int:
        """Drop one subscription, or (given a name, as the original) all of this plugin's to
        that event or pattern. Returns how many were dropped."""
        return self.bus.unsubscribe(sub, owner=self.name)

    def before(self, command: str, hook: BeforeHook) -> None:
        self.bus.before(command, hook)

    def after(self, command: str, hook: AfterHook) -> None:
        self.bus.after(command, hook)


class Bus:
    def __init__(self) -> None:
        self._plugins: dict[str, Plugin] = {}
        self._subs: dict[int, tuple[Subscription, EventHandler]] = {}
        self._hooks: dict[str, list[BeforeHook]] = {}
        self._after: dict[str, list[AfterHook]] = {}
        self._retained: dict[str, BusEvent] = {}
        self._ready_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.debug = False
        self.load_timeout = LOAD_TIMEOUT

    # ---- settings --------------------------------------------------------------------------

    def configure(self, options: Mapping[str, Any]) -> None:
        """The original's ``CXBus.configure``: ``{"debug": True}`` logs every command, event and
        subscription on this module's logger at INFO. Unknown settings are ignored (the
        original has others, e.g. ``pluginsPath``, that mean nothing to a Python bus)."""
        if not isinstance(options, Mapping):
            raise TypeError(f"configure takes an object, not {type(options).__name__}")
        debug = options.get("debug")
        if debug is not None:
            if not isinstance(debug, bool):
                raise TypeError(f"debug must be true or false, not {debug!r}")
            self.debug = debug

    def _debug(self, message: str, *args: Any) -> None:
        if self.debug:
            log.info(message, *args)

    def registry(self) -> dict[str, dict[str, list[str]]]:
        """Every plugin's declared events and registered commands, as the original's."""
        return {name: {"events": p.registered_events(), "commands": p.registered_commands()}
                for name, p in sorted(self._plugins.items())}

    # ---- plugins ---------------------------------------------------------------------------

    def register_plugin(self, name: str) -> Plugin:
        if not name or "." in name or name == "*":
            raise ValueError(f"invalid plugin name {name!r}")
        if name in self._plugins:
            raise ValueError(f"plugin {name!r} is already registered")
        plugin = Plugin(self, name)
        self._plugins[name] = plugin
        self._debug("plugin %s registered", name)
        return plugin

    def plugin(self, name: str) -> Plugin | None:
        return self._plugins.get(name)

    def plugins(self) -> list[str]:
        return sorted(self._plugins)

    async def wait_ready(self, name: str) -> None:
        plugin = self._plugins.get(name)
        if plugin is not None and plugin.is_ready:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready_waiters.setdefault(name, []).append(fut)
        await fut

    def _announce_ready(self, name: str) -> None:
        for fut in self._ready_waiters.pop(name, []):
            if not fut.done():
                fut.set_result(None)

    async def load_plugin(self, name: str) -> None:
        """The original's ``loadPlugin``: resolve once the plugin is on the bus and ready.
        ``name`` is a namespace or one of the original's file names (``webchat``,
        ``webchat-service``; ``widgets-core`` is this bus). A Python process loads no code by
        name, so a plugin that does not arrive within ``load_timeout`` seconds rejects."""
        if name == CORE:
            return
        namespace = ALIASES.get(name, name)
        try:
            await asyncio.wait_for(self.wait_ready(namespace), self.load_timeout)
        except TimeoutError:
            raise CommandError(
                f"plugin {namespace} was not loaded within {self.load_timeout:g} s",
                               command=f"loadPlugin {name}") from None

    # ---- commands --------------------------------------------------------------------------

    def before(self, command: str, hook: BeforeHook) -> None:
        """Run ``hook(options)`` before ``command``. The hook may return new options to use,
        ``False`` to veto the command, or ``None`` to let it through unchanged."""
        _split(command)
        self._hooks.setdefault(_normal(command), []).append(hook)

    def after(self, command: str, hook: AfterHook) -> None:
        """Run ``hook(options, result)`` each time ``command`` has resolved, before its caller
        gets the result. The command has happened: a failing hook is logged, never raised."""
        _split(command)
        self._after.setdefault(_normal(command), []).append(hook)

    async def command(self, name: str, options: Mapping[str, Any] | None = None, *,
                      caller: str = "") -> Any:
        try:
            namespace, member = _split(name)
        except ValueError as exc:
            raise CommandError(str(exc), command=name) from None
        name = f"{namespace}.{member}"
        self._debug("%s called the command %s", caller or "(page)", name)
        plugin = self._plugins.get(namespace)
        if plugin is None or member not in plugin._commands:
            raise CommandError("command not found", command=name)
        if not plugin.is_ready:
            raise CommandError(f"plugin {namespace} is not ready", command=name)
        if options is None:
            opts: Options = {}
        elif isinstance(options, Mapping):
            opts = dict(options)
        else:
            raise CommandError(
                f"options must be an object, not {type(options).__name__}", command=name)
        for hook in self._hooks.get(name, ()):
            try:
                result = await _maybe_await(hook(dict(opts)))
            except CommandError as exc:
                exc.command = exc.command or name
                raise
            except Exception as exc:
                raise CommandError(f"rejected by a before-hook: {exc}", command=name) from exc
            if result is False:
                raise CommandError("rejected by a before-hook", command=name)
            if isinstance(result, Mapping):
                opts = dict(result)
            elif result is not None and result is not True:
                raise CommandError("a before-hook returned neither options nor a verdict",
                                   command=name)
        try:
            result = await plugin._commands[member](opts)
        except CommandError as exc:
            exc.command = exc.command or name
            self._debug("%s rejected: %s", name, exc.reason)
            raise
        for after in self._after.get(name, ()):
            try:
                await _maybe_await(after(dict(opts), result))
            except Exception:
                log.exception("an after-hook of %s failed", name)
        return result

    # ---- events ----------------------------------------------------------------------------

    def subscribe(self, pattern: str, handler: EventHandler, *, owner: str = "") -> Subscription:
        """Subscribe to ``Namespace.event``, ``Namespace.*`` or ``*``. Events published with
        :meth:`Plugin.republish` before now reach the new handler at once (on the next turn
        of the loop when one runs), in the order they were last published."""
        if pattern != "*":
            namespace, member = _split(pattern)
            pattern = f"{namespace}.{member}"
            self._check_declared(namespace, member, "subscribed to")
        sub = Subscription(next(self._ids), pattern, owner)
        self._subs[sub.id] = (sub, handler)
        self._debug("%s subscribed to %s", owner or "(page)", pattern)
        for retained in [e for e in self._retained.values() if _matches(pattern, e.event)]:
            try:
                asyncio.get_running_loop().call_soon(self._replay, sub, handler, retained)
            except RuntimeError:
                self._replay(sub, handler, retained)
        return sub

    def _replay(self, sub: Subscription, handler: EventHandler, message: BusEvent) -> None:
        if sub.id in self._subs:  # unless it was dropped before its turn came
            self._deliver(handler, message)

    def unsubscribe(self, sub: Subscription | str, *, owner: str = "") -> int:
        """Drop a subscription; or, given an event name or pattern, every subscription of
        ``owner`` to it (the original's ``unsubscribe(name)``). Returns how many."""
        if isinstance(sub, Subscription):
            return 1 if self._subs.pop(sub.id, None) is not None else 0
        pattern = _normal(sub)
        gone = [i for i, (s, _) in self._subs.items() if s.pattern == pattern and s.owner == owner]
        for i in gone:
            del self._subs[i]
        self._debug("%s unsubscribed from %s", owner or "(page)", pattern)
        return len(gone)

    def publish(self, event: str, data: Any = None, *, publisher: str = "",
                retain: bool = False, quiet: bool = False) -> None:
        """Deliver ``event`` to its subscribers in subscription order. ``retain`` keeps it
        for later subscribers (republish); ``quiet`` logs it only if someone listens."""
        namespace, member = _split(event)
        event = f"{namespace}.{member}"
        message = BusEvent(event, data, publisher, time.time() * 1000)
        if retain:
            self._retained.pop(event, None)
            self._retained[event] = message
        targets = [(s, h) for s, h in list(self._subs.values()) if _matches(s.pattern, event)]
        if not quiet or targets:
            self._debug("%s published %s", publisher or "(page)", event)
            self._check_declared(namespace, member, "published")
        for _, handler in targets:
            self._deliver(handler, message)

    def _check_declared(self, namespace: str, member: str, what: str) -> None:
        plugin = self._plugins.get(namespace)
        if (self.debug and member != "*" and plugin is not None and plugin._events
                and member not in plugin._events):
            log.warning("%s %s.%s, which %s has not registered (registerEvents)",
                        what, namespace, member, namespace)

    def _deliver(self, handler: EventHandler, message: BusEvent) -> None:
        try:
            result = handler(message)
        except Exception:
            log.exception("subscriber of %s failed", message.event)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("subscriber failed", exc_info=task.exception())

    @asynccontextmanager
    async def listen(self, pattern: str) -> AsyncIterator[asyncio.Queue[BusEvent]]:
        """Collect matching events in a queue for the duration of the block."""
        queue: asyncio.Queue[BusEvent] = asyncio.Queue()
        sub = self.subscribe(pattern, queue.put_nowait)
        try:
            yield queue
        finally:
            self.unsubscribe(sub)
