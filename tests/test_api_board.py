"""The duty officer's board as JSON (GET /api/v1/board): the figures the console's board renders,
on a real database with deliveries, call-outs and field tasks written by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.fixtures import (
    CALLOUTS,
    CHIEF_TOKEN,
    FEED_TOKEN,
    NOW,
    OFFICER_TOKEN,
    TASKS,
    VILLAGE_1,
    VILLAGE_2,
    Api,
    cap_alert,
    insert_callouts,
    insert_deliveries,
    insert_tasks,
    manual,
)
from warnd.app.board import BOARD_WARNINGS
from warnd.web.routing import API


async def test_the_board_shows_every_warning_under_way_with_its_figures(app: Api) -> None:
    _, created = await app.cap(cap_alert())
    active = int(created["warning_id"])
    await insert_deliveries(app.pool, active)
    await insert_callouts(app.pool, active, CALLOUTS)
    await insert_tasks(app.pool, active, TASKS)
    status, body = await app.call("POST", f"{API}/warnings", CHIEF_TOKEN, manual("red"))
    assert status == 201, body
    pending = body["warning_id"]
    await app.cap(b"<not-xml")  # refused, kept for the officer
    await app.pool.execute(
        "INSERT INTO feed_health (feed, silent, changed_at) VALUES ('cma', true, $1)",
        NOW - timedelta(minutes=20),
    )
    await app.pool.execute(
        "INSERT INTO speakers (channel, id, division_code, online, state_at) "
        "VALUES ('broadcast', $1, $1, false, $3), ('broadcast', $2, $2, true, $3)",
        VILLAGE_1,
        VILLAGE_2,
        NOW - timedelta(minutes=5),
    )

    status, board = await app.call("GET", f"{API}/board", OFFICER_TOKEN)
    assert status == 200, board
    assert datetime.fromisoformat(board["as_of"]) == NOW
    assert [(w["id"], w["state"]) for w in board["warnings"]] == [
        (pending, "pending_approval"),
        (active, "active"),
    ]
    assert board["pending_approval"] == 1 and board["more_warnings"] is False
    assert board["warnings"][0]["headline"] == "任城区暴雨预警"
    assert board["warnings"][0]["author"] == "li"

    # The active warning's figures are those of its own page and roll-up, read once more.
    _, detail = await app.call("GET", f"{API}/warnings/{active}", OFFICER_TOKEN)
    shown = board["warnings"][1]
    assert shown["by_state"] == detail["progress"]["by_state"]
    assert shown["deliveries"] == detail["progress"]["total"] == 3
    assert shown["callouts"] == detail["callouts"]
    assert shown["field_tasks"] == {
        "total": 3,
        "done": 1,
        "open": 2,
        "overdue": 1,
        "persons": 9,
        "reached": 7,
    }

    assert [(f["feed"], datetime.fromisoformat(f["since"])) for f in board["silent_feeds"]] == [
        ("cma", NOW - timedelta(minutes=20))
    ]
    assert (board["speakers_online"], board["speakers_offline"]) == (1, 1)
    assert [s["id"] for s in board["offline_speakers"]] == [VILLAGE_1]
    assert board["offline_speakers"][0]["county"] == "任城区"
    assert [r["error"] for r in board["rejected"]] == ["malformed_xml"]
    assert board["rejected"][0]["body"] == "<not-xml"


async def test_waiting_warnings_are_never_crowded_off_the_board(app: Api) -> None:
    status, body = await app.call("POST", f"{API}/warnings", CHIEF_TOKEN, manual("red"))
    assert status == 201, body
    pending = body["warning_id"]
    stored = []
    for n in range(BOARD_WARNINGS):
        status, created = await app.cap(cap_alert(identifier=f"37080041600000_2026072901{n:04d}"))
        assert status == 201, created
        stored.append(created["warning_id"])
    _, board = await app.call("GET", f"{API}/board", OFFICER_TOKEN)
    assert board["more_warnings"] is True
    assert len(board["warnings"]) == BOARD_WARNINGS
    assert board["pending_approval"] == 1
    # The waiting one (the oldest of all) first, then the newest active ones: the oldest active
    # one is left out.
    shown = [w["id"] for w in board["warnings"]]
    assert shown == [pending, *sorted(stored, reverse=True)[:-1]]


async def test_the_board_is_for_officers_only(app: Api) -> None:
    status, body = await app.call("GET", f"{API}/board", None)
    assert status == 401, body
    status, body = await app.call("GET", f"{API}/board", FEED_TOKEN)  # a feed reads nothing
    assert status == 401, body
