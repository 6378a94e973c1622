"""``webchat bot``: an agent that answers by itself, for demos and load tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import click

from webchat.transport.agent import AgentApiError, AgentClient

log = logging.getLogger(__name__)


class Bot:
    """Accepts every offer, greets, and replies to each customer message.

    Replies come from a script (one line per reply, used in turn; the last one repeats) or,
    without a script, echo the customer's text. ``end_after`` ends a chat after that many
    customer messages.
    """

    def __init__(self, url: str, username: str, password: str, *, capacity: int = 100,
                 greeting: str = "Hello! I am a bot. Say anything.",
                 script: list[str] | None = None, end_after: int = 0) -> None:
        self.client = AgentClient(url, username, password)
        self.capacity = capacity
        self.greeting = greeting
        self.script = script or []
        self.end_after = end_after
        self.counts: dict[str, int] = {}
        self._greeting: dict[str, asyncio.Event] = {}
        """chatId -> set once the bot's greeting is sent (while it is being sent)."""
        self.answered: dict[str, int] = {}
        """chatId -> index of the latest customer message answered: a message can reach the
        bot twice (live and in a catch-up) and is answered once."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        """Set once the bot said it is ready: it takes no chat before."""

    async def run(self) -> None:
        try:
            me = await self.client.login()
            self.client.listen(self.handle)
            await self.client.wait_connected()
            await self.client.set_state(True, self.capacity)
            self._ready.set()
            log.info("bot %s ready with capacity %d", me["agentId"], self.capacity)
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await self.client.close()

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "hello":
            self._spawn(self._catch_up())
        elif kind == "offer":
            self._spawn(self._accept(event["chat"]["chatId"]))
        elif kind == "message":
            msg = event["message"]
            if self._from_customer(msg):
                self._spawn(self._reply(event["chatId"], msg))

    @staticmethod
    def _from_customer(msg: dict[str, Any]) -> bool:
        return bool(msg.get("type") == "Message" and msg["from"]["type"] == "Client")

    async def _catch_up(self) -> None:
        """On every (re)connect: take what waits, and answer what the chats assigned to the bot
        got while it was away. The stream only replays chats the client already follows, and a
        bot started afresh (after a restart of the server it runs in) follows none, so a
        message stored just after the restart was never answered."""
        await self._ready.wait()
        try:
            queued = await self.client.queue()
            mine = await self.client.chats()
        except AgentApiError as exc:
            log.warning("could not catch up: %s", exc)
            return
        for chat in queued:
            self._spawn(self._accept(chat["chatId"]))
        for chat in mine:
            if chat["status"] == "active" and chat["chatId"] not in self.client.positions:
                self._spawn(self._resume(chat["chatId"]))

    async def _resume(self, chat_id: str) -> None:
        """Follow an active chat of ours and answer its customer messages since our last."""
        try:
            chat = await self.client.chat(chat_id)
        except AgentApiError as exc:
            log.debug("could not resume %s: %s", chat_id, exc)
            return
        self.client.track(chat_id, chat["nextPosition"])
        await self._answer_unanswered(chat_id, chat["messages"])

    async def _answer_unanswered(self, chat_id: str, messages: list[dict[str, Any]]) -> None:
        last_agent = max((m["index"] for m in messages
                          if m["type"] == "Message" and m["from"]["type"] == "Agent"), default=0)
        for msg in messages:
            if msg["index"] > last_agent and self._from_customer(msg):
                await self._reply(chat_id, msg)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, chat_id: str) -> None:
        # The chat's events may reach the bot before the accept's reply does: answers to them
        # wait for the greeting, which would otherwise sometimes follow "You said: ...".
        greeted = self._greeting[chat_id] = asyncio.Event()
        try:
            try:
                chat = await self.client.accept(chat_id)
            except AgentApiError as exc:
                log.debug("could not accept %s: %s", chat_id, exc)
                return
            self.client.track(chat_id, chat["nextPosition"])
            if self.greeting:
                await self.client.send(chat_id, self.greeting)
        finally:
            greeted.set()
            self._greeting.pop(chat_id, None)
        # Answer what the customer wrote while waiting in the queue.
        await self._answer_unanswered(chat_id, chat["messages"])

    async def _reply(self, chat_id: str, msg: dict[str, Any]) -> None:
        greeted = self._greeting.get(chat_id)
        if greeted is not None:
            await greeted.wait()
        index = int(msg.get("index", 0))
        if index and index <= self.answered.get(chat_id, 0):
            return  # answered already (it came live and in a catch-up)
        self.answered[chat_id] = max(index, self.answered.get(chat_id, 0))
        text = msg.get("text", "")
        n = self.counts.get(chat_id, 0)
        self.counts[chat_id] = n + 1
        script = self.script
        answer = script[min(n, len(script) - 1)] if script else f"You said: {text}"
        try:
            await self.client.send(chat_id, answer)
            if self.end_after and n + 1 >= self.end_after:
                await self.client.end(chat_id)
        except AgentApiError as exc:
            log.debug("reply to %s failed: %s", chat_id, exc)


@click.command("bot")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True)
@click.option("--user", "username", required=True)
@click.option("--password", required=True, envvar="WEBCHAT_AGENT_PASSWORD")
@click.option("--capacity", default=100, show_default=True, type=int)
@click.option("--greeting", default="Hello! I am a bot. Say anything.", show_default=True)
@click.option("--script", type=click.Path(exists=True, dir_okay=False),
              help="File with one reply per line, used in turn.")
@click.option("--end-after", default=0, type=int, help="End a chat after N customer messages.")
def bot_command(url: str, username: str, password: str, capacity: int, greeting: str,
                script: str | None, end_after: int) -> None:
    """Run an agent that answers automatically."""
    from webchat.cli.main import run

    lines = None
    if script:
        lines = [ln for ln in Path(script).read_text("utf-8").splitlines() if ln.strip()]
    bot = Bot(url, username, password, capacity=capacity, greeting=greeting, script=lines,
              end_after=end_after)
    with contextlib.suppress(KeyboardInterrupt):
        run(bot.run())
