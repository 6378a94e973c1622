"""The built-in bot after a restart: a fresh bot process answers what its chats got meanwhile.

The bot's stream only replayed chats the client already followed; a bot started afresh (as
``serve --with-bot`` starts one with every server start) followed none, so a customer message
stored in the moment after a server restart was never answered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import SERVICE, free_port
from tests.test_restart import launch

GREETING = "Hello! I am a bot. Say anything."


def start_bot(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "webchat", "bot", "--url", url, "--user", "grace",
         "--password", "pw"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


async def test_a_fresh_bot_answers_what_was_said_after_a_restart(tmp_path, customer_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = await launch(tmp_path, port)
    bot = start_bot(url)
    try:
        customer = await customer_factory(f"{url}/genesys/2/chat/{SERVICE}",
                                          pollExceptionLimit=10_000)
        await customer.command("startChat", {"nickname": "Ada"})
        await customer.wait_for(lambda c: ("Agent", GREETING) in c.texts(), within=10)
        await customer.command("sendMessage", {"message": "before"})
        await customer.wait_for(lambda c: ("Agent", "You said: before") in c.texts(), within=10)

        kill(server)  # the server and its bot go down together, as with serve --with-bot
        kill(bot)
        server = await launch(tmp_path, port)
        await customer.command("sendMessage", {"message": "after restart"})  # stored, no bot
        bot = start_bot(url)
        await customer.wait_for(lambda c: ("Agent", "You said: after restart") in c.texts(),
                                within=10)
        await customer.command("sendMessage", {"message": "and now"})
        await customer.wait_for(lambda c: ("Agent", "You said: and now") in c.texts(),
                                within=10)
    finally:
        kill(bot)
        kill(server)
    # Each message answered once: the catch-up and the live stream do not both reply.
    assert customer.texts() == [
        ("Agent", GREETING), ("Client", "before"), ("Agent", "You said: before"),
        ("Client", "after restart"), ("Agent", "You said: after restart"),
        ("Client", "and now"), ("Agent", "You said: and now")]
