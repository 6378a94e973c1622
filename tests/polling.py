"""Waiting for a state that something else (another task, process or server) brings about."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    """Wait until ``condition()`` is true; fail saying ``what`` did not happen. The bound is
    generous: it turns a hang into a failure and measures nothing."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():  # noqa: ASYNC110 - state changed by others, no event to await
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not seen within {timeout_s} s: {what}") from None
