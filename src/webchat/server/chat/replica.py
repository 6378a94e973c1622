"""Replication of commits between the processes of a cluster.

Every process keeps the open chats in memory and must see every commit, whichever process made
it: customers and agents of one chat may be connected to different processes. After each of
its own commits a process publishes a :class:`Commit` (the chat's row, participants and files
as committed, with just the new events) on the cluster broker; the others adopt it and
announce its events to their own clients exactly as if they had committed it
(:meth:`Changes.adopt`).

The store stays the truth; the broker only makes it fast. A commit is applied only on top of
the revision it follows. Anything else — a gap (a message lost while the broker connection
was down, or two processes' commits arriving out of order), a chat this process does not know
— is caught up from the store; a commit this process already has (it reloaded the chat under
the store lock meanwhile) is dropped. A commit heard while a change of the chat is under way
here is caught up from the store once that change is done: the change may already be past
the store's lock, where it would have seen it (:meth:`Changes.open`). After the broker
reconnects every chat is caught up from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from webchat.broker.base import Broker, Unsubscribe
from webchat.protocol.gms.models import Message
from webchat.server.chat.change import Changes
from webchat.server.chat.registry import ChatRegistry
from webchat.store.base import Store
from webchat.store.records import ChatRecord, copy

log = logging.getLogger(__name__)

COMMITS = "commits"


class Commit(msgspec.Struct, array_like=True):
    origin: str
    chat: ChatRecord
    """As committed, but ``events`` holds only the events this commit added."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Commit)


class Replica:
    def __init__(self, cluster: Broker, node: str, changes: Changes, registry: ChatRegistry,
                 store: Store) -> None:
        self._cluster = cluster
        self.node = node
        self._changes = changes
        self._registry = registry
        self._store = store
        self._unsubscribe: Unsubscribe | None = None
        self._catching_up: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        """Chats asked to catch up while their catch-up ran: it may have read them before
        the commit that asked, so it runs once more."""
        self.resyncs: list[Callable[[], Awaitable[None]]] = []
        """Also run after a broker reconnect (the agent directory reloads itself)."""
        self.applied = self.caught_up = 0
        """Commits adopted from the broker, and chats read again from the store instead."""
        changes.published.append(self._publish)

    def start(self) -> None:
        """Hear the other processes' commits (and resync after every broker reconnect)."""
        self._unsubscribe = self._cluster.subscribe(COMMITS, self._received)
        reconnects = getattr(self._cluster, "on_reconnect", None)
        if isinstance(reconnects, list) and self.resync_soon not in reconnects:
            reconnects.append(self.resync_soon)

    def stop_listening(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def stop(self) -> None:
        self.stop_listening()
        self._again.clear()  # nothing runs once more after a cancelled catch-up
        tasks = list(self._catching_up.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- out -------------------------------------------------------------------------------

    def _publish(self, chat: ChatRecord, events: list[Message]) -> None:
        self._cluster.publish(COMMITS, _encoder.encode(
            Commit(self.node, copy(chat, events=events))))

    # ---- in --------------------------------------------------------------------------------

    def _received(self, _topic: str, payload: bytes) -> None:
        try:
            note = _decoder.decode(payload)
        except msgspec.DecodeError:
            log.warning("undecodable commit on the cluster broker (%d bytes)", len(payload))
            return
        if note.origin == self.node:
            return
        incoming = note.chat
        chat_id = incoming.chat_id
        cached = self._registry.cached(chat_id)
        if cached is None:
            if incoming.revision == 1:  # a new chat: its first commit holds all its events
                self._changes.adopt(incoming, list(incoming.events))
                self.applied += 1
            else:
                self.catch_up(chat_id)
            return
        if incoming.revision <= cached.revision:
            return
        if self._registry.lock(chat_id).locked():
            # A change of the chat is under way here. If it has not taken the store's lock
            # yet it will see this commit there, but it may be past it (committing, or
            # reading the chat again): read the chat once the change is done (the catch-up
            # waits for the lock; it adopts nothing if the change already brought it).
            self.catch_up(chat_id)
            return
        events = incoming.events
        if incoming.revision != cached.revision + 1 or (
                events and events[0].index != cached.next_index):
            self.catch_up(chat_id)
            return
        cached.events.extend(events)
        incoming.events = cached.events
        self._changes.adopt(incoming, events)
        self.applied += 1

    def catch_up(self, chat_id: str) -> None:
        """Read the chat from the store; asked again while that runs, once more after it."""
        if chat_id in self._catching_up:
            self._again.add(chat_id)
            return
        task = asyncio.get_running_loop().create_task(self._catch_up(chat_id))
        self._catching_up[chat_id] = task

    async def refresh(self, chat_id: str) -> ChatRecord | None:
        """Read the chat from the store now and adopt it if it is ahead of this copy."""
        async with self._registry.lock(chat_id):
            stored = await self._store.load_chat(chat_id)
            if stored is None:
                return self._registry.cached(chat_id)
            self.caught_up += 1
            return self._changes.replay(self._registry.cached(chat_id), stored)

    async def _catch_up(self, chat_id: str) -> None:
        try:
            await self.refresh(chat_id)
        except Exception:
            log.exception("could not catch up chat %s", chat_id)
        finally:
            self._catching_up.pop(chat_id, None)
            if chat_id in self._again:
                self._again.discard(chat_id)
                self.catch_up(chat_id)

    def resync_soon(self) -> None:
        asyncio.get_running_loop().create_task(self.resync())

    async def resync(self) -> None:
        """Catch every chat up from the store: after the broker lost messages."""
        try:
            stored_open = await self._store.load_open_chats()
            for stored in stored_open:
                async with self._registry.lock(stored.chat_id):
                    self._changes.replay(self._registry.cached(stored.chat_id), stored)
            still_open = {c.chat_id for c in stored_open}
            for chat in self._registry.open_chats():
                if chat.chat_id not in still_open:
                    self.catch_up(chat.chat_id)  # ended elsewhere meanwhile
            for resync in self.resyncs:
                await resync()
        except Exception:
            log.exception("resync from the store failed")
