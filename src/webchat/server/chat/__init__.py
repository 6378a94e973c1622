"""The chat domain: every state change of a chat, with no HTTP, no aiohttp and no wall clock.

Each module is one concern (see docs/architecture.md); :class:`webchat.server.engine.ChatEngine`
wires them together for the adapters. Refusals are :class:`~webchat.server.errors.ChatError`
and :class:`~webchat.server.errors.AgentError` codes; only the adapters turn them into HTTP
statuses, GMS replies or Bayeux errors.
"""
