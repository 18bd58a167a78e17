"""The pacer on a manual clock: every wait is read off the clock, none is waited for real."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from channels.base import ChannelClock
from channels.pacing import MIN_FACTOR, Pacer
from warnd.core.clock import ManualClock, ScaledClock

T0 = datetime(2026, 7, 29, 2, 0, tzinfo=UTC)


class RecordingClock(ManualClock):
    """warnd's manual clock (a sleep moves it at once), noting every sleep asked of it."""

    def __init__(self) -> None:
        super().__init__(T0)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)

    def set_back(self, seconds: float) -> None:
        self._now -= timedelta(seconds=seconds)


class HeldClock:
    """A clock whose sleeps last until the test moves time past their end."""

    def __init__(self) -> None:
        self.at = T0
        self.sleeps: list[float] = []
        self._waking: list[tuple[datetime, asyncio.Future[None]]] = []
        self._slept = asyncio.Event()

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = asyncio.get_running_loop().create_future()
        self._waking.append((self.at + timedelta(seconds=seconds), wake))
        self._slept.set()
        await wake

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        for at, wake in list(self._waking):
            if at <= self.at:
                self._waking.remove((at, wake))
                wake.set_result(None)

    async def sleeping(self, count: int) -> None:
        """Wait until ``count`` sleeps have begun."""
        async with asyncio.timeout(5):
            while len(self.sleeps) < count:
                self._slept.clear()
                await self._slept.wait()


async def test_a_burst_goes_at_once_then_one_send_per_interval() -> None:
    clock = RecordingClock()
    pacer = Pacer(10, clock, burst=3)
    for _ in range(3):
        await pacer.acquire()
    assert clock.sleeps == []
    await pacer.acquire()
    await pacer.acquire()
    assert clock.sleeps == [pytest.approx(0.1), pytest.approx(0.1)]
    assert clock.now() == T0 + timedelta(seconds=0.2)


async def test_the_default_burst_is_a_second_of_the_rate_and_at_least_one_send() -> None:
    clock = RecordingClock()
    fast = Pacer(2, clock)
    for _ in range(4):
        await fast.acquire()
    assert clock.sleeps == [0.5, 0.5]  # two at once, then one each half second
    slow = Pacer(0.5, clock)
    await slow.acquire()
    await slow.acquire()
    assert clock.sleeps[2:] == [2.0]


async def test_n_sends_at_once_wait_for_what_exceeds_the_burst() -> None:
    clock = RecordingClock()
    pacer = Pacer(10, clock)
    await pacer.acquire(25)  # a batch: ten from the burst, fifteen at ten a second
    assert clock.sleeps == [1.5]
    clock.advance(60)  # a quiet minute refills the bucket, but never beyond the burst
    await pacer.acquire(10)
    await pacer.acquire(1)
    assert clock.sleeps == [1.5, pytest.approx(0.1)]


async def test_concurrent_callers_wait_in_turn() -> None:
    clock = HeldClock()
    pacer = Pacer(1, clock, burst=1)
    callers = [asyncio.create_task(pacer.acquire()) for _ in range(3)]
    await clock.sleeping(2)
    assert clock.sleeps == [1.0, 2.0]  # the first went at once; each later one a second apart
    assert sum(caller.done() for caller in callers) == 1
    clock.advance(1)
    await asyncio.wait_for(callers[1], 5)
    assert not callers[2].done()
    clock.advance(1)
    await asyncio.wait_for(callers[2], 5)


async def test_a_hold_stops_every_send_then_allows_one_burst() -> None:
    clock = RecordingClock()
    pacer = Pacer(2, clock)
    pacer.hold(5)
    pacer.hold(2)  # a shorter hold does not cut a longer one short
    for _ in range(3):
        await pacer.acquire()
    # Five seconds of holding refill the bucket to its burst of two, not to ten sends.
    assert clock.sleeps == [5.0, 0.5]


async def test_a_hold_begun_while_a_caller_waits_is_waited_out_too() -> None:
    clock = HeldClock()
    pacer = Pacer(100, clock)
    pacer.hold(3)
    caller = asyncio.create_task(pacer.acquire())
    await clock.sleeping(1)
    pacer.hold(10)  # a second Retry-After arrives meanwhile
    clock.advance(3)
    await clock.sleeping(2)
    assert clock.sleeps == [3.0, 7.0]
    assert not caller.done()
    clock.advance(7)
    await asyncio.wait_for(caller, 5)


async def test_throttling_halves_the_rate_once_a_second_down_to_a_floor() -> None:
    clock = RecordingClock()
    pacer = Pacer(160, clock, burst=8, cooldown=10)
    assert pacer.slow_down() is True
    assert (pacer.rate, pacer.burst) == (80, 4)
    assert pacer.slow_down() is False  # the same overload refused every message in flight
    assert pacer.rate == 80
    for _ in range(6):
        clock.advance(1)
        pacer.slow_down()
    assert pacer.rate == 160 * MIN_FACTOR == 10
    assert pacer.burst == 1  # never below one send
    assert pacer.base_rate == 160


async def test_each_quiet_cooldown_doubles_the_rate_back() -> None:
    clock = RecordingClock()
    pacer = Pacer(100, clock, cooldown=10)
    pacer.slow_down()
    clock.advance(1)
    pacer.slow_down()
    assert pacer.rate == 25
    clock.advance(9.5)
    assert pacer.slow_down() is True  # throttled again: halved, and the quiet time starts over
    clock.advance(9.9)
    await pacer.acquire()
    assert pacer.rate == 12.5
    clock.advance(0.1)
    await pacer.acquire()
    assert pacer.rate == 25
    clock.advance(30)
    await pacer.acquire()
    assert pacer.rate == 50  # one doubling per send after a quiet cooldown, however long
    clock.advance(10)
    await pacer.acquire()
    assert pacer.rate == 100
    clock.advance(10)
    await pacer.acquire()
    assert pacer.rate == 100


async def test_a_clock_set_back_does_not_stall_sending() -> None:
    clock = RecordingClock()
    pacer = Pacer(1, clock, burst=1)
    await pacer.acquire()
    clock.set_back(3600)  # the wall clock corrected by an hour
    await pacer.acquire()
    assert clock.sleeps == [1.0]  # one interval, not an hour and a second


async def test_warnds_clocks_fit_the_channel_clock() -> None:
    manual = ManualClock(T0)
    clocks: list[ChannelClock] = [manual, ScaledClock(60.0)]
    for clock in clocks:
        pacer = Pacer(10, clock)
        await pacer.acquire(10)  # within the burst: no sleep, so not even the scaled clock waits
    await Pacer(1, manual, burst=1).acquire(3)
    assert manual.now() == T0 + timedelta(seconds=2)  # a manual clock moves by what was waited


def test_a_pacer_refuses_a_rate_or_burst_that_could_never_send() -> None:
    clock = ManualClock(T0)
    with pytest.raises(ValueError, match="rate"):
        Pacer(0, clock)
    with pytest.raises(ValueError, match="burst"):
        Pacer(10, clock, burst=0.5)
