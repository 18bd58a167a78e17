"""A silent feed is noticed, once, and noticed again when it speaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from warnd.app.metrics import Metrics
from warnd.pipeline.heartbeat import HeartbeatWatch, silent_feeds

T0 = datetime(2026, 7, 29, 2, 0, tzinfo=UTC)


def test_silent_feeds_counts_from_the_last_message_or_the_start() -> None:
    expected = {"met": timedelta(minutes=10), "flood": timedelta(minutes=30)}
    seen = {"met": T0 + timedelta(minutes=5)}
    assert silent_feeds(expected, seen, T0 + timedelta(minutes=14), T0) == set()
    assert silent_feeds(expected, seen, T0 + timedelta(minutes=16), T0) == {"met"}
    assert silent_feeds(expected, seen, T0 + timedelta(minutes=31), T0) == {"met", "flood"}
    # a message from before warnd started watching does not make the feed look older
    old = {"met": T0 - timedelta(days=1)}
    assert silent_feeds(expected, old, T0 + timedelta(minutes=9), T0) == set()


async def test_watch_alarms_once_and_clears(pool: asyncpg.Pool) -> None:
    start = datetime.now(UTC)
    metrics = Metrics()
    watch = HeartbeatWatch(pool, {"met": timedelta(minutes=10)}, metrics, start)
    assert await watch.check(start + timedelta(minutes=11)) == {"met"}
    assert await watch.check(start + timedelta(minutes=12)) == {"met"}
    await pool.execute(
        "INSERT INTO rejected_messages (feed, error, detail, body, received_at) "
        "VALUES ('met', 'malformed_xml', 'x', '', $1)",
        start + timedelta(minutes=12),
    )
    assert await watch.check(start + timedelta(minutes=13)) == set()
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["feed_silent", "feed_alive"]
    assert metrics.registry.get_sample_value("warnd_feed_silent", {"feed": "met"}) == 0
