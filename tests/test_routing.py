"""Queueing and routing: who is offered which chat, and what happens when offers lapse."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import start_server
from webchat.server.routing import Router
from webchat.store.records import ChatRecord, ChatStatus


def chat(chat_id: str, queued_ms: int, service: str = "s") -> ChatRecord:
    return ChatRecord(chat_id, service, "k", "u", "1", ChatStatus.QUEUED, queued_ms, queued_ms,
                      {}, {})


def test_longest_waiting_chat_goes_to_least_busy_agent():
    r = Router()
    r.set_ready("busy", True, 3)
    r.set_ready("idle", True, 3)
    r.assign("x", "busy", 1)
    r.assign("y", "busy", 2)
    r.enqueue(chat("new", 20))
    r.enqueue(chat("old", 10))  # arrives later in the process but waited longer
    r.enqueue(chat("newest", 30))
    offers = r.route(now_ms=40)
    # idle takes the two oldest (load 0 then 1 < 2); then both have load 2 and the tie goes
    # to whoever was assigned least recently.
    assert [(o.chat_id, o.agent_id) for o in offers] == [
        ("old", "idle"), ("new", "idle"), ("newest", "idle")]


def test_capacity_and_readiness_are_respected():
    r = Router()
    r.set_ready("a", True, 1)
    r.set_ready("b", False, 5)
    for n in range(3):
        r.enqueue(chat(f"c{n}", n))
    assert [o.chat_id for o in r.route(10)] == ["c0"]
    withdrawn = r.set_ready("a", False, 1)
    assert [o.chat_id for o in withdrawn] == ["c0"]
    assert r.route(11) == []


def test_a_lapsed_agent_is_tried_last_but_never_starves_the_chat():
    r = Router()
    r.set_ready("a", True, 1)
    r.enqueue(chat("c", 1))
    assert r.route(2)[0].agent_id == "a"
    r.lapse("c", "a")
    assert r.route(3)[0].agent_id == "a"  # nobody else: offered again
    r.lapse("c", "a")
    r.set_ready("b", True, 1)
    assert r.route(4)[0].agent_id == "b"


async def test_offer_timeout_moves_the_chat_to_another_agent(server_config, http,
                                                             agent_factory):
    running = await start_server(replace(server_config, offer_timeout_s=0.2))
    try:
        await running.add_agent("a")
        await running.add_agent("b")
        sleepy = await agent_factory(running.url, "a", capacity=1)
        async with http.post(running.data_url, data={"nickname": "Ada"}) as resp:
            chat_id = (await resp.json())["chatId"]
        await sleepy.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
        awake = await agent_factory(running.url, "b", capacity=1)
        await sleepy.wait_for(lambda ev: any(e["type"] == "offerRevoked" for e in ev))
        await awake.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
        await awake.client.accept(chat_id)
        assert running.engine.chats[chat_id].agent_id == "b"
    finally:
        await running.runner.cleanup()


async def test_transfer_to_agent_and_back_to_queue(server, http, agent_factory,
                                                   customer_factory):
    for name in ("a", "b"):
        await server.add_agent(name, nickname=name.upper())
    customer = await customer_factory(server.data_url)
    chat_id = (await customer.command("startChat", {"nickname": "Ada"}))["chatId"]
    a = await agent_factory(server.url, "a")
    b = await agent_factory(server.url, "b", ready=False)
    await a.client.accept(chat_id)
    await a.client.transfer(chat_id, "b")
    await customer.wait_event("agentDisconnected")
    # Reserved for b: a cannot take it back, b gets it once ready.
    queue = await a.client.queue()
    assert queue[0]["targetAgent"] == "b"
    await b.client.set_state(True, 3)
    await b.wait_for(lambda ev: any(e["type"] == "offer" for e in ev))
    await b.client.accept(chat_id)
    connected = await customer.wait_event("agentConnected", count=2)
    assert connected.data["message"]["from"]["nickname"] == "B"
    await b.client.transfer(chat_id, None)
    await customer.wait_event("agentDisconnected", count=2)
    notices = [m["text"] for e in customer.events if e.event == "WebChatService.messageReceived"
               for m in e.data["messages"] if m["type"] == "Notice"]
    assert notices[1:] == ["You are being transferred to B. Please wait.",
                           "You are being transferred to another agent. Please wait."]
    assert server.engine.chats[chat_id].status is ChatStatus.QUEUED


class CountedId(str):
    """A chat id that counts how often it is compared: a scan of the queue compares ids."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        CountedId.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_a_queue_position_is_not_a_scan_of_the_queue():
    # 10,000 queued chats made GET /agent/v1/queue take 1.7 s: one linear scan per chat.
    r = Router()
    ids = [CountedId(f"c{n:05}") for n in range(2000)]
    for n, cid in enumerate(ids):
        r.enqueue(chat(cid, n))
    CountedId.comparisons = 0
    assert [r.position("s", cid) for cid in ids] == list(range(1, len(ids) + 1))
    assert CountedId.comparisons <= 4 * len(ids)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 15), st.integers(0, 5),
                          st.sampled_from(["s", "t"])), max_size=40))
def test_positions_follow_the_queue_order(operations):
    """Longest waiting first, ties in arrival order; a position is the place in that order."""
    r = Router()
    model: dict[str, tuple[str, int, int]] = {}  # chat id -> (service, queued_ms, arrival)
    for arrival, (add, n, queued_ms, service) in enumerate(operations):
        cid = f"c{n}"
        r.dequeue(cid)
        model.pop(cid, None)
        if add:
            r.enqueue(chat(cid, queued_ms, service))
            model[cid] = (service, queued_ms, arrival)
    for service in ("s", "t"):
        expected = sorted((cid for cid, m in model.items() if m[0] == service),
                          key=lambda cid: model[cid][1:])
        assert r.waiting(service) == expected
        assert [r.position(service, cid) for cid in expected] == \
            list(range(1, len(expected) + 1))
        assert r.position(service, "missing") == 0
        assert r.waiting_count(service) == len(expected)
