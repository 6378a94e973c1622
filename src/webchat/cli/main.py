"""The ``webchat`` command."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import click

from webchat.cli.agent import agent_command
from webchat.cli.bot import bot_command
from webchat.cli.chat import chat_command
from webchat.cli.migrate import migrate_command
from webchat.cli.serve import serve_command


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop where available: it roughly doubles request throughput here."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(coro)
    return uvloop.run(coro)


@click.group()
@click.option("--log-level", default="warning", show_default=True, envvar="WEBCHAT_LOG_LEVEL",
              show_envvar=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.version_option(package_name="webchat")
def cli(log_level: str) -> None:
    """webchat: a GMS Chat v2 compatible chat server and WebChatService clients."""
    configure_logging(log_level.upper())


def configure_logging(level: int | str) -> None:
    """The log format of every webchat process (``serve --workers`` starts more of them)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


cli.add_command(serve_command)
cli.add_command(chat_command)
cli.add_command(agent_command)
cli.add_command(bot_command)
cli.add_command(migrate_command)


def main() -> None:
    cli()
