"""The README's Python example runs as written against a real server and bot."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.conftest import caller_data
from webchat.cli.bot import Bot

README = Path(__file__).resolve().parents[1] / "README.md"


async def test_readme_example_chats_with_the_bot(server):
    await server.add_agent("bot", "bot-pw", "Echo bot")
    bot = Bot(server.url, "bot", "bot-pw", capacity=5)
    runner = asyncio.create_task(bot.run())
    try:
        code = re.search(r"```python\n(.*?)```", README.read_text("utf-8"), re.S)
        assert code is not None
        namespace: dict[str, object] = {"__name__": "readme_example"}
        exec(compile(code.group(1), "README.md", "exec"), namespace)
        seen = await namespace["main"](server.data_url)  # type: ignore[operator]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert seen == ["Hello! I am a bot. Say anything.", "You said: Hello!"]
    chat = next(iter(server.engine.chats.values()))
    assert caller_data(chat.user_data) == {"source": "readme", "orderId": "A-1009"}
    assert chat.ended
