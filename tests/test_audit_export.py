"""A warning's audit trail exported through the API (JSON pages and CSV), and the database
refusing to change or remove anything in the tables behind it."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.fixtures import (
    CALLOUTS,
    NOW,
    OFFICER_TOKEN,
    TASKS,
    Api,
    cap_alert,
    insert_callouts,
    insert_tasks,
)
from warnd.app.views import AUDIT_CSV_COLUMNS
from warnd.web.routing import API


async def trail(app: Api) -> tuple[int, int]:
    """A warning with call-outs, tasks, an officer's acknowledgement and a second warning whose
    rows must stay out of the first one's trail; returns (warning id, acknowledged call-out)."""
    _, created = await app.cap(cap_alert())
    warning_id = int(created["warning_id"])
    ids = await insert_callouts(app.pool, warning_id, CALLOUTS)
    await insert_tasks(app.pool, warning_id, TASKS)
    status, body = await app.call(
        "POST", f"{API}/callouts/{ids['r-v1']}/ack", OFFICER_TOKEN, {"reason": "电话联系本人确认"}
    )
    assert status == 200, body
    _, other = await app.cap(cap_alert(identifier="37080041600000_20260729013001"))
    other_id = int(other["warning_id"])
    await insert_callouts(app.pool, other_id, CALLOUTS[:1])
    await insert_tasks(app.pool, other_id, TASKS[:1])
    await app.pool.execute(
        "INSERT INTO audit_log (at, actor, action, subject) VALUES ($1, 'li', 'noted', $2)",
        NOW,
        f"warning:{other_id}",
    )
    # Policy reloads: one while the warning runs (in its trail), one the day before (not).
    await app.pool.executemany(
        "INSERT INTO audit_log (at, actor, action, subject, detail) "
        "VALUES ($1, 'system', 'policy_reloaded', 'policy', $2)",
        [
            (NOW + timedelta(hours=1), {"path": "after"}),
            (NOW - timedelta(days=1), {"path": "before"}),
        ],
    )
    return warning_id, ids["r-v1"]


async def expected(pool: asyncpg.Pool, warning_id: int) -> list[tuple[str, int]]:
    """(source, id) of every row about the warning, read table by table."""
    audit = await pool.fetch(
        "SELECT id FROM audit_log WHERE subject = $1 OR subject IN "
        "(SELECT 'callout:' || id FROM callouts WHERE warning_id = $2) "
        "OR (subject = 'policy' AND detail ->> 'path' = 'after')",
        f"warning:{warning_id}",
        warning_id,
    )
    events = await pool.fetch(
        "SELECT e.id FROM callout_events e JOIN callouts c ON c.id = e.callout_id "
        "WHERE c.warning_id = $1",
        warning_id,
    )
    tasks = await pool.fetch(
        "SELECT e.id FROM field_task_events e JOIN field_tasks t ON t.id = e.task_id "
        "WHERE t.warning_id = $1",
        warning_id,
    )
    return sorted(
        [("audit", r["id"]) for r in audit]
        + [("callout", r["id"]) for r in events]
        + [("task", r["id"]) for r in tasks]
    )


async def test_the_audit_trail_holds_everything_about_the_warning_in_time_order(app: Api) -> None:
    warning_id, acked = await trail(app)
    status, page = await app.call("GET", f"{API}/warnings/{warning_id}/audit", OFFICER_TOKEN)
    assert status == 200, page
    entries = page["entries"]
    assert page["next_after"] is None
    assert sorted((e["source"], e["id"]) for e in entries) == await expected(app.pool, warning_id)
    times = [datetime.fromisoformat(e["at"]) for e in entries]
    assert times == sorted(times)
    # the call-out events keep the times they were written with
    first_event = next(e for e in entries if e["source"] == "callout")
    assert first_event["action"] == "opened"
    assert times[entries.index(first_event)] == NOW - timedelta(minutes=10)
    actions = {(e["source"], e["action"], e["subject"]) for e in entries}
    assert ("audit", "warning_received", f"warning:{warning_id}") in actions
    assert ("audit", "callout_acknowledged", f"callout:{acked}") in actions
    assert ("callout", "acknowledged", f"callout:{acked}") in actions
    officer = next(e for e in entries if e["action"] == "callout_acknowledged")
    assert (officer["actor"], officer["detail"]["reason"]) == ("zhang", "电话联系本人确认")
    fired = [e for e in entries if e["action"] == "step_fired"]
    assert len(fired) == 4 and all(e["detail"].keys() == {"step"} for e in fired)
    done = next(e for e in entries if e["source"] == "task" and e["action"] == "done")
    assert (done["actor"], done["detail"]) == ("+8613900000004", {"done": 5})
    assert {e["subject"].split(":")[0] for e in entries} == {
        "warning",
        "callout",
        "task",
        "policy",
    }
    assert [e["detail"] for e in entries if e["subject"] == "policy"] == [{"path": "after"}]


