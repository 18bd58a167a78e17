"""``warnd demo``'s round on a test database: the whole daemon with simulated phones on a fast
clock; the summary it prints must be what the database holds."""

from __future__ import annotations

import io
import re
import statistics
from pathlib import Path

import asyncpg
import pytest
from rich.console import Console

from tests.brokers import any_mosquitto
from tests.peers import require
from warnd.core.escalate import ACTIONS
from warnd.db.pool import open_pool
from warnd.tools.demo import (
    BEHAVIOUR_MIX,
    Broker,
    RoundSummary,
    behaviour_of,
    print_summary,
    run_round,
)

pytestmark = pytest.mark.slow  # each test runs a whole round of the demo in real time


async def check_against_database(pool: asyncpg.Pool, summary: RoundSummary) -> None:
    """Every figure of the summary, recomputed from the rows in Python."""
    callouts = await pool.fetch(
        "SELECT id, level, state, ack_late, opened_at, acknowledged_at FROM callouts "
        "WHERE warning_id = $1",
        summary.warning_id,
    )
    assert callouts
    overall = summary.overall
    answered = [c for c in callouts if c["state"] == "acknowledged"]
    assert overall.total == len(callouts)
    assert overall.on_time == sum(not c["ack_late"] for c in answered)
    assert overall.late == sum(bool(c["ack_late"]) for c in answered)
    assert overall.never == len(callouts) - len(answered)
    assert overall.on_time + overall.late + overall.never == overall.total
    per_level = {o.level: o.total for o in summary.outcomes if o.level is not None}
    levels = {c["level"] for c in callouts}
    assert per_level == {lv: sum(c["level"] == lv for c in callouts) for lv in levels}
    waits = [(c["acknowledged_at"] - c["opened_at"]).total_seconds() for c in answered]
    if len(waits) >= 2:
        deciles = statistics.quantiles(waits, n=10, method="inclusive")
        assert overall.p50_s == pytest.approx(statistics.median(waits), abs=1e-3)
        assert overall.p90_s == pytest.approx(deciles[8], abs=1e-3)

    events = await pool.fetch(
        "SELECT e.kind, e.detail FROM callout_events e JOIN callouts c ON c.id = e.callout_id "
        "WHERE c.warning_id = $1 AND e.kind IN ('step_fired', 'step_skipped')",
        summary.warning_id,
    )
    for action in ACTIONS:
        fired = sum(e["kind"] == "step_fired" and e["detail"]["action"] == action for e in events)
        skipped = sum(
            e["kind"] == "step_skipped" and e["detail"]["action"] == action for e in events
        )
        assert (summary.steps_fired[action], summary.steps_skipped[action]) == (fired, skipped)

    tasks = await pool.fetch(
        "SELECT state, targets, done FROM field_tasks WHERE warning_id = $1", summary.warning_id
    )
    assert summary.tasks_total == len(tasks)
    assert summary.tasks_done == sum(t["state"] == "done" for t in tasks)
    assert summary.persons == sum(t["targets"] for t in tasks)
    assert summary.reached == sum(min(t["done"], t["targets"]) for t in tasks)

    counted = await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE warning_id = $1", summary.warning_id
    )
    assert sum(int(str(r["deliveries"])) for r in summary.deliveries) == counted


