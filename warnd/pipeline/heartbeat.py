"""Feed heartbeats: a feed that has sent nothing for longer than it promised raises an alarm.

IPAWS outages went unnoticed by receivers for hours; here every message a feed sends (a warning,
a CAP ``System`` heartbeat, even a rejected message) proves it is alive, and silence past its
``expected_heartbeat`` is logged, counted in metrics and written to the audit log once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import asyncpg
import structlog

from warnd.app.metrics import Metrics
from warnd.db.queries import sql

log = structlog.get_logger(__name__)


def silent_feeds(
    expected: Mapping[str, timedelta],
    last_seen: Mapping[str, datetime],
    now: datetime,
    watching_since: datetime,
) -> set[str]:
    """Feeds whose last message (or, if none, the start of watching) is older than promised."""
    return {
        feed
        for feed, interval in expected.items()
        if now - max(last_seen.get(feed, watching_since), watching_since) > interval
    }


class HeartbeatWatch:
    """Checks the feeds' last messages; reports each change between alive and silent once."""

    def __init__(
        self, pool: asyncpg.Pool, expected: Mapping[str, timedelta], metrics: Metrics, now: datetime
    ) -> None:
        self._pool = pool
        self._expected = dict(expected)
        self._metrics = metrics
        self._since = now

    async def check(self, now: datetime) -> set[str]:
        """The feeds silent now; a change of state is logged and audited by one process only."""
        if not self._expected:
            return set()
        rows = await self._pool.fetch(sql("feed_last_seen"), list(self._expected))
        last_seen = {r["feed"]: r["last_seen"] for r in rows}
        silent = silent_feeds(self._expected, last_seen, now, self._since)
        for feed in self._expected:
            is_silent = feed in silent
            self._metrics.feed_silent.labels(feed).set(1 if is_silent else 0)
            async with self._pool.acquire() as conn, conn.transaction():
                changed = await conn.fetchrow(sql("feed_health_change"), feed, is_silent, now)
                if changed is None or (changed["first"] and not is_silent):
                    continue  # no change, or a feed first seen alive: nothing to report
                if is_silent:
                    log.warning("feed_silent", feed=feed, expected=str(self._expected[feed]))
                else:
                    log.info("feed_alive_again", feed=feed)
                action = "feed_silent" if is_silent else "feed_alive"
                detail = {"expected_heartbeat_s": self._expected[feed].total_seconds()}
                await conn.execute(sql("audit"), "system", action, f"feed:{feed}", detail, now)
        return silent
