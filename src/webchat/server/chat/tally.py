"""What is kept of a transcript so that neither the sweep nor the size limit reads it again."""

from __future__ import annotations

import msgspec

from webchat.protocol.gms.models import Message
from webchat.server import inactivity


def event_bytes(msg: Message) -> int:
    """An event's share of ``max_chat_bytes``: its JSON as every client receives it."""
    return len(msgspec.json.encode(msg))


class Tally(msgspec.Struct, frozen=True, gc=False):
    """A transcript folded as its events are committed: a new one per commit, so, like
    :class:`~webchat.server.inactivity.Quiet`, an untracked struct (no cycle possible)."""

    seen: int = 0
    """How many of the chat's events are folded in."""
    quiet: inactivity.Quiet = msgspec.field(default_factory=inactivity.Quiet)
    bytes: int = 0

    def fold(self, events: list[Message]) -> Tally:
        """This tally with ``events[self.seen:]`` folded in."""
        new = events[self.seen:]
        if not new:
            return self
        return Tally(len(events), inactivity.fold(self.quiet, new),
                     self.bytes + sum(event_bytes(m) for m in new))
