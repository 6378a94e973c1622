"""CXBus semantics: commands resolve or reject with a reason; events reach subscribers."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from webchat.bus import Bus, BusEvent, CommandError, Plugin


async def make() -> tuple[Bus, list[dict]]:
    bus = Bus()
    plugin = bus.register_plugin("Echo")
    calls: list[dict] = []

    async def say(options: dict) -> dict:
        calls.append(options)
        if options.get("fail"):
            raise CommandError("told to fail", {"why": "asked"})
        return {"said": options.get("text")}

    plugin.register_command("say", say)
    plugin.ready()
    return bus, calls


@pytest.mark.conformance("CXBus.api:command", "CXBus.api:registerCommand")
async def test_command_resolves_with_data():
    bus, calls = await make()
    assert await bus.command("Echo.say", {"text": "hi"}) == {"said": "hi"}
    assert calls == [{"text": "hi"}]


@pytest.mark.parametrize(("name", "options", "reason"), [
    ("Echo.nope", None, "command not found"),
    ("Nobody.say", None, "command not found"),
    ("nodot", None, "expected 'Namespace.name'"),
    ("Echo.say", ["not", "a", "dict"], "options must be an object, not list"),
    ("Echo.say", {"fail": True}, "told to fail"),
])
async def test_rejections_carry_a_reason(name, options, reason):
    bus, _ = await make()
    with pytest.raises(CommandError, match=reason) as info:
        await bus.command(name, options)
    assert info.value.command == name


async def test_plugin_rejection_keeps_its_data():
    bus, _ = await make()
    with pytest.raises(CommandError) as info:
        await bus.command("Echo.say", {"fail": True})
    assert info.value.data == {"why": "asked"}


@pytest.mark.conformance("CXBus.api:ready")
async def test_commands_to_a_plugin_that_is_not_ready_are_rejected():
    bus = Bus()
    plugin = bus.register_plugin("Late")

    async def ping(_: dict) -> str:
        return "pong"

    plugin.register_command("ping", ping)
    with pytest.raises(CommandError, match="plugin Late is not ready"):
        await bus.command("Late.ping")
    waiter = asyncio.ensure_future(bus.wait_ready("Late"))
    await asyncio.sleep(0)
    assert not waiter.done()
    plugin.ready()
    await waiter
    assert await bus.command("Late.ping") == "pong"


@pytest.mark.conformance("CXBus.api:before")
async def test_before_hooks_can_transform_veto_or_fail():
    bus, calls = await make()
    bus.before("Echo.say", lambda opts: {**opts, "text": opts["text"].upper()})
    assert await bus.command("Echo.say", {"text": "hi"}) == {"said": "HI"}

    async def veto(opts: dict) -> bool:
        return opts["text"] != "FORBIDDEN"  # hooks run in order: this sees the upper case

    bus.before("Echo.say", veto)
    with pytest.raises(CommandError, match="rejected by a before-hook"):
        await bus.command("Echo.say", {"text": "forbidden"})

    def broken(opts: dict) -> None:
        raise RuntimeError("hook crashed")

    bus.before("Echo.say", broken)
    with pytest.raises(CommandError, match="hook crashed"):
        await bus.command("Echo.say", {"text": "x"})
    assert calls == [{"text": "HI"}]  # vetoed and failed commands never ran


@pytest.mark.conformance("CXBus.api:subscribe", "CXBus.api:publish")
async def test_events_reach_exact_namespace_and_global_subscribers_in_order():
    bus = Bus()
    plugin = bus.register_plugin("Chat")
    got: dict[str, list[str]] = {"exact": [], "ns": [], "all": [], "async": []}
    bus.subscribe("Chat.message", lambda e: got["exact"].append(e.data))
    bus.subscribe("Chat.*", lambda e: got["ns"].append(e.event))
    bus.subscribe("*", lambda e: got["all"].append(e.event))

    async def slow(e: BusEvent) -> None:
        got["async"].append(e.publisher)

    bus.subscribe("Chat.message", slow)
    plugin.publish("message", "one")
    plugin.publish("other")
    plugin.publish("message", "two")
    await asyncio.sleep(0)
    assert got["exact"] == ["one", "two"]
    assert got["ns"] == ["Chat.message", "Chat.other", "Chat.message"]
    assert got["all"] == got["ns"]
    assert got["async"] == ["Chat", "Chat"]


async def test_a_failing_subscriber_does_not_break_others_or_the_publisher():
    bus = Bus()
    plugin = bus.register_plugin("Chat")
    got = []

    def bad(_: BusEvent) -> None:
        raise ValueError("boom")

    bus.subscribe("Chat.x", bad)
    sub = bus.subscribe("Chat.x", lambda e: got.append(e.data))
    plugin.publish("x", 1)
    bus.unsubscribe(sub)
    plugin.publish("x", 2)
    assert got == [1]


async def test_listen_collects_events():
    bus = Bus()
    plugin = bus.register_plugin("Chat")
    async with bus.listen("Chat.*") as queue:
        plugin.ready()
        plugin.publish("started", {"id": 1})
        first, second = queue.get_nowait(), queue.get_nowait()
    assert (first.event, second.event, second.data) == ("Chat.ready", "Chat.started", {"id": 1})


@pytest.mark.conformance("CXBus.api:registerPlugin")
def test_registration_errors():
    bus = Bus()
    bus.register_plugin("A")
    with pytest.raises(ValueError, match="already registered"):
        bus.register_plugin("A")
    with pytest.raises(ValueError, match="invalid plugin name"):
        bus.register_plugin("A.B")


@pytest.mark.conformance("CXBus.api:registerPlugin")
def test_register_plugin_returns_the_interface_the_original_returns():
    plugin = Bus().register_plugin("MyPlugin")
    assert isinstance(plugin, Plugin) and plugin.name == "MyPlugin"
    for method in ("publish", "republish", "publish_direct", "subscribe", "unsubscribe",
                   "command", "register_command", "register_events", "before", "after",
                   "ready"):
        assert callable(getattr(plugin, method)), method


async def test_events_carry_the_time_they_were_published():
    bus = Bus()
    got: list[BusEvent] = []
    bus.subscribe("Chat.x", got.append)
    before = time.time() * 1000
    bus.register_plugin("Chat").publish("x")
    assert before <= got[0].time <= time.time() * 1000


async def test_names_may_carry_the_originals_cx_plugin_root():
    bus, _ = await make()
    got: list[str] = []
    bus.subscribe("cx.plugin.Echo.*", lambda e: got.append(e.event))
    assert await bus.command("cx.plugin.Echo.say", {"text": "hi"}) == {"said": "hi"}
    bus.plugin("Echo").publish("said")
    assert got == ["Echo.said"]


@pytest.mark.conformance("CXBus.api:registerEvents")
async def test_registered_events_are_in_the_registry_and_undeclared_ones_are_reported(caplog):
    bus, _ = await make()
    echo = bus.plugin("Echo")
    echo.register_events(["ready", "said"])
    echo.register_events("heard")
    assert bus.registry()["Echo"] == {"events": ["ready", "said", "heard"],
                                      "commands": ["say"]}
    bus.configure({"debug": True})
    with caplog.at_level(logging.INFO, logger="webchat.bus.bus"):
        bus.subscribe("Echo.said", lambda e: None)
        echo.publish("heard")
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        bus.subscribe("Echo.shouted", lambda e: None)
        echo.publish("whispered")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "subscribed to Echo.shouted, which Echo has not registered (registerEvents)",
        "published Echo.whispered, which Echo has not registered (registerEvents)"]
    with pytest.raises(ValueError, match="invalid event name"):
        echo.register_events(["Echo.said"])


@pytest.mark.conformance("CXBus.api:republish")
async def test_a_republished_event_reaches_later_subscribers_and_a_published_one_does_not():
    bus = Bus()
    chat = bus.register_plugin("Chat")
    chat.publish("message", "gone")
    chat.republish("status", "first")
    chat.republish("status", "online")        # the last one is what a latecomer hears
    chat.ready()                              # ready is republished, as the original does
    early: list[str] = []
    bus.subscribe("Chat.status", lambda e: early.append(e.data))
    late: list[tuple[str, object]] = []
    bus.subscribe("Chat.*", lambda e: late.append((e.event, e.data)))
    assert early == [] and late == []         # delivered on the loop's next turn, like the
    await asyncio.sleep(0)                    # original's, never inside subscribe()
    assert early == ["online"]
    assert late == [("Chat.status", "online"), ("Chat.ready", None)]
    chat.republish("status", "away")          # and a republish reaches current subscribers
    assert early == ["online", "away"]

    dropped: list[object] = []
    sub = bus.subscribe("Chat.status", dropped.append)
    bus.unsubscribe(sub)                      # gone before its turn came: nothing replayed
    await asyncio.sleep(0)
    assert dropped == []


@pytest.mark.conformance("CXBus.api:publishDirect")
async def test_publish_direct_delivers_but_logs_only_when_someone_listens(caplog):
    bus = Bus()
    clock = bus.register_plugin("Watchman")
    bus.configure({"debug": True})
    with caplog.at_level(logging.INFO, logger="webchat.bus.bus"):
        clock.publish_direct("tick")          # nobody listens: not a line
        clock.publish("tock")                 # a plain publish is logged all the same
        got: list[str] = []
        bus.subscribe("Watchman.tick", lambda e: got.append(e.event))
        clock.publish_direct("tick", {"n": 2})
    assert got == ["Watchman.tick"]
    published = [r.getMessage() for r in caplog.records if "published" in r.getMessage()]
    assert published == ["Watchman published Watchman.tock", "Watchman published Watchman.tick"]


@pytest.mark.conformance("CXBus.api:unsubscribe")
async def test_unsubscribe_by_subscription_or_by_name_for_one_plugin():
    bus = Bus()
    chat = bus.register_plugin("Chat")
    mine, theirs = bus.register_plugin("Mine"), bus.register_plugin("Theirs")
    got: list[str] = []
    one = mine.subscribe("Chat.x", lambda e: got.append("mine-1"))
    mine.subscribe("Chat.x", lambda e: got.append("mine-2"))
    theirs.subscribe("Chat.x", lambda e: got.append("theirs"))
    chat.publish("x")
    assert bus.unsubscribe(one) == 1 and bus.unsubscribe(one) == 0
    chat.publish("x")
    assert mine.unsubscribe("Chat.x") == 1    # by name: every one of Mine's, not Theirs'
    chat.publish("x")
    assert got == ["mine-1", "mine-2", "theirs", "mine-2", "theirs", "theirs"]


@pytest.mark.conformance("CXBus.api:after")
async def test_after_hooks_see_the_result_before_the_caller_and_never_fail_it(caplog):
    bus, _ = await make()
    seen: list[tuple[dict, object]] = []

    async def audit(options: dict, result: object) -> None:
        await asyncio.sleep(0)
        seen.append((options, result))

    def broken(options: dict, result: object) -> None:
        raise RuntimeError("after-hook crashed")

    bus.after("Echo.say", broken)
    bus.after("cx.plugin.Echo.say", audit)
    with caplog.at_level(logging.ERROR, logger="webchat.bus.bus"):
        assert await bus.command("Echo.say", {"text": "hi"}) == {"said": "hi"}
    assert seen == [({"text": "hi"}, {"said": "hi"})]     # done before the caller resumed
    assert "an after-hook of Echo.say failed" in caplog.text
    with pytest.raises(CommandError, match="told to fail"):
        await bus.command("Echo.say", {"fail": True})
    assert len(seen) == 1                                  # a rejected command: no after


@pytest.mark.conformance("CXBus.api:configure")
async def test_configure_debug_logs_commands_events_and_subscriptions(caplog):
    bus, _ = await make()
    with caplog.at_level(logging.INFO, logger="webchat.bus.bus"):
        await bus.command("Echo.say", {"text": "quiet"})
        bus.configure({"debug": True, "pluginsPath": "/ignored/"})
        bus.subscribe("Echo.said", lambda e: None)
        await bus.command("Echo.say", {"text": "loud"}, caller="Page")
        bus.plugin("Echo").publish("said")
        with pytest.raises(CommandError):
            await bus.command("Echo.say", {"fail": True})
        bus.configure({"debug": False})
        bus.plugin("Echo").publish("said")
    assert [r.getMessage() for r in caplog.records] == [
        "(page) subscribed to Echo.said",
        "Page called the command Echo.say",
        "Echo published Echo.said",
        "(page) called the command Echo.say",
        "Echo.say rejected: told to fail",
    ]
    with pytest.raises(TypeError, match="debug must be true or false"):
        bus.configure({"debug": "yes"})
    with pytest.raises(TypeError, match="configure takes an object"):
        bus.configure(["debug"])  # type: ignore[arg-type]


@pytest.mark.conformance("CXBus.api:loadPlugin")
async def test_load_plugin_waits_for_the_plugin_to_arrive_and_be_ready():
    bus = Bus()
    await bus.load_plugin("widgets-core")                  # the core is this bus
    loading = asyncio.ensure_future(bus.load_plugin("webchat"))   # the original's file name
    await asyncio.sleep(0)
    widget = bus.register_plugin("WebChat")
    await asyncio.sleep(0)
    assert not loading.done()                              # registered is not ready
    widget.ready()
    await loading
    await bus.load_plugin("WebChat")                       # already there: at once
    bus.load_timeout = 0.01
    with pytest.raises(CommandError, match=r"plugin Nowhere was not loaded within 0\.01 s"):
        await bus.load_plugin("Nowhere")
