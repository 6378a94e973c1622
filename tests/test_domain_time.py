"""The chat domain on simulated time: offers time out, ended chats are evicted and the
inactivity sweep runs when the test moves the clock, without a second of real sleep.

The engine is built without HTTP (a SQLite store, the memory broker) and with
:class:`SimulatedTime` as its scheduler, whose clock is also the domain's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from webchat.broker.memory import MemoryBroker
from webchat.protocol.gms.models import EventType
from webchat.server.accounts import hash_password
from webchat.server.chat.clock import AsyncioScheduler, SimulatedTime
from webchat.server.config import ServerConfig
from webchat.server.engine import ChatEngine, CustomerForm
from webchat.server.inactivity import InactivityConfig
from webchat.store.records import AgentRecord, ChatRecord, ChatStatus
from webchat.store.sqlite import SqliteStore

SERVICE = "customer-support"


@dataclass
class Domain:
    engine: ChatEngine
    time: SimulatedTime
    heard: list[tuple[str, dict[str, object]]]
    """(topic, payload) of every agent notification published."""

    def offered_to(self, chat: ChatRecord) -> object:
        """Whom the chat is offered to now (its current copy: every commit makes a new one)."""
        return self.engine.summary(self.engine.chats[chat.chat_id])["offeredTo"]

    def heard_by(self, agent_id: str, type_: str) -> list[dict[str, object]]:
        return [p for topic, p in self.heard
                if topic == f"agent.{agent_id}" and p.get("type") == type_]

    async def add_agent(self, agent_id: str, *, ready: bool = True) -> None:
        await self.engine.save_agent(AgentRecord(agent_id, agent_id.title(),
                                                 hash_password("pw"), ready, 1))
        await self.engine.set_ready(agent_id, ready, 1)
        await self.time.advance(0)  # routing runs once the current work yields

    async def start_chat(self) -> ChatRecord:
        chat = await self.engine.customers.request_chat(
            SERVICE, CustomerForm("Ada", "", "", "", "", {}))
        await self.time.advance(0)
        return self.engine.chats[chat.chat_id]


@pytest.fixture
async def domain(tmp_path: Path) -> AsyncIterator[Domain]:
    config = ServerConfig(data_dir=str(tmp_path), offer_timeout_s=30.0, ended_cache_s=600.0,
                          inactivity=InactivityConfig(customer_alert_s=240.0,
                                                      customer_close_s=300.0, sweep_s=1.0))
    store = SqliteStore(tmp_path / "webchat.sqlite3")
    broker = MemoryBroker()
    clock = SimulatedTime()
    heard: list[tuple[str, dict[str, object]]] = []
    engine = ChatEngine(store, broker, config, scheduler=clock)
    await store.open()
    await broker.start()
    for topic in ("agent.a", "agent.b"):
        broker.subscribe(topic, lambda t, p: heard.append((t, msgspec.json.decode(p))))
    await engine.start()
    yield Domain(engine, clock, heard)
    await engine.stop()
    await broker.stop()
    await store.close()


async def test_an_offer_times_out_on_simulated_time_and_goes_to_the_next_agent(domain):
    await domain.add_agent("a")
    started = time.monotonic()
    chat = await domain.start_chat()
    assert domain.offered_to(chat) == "a"
    await domain.add_agent("b")  # ready only now: the offer stays with a

    await domain.time.advance(29.9)
    assert domain.offered_to(chat) == "a"
    assert not domain.heard_by("a", "offerRevoked")

    await domain.time.advance(0.1)  # 30 s: the offer lapses and goes to the other agent
    assert domain.heard_by("a", "offerRevoked") == [{"type": "offerRevoked",
                                                     "chatId": chat.chat_id}]
    assert domain.offered_to(chat) == "b"
    assert [p["chat"]["chatId"] for p in domain.heard_by("b", "offer")] == [chat.chat_id]
    assert time.monotonic() - started < 5  # no real waiting


async def test_an_accepted_offer_does_not_time_out(domain):
    await domain.add_agent("a")
    chat = await domain.start_chat()
    accepted = await domain.engine.staff.accept("a", chat.chat_id)
    assert accepted.status is ChatStatus.ACTIVE
    await domain.time.advance(100)  # past the offer timeout, before any inactivity rule
    assert not domain.heard_by("a", "offerRevoked")
    assert domain.engine.cached(chat.chat_id).agent_id == "a"


async def test_an_ended_chat_is_evicted_from_the_cache_on_simulated_time(domain):
    chat = await domain.start_chat()
    ended = await domain.engine.customers.disconnect(chat)
    assert ended.ended and ended is domain.engine.cached(chat.chat_id)

    await domain.time.advance(599)
    assert domain.engine.cached(chat.chat_id) is not None
    await domain.time.advance(1)
    assert domain.engine.cached(chat.chat_id) is None
    # Disk is the truth: the chat is still there for a late refresh, and cached again.
    again = await domain.engine.registry.get(chat.chat_id)
    assert again is not None and again.ended
    assert [m.type for m in again.events][-1] == EventType.PARTICIPANT_LEFT.value


async def test_the_sweep_runs_on_simulated_time_and_closes_a_silent_chat(domain):
    await domain.add_agent("a")
    chat = await domain.start_chat()
    await domain.engine.staff.accept("a", chat.chat_id)

    await domain.time.advance(239)
    assert not [m for m in domain.engine.cached(chat.chat_id).events
                if m.type == EventType.IDLE_ALERT.value]
    await domain.time.advance(2)  # the next sweeps see 240 s of silence: the customer is warned
    assert [m.type for m in domain.engine.cached(chat.chat_id).events].count(
        EventType.IDLE_ALERT.value) == 1
    await domain.time.advance(60)  # 300 s: closed
    closed = domain.engine.cached(chat.chat_id)
    assert closed is not None and closed.ended
    assert EventType.IDLE_CLOSE.value in [m.type for m in closed.events]


async def test_closing_the_real_scheduler_lets_a_running_callback_finish():
    """A graceful stop must not cut a change off in its commit: stored but never applied nor
    announced (the routing test saw an offer committed by a stopping leader that no other
    node heard of). Close lets what runs finish, and runs nothing new."""
    scheduler = AsyncioScheduler()
    started, release = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    async def commit() -> None:
        started.set()
        await release.wait()
        done.append("committed")
        scheduler.call_later(0, lambda: done.append("scheduled during close"))

    scheduler.call_later(0, commit)
    scheduler.call_later(60, lambda: done.append("not due yet"))
    await started.wait()
    closing = asyncio.create_task(scheduler.close())
    await asyncio.sleep(0.01)
    assert not closing.done()  # it waits for the running callback
    release.set()
    await closing
    await asyncio.sleep(0.01)
    assert done == ["committed"]


async def test_closing_the_real_scheduler_cancels_what_outlasts_the_grace():
    scheduler = AsyncioScheduler()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    scheduler.call_later(0, stuck)
    await asyncio.sleep(0.01)  # it runs
    await scheduler.close(grace_s=0.01)
    assert cancelled.is_set()
