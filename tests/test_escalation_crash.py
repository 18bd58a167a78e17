"""The escalation scanner killed with SIGKILL in the middle of a scan: a second scanner process
finishes every chain, and every due step has fired exactly once — none lost, none doubled.

The scanner runs as its own process (this module is also its entry point: ``python -m
tests.test_escalation_crash URL``), with the real ``Escalation.run`` loop and the system clock: the
test warning opened its call-outs on ``DAYTIME``, months ago, so every step of every chain is
due and the scanner works flat out, one batch transaction after another.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests import seed
from tests.fixtures import DAYTIME, LIMITS, rainstorm
from tests.waiting import until_while_running
from warnd.core.clock import ManualClock, SystemClock
from warnd.db.pool import connect, open_pool
from warnd.ingest.store import store_warning
from warnd.pipeline.escalation import Escalation
from warnd.pipeline.planner import Planner
from warnd.policy.model import Policy

REPO = Path(__file__).resolve().parent.parent
# Pairs of village responders (each the other's B角 one way) added to the seed roster: enough
# call-outs that a scan is a batch of 500 and the whole run a few thousand steps.
PAIRS = 300


async def scan_forever(url: str) -> None:
    """The escalate stage of a warnd process, alone: what the child process runs."""
    from warnd.runtime.logs import configure

    configure("warning")
    async with open_pool(url, min_size=1, max_size=2, run_migrations=False) as pool:
        await Escalation(pool, SystemClock()).run()


async def start_scanner(url: str, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.test_escalation_crash",
            url,
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


async def open_many_callouts(db_url: str, policy: Policy) -> int:
    """Seed the roster with ``PAIRS`` more village responders and plan a red rainstorm."""
    conn = await connect(db_url)
    try:
        await seed.seed(conn)
        await conn.execute(
            """INSERT INTO responders (ref, name, phone, division_code, level, specialities)
               SELECT 'X-' || n, '村干部' || n, '+86166' || lpad(n::text, 8, '0'), $1, 'village',
                      '{all}'
                 FROM generate_series(1, $2::int * 2) AS n""",
            seed.VILLAGE_R1,
            PAIRS,
        )
        # Odd ones are the callees with a backup of their own; even ones have none (a skipped
        # step): both kinds of chain go through the crash.
        await conn.execute(
            """UPDATE responders r SET backup_id = b.id
                 FROM responders b
                WHERE r.ref LIKE 'X-%' AND b.ref = 'X-' || (substr(r.ref, 3)::int + 1)
                  AND substr(r.ref, 3)::int % 2 = 1"""
        )
    finally:
        await conn.close()
    async with open_pool(db_url, min_size=1, max_size=2, run_migrations=False) as pool:
        stored = await store_warning(pool, rainstorm(), source="test", now=DAYTIME)
        # Opened as of DAYTIME, months ago: every step is due for the scanner's real clock.
        planner = Planner(pool, lambda: policy, ManualClock(DAYTIME), LIMITS, villages_per_chunk=1)
        await planner.plan_pending()
        return stored.warning_id


# Starts the scanner twice as a child process (up to a minute each on a loaded machine); the
# whole test takes about 2 s on an idle one.
@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_kill_9_during_an_escalation_scan_fires_every_step_exactly_once(
    db_url: str, policy: Policy, tmp_path: Path
) -> None:
    warning_id = await open_many_callouts(db_url, policy)
    log = tmp_path / "scanner.log"
    conn = await connect(db_url)
    try:
        callouts = await conn.fetch(
            "SELECT id, responder_id, snapshot FROM callouts WHERE warning_id = $1", warning_id
        )
        chains = {r["id"]: r["snapshot"]["steps"] for r in callouts}
        total_steps = sum(len(steps) for steps in chains.values())
        assert len(callouts) > 2 * PAIRS and total_steps > 3 * len(callouts)

        first = await start_scanner(db_url, log)
        # Kill once a scan has committed and the next one is inside its transaction.
        in_the_next_scan = """
            SELECT (SELECT count(*) FROM callout_events WHERE kind = 'step_fired') > 0
               AND EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE datname = current_database() AND pid <> pg_backend_pid()
                              AND xact_start IS NOT NULL)"""
        await until_while_running(
            first,
            log,
            lambda: conn.fetchval(in_the_next_scan),
            within=60,
            what="a committed scan followed by an open one",
        )
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.wait(), 10)
        done_before: int = await conn.fetchval(
            "SELECT count(*) FROM callout_events WHERE kind IN ('step_fired', 'step_skipped')"
        )
        assert 0 < done_before < total_steps, "the kill came too late to test anything"

        second = await start_scanner(db_url, log)
        try:
            finished = "SELECT NOT EXISTS (SELECT 1 FROM callouts WHERE next_check_at IS NOT NULL)"
            await until_while_running(
                second,
                log,
                lambda: conn.fetchval(finished),
                within=90,
                what="every chain finished",
            )
        finally:
            second.terminate()
            await asyncio.wait_for(second.wait(), 10)

        events = await conn.fetch(
            """SELECT callout_id, kind, (detail->>'step')::int AS step, detail->>'action' AS action,
                      (detail->>'target_id')::bigint AS target_id
                 FROM callout_events
                WHERE kind IN ('step_fired', 'step_skipped')"""
        )
        rows = await conn.fetch(
            "SELECT id, state, cursor, next_check_at FROM callouts WHERE warning_id = $1",
            warning_id,
        )
        escalation = await conn.fetch(
            """SELECT callout_id, step, channel_kind, address FROM deliveries
                WHERE audience = 'escalation'"""
        )
        phones = {r["id"]: r["phone"] for r in await conn.fetch("SELECT id, phone FROM responders")}
        kinds = {
            r["channel_kind"]
            for r in await conn.fetch(
                "SELECT channel_kind FROM messages "
                "WHERE warning_id = $1 AND audience = 'responder'",
                warning_id,
            )
        }
    finally:
        await conn.close()

    # Every step of every chain exactly once, as what the frozen chain says it is.
    seen: dict[tuple[int, int], int] = {}
    for e in events:
        seen[(e["callout_id"], e["step"])] = seen.get((e["callout_id"], e["step"]), 0) + 1
    assert {key for key, n in seen.items() if n > 1} == set(), "a step fired twice"
    assert set(seen) == {(c, i) for c, steps in chains.items() for i in range(len(steps))}
    for e in events:
        step = chains[e["callout_id"]][e["step"]]
        assert e["action"] == step["action"]
        assert e["kind"] == ("step_skipped" if step["skip_reason"] else "step_fired")
    # Cursors agree with the events: each chain at its end, its timer stopped.
    assert {(r["id"], r["cursor"]) for r in rows} == {(c, len(s)) for c, s in chains.items()}
    assert {(r["state"], r["next_check_at"]) for r in rows} == {("escalated", None)}
    # The calls: each fired step with a person queued its messages to that person once per
    # channel kind, and no rolled-back scan left a message behind.
    targets = {
        (e["callout_id"], e["step"]): e["target_id"]
        for e in events
        if e["kind"] == "step_fired" and e["target_id"] is not None
    }
    queued: dict[tuple[int, int], list[str]] = {}
    for d in escalation:
        queued.setdefault((d["callout_id"], d["step"]), []).append(d["channel_kind"])
    assert set(queued) == set(targets)
    for d in escalation:
        assert d["address"] == phones[targets[(d["callout_id"], d["step"])]]
    assert all(sorted(k) == sorted(kinds) for k in queued.values()), "a message queued twice"


if __name__ == "__main__":
    asyncio.run(scan_forever(sys.argv[1]))
