"""Waiting for a state that something else (another task, process or server) brings about."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable


async def eventually(condition: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    """Wait until ``condition()`` is true; fail saying ``what`` did not happen. The bound is
    generous: it turns a hang into a failure and measures nothing. ``condition`` may return
    an awaitable (a question to another process: a query, a request), awaited each time."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await _answer(condition):  # noqa: ASYNC110 - others change it
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not seen within {timeout_s} s: {what}") from None


async def _answer(condition: Callable[[], object]) -> object:
    result = condition()
    return await result if inspect.isawaitable(result) else result
