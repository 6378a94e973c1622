"""``webchat agent``: an interactive terminal agent."""

from __future__ import annotations

import contextlib
from typing import Any

import click

from webchat.cli.terminal import lines, note, say
from webchat.transport.agent import AgentApiError, AgentClient

HELP = ("commands: /ready [N]  /notready  /queue  /chats  /accept ID  /switch ID  /end  "
        "/transfer [AGENT]  /quit   (anything else goes to the current chat)")


class AgentConsole:
    def __init__(self, client: AgentClient) -> None:
        self.client = client
        self.current: str | None = None

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "offer":
            chat = event["chat"]
            who = chat["customer"].get("nickname", "?")
            note(f"offer: chat {chat['chatId']} from {who} — /accept {chat['chatId']}")
        elif kind == "offerRevoked":
            note(f"offer for {event['chatId']} withdrawn")
        elif kind == "message":
            msg = event["message"]
            sender = msg["from"]
            tag = f"[{event['chatId'][:6]}] {sender['nickname']}"
            if msg["type"] == "Message" and sender["type"] == "Client":
                say(tag, msg.get("text", ""), "bold green")
            elif msg["type"] == "ParticipantLeft" and sender["type"] == "Client":
                note(f"{tag} left the chat")
            elif msg["type"] == "TypingStarted" and sender["type"] == "Client":
                note(f"{tag} is typing…")

    async def command(self, line: str) -> None:
        word, _, arg = line.partition(" ")
        arg = arg.strip()
        c = self.client
        if word == "/ready":
            await c.set_state(True, int(arg) if arg.isdigit() else None)
            note("ready")
        elif word == "/notready":
            await c.set_state(False)
            note("not ready")
        elif word == "/queue":
            for chat in await c.queue():
                note(f"{chat['chatId']} {chat['customer'].get('nickname', '?')} "
                     f"{chat['userData']}")
        elif word == "/chats":
            for chat in await c.chats():
                note(f"{chat['chatId']} {chat['status']} {chat['customer'].get('nickname')}")
        elif word == "/accept":
            chat = await c.accept(arg)
            c.track(arg, chat["nextPosition"])
            self.current = arg
            for msg in chat["messages"]:
                if msg["type"] == "Message":
                    say(msg["from"]["nickname"], msg.get("text", ""))
            note(f"now chatting in {arg}")
        elif word == "/switch":
            self.current = arg
        elif word in ("/end", "/transfer"):
            if self.current is None:
                note("no current chat")
            elif word == "/end":
                await c.end(self.current)
                self.current = None
            else:
                await c.transfer(self.current, arg or None)
                self.current = None
        elif line.strip() and self.current:
            await c.send(self.current, line)
        elif line.strip():
            note("no current chat: /accept one first")


async def _agent(url: str, username: str, password: str, capacity: int) -> None:
    client = AgentClient(url, username, password)
    console = AgentConsole(client)
    try:
        me = await client.login()
        note(f"logged in as {me['nickname']}. {HELP}")
        client.listen(console.handle)
        await client.wait_connected()
        await client.set_state(True, capacity)
        async for line in lines():
            if line == "/quit":
                break
            try:
                await console.command(line)
            except AgentApiError as exc:
                note(f"refused: {exc.message}")
    finally:
        with contextlib.suppress(Exception):
            await client.set_state(False)
        await client.close()


@click.command("agent")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True)
@click.option("--user", "username", required=True)
@click.option("--password", required=True, envvar="WEBCHAT_AGENT_PASSWORD")
@click.option("--capacity", default=3, show_default=True, type=int)
def agent_command(url: str, username: str, password: str, capacity: int) -> None:
    """Work as an agent from the terminal."""
    from webchat.cli.main import run

    with contextlib.suppress(KeyboardInterrupt):
        run(_agent(url, username, password, capacity))
