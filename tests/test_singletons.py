"""The loops that must act once however many warnd processes run them, run by three at once.

None of them is guarded by being alone; each is safe by its statements:

- the escalation scanner claims due call-outs and field tasks with ``FOR UPDATE SKIP LOCKED``
  and writes a batch's steps in the transaction that holds the rows;
- the feed heartbeat and loudspeaker watches record a change of state with a conditional upsert
  (``… ON CONFLICT DO UPDATE … WHERE`` the state differs) that returns a row to one caller only,
  which alone logs and audits it;
- warning expiry is one ``UPDATE … WHERE state IN ('active', …)``: a second run waits for the
  first's row locks, then no longer matches;
- housekeeping's lease reclaim is one ``UPDATE`` likewise; the skipped call-outs' sweep and the
  early receipts' matching claim with ``SKIP LOCKED``.

Here three "processes" (each its own pool, its own stage objects, as three warnd processes
have) run them concurrently over the same rows, and every step, alarm and expiry happens once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests import seed
from tests.fixtures import DAYTIME
from tests.test_escalation_crash import open_many_callouts
from warnd.app.metrics import Metrics
from warnd.core.clock import SystemClock
from warnd.core.config import SpeakersConfig
from warnd.db.notify import Wakeup
from warnd.db.pool import open_pool
from warnd.db.queries import sql
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.escalation import Escalation
from warnd.pipeline.heartbeat import HeartbeatWatch
from warnd.pipeline.speaker_watch import SpeakerWatch
from warnd.policy.model import Policy

PROCESSES = 3


@pytest.fixture
async def pools(db_url: str) -> AsyncIterator[list[asyncpg.Pool]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                open_pool(db_url, min_size=1, max_size=2, run_migrations=False)
            )
            for _ in range(PROCESSES)
        ]


class Process:
    """The timer loops of one warnd process (roles escalate and dispatch), stepped by hand."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        clock = SystemClock()  # DAYTIME was months ago: every step of every chain is due
        self.clock = clock
        self.pool = pool
        self.escalation = Escalation(pool, clock, batch=40)  # small: the three interleave
        self.heartbeats = HeartbeatWatch(pool, {"met": timedelta(minutes=1)}, Metrics(), DAYTIME)
        self.speakers = SpeakerWatch(
            pool, SpeakersConfig(offline_alarm_share=0.4, offline_alarm_min=1), Metrics()
        )
        self.dispatcher = Dispatcher(pool, {}, clock, Metrics(), Wakeup())
        self.reclaimed = 0

    async def work(self) -> None:
        """Scan and keep house until a scan finds nothing due, as the daemon's loops do."""
        while True:
            worked = await self.escalation.scan()
            await self.heartbeats.check(self.clock.now())
            await self.speakers.check(self.clock.now())
            self.reclaimed += await self.dispatcher.reclaim_leases()
            await self.dispatcher.notify_skipped_callouts()
            if not worked:
                return


@pytest.mark.timeout(120)
async def test_three_processes_fire_every_step_alarm_and_expiry_once(
    db_url: str, pools: list[asyncpg.Pool], policy: Policy
) -> None:
    warning_id = await open_many_callouts(db_url, policy)
    conn = pools[0]
    callouts = await conn.fetch(
        "SELECT id, snapshot FROM callouts WHERE warning_id = $1", warning_id
    )
    chains = {r["id"]: r["snapshot"]["steps"] for r in callouts}
    # A speaker offline in 任城区 (an alarm), and deliveries whose worker died mid-send.
    await conn.execute(
        "INSERT INTO speakers (channel, id, division_code, online, state_at) "
        "VALUES ('speakers', $1, $1, false, $2)",
        seed.VILLAGE_R1,
        DAYTIME,
    )
    stranded = await conn.fetchval(
        """WITH s AS (UPDATE deliveries SET state = 'sending', attempts = 1,
                                            lease_until = now() - interval '1 minute'
                       WHERE id IN (SELECT id FROM deliveries ORDER BY id LIMIT 25)
                       RETURNING id)
           SELECT count(*) FROM s"""
    )
    assert stranded == 25

    processes = [Process(pool) for pool in pools]
    await asyncio.gather(*(p.work() for p in processes))
    # A process that found nothing while another held rows stopped early: run once more,
    # all three together, until nothing is left.
    while await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM callouts WHERE next_check_at <= now())"
    ):
        await asyncio.gather(*(p.work() for p in processes))

    # Expiry, by all three at once.
    later = datetime.now(UTC) + timedelta(days=1)
    await conn.execute("UPDATE warnings SET expires = $1 WHERE id = $2", later, warning_id)
    after = later + timedelta(seconds=1)
    expired = await asyncio.gather(
        *(p.pool.fetchval(sql("expire_warnings"), after) for p in processes)
    )

    events = await conn.fetch(
        "SELECT callout_id, kind, (detail->>'step')::int AS step FROM callout_events"
    )
    audit = await conn.fetch(
        "SELECT action, subject FROM audit_log WHERE actor = 'system' ORDER BY id"
    )
    leftover = await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'sending'")
    escalation = await conn.fetch(
        "SELECT callout_id, step, channel_kind FROM deliveries WHERE audience = 'escalation'"
    )

    # Every step of every chain exactly once (fired or skipped as its chain says).
    steps = Counter(
        (e["callout_id"], e["step"]) for e in events if e["kind"] in ("step_fired", "step_skipped")
    )
    assert [key for key, n in steps.items() if n > 1] == [], "a step fired twice"
    assert set(steps) == {(c, i) for c, chain in chains.items() for i in range(len(chain))}
    # Each fired step's messages queued once per channel kind.
    queued = Counter((d["callout_id"], d["step"], d["channel_kind"]) for d in escalation)
    assert set(queued.values()) == {1}
    # The warning expired once; each call-out closed once.
    assert sorted(expired) == [0] * (PROCESSES - 1) + [1]
    closed = Counter(e["callout_id"] for e in events if e["kind"] == "closed")
    assert closed == dict.fromkeys(chains, 1)
    # One alarm per silent feed and per county, though three watches saw them.
    assert sorted((a["action"], a["subject"]) for a in audit) == [
        ("feed_silent", "feed:met"),
        ("speakers_offline", f"county:{seed.RENCHENG}"),
    ]
    # The stranded deliveries came back once.
    assert sum(p.reclaimed for p in processes) == stranded
    assert leftover == 0
