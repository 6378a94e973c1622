"""Shared bits of the interactive terminal clients: reading lines without blocking the loop."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from rich.console import Console
from rich.markup import escape

console = Console(highlight=False)


async def lines() -> AsyncIterator[str]:
    """Lines typed on stdin, until end of input."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        yield line.rstrip("\n")


def say(who: str, text: str, style: str = "") -> None:
    """Print a chat line. Text is escaped: what people type is never markup."""
    label = f"[{style}]{escape(who)}[/]" if style else escape(who)
    console.print(f"{label}: {escape(text)}")


def note(text: str) -> None:
    console.print(f"[dim]* {escape(text)}[/]")
