"""The progress roll-up per county, town and village with call-outs (叫应) and field tasks, on a
real database: rows written by hand in every state, counts read back through the API."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

from tests.fixtures import (
    CALLOUTS,
    COUNTY,
    NOW,
    OFFICER_TOKEN,
    OTHER_COUNTY,
    OTHER_VILLAGE,
    TASKS,
    TOWN,
    VILLAGE_1,
    VILLAGE_2,
    Api,
    cap_alert,
    insert_callouts,
    insert_deliveries,
    insert_tasks,
)
from warnd.app.views import CALLOUT_CSV_COLUMNS
from warnd.core.clock import ManualClock
from warnd.web.routing import API

OTHER_TOWN = "370831001000"


async def warned(app: Api) -> int:
    _, created = await app.cap(cap_alert())
    warning_id = int(created["warning_id"])
    await insert_deliveries(app.pool, warning_id)
    await insert_callouts(app.pool, warning_id, CALLOUTS)
    await insert_tasks(app.pool, warning_id, TASKS)
    return warning_id


async def progress(
    app: Api, warning_id: int, level: str, within: str | None = None
) -> dict[str, Any]:
    scope = f"&within={within}" if within else ""
    status, body = await app.call(
        "GET", f"{API}/warnings/{warning_id}/progress?level={level}{scope}", OFFICER_TOKEN
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


async def test_a_roll_up_within_a_division_has_only_the_divisions_inside_it(app: Api) -> None:
    warning_id = await warned(app)
    await app.pool.execute(
        "INSERT INTO deliveries (warning_id, message_id, audience, recipient_id, division_code,"
        "                        address, channel_kind, priority, state, queued_at)"
        " SELECT $1, min(id), 'broadcast', 0, $2, $2, 'broadcast', 11, 'queued', $3"
        "   FROM messages WHERE warning_id = $1",
        warning_id,
        OTHER_VILLAGE,
        NOW,
    )
    everywhere = by_code(await progress(app, warning_id, "village"))
    assert list(everywhere) == [VILLAGE_1, VILLAGE_2, OTHER_VILLAGE]

    town = await progress(app, warning_id, "village", within=TOWN)
    assert (town["within"], town["within_name"]) == (TOWN, "许庄街道")
    assert by_code(town) == {code: everywhere[code] for code in (VILLAGE_1, VILLAGE_2)}
    county = await progress(app, warning_id, "village", within=OTHER_COUNTY)
    assert by_code(county) == {OTHER_VILLAGE: everywhere[OTHER_VILLAGE]}
    towns = await progress(app, warning_id, "town", within=COUNTY)
    assert list(by_code(towns)) == [TOWN]
    assert (await progress(app, warning_id, "town"))["within"] is None


async def test_a_roll_up_within_a_division_it_cannot_use_is_refused(app: Api) -> None:
    warning_id = await warned(app)
    path = f"{API}/warnings/{warning_id}/progress"
    for query, code, says in [
        ("level=village&within=370899999000", 422, "no division 370899999000"),
        ("level=village&within=" + VILLAGE_1, 422, "is not above the village level"),
        ("level=county&within=" + COUNTY, 422, "is not above the county level"),
        ("level=town&within=3708", 400, "within"),
        ("level=town&within=37081100100x", 400, "within"),
    ]:
        status, body = await app.call("GET", f"{path}?{query}", OFFICER_TOKEN)
        assert status == code, (query, body)
        assert says in str(body), (query, body)


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
