"""Pacing: how fast a sender may go, on the channel's clock.

One pacer serves every place that paces sending: dispatch's worker per channel, an HTTP gateway's
requests and each SMPP link. It is a token bucket: ``burst`` sends go at once after a quiet spell,
then one every ``1 / rate`` seconds. A caller takes its tokens at once, into debt if need be, and
waits until the debt is paid: concurrent callers go in the order they asked, and a batch of ``n``
waits for what it takes beyond the burst.

Time is the injected clock's (``channels.base.ChannelClock``; warnd's clocks fit it), so a test
with a manual clock runs a minute of pacing in no time, and every wait is the clock's ``sleep``.
A clock that steps backwards (a wall clock set back) is read as standing still: the pacer never
stalls for the length of the step.
"""

from __future__ import annotations

import math
from typing import Final

from channels.base import ChannelClock

# How far a peer that keeps refusing for overload (SMPP's ESME_RTHROTTLED) can slow a sender down.
MIN_FACTOR: Final = 1 / 16
# Refusals of one overload come in a burst (every message in flight is refused): halve once for it.
_SLOW_DOWN_SPACING_S: Final = 1.0


class Pacer:
    """At most ``rate`` sends a second, ``burst`` of them at once (one second's worth by default).

    A peer that asks for room gets it two ways: :meth:`hold` stops every send for a while (an HTTP
    ``Retry-After``), :meth:`slow_down` halves the rate and the burst (an SMSC's throttling) until
    ``cooldown`` seconds pass without another, then each quiet ``cooldown`` doubles them back.
    """

    def __init__(
        self,
        rate: float,
        clock: ChannelClock,
        *,
        burst: float | None = None,
        cooldown: float = 10.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst is not None and burst < 1:
            raise ValueError("burst must let at least one send through")
        self.base_rate = rate
        self.factor = 1.0  # the share of base_rate in force: below 1 while slowed down
        self._burst = burst if burst is not None else max(rate, 1.0)
        self._cooldown = cooldown
        self._clock = clock
        # Seconds of clock time since construction, only ever moving forward (see _tick).
        self._seen = clock.now()
        self._elapsed = 0.0
        self._tokens = self._burst  # below zero: owed by callers that are waiting
        self._filled_at = 0.0
        self._held_until = 0.0
        self._slowed_at = -math.inf
        self._quiet_since = 0.0

    @property
    def rate(self) -> float:
        """Sends a second now, after any slow-down."""
        return self.base_rate * self.factor

    @property
    def burst(self) -> float:
        """Sends that may go at once now; a slowed-down sender's burst shrinks with its rate, so a
        throttling peer does not get the burst the full rate earned."""
        return max(1.0, self._burst * self.factor)

    def _tick(self) -> float:
        now = self._clock.now()
        step = (now - self._seen).total_seconds()
        self._seen = now
        if step > 0:
            self._elapsed += step
        return self._elapsed

    async def acquire(self, n: int = 1) -> None:
        """Wait, on the clock, until ``n`` sends may go (a hold begun meanwhile is waited out)."""
        now = self._tick()
        while self._held_until > now:
            await self._clock.sleep(self._held_until - now)
            now = self._tick()
        wait = self._reserve(n, now)
        if wait > 0:
            await self._clock.sleep(wait)

    def _reserve(self, n: int, now: float) -> float:
        """Take ``n`` sends' share of the bucket; returns how long the caller must wait for it."""
        if self.factor < 1.0 and now - self._quiet_since >= self._cooldown:
            self.factor = min(1.0, self.factor * 2)
            self._quiet_since = now
        rate = self.rate
        self._tokens = min(self.burst, self._tokens + (now - self._filled_at) * rate) - n
        self._filled_at = now
        return -self._tokens / rate

    def hold(self, seconds: float) -> None:
        """Let nothing go for ``seconds`` from now; a longer hold already in force stays."""
        self._held_until = max(self._held_until, self._tick() + seconds)

    def slow_down(self) -> bool:
        """Halve the rate, at most once a second and down to ``MIN_FACTOR`` of it; True when it
        was lowered now. Every call restarts the quiet ``cooldown`` before it recovers."""
        now = self._tick()
        self._quiet_since = now
        if now - self._slowed_at < _SLOW_DOWN_SPACING_S or self.factor <= MIN_FACTOR:
            return False
        self._slowed_at = now
        self.factor = max(MIN_FACTOR, self.factor / 2)
        return True
