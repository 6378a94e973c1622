"""The bus itself.

Names follow CXBus: a plugin owns a namespace (``WebChatService``); its commands and events are
addressed as ``Namespace.name``. Commands are coroutines that resolve with data or raise
:class:`CommandError` with a reason a person can read; events are fire-and-forget and delivered
to subscribers in publish order. Subscriptions may use ``Namespace.*`` or ``*``.

Handlers run on the event loop of whoever publishes. A failing subscriber is logged and never
breaks the publisher or the other subscribers: one bad widget must not take the chat down.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Options = dict[str, Any]
CommandHandler = Callable[[Options], Awaitable[Any]]
EventHandler = Callable[["BusEvent"], Awaitable[None] | None]
BeforeHook = Callable[[Options], Awaitable[Options | bool | None] | Options | bool | None]


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
    """What a subscriber receives: the full event name, its data and who published it."""

    event: str
    data: Any
    publisher: str


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    pattern: str
    owner: str


def _split(name: str) -> tuple[str, str]:
    namespace, sep, member = name.partition(".")
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

    def register_command(self, command: str, handler: CommandHandler) -> None:
        if command in self._commands:
            raise ValueError(f"{self.name}.{command} is already registered")
        self._commands[command] = handler

    def registered_commands(self) -> list[str]:
        return sorted(self._commands)

    def publish(self, event: str, data: Any = None) -> None:
        """Publish ``Namespace.event`` under this plugin's namespace."""
        self.bus.publish(f"{self.name}.{event}", data, publisher=self.name)

    def ready(self) -> None:
        """Mark the plugin ready: commands are accepted from now on; ``ready`` is published."""
        if not self.is_ready:
            self.is_ready = True
            self.bus._announce_ready(self.name)
            self.publish("ready")

    def not_ready(self) -> None:
        self.is_ready = False

    # The plugin also acts as a client of the bus, like CXBus plugins do.

    async def command(self, name: str, options: Mapping[str, Any] | None = None) -> Any:
        return await self.bus.command(name, options, caller=self.name)

    def subscribe(self, pattern: str, handler: EventHandler) -> Subscription:
        return self.bus.subscribe(pattern, handler, owner=self.name)

    def before(self, command: str, hook: BeforeHook) -> None:
        self.bus.before(command, hook)


class Bus:
    def __init__(self) -> None:
        self._plugins: dict[str, Plugin] = {}
        self._subs: dict[int, tuple[Subscription, EventHandler]] = {}
        self._hooks: dict[str, list[BeforeHook]] = {}
        self._ready_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- plugins ---------------------------------------------------------------------------

    def register_plugin(self, name: str) -> Plugin:
        if not name or "." in name or name == "*":
            raise ValueError(f"invalid plugin name {name!r}")
        if name in self._plugins:
            raise ValueError(f"plugin {name!r} is already registered")
        plugin = Plugin(self, name)
        self._plugins[name] = plugin
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

    # ---- commands --------------------------------------------------------------------------

    def before(self, command: str, hook: BeforeHook) -> None:
        """Run ``hook(options)`` before ``command``. The hook may return new options to use,
        ``False`` to veto the command, or ``None`` to let it through unchanged."""
        _split(command)
        self._hooks.setdefault(command, []).append(hook)

    async def command(self, name: str, options: Mapping[str, Any] | None = None, *,
                      caller: str = "") -> Any:
        try:
            namespace, member = _split(name)
        except ValueError as exc:
            raise CommandError(str(exc), command=name) from None
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
            return await plugin._commands[member](opts)
        except CommandError as exc:
            exc.command = exc.command or name
            raise

    # ---- events ----------------------------------------------------------------------------

    def subscribe(self, pattern: str, handler: EventHandler, *, owner: str = "") -> Subscription:
        if pattern != "*":
            _split(pattern)
        sub = Subscription(next(self._ids), pattern, owner)
        self._subs[sub.id] = (sub, handler)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.pop(sub.id, None)

    def publish(self, event: str, data: Any = None, *, publisher: str = "") -> None:
        _split(event)
        message = BusEvent(event, data, publisher)
        for sub, handler in list(self._subs.values()):
            if not _matches(sub.pattern, event):
                continue
            try:
                result = handler(message)
            except Exception:
                log.exception("subscriber of %s failed", event)
                continue
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
