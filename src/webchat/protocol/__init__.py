"""Sans-I/O protocol cores: wire models and state machines, with no sockets and no asyncio.

Everything here is pure: feed in what arrived (and the clock where it matters), get out what to
send and what happened. Transports in :mod:`webchat.transport` and the server in
:mod:`webchat.server` do the I/O.
"""
