"""Waking stages when there is work: PostgreSQL NOTIFY across processes, an event within one."""

from __future__ import annotations

import asyncio

PLAN_CHANNEL = "warnd_plan"  # a warning was published: planners wake
DELIVERIES_CHANNEL = "warnd_deliveries"  # deliveries were queued: dispatch workers wake


class Wakeup:
    """Wakes a sleeping loop early; the loop still polls, so a lost NOTIFY only costs latency."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, at_most: float) -> None:
        """Until woken, or ``at_most`` seconds. A wake-up is consumed only by a wait that saw
        it: one cancelled or timed out leaves it for the next."""
        try:
            await asyncio.wait_for(self._event.wait(), at_most)
        except TimeoutError:
            return
        self._event.clear()
