"""Waking stages when there is work: PostgreSQL NOTIFY across processes, an event within one."""

from __future__ import annotations

import asyncio

PLAN_CHANNEL = "warnd_plan"  # a warning was published: planners wake
DELIVERIES_CHANNEL = "warnd_deliveries"  # deliveries were queued: dispatch workers wake
ROSTER_CHANNEL = "warnd_roster"  # the roster was imported or generated: copies reload


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

    async def until_set(self) -> None:
        """Until woken, without taking the wake-up: cancelling this never loses one (a wait
        cancelled as it returns can have taken it already)."""
        await self._event.wait()

    def is_set(self) -> bool:
        return self._event.is_set()

    def take(self) -> bool:
        """Whether it was woken; takes the wake-up."""
        woken = self._event.is_set()
        self._event.clear()
        return woken


class Signal:
    """Wakes every loop that listens, each through a ``Wakeup`` of its own: one loop taking its
    wake-up takes nothing from the others."""

    def __init__(self) -> None:
        self._listeners: list[Wakeup] = []

    def listen(self) -> Wakeup:
        wakeup = Wakeup()
        self._listeners.append(wakeup)
        return wakeup

    def forget(self, wakeup: Wakeup) -> None:
        self._listeners.remove(wakeup)

    def set(self) -> None:
        for wakeup in self._listeners:
            wakeup.set()
