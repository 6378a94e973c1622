"""``webchat chat``: a terminal customer, built only on the bus and WebChatService."""

from __future__ import annotations

import contextlib
from typing import Any

import click

from webchat.bus import Bus, BusEvent, CommandError
from webchat.cli.terminal import lines, note, say
from webchat.service import WebChatConfig, WebChatService
from webchat.service.storage import FileStorage

HELP = ("commands: /end  /agents  /transcript  /file PATH  /download FILE-ID [PATH]  /quit"
        "   (anything else is sent as a message)")


def _show(event: BusEvent) -> None:
    name = event.event.split(".", 1)[1]
    data: Any = event.data
    if name == "messageReceived":
        for msg in data["messages"]:
            sender = msg["from"]
            if msg["type"] == "Message" and sender["type"] != "Client":
                say(sender["nickname"], msg.get("text", ""), "bold cyan")
            elif msg["type"] in ("Notice", "CustomNotice", "PushUrl"):
                note(msg.get("text", ""))
            elif msg["type"] == "FileUploaded":
                meta = msg.get("userData") or {}
                note(f"{sender['nickname']} sent {meta.get('file-name', 'a file')} "
                     f"({meta.get('file-size', '?')} bytes, id {meta.get('file-id', '?')})")
            elif msg["type"] in ("ParticipantJoined", "ParticipantLeft") \
                    and sender["type"] != "Client":
                verb = "joined" if msg["type"] == "ParticipantJoined" else "left"
                note(f"{sender['nickname']} {verb} the chat")
    elif name == "agentTypingStarted":
        note(f"{data['message']['from']['nickname']} is typing…")
    elif name == "restored":
        note("restored your chat where you left it")
    elif name == "ended":
        note("the chat has ended (press Enter to quit)")
    elif name == "error":
        note(f"error: {data.get('text') if isinstance(data, dict) else data}")


async def _chat(config: WebChatConfig, form: dict[str, Any], session_file: str | None,
                follow: bool = False) -> None:
    bus = Bus()
    storage = FileStorage(session_file) if session_file else None
    service = WebChatService(bus, config, storage=storage)
    bus.subscribe("WebChatService.*", _show)
    await service.start()  # restores the chat saved in --session-file, if any
    ended = False

    def on_end(_: BusEvent) -> None:
        nonlocal ended
        ended = True

    bus.subscribe("WebChatService.ended", on_end)
    try:
        if follow:
            # Join whatever chat another process keeps in the session file, now or later.
            service.follow_shared_session()
            if not service.session.active:
                note("waiting for a chat started with the same --session-file")
        elif not service.session.active:
            await bus.command("WebChatService.startChat", form)
        note(HELP)
        async for line in lines():
            if (ended and not follow) or line == "/quit":
                break
            try:
                if line == "/end":
                    await bus.command("WebChatService.endChat")
                elif line == "/agents":
                    agents = await bus.command("WebChatService.getAgents")
                    for agent in agents["agents"].values():
                        note(f"{agent['name']} ({'connected' if agent['connected'] else 'left'})")
                elif line == "/transcript":
                    for msg in (await bus.command("WebChatService.getTranscript"))["messages"]:
                        if msg["type"] == "Message":
                            say(msg["from"]["nickname"], msg.get("text", ""))
                elif line.startswith("/file "):
                    await bus.command("WebChatService.sendFile", {"file": line[6:].strip()})
                elif line.startswith("/download "):
                    file_id, _, path = line[10:].strip().partition(" ")
                    got = await bus.command("WebChatService.downloadFile", {
                        "fileId": file_id, "path": path.strip() or file_id})
                    note(f"saved {got['fileName']} to {got['path']}")
                elif line.strip():
                    await bus.command("WebChatService.sendMessage", {"message": line})
            except CommandError as exc:
                note(f"refused: {exc.reason}")
    finally:
        # With a session file the chat stays open for the next run; otherwise end it.
        with contextlib.suppress(CommandError):
            if service.session.active and storage is None:
                await bus.command("WebChatService.endChat")
        await service.close()


@click.command("chat")
@click.option("--url", "data_url", default="http://127.0.0.1:8080/genesys/2/chat/customer-support",
              show_default=True, help="webchat.dataURL")
@click.option("--name", required=True, help="Your nickname.")
@click.option("--email", default="")
@click.option("--subject", default="")
@click.option("--user-data", "user_data", multiple=True, metavar="KEY=VALUE")
@click.option("--apikey", default="")
@click.option("--cometd-url", default="", help="webchat.cometD.cometURL: use CometD, not polling")
@click.option("--channel", default="/service/chatV2/customer-support", show_default=True,
              help="webchat.cometD.channel")
@click.option("--long-polling", is_flag=True, help="CometD without trying a WebSocket first.")
@click.option("--api-url", default="", help="webchat.cometD.apiURL (files over CometD)")
@click.option("--session-file", default=None, metavar="PATH",
              help="Keep the chat here: quitting leaves it open and the next run restores it.")
@click.option("--follow", is_flag=True,
              help="With --session-file: start no chat; join the one another process keeps "
                   "there (and the next one after it ends).")
def chat_command(data_url: str, name: str, email: str, subject: str,
                 user_data: tuple[str, ...], apikey: str, cometd_url: str, channel: str,
                 long_polling: bool, api_url: str, session_file: str | None,
                 follow: bool) -> None:
    """Chat as a customer from the terminal."""
    from webchat.cli.main import run

    if follow and not session_file:
        raise click.UsageError("--follow needs --session-file")
    data = {}
    for item in user_data:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        data[key] = value
    options: dict[str, Any] = {"dataURL": data_url, "apikey": apikey}
    if cometd_url:
        options["cometD"] = {"enabled": True, "cometURL": cometd_url, "channel": channel,
                             "websocketEnabled": not long_polling, "apiURL": api_url}
    config = WebChatConfig.from_dict(options)
    form: dict[str, Any] = {"nickname": name, "userData": data}
    if email:
        form["email"] = email
    if subject:
        form["subject"] = subject
    with contextlib.suppress(KeyboardInterrupt):
        run(_chat(config, form, session_file, follow))
