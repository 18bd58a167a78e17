"""Time as a dependency: every stage asks a clock, so tests can run an hour in milliseconds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time (UTC, aware) and real sleeps."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock tests move by hand; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


class ScaledClock:
    """Time running ``speed`` times faster than the wall clock from ``epoch`` on.

    For drills, demos and tests of a whole call-and-respond round: at speed 120 an hour of
    escalation passes in thirty seconds. Processes given the same epoch and speed agree on the
    time, so a second warnd — or one restarted after a crash — carries on the same timeline.
    """

    def __init__(self, speed: float, epoch: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.epoch = epoch or datetime.now(UTC)

    def now(self) -> datetime:
        return self.epoch + (datetime.now(UTC) - self.epoch) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)
