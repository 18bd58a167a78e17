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

    For drills, demos and tests of a whole call-and-respond round: at speed 60 an hour of
    escalation passes in a minute. Processes given the same epoch and speed agree on the time,
    so a second warnd — or one restarted after a crash — carries on the same timeline. The speed
    may change (``set_speed``) without the time jumping: the demo sends at real speed, since
    sending costs real database time a fast clock would inflate, and fast-forwards only the
    waiting for answers and escalations. A sleep already begun keeps the speed it began with.
    """

    def __init__(self, speed: float, epoch: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._anchor = self._origin = epoch or datetime.now(UTC)

    def now(self) -> datetime:
        return self._anchor + (datetime.now(UTC) - self._origin) * self.speed

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._anchor, self._origin = self.now(), datetime.now(UTC)
        self.speed = speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)
