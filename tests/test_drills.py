"""Blind drills (issue 16): the moment and scenario drawn at random inside the window, shown to
the scheduling officer alone (and kept in the audit log); the drill fires once, as an Exercise
for the people marked for exercises; a live orange or red warning in its county postpones it; a
cancelled drill never fires. On the API's roster (任城区 and 泗水县) and its stopped clock."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.fixtures import (
    APPROVER_TOKEN,
    CHIEF_TOKEN,
    FEED_TOKEN,
    LIMITS,
    NOW,
    OFFICER_TOKEN,
    Api,
    rainstorm_cap,
)
from warnd.app.report import EvaluationReport
from warnd.app.report_files import summary_rows
from warnd.cli.main import main
from warnd.core.clock import ManualClock
from warnd.pipeline.drills import POSTPONE, DrillScanner
from warnd.pipeline.planner import Planner
from warnd.policy.model import Policy
from warnd.web.routing import API

SCENARIOS: list[dict[str, Any]] = [
    {
        "hazard": "rainstorm",
        "level": "red",
        "counties": ["370811", "370831"],
        "headline": "演练：任城区暴雨红色预警",
        "instruction": "请按预案组织转移演练。",
    },
    {"hazard": "geological", "level": "orange", "counties": ["370811"]},
]


def window(start_h: float = 1, end_h: float = 3) -> dict[str, str]:
    return {
        "window_start": (NOW + timedelta(hours=start_h)).isoformat(),
        "window_end": (NOW + timedelta(hours=end_h)).isoformat(),
    }


async def schedule(app: Api, *, approve: bool = True, **body: Any) -> dict[str, Any]:
    """A drill scheduled by 李 (officer and approver) and, orange and red needing a second
    officer, released by 王 (approver only) unless ``approve`` is false."""
    status, drill = await app.call(
        "POST", f"{API}/drills", CHIEF_TOKEN, {**window(), "scenarios": SCENARIOS, **body}
    )
    assert status == 201, drill
    assert drill["state"] == "pending_approval"
    if approve:
        status, approved = await app.call(
            "POST", f"{API}/drills/{drill['id']}/approve", APPROVER_TOKEN
        )
        assert status == 200, approved
        assert (approved["state"], approved["approved_by"]) == ("scheduled", "wang")
        assert approved["secret"] is True and approved["fire_at"] is None
    return drill


def clock_of(app: Api) -> ManualClock:
    clock = app.services.clock
    assert isinstance(clock, ManualClock)
    return clock


async def test_the_moment_and_scenario_are_shown_to_the_scheduler_alone(app: Api) -> None:
    drill = await schedule(app, approve=False)
    fire_at = datetime.fromisoformat(drill["fire_at"])
    assert NOW + timedelta(hours=1) <= fire_at < NOW + timedelta(hours=3)
    scenario = drill["scenario"]
    assert scenario["county"] in ("370811000000", "370831000000")
    assert (scenario["hazard"], scenario["level"]) in (
        ("rainstorm", "red"),
        ("geological", "orange"),
    )
    assert drill["secret"] is False and len(drill["scenarios"]) == 2

    # Another officer learns that a drill is coming, and when it may, not when or what.
    status, listed = await app.call("GET", f"{API}/drills", OFFICER_TOKEN)
    assert status == 200
    (seen,) = listed["drills"]
    assert (seen["secret"], seen["fire_at"], seen["scenario"], seen["scenarios"]) == (
        True,
        None,
        None,
        None,
    )
    assert seen["counties"] == ["370811000000", "370831000000"]
    assert seen["state"] == "pending_approval" and seen["scheduled_by"] == "li"
    status, one = await app.call("GET", f"{API}/drills/{drill['id']}", OFFICER_TOKEN)
    assert status == 200 and one == seen
    assert drill["fire_at"] not in str(listed) and "rainstorm" not in str(listed)

    # The approver reads what it may be, to release it, and learns neither which nor when; the
    # scheduler cannot release their own drill.
    status, refused = await app.call("POST", f"{API}/drills/{drill['id']}/approve", CHIEF_TOKEN)
    assert (status, refused["error"]) == (403, "self_approval")
    status, read = await app.call("GET", f"{API}/drills/{drill['id']}", APPROVER_TOKEN)
    assert read["scenarios"] == drill["scenarios"]
    assert (read["secret"], read["fire_at"], read["scenario"]) == (True, None, None)
    assert drill["fire_at"] not in str(read)
    status, approved = await app.call("POST", f"{API}/drills/{drill['id']}/approve", APPROVER_TOKEN)
    assert status == 200 and drill["fire_at"] not in str(approved)
    status, again = await app.call("POST", f"{API}/drills/{drill['id']}/approve", APPROVER_TOKEN)
    assert (status, again["error"]) == (409, "not_pending")
    status, mine = await app.call("GET", f"{API}/drills/{drill['id']}", CHIEF_TOKEN)
    assert mine["fire_at"] == drill["fire_at"] and mine["scenario"] == scenario

    # The audit log keeps the secret, for review after the fact.
    audit = await app.pool.fetchrow(
        "SELECT actor, detail FROM audit_log WHERE action = 'drill_scheduled' AND subject = $1",
        f"drill:{drill['id']}",
    )
    assert audit is not None and audit["actor"] == "li"
    assert datetime.fromisoformat(audit["detail"]["fire_at"]) == fire_at
    assert audit["detail"]["scenario"]["county"] == scenario["county"]


async def test_a_drill_waiting_for_approval_never_fires(app: Api) -> None:
    drill = await schedule(app, approve=False)
    clock = clock_of(app)
    clock.advance(4 * 3600)
    assert await DrillScanner(app.pool, clock).scan() == []
    status, late = await app.call("POST", f"{API}/drills/{drill['id']}/approve", APPROVER_TOKEN)
    assert (status, late["error"]) == (409, "window_over")
    assert await app.count("warnings") == 0


async def test_every_draw_falls_inside_the_window_and_on_the_listed_counties(app: Api) -> None:
    drills = [await schedule(app, counties=["370831"]) for _ in range(15)]
    for drill in drills:
        assert NOW + timedelta(hours=1) <= datetime.fromisoformat(drill["fire_at"])
        assert datetime.fromisoformat(drill["fire_at"]) < NOW + timedelta(hours=3)
        # Only the rainstorm scenario lists 泗水县.
        assert (drill["scenario"]["county"], drill["scenario"]["hazard"]) == (
            "370831000000",
            "rainstorm",
        )
    assert len({d["fire_at"] for d in drills}) > 1  # drawn, not fixed


async def test_a_due_drill_fires_once_as_an_exercise_for_the_exercise_people_only(
    app: Api, policy: Policy
) -> None:
    await app.pool.execute(
        "UPDATE responders SET exercise = true WHERE ref IN ('r-v1', 's-county')"
    )
    await app.pool.execute("UPDATE households SET exercise = true WHERE ref IN ('h-1', 'h-4')")
    drill = await schedule(app, scenarios=[{**SCENARIOS[0], "counties": ["370811"]}])
    clock = clock_of(app)
    scanner = DrillScanner(app.pool, clock)
    clock.advance(3600 - 1)  # an hour in: never before the window
    assert await scanner.scan() == []
    clock.advance((datetime.fromisoformat(drill["fire_at"]) - clock.now()).total_seconds())
    (warning_id,) = await scanner.scan()
    assert await scanner.scan() == []  # once

    warning = await app.pool.fetchrow("SELECT * FROM warnings WHERE id = $1", warning_id)
    assert warning is not None
    assert (warning["status"], warning["source"], warning["level"], warning["state"]) == (
        "Exercise",
        "drill",
        "red",
        "active",
    )
    assert warning["sent"] == datetime.fromisoformat(drill["fire_at"])
    await Planner(app.pool, lambda: policy, clock, LIMITS).plan_pending()
    addresses = {
        r["address"]
        for r in await app.pool.fetch(
            "SELECT address FROM deliveries WHERE warning_id = $1 AND audience <> 'broadcast'",
            warning_id,
        )
    }
    # 任城区's exercise people: 张书记 and 张庄村1号's two phones; not 泗水县's, not the others.
    assert addresses == {"+8613900000004", "+8613800000001", "+8613800000002"}
    bodies = await app.pool.fetch("SELECT body FROM messages WHERE warning_id = $1", warning_id)
    assert bodies and all(r["body"].count("【演练】") == 1 for r in bodies)

    status, report = await app.call("GET", f"{API}/warnings/{warning_id}/report", OFFICER_TOKEN)
    assert status == 200
    assert (report["warning"]["blind_drill_id"], report["warning"]["drill_scheduled_by"]) == (
        drill["id"],
        "li",
    )
    summary = dict(summary_rows(EvaluationReport.model_validate(report)))
    assert summary["演练方式"].startswith(f"双盲演练 #{drill['id']}（li 安排")

    status, seen = await app.call("GET", f"{API}/drills/{drill['id']}", OFFICER_TOKEN)
    assert (seen["state"], seen["warning_id"], seen["secret"]) == ("fired", warning_id, False)
    status, body = await app.call("POST", f"{API}/drills/{drill['id']}/cancel", OFFICER_TOKEN)
    assert (status, body["error"]) == (409, "not_scheduled")


async def test_a_live_red_warning_postpones_the_drill_and_a_cancelled_one_never_fires(
    app: Api,
) -> None:
    status, body = await app.cap(rainstorm_cap("real-1", NOW, "370811"))
    assert status == 201, body
    drill = await schedule(app, scenarios=[{**SCENARIOS[0], "counties": ["370811"]}])
    other = await schedule(app, scenarios=[{**SCENARIOS[0], "counties": ["370831"]}])
    clock = clock_of(app)
    scanner = DrillScanner(app.pool, clock)
    clock.advance(3 * 3600)
    (fired,) = await scanner.scan()  # 泗水县 has no live warning: its drill goes ahead
    assert (
        await app.pool.fetchval("SELECT warning_id FROM blind_drills WHERE id = $1", other["id"])
        == fired
    )
    row = await app.pool.fetchrow("SELECT * FROM blind_drills WHERE id = $1", drill["id"])
    assert row is not None
    assert (row["state"], row["postponements"]) == ("scheduled", 1)
    assert row["fire_at"] == clock.now() + POSTPONE
    postponed = await app.pool.fetchrow(
        "SELECT detail FROM audit_log WHERE action = 'drill_postponed' AND subject = $1",
        f"drill:{drill['id']}",
    )
    assert postponed is not None and postponed["detail"]["live_warning_id"] == body["warning_id"]

    status, cancelled = await app.call("POST", f"{API}/drills/{drill['id']}/cancel", OFFICER_TOKEN)
    assert status == 200 and cancelled["state"] == "cancelled"
    assert cancelled["cancelled_by"] == "zhang" and cancelled["secret"] is True
    clock.advance(3600)
    assert await scanner.scan() == []
    assert await app.pool.fetchval("SELECT count(*) FROM warnings WHERE source = 'drill'") == 1


async def test_bad_schedules_are_refused_naming_the_field_and_change_nothing(app: Api) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({**window(3, 1), "scenarios": SCENARIOS}, "window_end must be after window_start"),
        ({**window(-3, -1), "scenarios": SCENARIOS}, "window_end: the window is already over"),
        ({**window(), "scenarios": []}, "scenarios"),
        ({**window(), "scenarios": [{**SCENARIOS[0], "hazard": "meteor"}]}, "scenarios[0].hazard"),
        ({**window(), "scenarios": [{**SCENARIOS[0], "level": "purple"}]}, "scenarios[0].level"),
        ({**window(), "scenarios": [{**SCENARIOS[0], "counties": ["3708"]}]}, "counties[0]"),
        ({**window(), "scenarios": [{**SCENARIOS[0], "counties": ["370899"]}]}, "370899"),
        ({**window(), "scenarios": SCENARIOS, "counties": ["370832"]}, "counties"),
        (
            {"window_start": "2026-07-29 10:00", "window_end": "2026-07-29 12:00"}
            | {"scenarios": SCENARIOS},
            "time zone",
        ),
    ]
    for body, words in cases:
        status, answer = await app.call("POST", f"{API}/drills", OFFICER_TOKEN, body)
        assert status == 422, (body, answer)
        assert words in answer["detail"], (words, answer)
    assert await app.count("blind_drills") == 0
    status, _ = await app.call("POST", f"{API}/drills", FEED_TOKEN, {})
    assert status == 401


async def test_the_cli_schedules_from_a_scenarios_file(app: Api, tmp_path: Path) -> None:
    scenarios = tmp_path / "drills.toml"
    scenarios.write_text(
        '[[scenario]]\nhazard = "rainstorm"\nlevel = "red"\ncounties = ["370811"]\n'
        'headline = "演练：任城区暴雨红色预警"\n',
        "utf-8",
    )
    server = str(app.client.make_url("")).rstrip("/")
    start, end = NOW + timedelta(hours=1), NOW + timedelta(hours=5)
    args = [
        *("drill", "schedule", "--scenarios", str(scenarios)),
        *("--window", f"{start:%Y-%m-%d %H:%M}/{end:%Y-%m-%d %H:%M}"),
        *("--server", server, "--token", OFFICER_TOKEN),
    ]
    result = await asyncio.to_thread(CliRunner().invoke, main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "warnd drill approve" in result.output  # red: a second officer must release it
    row = await app.pool.fetchrow("SELECT * FROM blind_drills")
    assert row is not None and row["window_start"] == start and row["window_end"] == end
    local = row["fire_at"].astimezone(start.tzinfo)
    assert f"fires at {local:%Y-%m-%d %H:%M:%S}" in result.output and "任城区" in result.output
