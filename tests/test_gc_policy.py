"""The server process's garbage-collector policy (webchat.server.gc_policy): start-up objects
frozen, larger thresholds, transcripts untracked, and the pauses visible at /metrics."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

import aiohttp
import pytest
import uvloop
from click.testing import CliRunner

from tests.test_ops import scrape
from webchat.cli.main import cli
from webchat.protocol.gms.models import EventType, Message, Participant
from webchat.server.chat.change import Change, draft
from webchat.server.chat.clock import AsyncioScheduler
from webchat.server.gc_policy import parse_thresholds
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
