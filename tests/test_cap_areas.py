"""Areas drawn as polygons and circles, end to end: CAP and manual warnings posted through the
HTTP API, the villages the database then holds for them, the preview, and who planning writes
deliveries to. Hostile and odd shapes get a 4xx naming the element, and leave nothing stored.

The roster is tests/seed.py's: 张庄村 (R1) at 35.43,116.61 and 李庄村 (R2, a blind spot) at
35.44,116.62 in 任城区, 1.4 km apart; 王家村 (S1) at 35.67,117.27 in 泗水县, 64 km away.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests import seed
from tests.fixtures import (
    APPROVER_TOKEN,
    LIMITS,
    NOW,
    OFFICER_TOKEN,
    Api,
    cap_alert,
    manual,
    preview,
    serve_api,
)
from warnd.core.clock import ManualClock
from warnd.pipeline.planner import Planner
from warnd.policy.model import Policy
from warnd.web.routing import API

R1, R2, S1 = seed.VILLAGE_R1, seed.VILLAGE_R2, seed.VILLAGE_S1

# Shapes in CAP's notation (lat,lon pairs; "lat,lon radius_km").
SQUARE_R1 = "35.425,116.605 35.425,116.615 35.435,116.615 35.435,116.605 35.425,116.605"
SQUARE_S1 = "35.665,117.265 35.665,117.275 35.675,117.275 35.675,117.265 35.665,117.265"
CIRCLE_R2 = "35.44,116.62 1"  # R1 is 1.43 km from R2: outside


@pytest.fixture
async def app(pool: asyncpg.Pool, policy: Policy) -> AsyncIterator[Api]:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    async for api in serve_api(pool, policy, {}):
        yield api


def regular_ring(points: int, lat: float, lon: float, radius_deg: float) -> str:
    """A closed ring of ``points`` points (the first repeated as the last) round a centre."""
    angles = [2 * math.pi * i / (points - 1) for i in range(points - 1)]
    corners = [
        f"{lat + radius_deg * math.sin(a):.6f},{lon + radius_deg * math.cos(a):.6f}" for a in angles
    ]
    return " ".join([*corners, corners[0]])


async def villages_of(api: Api, warning_id: int) -> set[str]:
    rows = await api.pool.fetch(
        "SELECT village_code FROM warning_villages WHERE warning_id = $1", warning_id
    )
    return {r["village_code"] for r in rows}


def above(villages: set[str]) -> set[str]:
    """The town, county and city codes over the villages."""
    return {code.ljust(12, "0") for v in villages for code in (v[:9], v[:6], v[:4])}


async def roster_reach(api: Api, villages: set[str]) -> dict[str, set[str]]:
    """Who a red rainstorm over ``villages`` must reach, by delivery audience, read from the
    roster: flood and all-hazard responders of the villages and the divisions above them, the
    loudspeakers of those that have one, their facilities and every phone of their households."""
    covered = sorted(villages)
    above_codes = villages | above(villages)
    responders = {
        phone
        for _, _, phone, division, _, specialities, _ in seed.RESPONDERS
        if division in above_codes and {"all", "flood"} & set(specialities)
    }
    loudspeakers = await api.pool.fetch(
        "SELECT code FROM divisions WHERE code = ANY($1) AND NOT blind_spot", covered
    )
    facilities = await api.pool.fetch(
        "SELECT contact_phone FROM facilities WHERE village_code = ANY($1)", covered
    )
    phones = await api.pool.fetch(
        "SELECT unnest(phones) AS phone FROM households WHERE village_code = ANY($1)", covered
    )
    return {
        "responder": responders,
        "broadcast": {r["code"] for r in loudspeakers},
        "facility": {r["contact_phone"] for r in facilities},
        "household": {r["phone"] for r in phones},
    }


async def assert_reaches_only(
    api: Api, policy: Policy, warning_id: int, villages: set[str], recipients: dict[str, int]
) -> None:
    """The warning covers exactly ``villages``; the preview counts their ``recipients``; planning
    writes deliveries to their people (and the responders above them) and to no one else."""
    assert await villages_of(api, warning_id) == villages

    shown = await preview(api, warning_id)
    assert shown["recipients"] == recipients
    assert shown["villages"] == len(villages)
    assert {d["code"] for d in shown["divisions"]} == above(villages) - {seed.CITY}
    assert all(d["villages"] >= 1 for d in shown["divisions"])

    await Planner(api.pool, lambda: policy, ManualClock(NOW), LIMITS).plan_pending()
    rows = await api.pool.fetch(
        "SELECT audience, address, division_code, recipient_id FROM deliveries"
        " WHERE warning_id = $1",
        warning_id,
    )
    written: dict[str, set[str]] = {}
    for row in rows:
        written.setdefault(row["audience"], set()).add(row["address"])
    expected = await roster_reach(api, villages)
    assert {a: written.get(a, set()) for a in expected} == expected
    # Door-knocking and gongs go to the responders of the covered villages themselves.
    village_responders = {phone for _, _, phone, code, *_ in seed.RESPONDERS if code in villages}
    assert written.get("field_task", set()) <= village_responders
    tasks = await api.pool.fetch(
        "SELECT village_code FROM field_tasks WHERE warning_id = $1", warning_id
    )
    assert {t["village_code"] for t in tasks} <= villages
    assert {r["division_code"] for r in rows} <= villages | above(villages)
    # What was written is what the preview said would be.
    by_audience = Counter(row["audience"] for row in rows)
    assert by_audience == {a: n for a, n in shown["deliveries"].items() if n}
    people = {
        a: len({r["recipient_id"] for r in rows if r["audience"] == a})
        for a in by_audience
        if a != "broadcast"
    }
    assert people == {a: n for a, n in shown["recipients"].items() if n and a != "broadcast"}


# --- CAP areas reach exactly their villages ------------------------------------------------------


# What a red rainstorm at night reaches in each village, by the preview's audiences: flood and
# all-hazard responders (the city's, county's and town's above the village count once),
# loudspeakers, facilities, field tasks (door-knocking for special-group persons' helpers, gongs
# in a blind spot) and households.
ONLY_R1 = {"responder": 5, "broadcast": 1, "facility": 1, "field_task": 1, "household": 3}
ONLY_R2 = {"responder": 4, "broadcast": 0, "facility": 0, "field_task": 1, "household": 2}
ONLY_S1 = {"responder": 3, "broadcast": 1, "facility": 1, "field_task": 1, "household": 2}


@pytest.mark.parametrize(
    ("area", "villages", "recipients"),
    [
        pytest.param({"polygons": (SQUARE_R1,)}, {R1}, ONLY_R1, id="polygon"),
        pytest.param({"circles": (CIRCLE_R2,)}, {R2}, ONLY_R2, id="circle"),
        pytest.param(
            {"polygons": (SQUARE_R1, SQUARE_S1)},
            {R1, S1},
            {"responder": 7, "broadcast": 2, "facility": 2, "field_task": 2, "household": 5},
            id="two-polygons",
        ),
        pytest.param(
            # The geocode and the circle name the same village; R1, next door, is in neither.
            {"codes": (R2,), "polygons": (SQUARE_S1,), "circles": (CIRCLE_R2,)},
            {R2, S1},
            {"responder": 6, "broadcast": 1, "facility": 1, "field_task": 2, "household": 4},
            id="geocode-polygon-circle",
        ),
    ],
)
async def test_a_cap_area_reaches_exactly_its_villages(
    app: Api,
    policy: Policy,
    area: dict[str, Any],
    villages: set[str],
    recipients: dict[str, int],
) -> None:
    status, body = await app.cap(cap_alert(**{"codes": (), **area}))
    assert status == 201, body
    assert (body["status"], body["created"], body["unknown_codes"]) == ("active", True, [])
    await assert_reaches_only(app, policy, body["warning_id"], villages, recipients)


async def test_a_polygon_alert_posted_twice_is_stored_once(app: Api) -> None:
    document = cap_alert(codes=(), polygons=(SQUARE_R1,))
    status, first = await app.cap(document)
    assert status == 201, first
    status, again = await app.cap(document)
    assert (status, again["warning_id"], again["created"]) == (200, first["warning_id"], False)
    assert await app.count("warning_villages") == 1


# --- manual warnings drawn by an officer --------------------------------------------------------


@pytest.mark.parametrize(
    ("area", "villages", "recipients"),
    [
        pytest.param(
            # An open ring: warnd closes it.
            {"polygons": [[[35.425, 116.605], [35.425, 116.615], [35.435, 116.615]]]},
            {R1},
            ONLY_R1,
            id="polygon",
        ),
        pytest.param(
            {"circles": [{"lat": 35.67, "lon": 117.27, "radius_km": 5}]},
            {S1},
            ONLY_S1,
            id="circle",
        ),
    ],
)
async def test_a_manual_area_reaches_exactly_its_villages(
    app: Api,
    policy: Policy,
    area: dict[str, Any],
    villages: set[str],
    recipients: dict[str, int],
) -> None:
    status, body = await app.call(
        "POST", f"{API}/warnings", OFFICER_TOKEN, manual("red", area=area, area_desc="张庄村")
    )
    assert status == 201, body
    assert body["status"] == "pending_approval"
    warning_id = body["warning_id"]
    read = await preview(app, warning_id)
    status, body = await app.call(
        "POST",
        f"{API}/warnings/{warning_id}/approve",
        APPROVER_TOKEN,
        {"texts_sha256": read["texts_sha256"]},
    )
    assert (status, body["status"]) == (200, "active")
    await assert_reaches_only(app, policy, warning_id, villages, recipients)


# --- odd shapes that are legitimate -------------------------------------------------------------


@pytest.mark.parametrize(
    ("area", "villages"),
    [
        pytest.param(
            {"polygons": (" ".join(reversed(SQUARE_R1.split())),)}, {R1}, id="clockwise-ring"
        ),
        pytest.param(
            # Two squares meeting at one corner, 35.435,116.615: a ring that touches itself
            # without crossing encloses both.
            {
                "polygons": (
                    "35.435,116.615 35.435,116.605 35.425,116.605 35.425,116.615 35.435,116.615"
                    " 35.435,116.625 35.445,116.625 35.445,116.615 35.435,116.615",
                )
            },
            {R1, R2},
            id="ring-touching-itself",
        ),
        pytest.param(
            {"polygons": (regular_ring(2000, 35.435, 116.615, 0.02),)}, {R1, R2}, id="2000-points"
        ),
        pytest.param({"circles": ("35.43,116.61 0.001",)}, {R1}, id="1-metre-circle"),
        pytest.param({"circles": ("35.43,116.61 20016",)}, {R1, R2, S1}, id="the-whole-earth"),
        pytest.param(
            # The far side of the earth from 张庄村: the largest circle still reaches it.
            {"circles": ("-35.43,-63.39 20016",)},
            {R1, R2, S1},
            id="from-the-antipode",
        ),
        pytest.param(
            {"circles": ("35.44,116.62 1",) * 32, "polygons": (SQUARE_R1,) * 32},
            {R1, R2},
            id="64-shapes",
        ),
    ],
)
async def test_odd_but_valid_shapes_are_accepted(
    app: Api, area: dict[str, Any], villages: set[str]
) -> None:
    status, body = await app.cap(cap_alert(**{"codes": (), **area}))
    assert status == 201, body
    assert await villages_of(app, body["warning_id"]) == villages


# --- hostile and broken shapes ------------------------------------------------------------------

POLYGON = "info[1]/area[1]/polygon[1]: "
CIRCLE = "info[1]/area[1]/circle[1]: "


@pytest.mark.parametrize(
    ("area", "detail"),
    [
        pytest.param(
            {
                "polygons": (
                    "35.425,116.605 35.435,116.615 35.435,116.605 35.425,116.615 35.425,116.605",
                )
            },
            POLYGON + "ring crosses itself: the edge from point 1 to point 2 crosses the edge from"
            " point 3 to point 4 near 35.43000,116.61000; list the points in order around the area",
            id="bow-tie",
        ),
        pytest.param(
            {"polygons": ("35.43,116.61 35.43,116.61 35.43,116.61 35.43,116.61",)},
            POLYGON + "ring has 1 distinct point; a polygon needs at least 3 to enclose an area",
            id="identical-points",
        ),
        pytest.param(
            # Through both villages of 许庄街道: PostgreSQL would count them as inside it.
            {"polygons": ("35.42,116.60 35.43,116.61 35.44,116.62 35.42,116.60",)},
            POLYGON + "all points of the ring lie on one line, so it encloses no area",
            id="points-on-a-line",
        ),
        pytest.param(
            {"polygons": ("35.425,116.605 35.425,116.615 35.435,116.615 35.435,116.605",)},
            POLYGON + "ring is not closed (first point 35.425,116.605 differs from last"
            " 35.435,116.605)",
            id="ring-not-closed",
        ),
        pytest.param(
            {"polygons": ("35.425,116.605 91,116.615 35.435,116.615 35.425,116.605",)},
            POLYGON + "point 2: latitude 91 is outside [-90, 90]",
            id="polygon-latitude-91",
        ),
        pytest.param(
            {"polygons": ("35.425,116.605 35.425,181 35.435,116.615 35.425,116.605",)},
            POLYGON + "point 2: longitude 181 is outside [-180, 180]",
            id="polygon-longitude-181",
        ),
        pytest.param(
            {"circles": ("91,116.61 1",)},
            CIRCLE + "centre: latitude 91 is outside [-90, 90]",
            id="circle-latitude-91",
        ),
        pytest.param(
            {"circles": ("35.43,181 1",)},
            CIRCLE + "centre: longitude 181 is outside [-180, 180]",
            id="circle-longitude-181",
        ),
        pytest.param(
            {"circles": ("35.43,116.61 0",)},
            CIRCLE + "radius 0 km must be greater than 0",
            id="radius-0",
        ),
        pytest.param(
            {"circles": ("35.43,116.61 -1",)},
            CIRCLE + "radius -1 km must be greater than 0",
            id="radius-negative",
        ),
        pytest.param(
            {"circles": ("35.43,116.61 100000",)},
            CIRCLE + "radius '100000' km: no place on earth is more than 20016 km from the"
            " centre; give the radius in kilometres",
            id="radius-100000-km",
        ),
        pytest.param(
            # Digits only, but beyond a float: it reads as infinity.
            {"circles": ("35.43,116.61 " + "9" * 400,)},
            CIRCLE + "radius '" + "9" * 60 + "…' km: no place on earth is more than 20016 km",
            id="radius-overflowing-to-infinity",
        ),
        pytest.param(
            {"circles": ("35.43,116.61 NaN",)},
            CIRCLE + "radius 'NaN' is not a number of kilometres",
            id="radius-nan",
        ),
        pytest.param(
            {"circles": ("35.43,116.61 inf",)},
            CIRCLE + "radius 'inf' is not a number of kilometres",
            id="radius-inf",
        ),
        pytest.param(
            {"circles": ("35.43,Infinity 1",)},
            CIRCLE + "centre: '35.43,Infinity' is not a lat,lon pair in decimal degrees",
            id="centre-infinity",
        ),
        pytest.param(
            {"polygons": ("nan,116.605 35.425,116.615 35.435,116.615 nan,116.605",)},
            POLYGON + "point 1: 'nan,116.605' is not a lat,lon pair in decimal degrees",
            id="polygon-nan",
        ),
        pytest.param(
            {"polygons": (regular_ring(2001, 35.435, 116.615, 0.02),)},
            POLYGON + "2001 points; at most 2000 are accepted in one polygon (simplify the ring)",
            id="2001-points",
        ),
        pytest.param(
            {"circles": (CIRCLE_R2,) * 33, "polygons": (SQUARE_R1,) * 32},
            "info[1]: 65 polygons and circles in its areas; at most 64 are accepted",
            id="65-shapes",
        ),
    ],
)
async def test_a_broken_shape_is_refused_and_nothing_is_stored(
    app: Api, area: dict[str, Any], detail: str
) -> None:
    status, body = await app.cap(cap_alert(**{"codes": (), **area}))
    assert (status, body["error"]) == (422, "rule_violation"), body
    assert body["detail"].startswith(detail)
    for table in ("warnings", "warning_villages", "deliveries", "audit_log"):
        assert await app.count(table) == 0, table
    row = await app.pool.fetchrow("SELECT feed, error, detail FROM rejected_messages")
    assert row is not None
    assert tuple(row) == ("cma", "rule_violation", body["detail"])


async def test_a_broken_shape_refuses_the_whole_area(app: Api) -> None:
    """A good geocode and a good polygon do not carry a bad circle: the feed must fix it."""
    document = cap_alert(codes=(R1,), polygons=(SQUARE_S1,), circles=("35.43,116.61 0",))
    status, body = await app.cap(document)
    assert status == 422
    assert body["detail"] == CIRCLE + "radius 0 km must be greater than 0"
    assert await app.count("warnings") == 0
    assert await app.count("warning_villages") == 0


def open_ring(points: int) -> list[list[float]]:
    """``points`` [lat, lon] points round 许庄街道, as an officer's client sends them (open)."""
    return [
        [float(number) for number in pair.split(",")]
        for pair in regular_ring(points + 1, 35.435, 116.615, 0.02).split()[:-1]
    ]


