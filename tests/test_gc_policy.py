"""The server process's garbage-collector policy (webchat.server.gc_policy): start-up objects
frozen, larger thresholds, transcripts untracked, and the pauses visible at /metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys

import aiohttp
import pytest
import uvloop
from click.testing import CliRunner

from tests.test_ops import scrape
from webchat.cli.main import cli
from webchat.protocol.gms.models import EventType, Message, Participant
from webchat.server import gc_policy
from webchat.server.chat.change import Change, draft
from webchat.server.chat.clock import AsyncioScheduler
from webchat.server.gc_policy import Pacer, PauseRecorder, parse_thresholds
from webchat.store.records import ChatRecord, ChatStatus, FileRecord, ParticipantRecord


async def test_a_full_collection_shows_as_a_pause_at_metrics(server, http: aiohttp.ClientSession):
    before = await scrape(http, server)
    count = before.value("webchat_gc_pause_seconds_count", generation="2")
    gc.collect()
    after = await scrape(http, server)
    assert after.value("webchat_gc_pause_seconds_count", generation="2") >= count + 1
    assert after.value("webchat_gc_pause_seconds_sum", generation="2") > \
        before.value("webchat_gc_pause_seconds_sum", generation="2")
    assert after.value("webchat_gc_pause_seconds_bucket", generation="2", le="+Inf") == \
        after.value("webchat_gc_pause_seconds_count", generation="2")


def test_tune_freezes_start_up_and_sets_the_thresholds() -> None:
    script = ("import gc; from webchat.server.gc_policy import tune; tune((12345, 6, 7)); "
              "print(gc.get_threshold(), gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["(12345,", "6,", "7)", "True"]


def test_a_paced_server_keeps_only_a_backstop_for_the_young_threshold() -> None:
    script = ("import gc; from webchat.server.gc_policy import tune; tune((700, 2, 1000), 0.1); "
              "print(gc.get_threshold())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == f"({gc_policy.PACED_BACKSTOP}, 2, 1000)"


class _Collections:
    """Counts the collections of each generation while it is installed."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.freed = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            self.counts[info["generation"]] += 1
            self.freed += info["collected"]


def _paced(seconds: float, work, thresholds=(10**6, 2, 1000), pace_s: float = 0.05
           ) -> _Collections:
    """Run ``work()`` in a loop for ``seconds`` with a Pacer beating every ``pace_s`` and
    the allocation threshold at ``thresholds[0]``; the collections that happened."""
    seen = _Collections()
    old = gc.get_threshold()

    async def run() -> None:
        pacer = Pacer(pace_s)
        pacer.start()
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                work()
                await asyncio.sleep(0.001)
        finally:
            pacer.stop()

    gc.set_threshold(*thresholds)
    gc.callbacks.append(seen)
    try:
        asyncio.run(run())
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*old)
    return seen


def test_paced_collections_follow_the_clock_not_the_allocations() -> None:
    """At 0.05 s a beat, one second makes about twenty collections, every other one also of
    the middle generation, however much is allocated in between (at 700 allocations this
    work would make thousands)."""
    kept: list[list[int]] = []

    def churn() -> None:
        kept[:] = [[i] for i in range(3000)]  # 3,000 tracked lists replaced each turn

    seen = _paced(1.0, churn)
    young, middle, full = seen.counts
    assert 12 <= young + middle <= 22
    assert abs(young - middle) <= 1
    assert full == 0


def test_cyclic_garbage_is_freed_at_the_next_beat() -> None:
    """The collector still frees cycles, within a beat, with the allocation threshold far
    away."""
    class Node:
        def __init__(self) -> None:
            self.me = self

    def cycles() -> None:
        for _ in range(100):
            Node()

    seen = _paced(0.5, cycles)
    assert seen.freed > 1000


def test_a_burst_between_two_beats_still_meets_the_backstop() -> None:
    """A burst of allocations (a restart loading every chat) is collected as it happens,
    by Python's own rules, when it passes the young threshold left as a backstop."""
    kept: list[list[int]] = []

    def burst() -> None:
        kept.extend([i] for i in range(5000))

    seen = _paced(0.3, burst, thresholds=(2000, 2, 1000), pace_s=60)
    assert sum(seen.counts) >= 10


def test_a_paced_full_collection_waits_for_the_oldest_generation_to_grow_by_a_quarter() -> None:
    """Python collects the whole heap only when a quarter more objects were promoted since the
    last time; the pacer keeps that rule (a full collection of a 10,000-chat heap is a pause
    of a quarter of a second and more)."""
    old = [[i] for i in range(200_000)]  # the long-lived heap
    gc.collect()
    grown: list[list[int]] = []

    def grow() -> None:
        grown.extend([i] for i in range(2000))

    seen = _paced(1.0, lambda: None, thresholds=(10**6, 2, 0))
    assert seen.counts[2] <= 1  # nothing promoted: at most the first, which counts the heap
    seen = _paced(1.0, grow, thresholds=(10**6, 2, 0))
    assert seen.counts[2] >= 1  # tens of thousands promoted: a quarter of the heap and more
    assert len(old) == 200_000  # kept alive to the end: the long-lived heap


