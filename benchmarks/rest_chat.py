"""REST polling load: N concurrent customer chats against a bot agent, all on loopback.

Each customer requests a chat, then refreshes every ``--poll-interval`` seconds and sends a
message every ``--send-interval`` seconds; a ``webchat bot`` process answers each message.
Printed: refresh requests/s served, request latency p50/p99, delivery latency both ways
(customer -> agent from the reply's server timestamp, agent -> customer until the customer's
poll sees it), server RSS and CPU. The server, the bot and this load generator are three
processes sharing the machine's cores.

    python -m benchmarks.rest_chat --chats 1000 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import aiohttp

from benchmarks.common import percentile, start_bot, start_server
from webchat.protocol.gms.models import ChatResponse
from webchat.protocol.gms.session import ChatSession, MessagesReceived
from webchat.transport.rest import RestTransport, TransportError


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.request_ms: list[float] = []
        self.refreshes = 0
        self.sends = 0
        self.errors = 0
        self.to_agent_ms: list[float] = []
        self.to_customer_ms: list[float] = []


async def timed(transport: RestTransport, request, stats: Stats) -> ChatResponse | None:
    t0 = time.perf_counter()
    try:
        reply = await transport.call(request)
    except TransportError:
        stats.errors += 1
        return None
    if stats.measuring:
        stats.request_ms.append((time.perf_counter() - t0) * 1000)
        if request.operation == "refresh":
            stats.refreshes += 1
    if not reply.ok:
        stats.errors += 1
    return reply


def observe(session: ChatSession, request, reply: ChatResponse, stats: Stats) -> None:
    now_ms = time.time() * 1000
    for event in session.receive(request, reply):
        if not isinstance(event, MessagesReceived) or not stats.measuring:
            continue
        for msg in event.messages:
            text = msg.text or ""
            if msg.type == "Message" and msg.from_.type == "Agent" and "|" in text:
                sent_ms = float(text.rsplit("|", 1)[1])
                stats.to_agent_ms.append(msg.utcTime - sent_ms)
                stats.to_customer_ms.append(now_ms - msg.utcTime)


async def customer(n: int, transport: RestTransport, args: argparse.Namespace, stats: Stats,
                   stop: asyncio.Event) -> None:
    await asyncio.sleep(random.random() * args.ramp)
    session = ChatSession()
    request = session.request_chat({"nickname": f"load-{n}", "userData[bench]": "rest"})
    reply = await timed(transport, request, stats)
    if reply is None or not reply.ok:
        session.fail_start()
        return
    session.receive(request, reply)
    sender = asyncio.create_task(typist(n, session, transport, args, stats, stop))
    await asyncio.sleep(random.random() * args.poll_interval)
    while not stop.is_set():
        await asyncio.sleep(args.poll_interval)
        refresh = session.refresh()
        reply = await timed(transport, refresh, stats)
        if reply is not None:
            observe(session, refresh, reply, stats)
    await sender


async def typist(n: int, session: ChatSession, transport: RestTransport,
                 args: argparse.Namespace, stats: Stats, stop: asyncio.Event) -> None:
    """Sends on its own clock, as a person does, independent of the poll timer."""
    await asyncio.sleep(random.random() * args.send_interval)
    seq = 0
    while not stop.is_set():
        seq += 1
        send = session.send_message(f"m{n}-{seq}|{time.time() * 1000:.3f}")
        reply = await timed(transport, send, stats)
        if reply is not None:
            stats.sends += stats.measuring
            observe(session, send, reply, stats)
        await asyncio.sleep(args.send_interval)


async def main(args: argparse.Namespace) -> dict[str, float]:
    server = await start_server("--agent", "bot:bench-pw", "--offer-timeout", "60",
                                "--chat-start-rate", f"{args.chats}:{args.chats}")
    bot = start_bot(server.url, "bot", "bench-pw", args.chats + 10)
    stats = Stats()
    stop = asyncio.Event()
    try:
        await asyncio.sleep(1.5)  # let the bot log in and turn ready
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            transport = RestTransport(f"{server.url}/genesys/2/chat/customer-support",
                                      session=http, timeout_ms=10_000)
            tasks = [asyncio.create_task(customer(n, transport, args, stats, stop))
                     for n in range(args.chats)]
            await asyncio.sleep(args.ramp + args.warmup)
            stats.measuring = True
            cpu0, t0 = server.cpu_seconds(), time.monotonic()
            await asyncio.sleep(args.duration)
            cpu1, t1 = server.cpu_seconds(), time.monotonic()
            stats.measuring = False
            rss = server.rss_mb()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        bot.terminate()
        server.stop()
    elapsed = t1 - t0
    return {
        "chats": args.chats,
        "duration_s": round(elapsed, 1),
        "refresh_per_s": round(stats.refreshes / elapsed, 1),
        "messages_sent_per_s": round(stats.sends / elapsed, 1),
        "request_p50_ms": round(percentile(stats.request_ms, 50), 2),
        "request_p99_ms": round(percentile(stats.request_ms, 99), 2),
        "to_agent_p50_ms": round(percentile(stats.to_agent_ms, 50), 2),
        "to_agent_p99_ms": round(percentile(stats.to_agent_ms, 99), 2),
        "to_customer_p50_ms": round(percentile(stats.to_customer_ms, 50), 1),
        "to_customer_p99_ms": round(percentile(stats.to_customer_ms, 99), 1),
        "replies_seen": len(stats.to_customer_ms),
        "errors": stats.errors,
        "server_cpu_cores": round((cpu1 - cpu0) / elapsed, 3),
        "server_rss_mb": round(rss, 1),
    }


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chats", type=int, default=1000)
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    p.add_argument("--poll-interval", type=float, default=1.0)
    p.add_argument("--send-interval", type=float, default=5.0)
    p.add_argument("--ramp", type=float, default=5.0, help="seconds over which chats start")
    p.add_argument("--warmup", type=float, default=3.0)
    return p.parse_args()


if __name__ == "__main__":
    result = asyncio.run(main(parse()))
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))
