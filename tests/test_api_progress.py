"""The progress roll-up per county, town and village with call-outs (叫应) and field tasks, on a
real database: rows written by hand in every state, counts read back through the API."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from warnd.app.views import CALLOUT_CSV_COLUMNS
from warnd.core.clock import ManualClock
from warnd.web.routing import API

from .test_api import (
    COUNTY,
    NOW,
    OFFICER_TOKEN,
    OTHER_COUNTY,
    TOWN,
    VILLAGE_1,
    VILLAGE_2,
    Api,
    app,
    cap_alert,
    insert_deliveries,
    policy,
)

__all__ = ["app", "policy"]  # the fixtures, shared with test_api

OTHER_TOWN = "370831001000"


def snapshot(*steps: tuple[str, str]) -> dict[str, object]:
    """A frozen chain as the list reads it: (action, target name) per step."""
    return {"steps": [{"action": a, "target_name": n} for a, n in steps]}


@dataclass(frozen=True)
class Callout:
    """One call-out to write by hand: whose, in which state, due when (minutes from NOW)."""

    ref: str
    state: str
    deadline_min: float
    ack_late: bool | None = None
    events: tuple[str, ...] = ()  # kinds after "opened"
    cursor: int = 0


async def insert_callouts(
    pool: asyncpg.Pool, warning_id: int, callouts: list[Callout]
) -> dict[str, int]:
    """Write the call-outs and their events; return call-out id by responder ref."""
    ids: dict[str, int] = {}
    chain = snapshot(("repeat", "本人"), ("backup", "王备岗"), ("superior", "任区长"))
    async with pool.acquire() as conn:
        for c in callouts:
            row = await conn.fetchrow(
                "SELECT id, phone, level FROM responders WHERE ref = $1", c.ref
            )
            assert row is not None
            acknowledged = c.state == "acknowledged"
            callout_id = await conn.fetchval(
                """INSERT INTO callouts (warning_id, responder_id, phone, level, state, opened_at,
                                         deadline, acknowledged_at, ack_late, ack_via, ack_by,
                                         snapshot, cursor, closed_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                   RETURNING id""",
                warning_id,
                row["id"],
                row["phone"],
                row["level"],
                c.state,
                NOW - timedelta(minutes=10),
                NOW + timedelta(minutes=c.deadline_min),
                NOW - timedelta(minutes=1) if acknowledged else None,
                c.ack_late,
                "sms" if acknowledged else None,
                row["phone"] if acknowledged else None,
                chain,
                c.cursor,
                NOW if c.state == "closed" else None,
            )
            ids[c.ref] = callout_id
            for minute, kind in enumerate(("opened", *c.events)):
                await conn.execute(
                    "INSERT INTO callout_events (callout_id, at, kind, detail) "
                    "VALUES ($1, $2, $3, $4)",
                    callout_id,
                    NOW - timedelta(minutes=10 - minute),
                    kind,
                    {"step": minute - 1} if kind.startswith("step_") else {},
                )
    return ids


@dataclass(frozen=True)
class Task:
    kind: str
    village: str
    assignee_ref: str
    targets: int
    done: int
    state: str
    deadline_min: float


async def insert_tasks(pool: asyncpg.Pool, warning_id: int, tasks: list[Task]) -> list[int]:
    """Write field tasks with an "opened" event each (and "done" for finished ones)."""
    ids = []
    async with pool.acquire() as conn:
        for t in tasks:
            task_id = await conn.fetchval(
                """INSERT INTO field_tasks (warning_id, kind, village_code, assignee_id, phone,
                                            targets, done, state, opened_at, deadline, snapshot)
                   SELECT $1, $2, $3, r.id, r.phone, $5, $6, $7, $8, $9, '{}'::jsonb
                     FROM responders r WHERE r.ref = $4
                   RETURNING id""",
                warning_id,
                t.kind,
                t.village,
                t.assignee_ref,
                t.targets,
                t.done,
                t.state,
                NOW - timedelta(minutes=10),
                NOW + timedelta(minutes=t.deadline_min),
            )
            assert task_id is not None
            ids.append(task_id)
            kinds = ["opened"] + (["done"] if t.state == "done" else [])
            for minute, kind in enumerate(kinds):
                await conn.execute(
                    "INSERT INTO field_task_events (task_id, at, kind, actor, detail) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    task_id,
                    NOW - timedelta(minutes=9 - minute),
                    kind,
                    "system" if kind == "opened" else "+8613900000004",
                    {"done": t.done} if kind == "done" else {},
                )
    return ids


# Every state a call-out can be in, across two counties, one town and two villages.
CALLOUTS = [
    Callout("r-county", "acknowledged", 5, ack_late=False),
    Callout("r-county-geo", "notified", -1, events=("step_fired",), cursor=1),
    Callout("r-town", "acknowledged", -2, ack_late=True, events=("step_fired", "acknowledged")),
    Callout("r-v1", "pending", 5, events=("step_skipped",), cursor=1),  # skipped: not escalated
    Callout("r-v2", "escalated", -3, events=("step_fired", "step_fired"), cursor=2),
    Callout("s-county", "closed", -4, events=("closed",)),
]
TASKS = [
    Task("door_knock", VILLAGE_1, "r-v1", 5, 5, "done", 10),
    Task("gong", VILLAGE_1, "r-v1", 1, 0, "open", -1),
    Task("door_knock", VILLAGE_2, "r-v2", 3, 2, "escalated", 10),
]


async def warned(app: Api) -> int:
    _, created = await app.cap(cap_alert())
    warning_id = int(created["warning_id"])
    await insert_deliveries(app.pool, warning_id)
    await insert_callouts(app.pool, warning_id, CALLOUTS)
    await insert_tasks(app.pool, warning_id, TASKS)
    return warning_id


async def progress(app: Api, warning_id: int, level: str) -> dict[str, Any]:
    status, body = await app.call(
        "GET", f"{API}/warnings/{warning_id}/progress?level={level}", OFFICER_TOKEN
    )
    assert status == 200, body
    return body


def by_code(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["code"]: d for d in body["divisions"]}


CALLOUT_KEYS = (
    *("total", "acknowledged_on_time", "acknowledged_late"),
    *("open", "overdue", "escalated", "closed"),
)
TASK_KEYS = ("total", "done", "open", "overdue", "persons", "reached")


def callouts(*counts: int) -> dict[str, int]:
    """The call-out counts of a division, in the order of ``CALLOUT_KEYS``."""
    return dict(zip(CALLOUT_KEYS, counts, strict=True))


def tasks(*counts: int) -> dict[str, int]:
    """The field-task counts of a division, in the order of ``TASK_KEYS``."""
    return dict(zip(TASK_KEYS, counts, strict=True))


async def test_counties_show_callouts_and_field_tasks(app: Api) -> None:
    warning_id = await warned(app)
    body = await progress(app, warning_id, "county")
    assert datetime.fromisoformat(body["as_of"]) == NOW
    rows = by_code(body)
    assert list(rows) == [COUNTY, OTHER_COUNTY]
    county = rows[COUNTY]
    assert county["total"] == 3  # the deliveries are still counted as before
    assert county["callouts"] == callouts(5, 1, 1, 3, 2, 3, 0)
    assert county["field_tasks"] == tasks(3, 1, 2, 1, 9, 7)
    # A division with call-outs and no delivery still has its row.
    other = rows[OTHER_COUNTY]
    assert (other["name"], other["total"]) == ("泗水县", 0)
    assert other["callouts"] == callouts(1, 0, 0, 0, 0, 0, 1)
    assert other["field_tasks"] == tasks(0, 0, 0, 0, 0, 0)


async def test_towns_and_villages_leave_out_people_above_them(app: Api) -> None:
    warning_id = await warned(app)
    towns = by_code(await progress(app, warning_id, "town"))
    assert list(towns) == [TOWN]  # 泗水县's only call-out is its county head's
    assert towns[TOWN]["callouts"] == callouts(3, 0, 1, 2, 1, 2, 0)
    assert towns[TOWN]["field_tasks"] == tasks(3, 1, 2, 1, 9, 7)

    villages = by_code(await progress(app, warning_id, "village"))
    assert list(villages) == [VILLAGE_1, VILLAGE_2]
    assert villages[VILLAGE_1]["callouts"] == callouts(1, 0, 0, 1, 0, 0, 0)
    assert villages[VILLAGE_1]["field_tasks"] == tasks(2, 1, 1, 1, 6, 5)
    assert villages[VILLAGE_2]["callouts"] == callouts(1, 0, 0, 1, 1, 1, 0)
    assert villages[VILLAGE_2]["field_tasks"] == tasks(1, 0, 1, 0, 3, 2)


async def test_overdue_is_reckoned_at_the_clock_of_the_request(app: Api) -> None:
    warning_id = await warned(app)
    clock = app.services.clock
    assert isinstance(clock, ManualClock)
    clock.advance(10 * 60 + 1)  # past every deadline
    body = await progress(app, warning_id, "county")
    assert datetime.fromisoformat(body["as_of"]) == NOW + timedelta(seconds=601)
    county = by_code(body)[COUNTY]
    assert county["callouts"]["overdue"] == county["callouts"]["open"] == 3
    assert county["field_tasks"]["overdue"] == county["field_tasks"]["open"] == 2


async def test_the_counties_add_up_to_the_warnings_summary(app: Api) -> None:
    warning_id = await warned(app)
    rows = (await progress(app, warning_id, "county"))["divisions"]
    status, detail = await app.call("GET", f"{API}/warnings/{warning_id}", OFFICER_TOKEN)
    assert status == 200
    summed = {k: sum(r["callouts"][k] for r in rows) for k in detail["callouts"]}
    assert summed == detail["callouts"]
    stored = await app.pool.fetchrow(
        "SELECT count(*) AS n, sum(targets) AS persons FROM field_tasks WHERE warning_id = $1",
        warning_id,
    )
    assert stored is not None
    assert sum(r["field_tasks"]["total"] for r in rows) == stored["n"]
    assert sum(r["field_tasks"]["persons"] for r in rows) == stored["persons"]


async def test_the_callout_list_names_the_last_escalation_step(app: Api) -> None:
    warning_id = await warned(app)
    status, page = await app.call(
        "GET", f"{API}/warnings/{warning_id}/callouts?overdue=true", OFFICER_TOKEN
    )
    assert status == 200
    steps = {c["name"]: (c["last_step"], c["last_step_target"]) for c in page["callouts"]}
    assert steps == {"任地质": ("repeat", "本人"), "李书记": ("backup", "王备岗")}
    _, pending = await app.call(
        "GET", f"{API}/warnings/{warning_id}/callouts?state=acknowledged", OFFICER_TOKEN
    )
    assert {c["last_step"] for c in pending["callouts"]} == {None}


async def test_the_overdue_csv_names_the_last_escalation_step(app: Api) -> None:
    warning_id = await warned(app)
    response = await app.client.get(
        f"{API}/warnings/{warning_id}/callouts?overdue=true&format=csv",
        headers={"Authorization": f"Bearer {OFFICER_TOKEN}"},
    )
    assert response.status == 200
    text = (await response.read()).decode("utf-8").removeprefix("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CALLOUT_CSV_COLUMNS
    assert {(r["name"], r["last_step"], r["last_step_target"]) for r in rows} == {
        ("任地质", "repeat", "本人"),
        ("李书记", "backup", "王备岗"),
    }