async def test_the_audit_trail_pages_without_gaps_or_repeats(app: Api) -> None:
    warning_id, _ = await trail(app)
    _, whole = await app.call("GET", f"{API}/warnings/{warning_id}/audit", OFFICER_TOKEN)
    seen: list[dict[str, Any]] = []
    after = ""
    while True:
        status, page = await app.call(
            "GET", f"{API}/warnings/{warning_id}/audit?limit=3&after={after}", OFFICER_TOKEN
        )
        assert status == 200, page
        assert len(page["entries"]) <= 3
        seen += page["entries"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == whole["entries"]
    assert len(seen) > 9


async def test_the_audit_trail_as_csv(app: Api) -> None:
    warning_id, acked = await trail(app)
    response = await app.client.get(
        f"{API}/warnings/{warning_id}/audit?format=csv",
        headers={"Authorization": f"Bearer {OFFICER_TOKEN}"},
    )
    assert response.status == 200
    assert response.content_type == "text/csv"
    text = (await response.read()).decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert tuple(rows[0]) == AUDIT_CSV_COLUMNS
    assert sorted((r["source"], int(r["id"])) for r in rows) == await expected(app.pool, warning_id)
    _, page = await app.call("GET", f"{API}/warnings/{warning_id}/audit", OFFICER_TOKEN)
    assert [(r["source"], int(r["id"])) for r in rows] == [
        (e["source"], e["id"]) for e in page["entries"]
    ]
    officer = next(r for r in rows if r["action"] == "callout_acknowledged")
    assert officer["subject"] == f"callout:{acked}"
    assert json.loads(officer["detail"])["reason"] == "电话联系本人确认"
    opened = next(r for r in rows if r["action"] == "opened" and r["source"] == "callout")
    assert opened["at"].endswith("+08:00")  # the city's time, as in the other CSVs


async def test_the_audit_trail_refuses_bad_requests(app: Api) -> None:
    warning_id, _ = await trail(app)
    for query in ("?after=yesterday", "?after=1.2", "?limit=0", "?limit=10001", "?format=xml"):
        status, body = await app.call(
            "GET", f"{API}/warnings/{warning_id}/audit{query}", OFFICER_TOKEN
        )
        assert (status, body["error"]) == (400, "invalid_parameter"), query
    status, body = await app.call("GET", f"{API}/warnings/98765/audit", OFFICER_TOKEN)
    assert (status, body["error"]) == (404, "not_found")
    status, body = await app.call("GET", f"{API}/warnings/{warning_id}/audit", None)
    assert status == 401


@pytest.mark.parametrize("table", ["audit_log", "callout_events", "field_task_events"])
async def test_the_application_cannot_change_or_remove_the_record(app: Api, table: str) -> None:
    await trail(app)
    before = await app.pool.fetch(f"SELECT * FROM {table} ORDER BY id")
    assert before
    statements = (
        f"UPDATE {table} SET actor = 'someone else'",
        f"UPDATE {table} SET detail = '{{}}' WHERE id = {before[0]['id']}",
        f"DELETE FROM {table} WHERE id = {before[0]['id']}",
        f"DELETE FROM {table}",
        f"TRUNCATE {table}",
    )
    for statement in statements:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await app.pool.execute(statement)
    assert await app.pool.fetch(f"SELECT * FROM {table} ORDER BY id") == before
