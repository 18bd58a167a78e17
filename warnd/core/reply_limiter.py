"""A per-number cap on replies, so that an auto-replying phone cannot become a stream of work."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta


class ReplyLimiter:
    """At most ``limit`` replies per number within ``window``; the rest are recorded, not read.

    An auto-replying phone answering our repeat calls, or a broken gateway looping, must not
    turn into a stream of database work. warnd itself never answers a reply, so it cannot feed
    such a loop. Kept in memory per process: a limit, not a record.
    """

    def __init__(self, limit: int = 10, window: timedelta = timedelta(minutes=1)) -> None:
        self._limit = limit
        self._window = window
        self._seen: dict[str, deque[datetime]] = {}

    def allow(self, phone: str, now: datetime) -> bool:
        if len(self._seen) > 100_000:  # forget quiet numbers, so memory stays bounded
            self._seen = {p: q for p, q in self._seen.items() if q and now - q[-1] < self._window}
        times = self._seen.setdefault(phone, deque())
        while times and now - times[0] >= self._window:
            times.popleft()
        if len(times) >= self._limit:
            return False
        times.append(now)
        return True
