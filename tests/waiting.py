"""Waiting for what another task or process must eventually write, without sleep-then-assert.

A test waits for an event where one exists (an ``asyncio.Event``, a peer's condition, a
``ManualClock`` moved by hand). What has no event — a row another task or process writes, a
counter a protocol library updates from its own threads — is read again with :func:`until`,
which returns the moment the state is there and fails the test if it never comes.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path


async def until(
    check: Callable[[], object],
    within: float = 10.0,
    *,
    what: str = "the expected state",
    every: float = 0.01,
) -> None:
    """Return as soon as ``check()`` is true (awaited when it returns an awaitable); fail the test
    naming ``what`` after ``within`` seconds.

    ``check`` is read again every ``every`` seconds: a database state has no event to await.
    """
    limit = asyncio.timeout(within)
    try:
        async with limit:
            while True:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(every)
    except TimeoutError:
        if not limit.expired():
            raise  # the check's own timeout, not ours
        raise AssertionError(f"timed out after {within:g} s waiting for {what}") from None


async def until_while_running(
    process: asyncio.subprocess.Process,
    log: Path,
    check: Callable[[], Awaitable[object]],
    *,
    within: float,
    what: str,
) -> None:
    """``until(check)`` for a state a child process writes; fails at once when the process has
    ended without writing it, and every failure quotes the end of the process's log."""

    async def written_or_ended() -> bool:
        return process.returncode is not None or bool(await check())

    try:
        await until(written_or_ended, within, what=what, every=0.05)
        failure = ""
    except AssertionError as timeout:
        failure = str(timeout)
    if not failure and process.returncode is not None and not await check():
        failure = f"the process ended (exit status {process.returncode}) before {what}"
    if failure:
        output = await asyncio.to_thread(log.read_text)
        raise AssertionError(f"{failure}; its log ends: {output[-2000:]}")


async def equals(value: Awaitable[object], expected: object) -> bool:
    """``await value == expected``, as a check for ``until``."""
    return await value == expected