# A whole round with 300 households: about 50 s of wall-clock time at speed 120.
@pytest.mark.timeout(180)
async def test_a_round_answers_on_time_late_and_never_and_escalates(db_url: str) -> None:
    out = io.StringIO()
    console = Console(file=out, width=160)
    summary = await run_round(db_url, console, households=300, speed=120)
    async with open_pool(db_url, run_migrations=False) as pool:
        await check_against_database(pool, summary)
        phones = [r["phone"] for r in await pool.fetch("SELECT phone FROM responders")]
        scripted = {p: behaviour_of(p) for p in phones}
        # Every behaviour is present, so the round has fast, late and silent people to show.
        assert set(scripted.values()) == {b for b, _ in BEHAVIOUR_MIX} | {"never"}
        assert summary.behaviours == {
            b: sum(v == b for v in scripted.values()) for b in ("fast", "normal", "late", "never")
        }
        # Somebody answered in time, and the silent ones were chased: the call repeated and the
        # backup (B角) called. (Which escalations fire depends on who backs whom, not on timing:
        # a responder who never answers is repeated at 2 min and backed up at 5 min.)
        overall = summary.overall
        assert overall.on_time > 0
        assert summary.steps_fired["repeat"] > 0
        assert summary.steps_fired["backup"] + summary.steps_skipped["backup"] > 0
        never = [p for p, b in scripted.items() if b == "never"]
        chased = await pool.fetchval(
            "SELECT count(*) FROM callouts c WHERE c.warning_id = $1 AND c.phone = ANY($2) "
            "AND EXISTS (SELECT 1 FROM callout_events e WHERE e.callout_id = c.id "
            "AND e.kind = 'step_fired')",
            summary.warning_id,
            never,
        )
        opened = await pool.fetchval(
            "SELECT count(*) FROM callouts WHERE warning_id = $1 AND phone = ANY($2)",
            summary.warning_id,
            never,
        )
        assert opened > 0 and chased == opened  # nobody silent was left unchased
        # Blind-spot villages get gongs, helpers door-knocking; some report "收到，已完成".
        assert summary.tasks_total > 0 and summary.tasks_done > 0
        status = await pool.fetchval(
            "SELECT status FROM warnings WHERE id = $1", summary.warning_id
        )
        assert status == "Actual"

    print_summary(summary, console)
    text = out.getvalue()
    assert f"{overall.on_time:,}" in text
    assert "重拨本人 repeat" in text and "field tasks" in text
    # The console's address and the demo officers' credentials, to watch the round in a browser.
    assert re.search(
        r"console \(值班台\): http://127\.0\.0\.1:\d+/console/ — user demo-officer", text
    )


# A round that reaches only exercise people: about 15 s of wall-clock time, more when loaded.
@pytest.mark.timeout(120)
async def test_an_exercise_round_is_marked_and_reaches_only_exercise_people(db_url: str) -> None:
    out = io.StringIO()
    summary = await run_round(
        db_url, Console(file=out, width=160), households=300, speed=120, exercise=True
    )
    assert summary.status == "Exercise"
    async with open_pool(db_url, run_migrations=False) as pool:
        await check_against_database(pool, summary)
        bodies = await pool.fetch(
            "SELECT body FROM messages WHERE warning_id = $1", summary.warning_id
        )
        assert bodies and all("【演练】" in b["body"] for b in bodies)
        callees = await pool.fetch(
            "SELECT r.exercise FROM callouts c JOIN responders r ON r.id = c.responder_id "
            "WHERE c.warning_id = $1",
            summary.warning_id,
        )
        assert callees and all(r["exercise"] for r in callees)
        everyone = await pool.fetchval("SELECT count(*) FROM responders")
        assert len(callees) < everyone
    print_summary(summary, Console(file=out, width=160))
    assert "【演练】" in out.getvalue()


# A round with its loudspeakers on Mosquitto: about 50 s of wall-clock time at speed 120.
@pytest.mark.timeout(180)
async def test_a_round_over_a_broker_plays_on_the_simulated_fleet_and_gongs_for_the_rest(
    db_url: str, tmp_path: Path
) -> None:
    require("espeak-ng", "sox")
    async with any_mosquitto(tmp_path) as broker:
        summary = await run_round(
            db_url,
            Console(file=io.StringIO(), width=160),
            households=300,
            speed=120,
            broker=Broker(broker.host, broker.port),
        )
    async with open_pool(db_url, run_migrations=False) as pool:
        await check_against_database(pool, summary)
        commands = await pool.fetch(
            "SELECT address, state FROM deliveries "
            "WHERE warning_id = $1 AND audience = 'broadcast'",
            summary.warning_id,
        )
        speakers = await pool.fetchval(
            "SELECT count(*) FROM divisions WHERE level = 'village' AND NOT blind_spot"
        )
        # Every speaker was commanded once; the fleet's online ones played (delivered), the few
        # offline (or failed) ones did not, and their villages got gong tasks.
        assert len(commands) == speakers
        states = {r["state"] for r in commands}
        assert states <= {"delivered", "failed"} and "delivered" in states
        failed = [r["address"] for r in commands if r["state"] == "failed"]
        gongs = await pool.fetch(
            "SELECT village_code FROM field_tasks WHERE warning_id = $1 AND kind = 'gong'",
            summary.warning_id,
        )
        responsible = await pool.fetch(
            "SELECT DISTINCT division_code FROM responders WHERE level = 'village'"
        )
        with_someone = {r["division_code"] for r in responsible}
        assert {a for a in failed if a in with_someone} <= {g["village_code"] for g in gongs}
        played = await pool.fetchval(
            "SELECT count(*) FROM speakers WHERE played AND division_code IS NOT NULL"
        )
        assert played == sum(r["state"] == "delivered" for r in commands)
