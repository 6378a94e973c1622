"""A change nobody has committed yet is nobody's business: while it is being written, every
reader sees the chat as it was.

Found by the chaos test (tests/test_cluster_chaos.py): an agent ended a chat while its REST
customer polled the same process. The end had already marked the chat ended in memory when
its save began, but its last event (the agent leaving) was appended only after the save: a
poll landing in between was told ``chatEnded`` without that event, so the customer's
service closed the chat one event short, for good. The save is held here by a real lock on
the events table (another transaction's), so the window is as wide as the test needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from tests.conftest import RunningServer, accepted_chat, start_server
from tests.services import wait_for_lock_waiter
from webchat.server.config import ServerConfig
from webchat.store.postgres import PostgresStore


@pytest.fixture
async def pg_server(server_config: ServerConfig, postgres_dsn: str
                    ) -> AsyncIterator[RunningServer]:
    running = await start_server(replace(server_config, node_id="solo"),
                                 store=PostgresStore(postgres_dsn))
    yield running
    await running.runner.cleanup()


async def test_a_poll_during_the_end_sees_the_chat_open_then_the_agent_leave(
        pg_server, customer_factory, agent_factory, postgres_dsn):
    customer = await customer_factory(pg_server.data_url)  # REST, polling
    agent, chat_id = await accepted_chat(pg_server, customer, agent_factory)

    blocker = await asyncpg.connect(postgres_dsn)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE events IN SHARE MODE")  # saves wait behind it
        ending = asyncio.create_task(agent.client.end(chat_id))
        await wait_for_lock_waiter(blocker)
        # The end is being written: a poll now must not report it.
        await customer.command("poll")
        assert "ended" not in customer.names()
        await transaction.rollback()
    finally:
        await blocker.close()
    await ending

    await customer.wait_event("ended")
    names = customer.names()
    assert names.index("agentDisconnected") < names.index("ended")
    stored = (await pg_server.engine.registry._store.load_chat(chat_id)).events
    assert customer.indexes() == [m.index for m in stored]
    assert stored[-1].type == "ParticipantLeft"