@pytest.mark.parametrize(
    ("area", "detail"),
    [
        pytest.param(
            {
                "polygons": [
                    [[35.425, 116.605], [35.435, 116.615], [35.435, 116.605], [35.425, 116.615]]
                ]
            },
            "area.polygons[0]: ring crosses itself: the edge from point 0 to point 1 crosses the"
            " edge from point 2 to point 3 near 35.43000,116.61000",
            id="bow-tie",
        ),
        pytest.param(
            {"polygons": [[[35.43, 116.61]] * 4]},
            "area.polygons[0]: a polygon needs at least 3 distinct [lat, lon] points",
            id="identical-points",
        ),
        pytest.param(
            {"polygons": [[[35.42, 116.60], [35.43, 116.61], [35.44, 116.62]]]},
            "area.polygons[0]: all points of the ring lie on one line, so it encloses no area",
            id="points-on-a-line",
        ),
        pytest.param(
            {"polygons": [[[35.425, 116.605], [91, 116.615], [35.435, 116.615]]]},
            "area.polygons[0][1][0]: Input should be less than or equal to 90",
            id="latitude-91",
        ),
        pytest.param(
            {"polygons": [[[35.425, 116.605], [35.425, 181], [35.435, 116.615]]]},
            "area.polygons[0][1][1]: Input should be less than or equal to 180",
            id="longitude-181",
        ),
        pytest.param(
            {"circles": [{"lat": 35.43, "lon": 116.61, "radius_km": 0}]},
            "area.circles[0].radius_km: Input should be greater than 0",
            id="radius-0",
        ),
        pytest.param(
            {"circles": [{"lat": 35.43, "lon": 116.61, "radius_km": -1}]},
            "area.circles[0].radius_km: Input should be greater than 0",
            id="radius-negative",
        ),
        pytest.param(
            {"circles": [{"lat": 35.43, "lon": 116.61, "radius_km": 100000}]},
            "area.circles[0].radius_km: Input should be less than or equal to 500",
            id="radius-100000-km",
        ),
        pytest.param(
            {"circles": [{"lat": math.nan, "lon": 116.61, "radius_km": math.inf}]},
            "area.circles[0].lat: Input should be a finite number;"
            " area.circles[0].radius_km: Input should be a finite number",
            id="nan-and-infinity",
        ),
        pytest.param(
            {"polygons": [open_ring(2001)]},
            "area.polygons[0]: List should have at most 2000 items after validation, not 2001",
            id="2001-points",
        ),
        pytest.param(
            {
                "polygons": [open_ring(4)] * 33,
                "circles": [{"lat": 35.44, "lon": 116.62, "radius_km": 1}] * 32,
            },
            "area: 65 polygons and circles; at most 64 are accepted",
            id="65-shapes",
        ),
    ],
)
async def test_a_broken_manual_shape_is_refused_and_nothing_is_stored(
    app: Api, area: dict[str, Any], detail: str
) -> None:
    # NaN and Infinity travel as the JSON extensions Python writes and reads.
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual(area=area))
    assert (status, body["error"]) == (422, "invalid_warning"), body
    assert body["detail"].startswith(detail)
    for table in ("warnings", "warning_villages", "audit_log"):
        assert await app.count(table) == 0, table
