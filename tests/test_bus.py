"""CXBus semantics: commands resolve or reject with a reason; events reach subscribers."""

from __future__ import annotations

import asyncio

import pytest

from webchat.bus import Bus, BusEvent, CommandError


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


def test_registration_errors():
    bus = Bus()
    bus.register_plugin("A")
    with pytest.raises(ValueError, match="already registered"):
        bus.register_plugin("A")
    with pytest.raises(ValueError, match="invalid plugin name"):
        bus.register_plugin("A.B")