def test_serve_takes_a_pace_and_refuses_a_negative_one(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path), "--gc-pace", "-1"])
    assert result.exit_code == 2
    assert "--gc-pace" in result.output
    with pytest.raises(ValueError):
        Pacer(0)


def test_default_keeps_pythons_own_thresholds() -> None:
    script = ("import gc; from webchat.server.gc_policy import tune; t = gc.get_threshold(); "
              "tune(None); print(gc.get_threshold() == t)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True"


@pytest.mark.parametrize("value", ["", "1,2", "a,b,c", "0,10,10", "1,2,3,4", "-5,10,10"])
def test_serve_refuses_thresholds_it_cannot_apply(value: str, tmp_path) -> None:
    with pytest.raises(ValueError):
        parse_thresholds(value)
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path),
                                      "--gc-thresholds", value])
    assert result.exit_code == 2
    assert "--gc-thresholds" in result.output


def test_transcript_events_are_never_walked_by_the_collector() -> None:
    """A server holds every open chat's transcript: events must not add to each collection's
    walk, however long the transcripts grow."""
    agent = Participant("Grace", 2, "Agent")
    events = [Message(from_=agent, type="Message", utcTime=1, index=1, text="hi"),
              Message(from_=agent, type="Notice", utcTime=2, index=2,
                      userData={"reason": "transfer"})]
    assert [gc.is_tracked(m) for m in events] == [False, False]


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_timers_fired_or_cancelled_leave_no_cycles_for_the_collector(loop_factory) -> None:
    """The router schedules a timer after every commit: each one used to leave a reference
    cycle (handle -> callback -> handle) that only a collection could free, a quarter of a
    busy server's young garbage, and collections of it paused the loop for 50-140 ms."""
    async def run() -> None:
        scheduler = AsyncioScheduler()
        fired: list[int] = []
        for n in range(200):
            scheduler.call_later(0, lambda n=n: fired.append(n))
        cancelled = [scheduler.call_later(60, lambda: None) for _ in range(200)]
        for timer in cancelled:
            timer.cancel()
        await asyncio.sleep(0.01)
        assert len(fired) == 200

    loop = loop_factory()
    try:
        gc.collect()
        gc.disable()
        loop.run_until_complete(run())
        assert gc.collect() == 0
    finally:
        gc.enable()
        loop.close()


def test_a_change_copies_a_participant_only_when_it_touches_it() -> None:
    """A message changes no participant: copying every participant of the chat on each one
    made young objects for the collector to walk. A touched participant is still a copy, so
    the cached chat never shows an edit that may not be committed."""
    chat = ChatRecord("C", "s", "k", "u", "1", ChatStatus.ACTIVE, 0, 0, {}, {}, participants={
        1: ParticipantRecord(1, "Client", "Ada"),
        2: ParticipantRecord(2, "Agent", "Grace", "a1")})
    change = Change(draft(chat), now_ms=1)
    change.add(1, EventType.MESSAGE, "hello")
    assert all(change.chat.participants[p] is chat.participants[p] for p in (1, 2))
    change.touch(change.chat.participants[2]).connected = False
    assert chat.participants[2].connected is True
    assert change.chat.participants[2].connected is False
    assert change.participants == {2: change.chat.participants[2]}
    assert change.touch(change.chat.participants[2]) is change.chat.participants[2]


def test_a_chats_cached_copies_are_never_walked_by_the_collector() -> None:
    """Every commit replaces its chat's cached copy, which lives until the chat's next commit
    seconds later: at 10,000 chats a thousand of them, with their participant and file maps,
    were in every young collection. The copy a change drafts is untracked too."""
    chat = ChatRecord("C", "s", "k", "u", "1", ChatStatus.ACTIVE, 0, 0, {"nickname": "Ada"},
                      {"topic": "bill"}, participants={
                          1: ParticipantRecord(1, "Client", "Ada"),
                          2: ParticipantRecord(2, "Agent", "Grace", "a1")},
                      files={"f1": FileRecord("f1", "C", "a.png", 3, "image/png", 1, 0)})
    change = Change(draft(chat), now_ms=1)
    change.add(1, EventType.MESSAGE, "hello")
    change.touch(change.chat.participants[2]).connected = False
    for record in (chat, change.chat):
        assert [gc.is_tracked(part) for part in (
            record, record.participants, record.files, record.customer, record.user_data,
            *record.participants.values(), *record.files.values())] == [False] * 8


async def test_a_long_pause_is_logged_with_its_generation(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A delivery spike's cause is in the server's log: a collection that held the process
    50 ms or more is a warning naming its generation, written from the event loop (not
    inside the collection); a short one is only counted."""
    recorder = PauseRecorder()
    now = [100.0]
    monkeypatch.setattr("webchat.server.gc_policy.time.perf_counter", lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="webchat.server.gc_policy"):
        recorder.report_on(asyncio.get_running_loop())
        for pause, generation in ((0.01, 0), (0.31, 2)):
            recorder("start", {"generation": generation})
            now[0] += pause
            recorder("stop", {"generation": generation, "collected": 7})
        assert caplog.records == []  # not from within the collection
        await asyncio.sleep(0)
    assert [r.getMessage() for r in caplog.records] == [
        "garbage collection paused this process for 310 ms (generation 2, 7 objects freed)"]
    assert recorder.snapshot(0)[0][-1] == ("+Inf", 1.0)
