"""Inactivity: idle alerts and auto-close for customers, reminders and requeue for agents,
asynchronous chats that outlive the customer's visit, and system messages in the customer's
language."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import accepted_chat, caller_data, start_server
from tests.test_end_to_end import transport_options
from webchat import locale
from webchat.protocol.gms.models import Message, Participant
from webchat.server.chat import sweeper as sweeper_module
from webchat.server.inactivity import (
    Action,
    InactivityConfig,
    Quiet,
    due,
    fold,
    next_due,
    quiet_of,
)
from webchat.service.core import now_ms
from webchat.service.storage import MemoryStorage
from webchat.store.records import ChatRecord, ChatStatus, copy

QUICK = InactivityConfig(customer_alert_s=0.3, customer_close_s=0.8, agent_alert_s=None,
                         sweep_s=0.05)


def chat_with(events: list[tuple[int, str, str, int]], status=ChatStatus.ACTIVE) -> ChatRecord:
    """Events as (participantId, participant type, event type, seconds)."""
    chat = ChatRecord("C", "s", "k", "u", "1", status, 0, 0, {}, {})
    for n, (pid, ptype, etype, t) in enumerate(events, start=1):
        chat.events.append(Message(from_=Participant("x", pid, ptype), index=n, type=etype,
                                   utcTime=t * 1000))
    return chat


CONFIG = InactivityConfig(customer_alert_s=60, customer_close_s=120, agent_alert_s=30,
                          agent_requeue_s=90)
JOINED = [(1, "Client", "ParticipantJoined", 0), (3, "Agent", "ParticipantJoined", 100)]


@pytest.mark.parametrize(("events", "now_s", "asynchronous", "expected"), [
    (JOINED, 150, False, None),                                   # quiet, but not for long
    (JOINED, 160, False, Action.CUSTOMER_ALERT),                  # 60 s since the agent joined
    (JOINED, 220, False, Action.CUSTOMER_CLOSE),
    (JOINED, 10_000, True, None),                                 # async: never closed
    ([*JOINED, (2, "External", "IdleAlert", 160)], 170, False, None),  # alerted once only
    ([*JOINED, (1, "Client", "Message", 200)], 235, False, Action.AGENT_ALERT),
    ([*JOINED, (1, "Client", "Message", 200)], 295, True, Action.AGENT_REQUEUE),
    ([*JOINED, (1, "Client", "Message", 200), (3, "Agent", "Message", 210)], 255, False,
     None),                                                       # answered
])
def test_what_silence_calls_for(events, now_s, asynchronous, expected):
    chat = chat_with(events)
    if any(e[2] == "IdleAlert" for e in events):
        chat.events[-1] = Message(from_=chat.events[-1].from_, index=chat.events[-1].index,
                                  type="IdleAlert", utcTime=chat.events[-1].utcTime,
                                  userData={"idle": "customer"})
    assert due(chat, quiet_of(chat), now_s * 1000, CONFIG,
               asynchronous=asynchronous) is expected
    queued = copy(chat, status=ChatStatus.QUEUED)
    assert due(queued, quiet_of(queued), now_s * 1000, replace(
        CONFIG, queued_alert_s=None, queued_close_s=None), asynchronous=asynchronous) is None


QUEUED_CONFIG = replace(CONFIG, queued_alert_s=600, queued_close_s=900)
WAITING = [(1, "Client", "ParticipantJoined", 0), (2, "External", "Notice", 0)]


@pytest.mark.parametrize(("events", "queued_s", "now_s", "asynchronous", "expected"), [
    (WAITING, 0, 599, False, None),
    (WAITING, 0, 600, False, Action.CUSTOMER_ALERT),              # queued limits, not active's
    (WAITING, 0, 900, False, Action.CUSTOMER_CLOSE),
    (WAITING, 0, 90_000, True, None),                             # async: never closed
    ([*WAITING, (1, "Client", "Message", 500)], 0, 1300, False, Action.CUSTOMER_ALERT),
    ([*WAITING, (1, "Client", "Message", 500)], 0, 1099, False, None),  # wrote at 500 s
    (JOINED, 1000, 1500, False, None),                            # requeued at 1000 s: anew
    (JOINED, 1000, 1900, False, Action.CUSTOMER_CLOSE),
    ([*WAITING, (1, "Client", "Message", 10)], 0, 5000, False, Action.CUSTOMER_CLOSE),
])
def test_a_silent_customer_in_the_queue_is_closed_on_its_own_limits(events, queued_s, now_s,
                                                                   asynchronous, expected):
    chat = copy(chat_with(events), status=ChatStatus.QUEUED, queued_ms=queued_s * 1000)
    # No reminder or requeue of an agent for a queued chat, however long unanswered.
    assert due(chat, quiet_of(chat), now_s * 1000, QUEUED_CONFIG,
               asynchronous=asynchronous) is expected


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 4])
def test_a_transcript_folded_in_pieces_is_the_transcript_folded_whole(cut):
    """The engine folds each commit's events into the chat's ``Quiet``; sweeping must see what
    a reading of the whole transcript would."""
    chat = chat_with([*JOINED, (1, "Client", "Message", 200), (2, "External", "IdleAlert", 260),
                      (3, "Agent", "Message", 270)])
    alert = chat.events[3]
    chat.events[3] = Message(from_=alert.from_, index=alert.index, type=alert.type,
                             utcTime=alert.utcTime, userData={"idle": "customer"})
    whole = quiet_of(chat)
    assert whole == Quiet(customer_since=200_000, unanswered_since=None,
                          customer_alerted=260_000)
    assert fold(fold(Quiet(), chat.events[:cut]), chat.events[cut:]) == whole


def test_alerts_must_come_before_their_action():
    with pytest.raises(ValueError, match="before"):
        InactivityConfig(customer_alert_s=10, customer_close_s=5)


def received(customer, type_: str) -> list[dict]:
    return [m for e in customer.events if e.event == "WebChatService.messageReceived"
            for m in e.data["messages"] if m["type"] == type_]


@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_an_idle_customer_is_warned_then_the_chat_closes(
        server_config, customer_factory, agent_factory, transport):
    server = await start_server(replace(server_config, inactivity=QUICK))
    try:
        customer = await customer_factory(server.data_url,
                                          **transport_options(server, transport))
        agent, chat_id = await accepted_chat(server, customer, agent_factory)
        await customer.wait_event("ended", within=5)
        alert, = received(customer, "IdleAlert")
        close, = received(customer, "IdleClose")
        assert alert["userData"] == {"idle": "customer", "closeInS": "1"}
        assert close["text"] == locale.text("en", "server.idle_close")
        assert alert["index"] < close["index"]
        assert "agentDisconnected" in customer.names()
        assert server.engine.chats[chat_id].ended
        await agent.wait_message(chat_id, lambda m: m["type"] == "IdleClose")
    finally:
        await server.runner.cleanup()


async def test_writing_keeps_a_chat_open(server_config, customer_factory, agent_factory):
    server = await start_server(replace(server_config, inactivity=QUICK))
    try:
        customer = await customer_factory(server.data_url)
        _, chat_id = await accepted_chat(server, customer, agent_factory)
        for n in range(6):  # 1.2 s in all: longer than close_s, never idle for 0.3 s
            await customer.command("sendMessage", {"message": f"still here {n}"})
            await asyncio.sleep(0.2)
        assert not server.engine.chats[chat_id].ended
        assert not received(customer, "IdleClose")
    finally:
        await server.runner.cleanup()


async def test_a_silent_agent_is_reminded_then_the_chat_goes_back_to_the_queue(
        server_config, customer_factory, agent_factory):
    quiet_agent = InactivityConfig(customer_alert_s=None, customer_close_s=None,
                                   agent_alert_s=0.2, agent_requeue_s=0.6, sweep_s=0.05)
    server = await start_server(replace(server_config, inactivity=quiet_agent))
    try:
        customer = await customer_factory(server.data_url)
        agent, chat_id = await accepted_chat(server, customer, agent_factory)
        await agent.client.set_state(False)  # so the requeued chat is not offered back
        await customer.command("sendMessage", {"message": "hello?"})
        await agent.wait_for(lambda ev: any(e["type"] == "idle" for e in ev))
        await customer.wait_event("agentDisconnected", within=5)
        notices = [m["text"] for m in received(customer, "Notice")]
        assert notices[-1] == locale.text("en", "server.agent_idle_requeue")
        summary = (await agent.client.queue())[0]
        assert (summary["chatId"], summary["waitingForReply"]) == (chat_id, True)
        assert [e["type"] for e in agent.events].count("idle") == 1
    finally:
        await server.runner.cleanup()


@pytest.mark.conformance("option:async.enabled")
@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_async_chat_stays_open_across_a_day_and_resumes(server_config, customer_factory,
                                                            agent_factory, transport):
    clock = {"now": now_ms()}
    server = await start_server(replace(server_config, inactivity=InactivityConfig(
        sweep_s=3600)), clock=lambda: clock["now"])
    try:
        storage = MemoryStorage()
        options = {"async": {"enabled": True}, **transport_options(server, transport)}
        first = await customer_factory(server.data_url, storage=storage, **options)
        agent, chat_id = await accepted_chat(server, first, agent_factory)
        plain = await customer_factory(server.data_url)
        plain_id = (await plain.command("startChat", {"nickname": "Bo"}))["chatId"]
        await agent.client.accept(plain_id)
        await first.command("sendMessage", {"message": "my parcel never came"})
        await first.close()  # the customer leaves for the day

        clock["now"] += 26 * 3600 * 1000
        await server.engine.check_inactivity()
        assert server.engine.chats[plain_id].ended  # an ordinary chat closes...
        assert not server.engine.chats[chat_id].ended  # ...the asynchronous one waits
        assert (await agent.client.chat(chat_id))["waitingForReply"] is True
        await agent.client.send(chat_id, "a new parcel is on its way")

        saved = storage.load()
        assert saved is not None
        storage.save({**saved, "savedAt": saved["savedAt"] - 26 * 3600 * 1000})
        back = await customer_factory(server.data_url, storage=storage, **options)
        await back.wait_event("restored")
        await back.wait_for(lambda c: ("Agent", "a new parcel is on its way") in c.texts())
        fresh = [m.get("text") for e in back.events
                 if e.event == "WebChatService.messageReceived" and not e.data["restoring"]
                 for m in e.data["messages"]]
        assert "a new parcel is on its way" in fresh and "my parcel never came" not in fresh
    finally:
        await server.runner.cleanup()


@pytest.mark.conformance("option:async.userDataKey")
async def test_the_async_marker_key_is_configurable_on_both_sides(server_config,
                                                                   customer_factory,
                                                                   agent_factory):
    clock = {"now": now_ms()}
    server = await start_server(replace(server_config, async_user_data_key="X_Async",
                                        inactivity=InactivityConfig(sweep_s=3600)),
                                clock=lambda: clock["now"])
    try:
        marked = await customer_factory(server.data_url, **{
            "async": {"enabled": True, "userDataKey": "X_Async"}})
        default = await customer_factory(server.data_url, **{"async": {"enabled": True}})
        agent, kept = await accepted_chat(server, marked, agent_factory)
        closed = (await default.command("startChat", {"nickname": "Bo"}))["chatId"]
        await agent.client.accept(closed)
        assert caller_data(server.engine.chats[kept].user_data) == {"X_Async": "true"}
        assert caller_data(server.engine.chats[closed].user_data) == {
            "GCTI_Chat_AsyncMode": "true"}
        clock["now"] += 26 * 3600 * 1000
        await server.engine.check_inactivity()
        # Only the key the server was told about makes a chat asynchronous.
        assert not server.engine.chats[kept].ended
        assert server.engine.chats[closed].ended
    finally:
        await server.runner.cleanup()


@pytest.mark.parametrize(("requested", "lang", "transport"), [
    ("fr-FR", "fr", "rest"), ("de", "de", "websocket"), ("es_MX", "es", "rest"),
    ("ja", "ja", "long-polling"), ("pt", "en", "rest")])
async def test_system_messages_are_in_the_customers_language(server, customer_factory,
                                                             requested, lang, transport):
    customer = await customer_factory(server.data_url, **transport_options(server, transport))
    await customer.command("startChat", {"nickname": "Ada",
                                         "userData": {"GCTI_LanguageCode": requested}})
    await customer.wait_for(lambda c: bool(received(c, "Notice")))
    assert received(customer, "Notice")[0]["text"] == locale.text(lang, "server.queued",
                                                                  position=1)


_PLACEHOLDER = re.compile(r"\{\w+\}|<%\w+%>")


def test_every_catalog_has_every_key_with_the_same_placeholders():
    english = locale.catalog("en")
    assert len(english) >= 70
    for lang in locale.LANGUAGES:
        translated = locale.catalog(lang)
        assert set(translated) == set(english), lang
        for key, text in translated.items():
            assert sorted(_PLACEHOLDER.findall(text)) == sorted(
                _PLACEHOLDER.findall(english[key])), (lang, key)
            assert "<" not in _PLACEHOLDER.sub("", text), (lang, key)  # text, never markup
    assert len({locale.text(lang, "webchat.ChatInputSend") for lang in locale.LANGUAGES}) == len(
        locale.LANGUAGES)


@pytest.mark.parametrize("transport", ["rest", "websocket"])
async def test_a_silent_customer_in_the_queue_is_warned_then_the_chat_closes(
        server_config, customer_factory, transport):
    queued = InactivityConfig(queued_alert_s=0.3, queued_close_s=0.8, sweep_s=0.05)
    server = await start_server(replace(server_config, inactivity=queued))
    try:
        customer = await customer_factory(server.data_url,
                                          **transport_options(server, transport))
        chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
        await customer.wait_for(lambda c: bool(received(c, "IdleClose")), within=5)
        await customer.wait_event("ended", within=5)
        alert, = received(customer, "IdleAlert")
        close, = received(customer, "IdleClose")
        assert alert["userData"] == {"idle": "customer", "closeInS": "1"}
        assert alert["index"] < close["index"]
        assert server.engine.chats[chat_id].ended
        assert server.engine.router.waiting() == []  # the queue place is given up
    finally:
        await server.runner.cleanup()


async def test_a_queued_asynchronous_chat_is_not_closed(server_config, customer_factory):
    clock = {"now": now_ms()}
    server = await start_server(replace(server_config, inactivity=InactivityConfig(
        sweep_s=3600)), clock=lambda: clock["now"])
    try:
        waiting = await customer_factory(server.data_url, **{"async": {"enabled": True}})
        plain = await customer_factory(server.data_url)
        kept = (await waiting.command("startChat", {"nickname": "Ada"}))["chatId"]
        closed = (await plain.command("startChat", {"nickname": "Bo"}))["chatId"]
        clock["now"] += 3600 * 1000  # an hour in the queue without a word
        await server.engine.check_inactivity()
        assert server.engine.chats[closed].ended
        assert not server.engine.chats[kept].ended
    finally:
        await server.runner.cleanup()


class ReadCounter(list):
    """A transcript that counts the events read out of it."""

    read = 0

    def __iter__(self):
        ReadCounter.read += len(self)
        return super().__iter__()

    def __reversed__(self):
        ReadCounter.read += len(self)
        return super().__reversed__()

    def __getitem__(self, key):
        item = super().__getitem__(key)
        ReadCounter.read += len(item) if isinstance(key, slice) else 1
        return item


async def test_a_sweep_reads_no_transcript(server_config, customer_factory, agent_factory):
    """An idle server with 100 chats of 3,000 events used 13% of a core: every sweep (one a
    second) read every event. The sweep must cost per open chat, not per event."""
    server = await start_server(replace(server_config, inactivity=InactivityConfig(
        sweep_s=3600)))
    try:
        customer = await customer_factory(server.data_url)
        agent, chat_id = await accepted_chat(server, customer, agent_factory)
        for n in range(20):
            await customer.command("sendMessage", {"message": f"m{n}"})
            await agent.client.send(chat_id, f"a{n}")
        await server.engine.check_inactivity()
        chat = server.engine.chats[chat_id]
        chat.events = ReadCounter(chat.events)
        ReadCounter.read = 0
        for _ in range(10):
            await server.engine.check_inactivity()
        assert ReadCounter.read == 0
        await customer.command("sendMessage", {"message": "one more"})
        await server.engine.check_inactivity()
        assert not chat.ended
    finally:
        await server.runner.cleanup()


async def test_a_sweep_looks_only_at_the_chats_due(server_config, customer_factory,
                                                   agent_factory, monkeypatch):
    """At 10,000 chats a sweep that asked the policy about every open chat held the event loop
    for tens of milliseconds each second. Quiet chats not yet due must cost nothing; a chat
    whose alert time has come is still alerted."""
    server = await start_server(replace(server_config, inactivity=InactivityConfig(
        customer_alert_s=3, customer_close_s=300, agent_alert_s=None, sweep_s=3600)))
    try:
        customers = [await customer_factory(server.data_url) for _ in range(3)]
        chats = [(await accepted_chat(server, c, agent_factory))[1] for c in customers]
        asked: list[str] = []
        real_due = sweeper_module.inactivity.due
        monkeypatch.setattr(sweeper_module.inactivity, "due",
                            lambda chat, *a, **kw: asked.append(chat.chat_id) or
                            real_due(chat, *a, **kw))
        await server.engine.check_inactivity()
        assert asked == []
        await asyncio.sleep(3.1)
        await server.engine.check_inactivity()
        assert sorted(set(asked)) == sorted(chats)
        for chat_id in chats:
            assert [m.type for m in server.engine.chats[chat_id].events].count("IdleAlert") == 1
    finally:
        await server.runner.cleanup()


# ---- next_due: when the sweeper must look at a chat again -----------------------------------

_seconds = st.floats(min_value=0.001, max_value=5000, allow_nan=False)
_times = st.integers(min_value=0, max_value=10_000_000)


@st.composite
def _configs(draw: st.DrawFn) -> InactivityConfig:
    """Each (alert, final) pair: either may be off; when both are on, alert < final."""
    limits: list[float | None] = []
    for _ in range(3):
        alert = draw(_seconds)
        final = alert + draw(_seconds)
        limits += [alert if draw(st.booleans()) else None, final if draw(st.booleans()) else None]
    ca, cc, qa, qc, aa, ar = limits
    return InactivityConfig(customer_alert_s=ca, customer_close_s=cc, queued_alert_s=qa,
                            queued_close_s=qc, agent_alert_s=aa, agent_requeue_s=ar)


@given(config=_configs(), status=st.sampled_from(list(ChatStatus)), created=_times,
       queued=_times, since=_times, unanswered=st.one_of(st.none(), _times),
       alerted=st.one_of(st.none(), _times), reminded=st.one_of(st.none(), _times),
       asynchronous=st.booleans(), now=_times)
def test_nothing_is_due_before_next_due_and_something_is_at_it(
        config, status, created, queued, since, unanswered, alerted, reminded, asynchronous,
        now):
    """The sweeper trusts next_due to skip a chat until then: if it were late, an alert would
    come late; if early, no harm but wasted work — so it must be exact."""
    chat = ChatRecord("C", "s", "k", "u", "1", status, created, queued, {}, {})
    quiet = Quiet(since, unanswered, alerted)
    kw = {"asynchronous": asynchronous, "agent_reminded_since": reminded}
    first = next_due(chat, quiet, config, **kw)
    if due(chat, quiet, now, config, **kw) is not None:
        assert first is not None and first <= now
    if first is not None:
        assert due(chat, quiet, first, config, **kw) is not None
        assert due(chat, quiet, first - 1, config, **kw) is None
