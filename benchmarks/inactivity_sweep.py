"""CPU of the inactivity sweep on an idle server: N active chats of M events each.

The sweep runs every ``inactivity.sweep_s`` (1 s), so its cost per run is the share of a core
an idle server burns on it. Prints the CPU time of the first sweep (which may build per-chat
state) and the mean of the next ``--sweeps``.

    .venv/bin/python -m benchmarks.inactivity_sweep --chats 100 --events 3000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from webchat.broker.memory import MemoryBroker
from webchat.protocol.gms.models import Message, Participant
from webchat.server.config import ServerConfig
from webchat.server.engine import ChatEngine, wall_clock
from webchat.store.records import ChatRecord, ChatStatus, ParticipantRecord
from webchat.store.sqlite import SqliteStore


def active_chat(n: int, events: int, now_ms: int) -> ChatRecord:
    """A chat with an agent, customer and agent taking turns, the last word a second ago."""
    chat = ChatRecord(f"C{n:04d}", "customer-support", f"key{n}", f"U{n}", "1",
                      ChatStatus.ACTIVE, now_ms - events, now_ms - events, {}, {},
                      agent_id="agent", next_participant=4)
    chat.participants = {1: ParticipantRecord(1, "Client", "Ada"),
                         2: ParticipantRecord(2, "External", "system"),
                         3: ParticipantRecord(3, "Agent", "Grace", "agent")}
    who = [Participant("Ada", 1, "Client"), Participant("Grace", 3, "Agent")]
    for i in range(1, events + 1):
        t = now_ms - 1000 - (events - i)
        chat.events.append(Message(from_=who[i % 2], index=i, type="Message", utcTime=t,
                                   text=f"message {i}"))
    return chat


async def main(chats: int, events: int, sweeps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "db.sqlite3")
        await store.open()
        engine = ChatEngine(store, MemoryBroker(), ServerConfig(data_dir=tmp), wall_clock)
        now = wall_clock()
        for n in range(chats):
            chat = active_chat(n, events, now)
            engine.chats[chat.chat_id] = chat
        start = time.process_time()
        await engine.check_inactivity()
        first = time.process_time() - start
        start = time.process_time()
        for _ in range(sweeps):
            await engine.check_inactivity()
        each = (time.process_time() - start) / sweeps
        await store.close()
    print(f"{chats} chats x {events} events: first sweep {first * 1000:.2f} ms CPU, "
          f"then {each * 1000:.3f} ms CPU per sweep (mean of {sweeps}) = "
          f"{each * 100:.2f}% of a core at one sweep a second")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--sweeps", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.chats, args.events, args.sweeps))
