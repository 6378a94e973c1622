"""Publish → receive between two RedisBrokers in two processes, over loopback.

This process subscribes a receiving broker to ``--topics`` topics; for each phase a publisher
process sends on them round-robin, at a fixed rate (``--rates``, for ``--duration`` seconds:
the latency a server adds to a delivery at that load) and then as fast as it can
(``--burst`` messages: the throughput ceiling). A payload carries the CLOCK_MONOTONIC time
it was published at (one clock for every process of a machine), so the receiver measures
publish → handler latency including the publisher's queue and batching. Per phase it prints
messages/s delivered, latency p50/p99/max, and the CPU each party spent per 1,000 messages:
publisher, receiver and the redis-server process (read through psutil when it runs here).

    .venv/bin/python -m benchmarks.redis_broker --rates 2000,10000 --duration 5 --burst 200000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import struct
import sys
import time
from dataclasses import dataclass

import psutil

from benchmarks.common import REDIS_URL, percentile, redis_process
from webchat.broker.redis import RedisBroker

HEADER = struct.Struct("!Q")


async def publish(url: str, prefix: str, topics: int, rate: float, count: int,
                  size: int, min_interval_s: float) -> None:
    """The publisher process: ``count`` messages at ``rate`` per second (0: flat out)."""
    broker = RedisBroker(url, prefix=prefix, name=f"{prefix}publisher",
                         max_queue=max(10_000, count), min_interval_s=min_interval_s)
    await broker.start()
    loop = asyncio.get_running_loop()
    padding = b"x" * max(0, size - HEADER.size)
    cpu = time.process_time()
    started = loop.time()
    sent = 0
    while sent < count:
        due = count if rate <= 0 else min(count, int((loop.time() - started) * rate) + 1)
        while sent < due:
            broker.publish(f"t{sent % topics}", HEADER.pack(time.monotonic_ns()) + padding)
            sent += 1
            if rate <= 0 and sent % 1000 == 0:
                break
        await asyncio.sleep(0 if rate <= 0 else 0.001)
    await broker.stop()
    print(json.dumps({"published": broker.published, "dropped": broker.dropped,
                      "cpu_s": time.process_time() - cpu}))


@dataclass
class Phase:
    rate: float
    count: int
    min_interval_ms: float

    @property
    def name(self) -> str:
        return f"{self.rate:.0f}/s" if self.rate else "flat out"


def cpu_of(process: psutil.Process | None) -> float:
    if process is None:
        return float("nan")
    times = process.cpu_times()
    return float(times.user + times.system)


class Receiver:
    """The receiving side: one handler on every topic, noting when each message arrived."""

    def __init__(self, url: str, prefix: str, topics: int) -> None:
        self.broker = RedisBroker(url, prefix=prefix, name=f"{prefix}receiver")
        self.latencies_ms: list[float] = []
        self.arrivals_ns: list[int] = []
        self._expected = 0
        self._all_in = asyncio.Event()
        for n in range(topics):
            self.broker.subscribe(f"t{n}", self.received)

    def received(self, topic: str, payload: bytes) -> None:
        now = time.monotonic_ns()
        (sent,) = HEADER.unpack_from(payload)
        self.latencies_ms.append((now - sent) / 1e6)
        self.arrivals_ns.append(now)
        if len(self.arrivals_ns) >= self._expected:
            self._all_in.set()

    def reset(self) -> None:
        self.latencies_ms.clear()
        self.arrivals_ns.clear()
        self._expected = sys.maxsize
        self._all_in.clear()

    async def wait_for(self, count: int, timeout_s: float) -> None:
        """Until ``count`` messages arrived since :meth:`reset`, or ``timeout_s`` (lost ones)."""
        self._expected = count
        if len(self.arrivals_ns) >= count:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_in.wait(), timeout_s)


async def run_phase(url: str, prefix: str, topics: int, size: int, phase: Phase,
                    receiver: Receiver, server: psutil.Process | None) -> str:
    receiver.reset()
    cpu, server_cpu = time.process_time(), cpu_of(server)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.redis_broker", "--publisher", "--url", url,
        "--prefix", prefix, "--topics", str(topics), "--size", str(size),
        "--rate", str(phase.rate), "--count", str(phase.count),
        "--min-interval-ms", str(phase.min_interval_ms),
        stdout=asyncio.subprocess.PIPE, env=os.environ.copy())
    out, _ = await proc.communicate()
    report = json.loads(out)
    await receiver.wait_for(report["published"], 10)
    cpu, server_cpu = time.process_time() - cpu, cpu_of(server) - server_cpu
    got, latencies, arrivals = (len(receiver.arrivals_ns), receiver.latencies_ms,
                                receiver.arrivals_ns)
    rate = (got - 1) / ((arrivals[-1] - arrivals[0]) / 1e9) if got > 1 else float("nan")
    per_k = 1e6 / max(got, 1)  # seconds -> ms per 1,000 messages
    return (f"{phase.name:>10} {phase.min_interval_ms:>5g} {got:>8} {rate:>10.0f} "
            f"{percentile(latencies, 50):>7.2f} {percentile(latencies, 99):>7.2f} "
            f"{max(latencies, default=float('nan')):>7.2f} "
            f"{report['cpu_s'] * per_k:>8.1f} {cpu * per_k:>8.1f} {server_cpu * per_k:>8.1f} "
            f"{phase.count - got:>7}")


async def main(url: str, topics: int, size: int, phases: list[Phase]) -> None:
    prefix = f"webchat-bench-{secrets.token_hex(4)}:"
    receiver = Receiver(url, prefix, topics)
    await receiver.broker.start()
    server = redis_process(url)
    print(f"{topics} topics, {size}-byte payloads, publisher and receiver in two processes")
    print(f"{'phase':>10} {'gap':>5} {'received':>8} {'msg/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'pub cpu':>8} {'sub cpu':>8} {'redis':>8} {'lost':>7}")
    print(f"{'':>10} {'ms':>5} {'':>8} {'':>10} {'':>7} {'':>7} {'':>7} "
          f"{'ms CPU / 1k msgs':>26}")
    try:
        for phase in phases:
            print(await run_phase(url, prefix, topics, size, phase, receiver, server),
                  flush=True)
    finally:
        await receiver.broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=REDIS_URL)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--size", type=int, default=300, help="payload bytes (a chat event)")
    parser.add_argument("--rates", default="2000,10000", help="messages/s of the paced phases")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per paced phase")
    parser.add_argument("--burst", type=int, default=200_000, help="messages sent flat out")
    parser.add_argument("--gaps", default="0,2",
                        help="the publisher's min_interval between batches, ms (paced phases)")
    # the publisher process's own options
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--min-interval-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        asyncio.run(publish(args.url, args.prefix, args.topics, args.rate, args.count,
                            args.size, args.min_interval_ms / 1000))
    else:
        plan = [Phase(float(rate), int(float(rate) * args.duration), float(gap))
                for rate in args.rates.split(",") if rate
                for gap in args.gaps.split(",") if gap]
        if args.burst:
            plan.append(Phase(0.0, args.burst, 0.0))
        asyncio.run(main(args.url, args.topics, args.size, plan))
