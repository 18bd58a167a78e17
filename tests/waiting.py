"""Waiting for what another task or process must eventually write, without sleep-then-assert."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(check: Callable[[], Awaitable[object]], within: float = 10.0) -> None:
    """Return as soon as ``check`` is true; fail after ``within`` seconds.

    For database states another task writes: a row has no event to await, so it is read again
    every 10 ms until it shows what the test expects.
    """
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - a database state has no event to await
            await asyncio.sleep(0.01)


async def equals(value: Awaitable[object], expected: object) -> bool:
    """``await value == expected``, as a check for ``until``."""
    return await value == expected
