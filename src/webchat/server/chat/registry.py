"""The chat cache: which chats are in memory, found by id or by secureKey, and when they go.

Open chats are all loaded at start; an ended chat asked for again is loaded from the store and
kept ``ended_cache_s`` (on the scheduler) before it is evicted. Disk is the truth: a chat whose
save failed is forgotten here and read again on its next use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from webchat.server.chat.clock import Scheduler, Timer
from webchat.server.chat.tally import Tally
from webchat.store.base import Store
from webchat.store.records import ChatRecord

MAX_CHAT_ID = 64
MAX_SECURE_KEY = 256


class ChatRegistry:
    def __init__(self, store: Store, scheduler: Scheduler, ended_cache_s: float) -> None:
        self._store = store
        self._scheduler = scheduler
        self._ended_cache_s = ended_cache_s
        self.chats: dict[str, ChatRecord] = {}
        self._by_key: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tallies: dict[str, Tally] = {}
        """chat id -> its transcript folded (see :class:`Tally`), kept up to date on commit."""
        self._evictions: dict[str, Timer] = {}
        self.put_listeners: list[Callable[[ChatRecord], None]] = []
        """Told of every copy of a chat that becomes the cached one: loaded, committed here
        or replayed from another process (the inactivity sweeper plans from them)."""

    async def load_open(self) -> list[ChatRecord]:
        chats = await self._store.load_open_chats()
        for chat in chats:
            self.put(chat)
        return chats

    def put(self, chat: ChatRecord) -> None:
        self.chats[chat.chat_id] = chat
        self._by_key[chat.secure_key] = chat.chat_id
        for listener in self.put_listeners:
            listener(chat)

    def cached(self, chat_id: str) -> ChatRecord | None:
        """The chat if it is in memory (no store read): for pushes about chats in progress."""
        return self.chats.get(chat_id)

    def current(self, chat: ChatRecord) -> ChatRecord:
        """The cached copy of ``chat``: another request may have replaced it meanwhile."""
        return self.chats.get(chat.chat_id, chat)

    def __iter__(self) -> Iterator[ChatRecord]:
        return iter(list(self.chats.values()))

    def __len__(self) -> int:
        return len(self.chats)

    def open_chats(self) -> list[ChatRecord]:
        return [c for c in self.chats.values() if not c.ended]

    async def get(self, chat_id: str) -> ChatRecord | None:
        chat = self.chats.get(chat_id)
        if chat is None and 0 < len(chat_id) <= MAX_CHAT_ID:
            chat = await self._store.load_chat(chat_id)
            if chat is not None:
                self.put(chat)
                if chat.ended:
                    self.schedule_eviction(chat_id)
        return chat

    async def id_for_key(self, secure_key: str) -> str | None:
        if not 0 < len(secure_key) <= MAX_SECURE_KEY:
            return None
        return self._by_key.get(secure_key) or await self._store.chat_id_for_key(secure_key)

    async def by_key(self, secure_key: str) -> ChatRecord | None:
        chat_id = await self.id_for_key(secure_key)
        return await self.get(chat_id) if chat_id else None

    def lock(self, chat_id: str) -> asyncio.Lock:
        lock = self._locks.get(chat_id)
        if lock is None:
            lock = self._locks[chat_id] = asyncio.Lock()
        return lock

    def tally(self, chat: ChatRecord) -> Tally:
        """The chat's tally, folding in only the events committed since it was last asked."""
        tally = self._tallies.get(chat.chat_id)
        if tally is None or tally.seen > len(chat.events):
            tally = Tally()
        tally = self._tallies[chat.chat_id] = tally.fold(chat.events)
        return tally

    def forget(self, chat_id: str) -> None:
        """Drop what memory holds of a chat whose save failed: it may be ahead of disk."""
        self.chats.pop(chat_id, None)
        self._tallies.pop(chat_id, None)

    def schedule_eviction(self, chat_id: str) -> None:
        """Evict the chat ``ended_cache_s`` from now, if it is still ended then."""
        old = self._evictions.pop(chat_id, None)
        if old is not None:
            old.cancel()

        def evict() -> None:
            self._evictions.pop(chat_id, None)
            chat = self.chats.get(chat_id)
            if chat is not None and chat.ended:
                self.chats.pop(chat_id, None)
                self._tallies.pop(chat_id, None)
                self._locks.pop(chat_id, None)
                self._by_key.pop(chat.secure_key, None)

        self._evictions[chat_id] = self._scheduler.call_later(self._ended_cache_s, evict)

    def cancel_evictions(self) -> None:
        for timer in self._evictions.values():
            timer.cancel()
        self._evictions.clear()
