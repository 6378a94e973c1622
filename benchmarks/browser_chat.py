"""What a customer in a real browser waits for: navigation to a ready WebChatService, startChat
to an agent's greeting, and the round trip of a message to the echo bot and back, over each
transport (CometD WebSocket, CometD long-polling, REST polling), in headless Debian Chromium.

Numbers come from the page itself (performance.now() around bus commands and events), so
they include the widget's bus, the WebChatService and the transport, not just the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from playwright.async_api import async_playwright

from benchmarks.common import percentile, start_bot, start_server

CHROMIUM = "/usr/bin/chromium"

# Runs in the demo page: waits for the plugin, starts a chat, then sends messages one at a
# time and times each until the bot's echo of it arrives as messageReceived.
ROUND_TRIPS = """async ([count, gapMs]) => {
    const plugin = () => window.CXBus?.plugins.get("WebChatService");
    await new Promise(r => { const w = () => plugin()?.isReady ? r() : setTimeout(w, 5); w(); });
    const ready = performance.now();  // since navigation started
    const waiters = [];
    let agentJoined;
    const joined = new Promise(r => { agentJoined = r; });
    CXBus.subscribe("WebChatService.messageReceived", e => {
        for (const m of e.data.messages) {
            if (m.type === "ParticipantJoined" && m.from.type === "Agent") agentJoined();
            if (m.type !== "Message" || m.from.type !== "Agent") continue;
            const i = waiters.findIndex(w => m.text === `You said: ${w.text}`);
            if (i >= 0) waiters.splice(i, 1)[0].resolve(performance.now());
        }
    });
    const s0 = performance.now();
    await CXBus.command("WebChatService.startChat", {nickname: "Bench"});
    await joined;
    const toAgent = performance.now() - s0;
    const rtt = [];
    for (let n = 0; n < count; n++) {
        const text = `round trip ${n}`;
        const echoed = new Promise(resolve => waiters.push({text, resolve}));
        const sent = performance.now();
        await CXBus.command("WebChatService.sendMessage", {message: text});
        rtt.push((await echoed) - sent);
        await new Promise(r => setTimeout(r, gapMs));
    }
    await CXBus.command("WebChatService.endChat");
    return {ready, toAgent, rtt};
}"""


async def run_transport(browser: Any, url: str, transport: str, args: argparse.Namespace,
                        ) -> dict[str, Any]:
    ready: list[float] = []
    to_agent: list[float] = []
    rtt: list[float] = []
    for _ in range(args.pages):
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{url}/?transport={transport}")
        result = await page.evaluate(ROUND_TRIPS, [args.messages, args.gap_ms])
        ready.append(result["ready"])
        to_agent.append(result["toAgent"])
        rtt.extend(result["rtt"])
        await context.close()
    return {
        "transport": transport,
        "pages": args.pages,
        "round_trips": len(rtt),
        "ready_p50_ms": round(percentile(ready, 50), 1),
        "start_to_agent_p50_ms": round(percentile(to_agent, 50), 1),
        "round_trip_p50_ms": round(percentile(rtt, 50), 1),
        "round_trip_p99_ms": round(percentile(rtt, 99), 1),
    }


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    server = await start_server("--agent", "bot:bench-pw")
    bot = start_bot(server.url, "bot", "bench-pw", 10)
    try:
        await asyncio.sleep(1.5)  # let the bot log in and turn ready
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                return [await run_transport(browser, server.url, t, args)
                        for t in args.transports]
            finally:
                await browser.close()
    finally:
        bot.terminate()
        server.stop()


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=3, help="page loads (chats) per transport")
    p.add_argument("--messages", type=int, default=50, help="round trips per chat")
    p.add_argument("--gap-ms", type=int, default=20, help="pause between round trips")
    p.add_argument("--transports", nargs="+", default=["websocket", "long-polling", "rest"])
    return p.parse_args()


if __name__ == "__main__":
    for row in asyncio.run(main(parse())):
        print(json.dumps(row))
