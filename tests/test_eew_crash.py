"""The earthquake fast path killed with SIGKILL in the middle of an event leaves a consistent
record, at each of the two instants that matter (see the docstring of ``warnd.pipeline.eew``):

- after the alerts were handed to the channels, before the record committed: the next process's
  housekeeping (``FastPath.recover``) stores the report's warning for the ordinary planner, so
  the responders' call-outs and the households' messages happen late rather than never, once;
- after the record, before the channels' answers: the rows come back when their lease runs out,
  past their expiry, and are cancelled as expired — never sent late, never sent twice.

The fast path runs as its own process (this module is also its entry point: ``python -m
tests.test_eew_crash URL MODE``): it receives one report as the API would (its row, then the hand
to the fast path), prints ``handed`` and waits to be killed. The test holds the record back by
locking the warnings table (``before-record``), or waits for the record (``after-record``) while
the channel never answers.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from channels.base import Channel, ChannelKind, Limits, OutboundMessage, SendResult
from tests import seed
from tests.fixtures import LIMITS, RecordingChannel, insert_eew_report
from tests.waiting import until
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock, SystemClock
from warnd.core.eew import EewReport
from warnd.db.notify import Wakeup
from warnd.db.pool import connect, open_pool
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.eew import FastPath
from warnd.pipeline.planner import Planner
from warnd.policy.loader import load_policy
from warnd.policy.model import Policy
from warnd.runtime.settings import Settings

REPO = Path(__file__).resolve().parent.parent
LEASE = 120.0
EVENT = "CEIC-CRASH"


def report(origin: datetime) -> EewReport:
    return EewReport(
        event_id=EVENT,
        report_no=1,
        origin_time=origin,
        lat=35.40,
        lon=116.60,
        depth_km=10.0,
        magnitude=5.5,
        place="济宁市任城区",
    )


class Silent(Channel):
    """A gateway that takes messages and never answers (the process dies first)."""

    def __init__(self, name: str, kind: ChannelKind) -> None:
        super().__init__(name, self.config_model(type="silent"))
        self.kind = kind

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=10_000, window=50, max_text=500)

    async def send(self, batch: list[OutboundMessage]) -> list[SendResult]:  # type: ignore[override]
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def fast_path_process(url: str) -> None:
    """What the child process runs: receive one report as the API does, then wait."""
    from warnd.runtime.logs import configure

    configure("warning")
    policy = load_policy(Settings().policy)
    async with open_pool(url, min_size=2, max_size=4, run_migrations=False) as pool:
        clock = SystemClock()
        channels: dict[str, Channel] = {
            "speakers": Silent("speakers", ChannelKind.BROADCAST),
            "sms": Silent("sms", ChannelKind.SMS),
        }
        dispatcher = Dispatcher(pool, channels, clock, Metrics(), Wakeup(), lease_seconds=LEASE)
        fast = FastPath(
            pool, channels, lambda: policy, clock, dispatcher.record, lease_seconds=LEASE
        )
        await fast.prepare()
        quake = report(clock.now() - timedelta(seconds=1))
        await insert_eew_report(pool, quake, clock.now())
        await fast(quake)
        sys.stdout.write("handed\n")
        sys.stdout.flush()
        await asyncio.Event().wait()


async def run_and_kill(db_url: str, tmp_path: Path, *, hold_record: bool) -> None:
    """Start the fast path process, let it hand the report, kill it with SIGKILL: before its
    record commits (the warnings table locked meanwhile) or after."""
    lock = await connect(db_url)
    try:
        if hold_record:
            await lock.execute("BEGIN; LOCK TABLE warnings IN SHARE ROW EXCLUSIVE MODE")
        with (tmp_path / "child.log").open("ab") as stderr:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.test_eew_crash",
                db_url,
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"handed", (tmp_path / "child.log").read_text()
        if hold_record:
            # The record is waiting for the lock: the crash comes before it commits.
            await until_waiting_for_lock(lock)
        else:
            await until_recorded(lock)
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
    finally:
        await lock.close()  # a held lock ends with its transaction


async def until_waiting_for_lock(conn: asyncpg.Connection) -> None:
    await until(
        lambda: conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE relation = 'warnings'::regclass AND NOT granted"
        ),
        30,
        what="the record waiting for the warnings table",
    )


async def until_recorded(conn: asyncpg.Connection) -> None:
    await until(
        lambda: conn.fetchval(
            "SELECT recorded_at IS NOT NULL FROM eew_reports WHERE event_id = $1", EVENT
        ),
        30,
        what="the report's record",
    )


async def seeded(db_url: str) -> None:
    conn = await connect(db_url)
    try:
        await seed.seed(conn)
    finally:
        await conn.close()


@pytest.mark.timeout(120)
async def test_a_crash_before_the_record_is_recovered_once_by_the_next_process(
    db_url: str, pool: asyncpg.Pool, policy: Policy, tmp_path: Path
) -> None:
    await seeded(db_url)
    await run_and_kill(db_url, tmp_path, hold_record=True)
    # The alerts were handed; nothing says so, and the report has no record.
    assert await pool.fetchval("SELECT count(*) FROM warnings") == 0
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
    row = await pool.fetchrow("SELECT received_at, recorded_at FROM eew_reports")
    assert row is not None and row["recorded_at"] is None

    # The next process: its housekeeping records what a lease's time ago was left unrecorded.
    clock = ManualClock(row["received_at"] + timedelta(seconds=LEASE + 5))
    sms = RecordingChannel("sms", ChannelKind.SMS)
    speakers = RecordingChannel("speakers", ChannelKind.BROADCAST)
    channels: dict[str, Channel] = {"sms": sms, "speakers": speakers}
    dispatcher = Dispatcher(pool, channels, clock, Metrics(), Wakeup(), lease_seconds=LEASE)
    fast = FastPath(pool, channels, lambda: policy, clock, dispatcher.record)
    assert await fast.recover(clock.now() - timedelta(seconds=LEASE)) == 1
    assert await fast.recover(clock.now() - timedelta(seconds=LEASE)) == 0  # once
    # A second process doing the same at the same time stores nothing more.
    other = FastPath(pool, channels, lambda: policy, clock, dispatcher.record)
    await pool.execute("UPDATE eew_reports SET recorded_at = NULL")
    assert await other.recover(clock.now() - timedelta(seconds=LEASE)) == 1
    warnings = await pool.fetch("SELECT * FROM warnings")
    assert len(warnings) == 1
    warning = warnings[0]
    assert (warning["source"], warning["identifier"], warning["hazard"]) == (
        "eew",
        f"{EVENT}#1",
        "earthquake",
    )
    assert warning["state"] == "active" and warning["plan_cursor"] == 0
    assert await pool.fetchval("SELECT recorded_at IS NOT NULL FROM eew_reports")

    # The ordinary planner sends it from its first step: responders with their call-outs,
    # loudspeakers, schools, households — each once.
    await Planner(pool, lambda: policy, clock, LIMITS).plan_pending()
    rows = await pool.fetch(
        "SELECT audience, address FROM deliveries WHERE warning_id = $1", warning["id"]
    )
    audiences = {r["audience"] for r in rows}
    assert {"responder", "household"} <= audiences
    assert await pool.fetchval("SELECT plan_state FROM warnings") == "done"
    await Planner(pool, lambda: policy, clock, LIMITS).plan_pending()
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == len(rows)
    callouts = await pool.fetch("SELECT phone FROM callouts WHERE warning_id = $1", warning["id"])
    responders = {r["address"] for r in rows if r["audience"] == "responder"}
    assert {c["phone"] for c in callouts} == responders and responders


@pytest.mark.timeout(120)
async def test_a_crash_after_the_record_leaves_alerts_that_expire_and_are_never_sent_late(
    db_url: str, pool: asyncpg.Pool, policy: Policy, tmp_path: Path
) -> None:
    await seeded(db_url)
    await run_and_kill(db_url, tmp_path, hold_record=False)
    warning_id = await pool.fetchval("SELECT id FROM warnings WHERE source = 'eew'")
    handed = await pool.fetch(
        "SELECT id, state, expires_at, lease_until FROM deliveries WHERE warning_id = $1",
        warning_id,
    )
    assert handed and {r["state"] for r in handed} == {"sending"}
    callouts = await pool.fetchval(
        "SELECT count(*) FROM callouts WHERE warning_id = $1", warning_id
    )
    assert callouts > 0

    # The next process, once the lease is over: the rows come back and are cancelled as expired.
    latest = max(r["lease_until"] for r in handed)
    clock = ManualClock(latest + timedelta(seconds=1))
    sms = RecordingChannel("sms", ChannelKind.SMS)
    speakers = RecordingChannel("speakers", ChannelKind.BROADCAST)
    channels: dict[str, Channel] = {"sms": sms, "speakers": speakers}
    dispatcher = Dispatcher(pool, channels, clock, Metrics(), Wakeup(), lease_seconds=LEASE)
    fast = FastPath(pool, channels, lambda: policy, clock, dispatcher.record)
    assert await fast.recover(clock.now()) == 0  # recorded: nothing to recover
    assert await dispatcher.reclaim_leases() == len(handed)
    for channel in channels.values():
        assert await dispatcher.claim(channel, 10_000) == []
    assert not sms.sent and not speakers.sent
    states = await pool.fetch(
        "SELECT state, error, count(*) AS n FROM deliveries WHERE id = ANY($1) "
        "GROUP BY state, error",
        [r["id"] for r in handed],
    )
    assert [(r["state"], r["error"].split(":")[0], r["n"]) for r in states] == [
        ("cancelled", "expired", len(handed))
    ]
    assert await pool.fetchval("SELECT count(*) FROM warnings") == 1
    assert (
        await pool.fetchval("SELECT count(*) FROM callouts WHERE warning_id = $1", warning_id)
        == callouts
    )
    assert all(r["expires_at"] < clock.now() for r in handed)


if __name__ == "__main__":
    asyncio.run(fast_path_process(sys.argv[1]))
