"""CometD chat load, modelled on CometD's own chat benchmark: clients in rooms, publishing.

``--clients`` WebSocket Bayeux clients (our Python client, sharing one HTTP session) join
``--rooms`` rooms (broadcast channels ``/rooms/N``); messages are published at ``--rate`` per
second in total, each reaching every member of its room. Printed: delivered messages/s,
delivery latency p50/p99/max (publish -> seen by a member), and server memory per idle session.
``--server faye`` runs the identical load against faye (npm) on the same machine; ``--compare``
runs both and prints the ratio.

    python -m benchmarks.cometd_chat --clients 1000 --rooms 100 --rate 500 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time

import aiohttp
import psutil

from benchmarks.common import free_port, percentile, repo_root, start_server
from webchat.transport.cometd import CometdClient


class Load:
    def __init__(self) -> None:
        self.measuring = False
        self.latency_ms: list[float] = []
        self.delivered = 0

    def record(self, _channel: str, data: object) -> None:
        if self.measuring and isinstance(data, dict) and "t" in data:
            self.delivered += 1
            self.latency_ms.append((time.time_ns() - data["t"]) / 1e6)


async def start_faye() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    interop = repo_root() / "tests" / "interop"
    proc = subprocess.Popen(  # noqa: ASYNC220 - one launch before measuring
        ["node", str(interop / "faye_server.cjs"), str(port)], cwd=interop,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    if line != b"ready\n":
        raise RuntimeError("faye did not start")
    return proc, f"http://127.0.0.1:{port}/bayeux"


async def run(args: argparse.Namespace, which: str) -> dict[str, float | str]:
    if which == "faye":
        proc, url = await start_faye()
        ps = psutil.Process(proc.pid)
        stop = proc.terminate
    else:
        server = await start_server("--cometd-handshake-rate", f"{args.clients}:{args.clients}",
                                    "--cometd-broadcast")
        url, ps, stop = f"{server.url}/genesys/cometd", server.ps, server.stop
    if args.load == "node":
        try:
            return await run_node(args, which, url, ps)
        finally:
            stop()
    load = Load()
    try:
        rss0 = ps.memory_info().rss
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector,
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            clients = [CometdClient(url, session=http, on_delivery=load.record)
                       for _ in range(args.clients)]
            for batch in range(0, args.clients, 50):
                await asyncio.gather(*(c.start([f"/rooms/{n % args.rooms}"])
                                       for n, c in enumerate(clients[batch:batch + 50],
                                                             start=batch)))
            await asyncio.sleep(2)
            idle_kb = (ps.memory_info().rss - rss0) / 1024 / args.clients
            cpu0 = sum(ps.cpu_times()[:2])
            t0 = time.monotonic()
            load.measuring = True
            period = 1 / args.rate
            seq = 0
            next_at = time.monotonic()
            publishes: set[asyncio.Task[object]] = set()
            while time.monotonic() - t0 < args.duration:
                client = clients[seq % len(clients)]
                task = asyncio.ensure_future(client.publish(
                    f"/rooms/{seq % args.rooms}", {"t": time.time_ns(), "s": seq}))
                publishes.add(task)
                task.add_done_callback(publishes.discard)
                seq += 1
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elapsed = time.monotonic() - t0  # the publishing window
            await asyncio.sleep(1.0)  # let the last deliveries land
            load.measuring = False
            cpu = (sum(ps.cpu_times()[:2]) - cpu0) / elapsed
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    finally:
        stop()
    members = args.clients / args.rooms
    return {
        "server": which,
        "clients": args.clients, "rooms": args.rooms, "publish_per_s": args.rate,
        "expected_deliveries_per_s": round(args.rate * members, 1),
        "delivered_per_s": round(load.delivered / elapsed, 1),
        "latency_p50_ms": round(percentile(load.latency_ms, 50), 2),
        "latency_p99_ms": round(percentile(load.latency_ms, 99), 2),
        "latency_max_ms": round(max(load.latency_ms, default=float("nan")), 2),
        "server_cpu_cores": round(cpu, 3),
        "server_kb_per_idle_session": round(idle_kb, 1),
    }


async def run_node(args: argparse.Namespace, which: str, url: str, ps: psutil.Process
                   ) -> dict[str, float | str]:
    """The same load from the official CometD client in Node: a faster generator, for
    finding where each server saturates."""
    script = repo_root() / "benchmarks" / "cometd_load.mjs"
    cpu0, t0 = sum(ps.cpu_times()[:2]), time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), url, str(args.clients), str(args.rooms), str(args.rate),
        str(args.duration), *(["noack"] if args.no_ack else []), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    cpu = (sum(ps.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
    result = json.loads(out.decode().strip().splitlines()[-1])
    return {"server": which, "load": "node", "ack": not args.no_ack,
            "clients": args.clients, "rooms": args.rooms,
            "publish_per_s": args.rate,
            "expected_deliveries_per_s": round(args.rate * args.clients / args.rooms, 1),
            "delivered_per_s": round(result["delivered_per_s"], 1),
            "latency_p50_ms": round(result["p50"], 2), "latency_p99_ms": round(result["p99"], 2),
            "latency_max_ms": round(result["max"], 2),
            "server_cpu_cores_incl_setup": round(cpu, 3)}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rooms", type=int, default=100)
    p.add_argument("--rate", type=float, default=500.0, help="publishes per second, total")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--server", choices=["webchat", "faye"], default="webchat")
    p.add_argument("--compare", action="store_true", help="run webchat, then faye")
    p.add_argument("--load", choices=["python", "node"], default="python",
                   help="load generator: our Python client, or the official CometD JS client")
    p.add_argument("--no-ack", action="store_true",
                   help="with --load node: clients without the ack extension, so the server "
                        "may write deliveries straight to the socket")
    return p.parse_args()


async def main(args: argparse.Namespace) -> None:
    targets = ["webchat", "faye"] if args.compare else [args.server]
    results = [await run(args, which) for which in targets]
    for result in results:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
        print(json.dumps(result))
    if len(results) == 2:
        ratio = float(results[0]["delivered_per_s"]) / max(1.0,
                                                          float(results[1]["delivered_per_s"]))
        print(f"webchat/faye delivered ratio: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main(parse()))
