"""An asyncio CXBus: plugins, namespaced commands that return awaitables, events, hooks."""

from webchat.bus.bus import Bus, BusEvent, CommandError, Plugin, Subscription

__all__ = ["Bus", "BusEvent", "CommandError", "Plugin", "Subscription"]
