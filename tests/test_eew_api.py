"""Earthquake early warning through the API and the database: ``POST /api/v1/eew`` for every
input shape a feed may send, and the officers' drill preview ``GET /api/v1/eew/preview``.

The roster (tests/fixtures.py): 张庄村 (35.43, 116.61) and 李庄村 (35.44, 116.62, a blind spot)
in 任城区, 王家村 (35.67, 117.27) in 泗水县. For an M 5.5 at 35.40, 116.60, 10 km deep (I0 term
0.92 + 1.63·5.5 = 9.885):
  张庄村: d ≈ 3.46 km, R ≈ 10.58, I = 9.885 − 3.49·1.0245 = 6.31 → VI orange; arrival 3.02 s
  李庄村: d ≈ 4.80 km, R ≈ 11.09, I = 9.885 − 3.49·1.0449 = 6.24 → VI orange; arrival 3.17 s
  王家村: d ≈ 67.7 km, R ≈ 68.4, I = 9.885 − 3.49·1.835 = 3.48 → III yellow; arrival 19.5 s
Five seconds after origin the two 任城区 villages are in the blind zone, 王家村 has 14.5 s.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from typing import Any

import pytest

from tests.fixtures import (
    CHIEF_TOKEN,
    COUNTY,
    FEED_TOKEN,
    NOW,
    OFFICER_TOKEN,
    OTHER_COUNTY,
    OTHER_VILLAGE,
    VILLAGE_1,
    VILLAGE_2,
    Api,
)
from warnd.app.eew import receive_report
from warnd.core.eew import EewReport
from warnd.web.routing import API

EEW = f"{API}/eew"
ORIGIN = NOW - timedelta(seconds=5)


def message(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": "CEA20260729015955.0001",
        "report_no": 1,
        "origin_time": ORIGIN.isoformat(),
        "lat": 35.40,
        "lon": 116.60,
        "depth_km": 10,
        "magnitude": 5.5,
        "place": "济宁市任城区",
        "final": False,
        "cancel": False,
        "status": "Actual",
    }
    body.update(changes)
    return body


async def post(
    app: Api,
    body: dict[str, Any] | bytes | str,
    *,
    token: str | None = FEED_TOKEN,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await app.client.post(EEW, data=data, headers=headers)
    return response.status, await response.json()


class Hook:
    """A stand-in for the fast path: records what it is handed, or fails as told."""

    def __init__(self, fails: int = 0) -> None:
        self.reports: list[EewReport] = []
        self.fails = fails

    async def __call__(self, report: EewReport) -> None:
        if self.fails:
            self.fails -= 1
            raise RuntimeError("lane full")
        self.reports.append(report)


async def stored(app: Api) -> list[dict[str, Any]]:
    rows = await app.pool.fetch(
        "SELECT feed, event_id, report_no, state, summary, status, magnitude, cancel"
        "  FROM eew_reports ORDER BY id"
    )
    return [dict(r) for r in rows]


async def rejected(app: Api) -> list[tuple[str, str, str]]:
    rows = await app.pool.fetch("SELECT feed, error, body FROM rejected_messages ORDER BY id")
    return [(r["feed"], r["error"], r["body"]) for r in rows]


# --- valid reports -----------------------------------------------------------------------------


async def test_a_report_is_recorded_and_summarised(app: Api) -> None:
    status, body = await post(app, message())
    assert status == 202, body
    assert body["created"] is True and body["detail"] == "accepted"
    assert body["state"] == "recorded"  # no fast path in this process
    summary = body["summary"]
    assert summary["public_alert"] is True
    assert summary["villages"] == {"red": 0, "orange": 2, "yellow": 1}
    assert summary["alerted_villages"] == 3 and summary["blind_zone"] == 2
    # 张庄村 3.02 − 5 = −1.98 s … 王家村 19.5 − 5 = 14.5 s
    assert summary["countdown"]["min_s"] == pytest.approx(-2.0, abs=0.1)
    assert summary["countdown"]["max_s"] == pytest.approx(14.5, abs=0.2)
    rows = await stored(app)
    assert len(rows) == 1
    row = rows[0]
    assert (row["feed"], row["event_id"], row["report_no"], row["state"]) == (
        "cma",
        "CEA20260729015955.0001",
        1,
        "recorded",
    )
    assert row["summary"]["villages"] == summary["villages"]
    assert await app.count("rejected_messages") == 0
    assert await app.count("warnings") == 0  # the early-warning path is not a CAP warning


async def test_a_new_report_is_handed_to_the_fast_path(app: Api) -> None:
    hook = Hook()
    app.services.eew = hook
    status, body = await post(app, message())
    assert status == 202 and body["state"] == "handed"
    assert [(r.event_id, r.report_no, r.magnitude) for r in hook.reports] == [
        ("CEA20260729015955.0001", 1, 5.5)
    ]
    assert hook.reports[0].origin_time == ORIGIN
    assert [r["state"] for r in await stored(app)] == ["handed"]


async def test_a_duplicate_answers_200_and_is_not_handed_again(app: Api) -> None:
    hook = Hook()
    app.services.eew = hook
    first_status, first = await post(app, message())
    status, body = await post(app, message())
    assert (first_status, status) == (202, 200)
    assert body["created"] is False and body["detail"] == "already received"
    assert body["state"] == "handed" and body["summary"] == first["summary"]
    assert len(hook.reports) == 1
    assert len(await stored(app)) == 1
    # the next report of the same event is new
    status, body = await post(app, message(report_no=2, magnitude=5.8))
    assert status == 202 and len(hook.reports) == 2
    assert [r["report_no"] for r in await stored(app)] == [1, 2]


async def test_two_copies_at_once_are_recorded_and_handed_once(app: Api) -> None:
    hook = Hook()
    app.services.eew = hook
    answers = await asyncio.gather(*(post(app, message()) for _ in range(4)))
    assert sorted(status for status, _ in answers) == [200, 200, 200, 202]
    assert len(hook.reports) == 1
    assert [r["state"] for r in await stored(app)] == ["handed"]


async def test_a_copy_while_the_first_is_being_handed_answers_without_a_summary(
    app: Api,
) -> None:
    await app.pool.execute(
        "INSERT INTO eew_reports (feed, event_id, report_no, origin_time, lat, lon, depth_km,"
        " magnitude, place, final, cancel, status, state, received_at, raw)"
        " VALUES ('cma', $1, 1, $2, 35.4, 116.6, 10, 5.5, '任城区', false, false, 'Actual',"
        " 'received', $3, '{}')",
        "CEA20260729015955.0001",
        ORIGIN,
        NOW,
    )
    status, body = await post(app, message())
    assert status == 200 and body["state"] == "received" and body["summary"] is None


async def test_a_report_received_through_another_feed_is_a_duplicate(app: Api) -> None:
    # The same national event relayed by a second feed (or received by another process)
    report = EewReport(
        event_id="CEA20260729015955.0001",
        report_no=1,
        origin_time=ORIGIN,
        lat=35.40,
        lon=116.60,
        depth_km=10,
        magnitude=5.5,
        place="济宁市任城区",
    )
    first = await receive_report(app.services, "mqtt-relay", report, "{}")
    assert first.created
    status, body = await post(app, message())
    assert status == 200 and body["detail"] == "already received"
    assert [r["feed"] for r in await stored(app)] == ["mqtt-relay"]


async def test_a_failed_hand_off_is_503_and_the_retry_is_handed(app: Api) -> None:
    hook = Hook(fails=1)
    app.services.eew = hook
    status, body = await post(app, message())
    assert status == 503 and body["error"] == "handoff_failed"
    assert "send it again" in body["detail"]
    assert [r["state"] for r in await stored(app)] == ["failed"]
    status, body = await post(app, message())
    assert status == 202 and body["state"] == "handed" and body["created"] is True
    assert len(hook.reports) == 1
    assert [r["state"] for r in await stored(app)] == ["handed"]


async def test_a_test_report_is_recorded_and_never_handed(app: Api) -> None:
    hook = Hook()
    app.services.eew = hook
    status, body = await post(app, message(status="Test"))
    assert status == 202 and body["state"] == "recorded"
    assert hook.reports == []
    status, body = await post(app, message(report_no=2, status="Exercise"))
    assert status == 202 and body["state"] == "handed"
    assert hook.reports[0].status == "Exercise"


async def test_below_magnitude_4_nobody_is_alerted(app: Api) -> None:
    status, body = await post(app, message(magnitude=3.9))
    assert status == 202
    assert body["summary"]["public_alert"] is False
    assert body["summary"]["alerted_villages"] == 0 and body["summary"]["countdown"] is None


async def test_a_cancel_is_recorded_and_alerts_nobody(app: Api) -> None:
    hook = Hook()
    app.services.eew = hook
    await post(app, message())
    status, body = await post(app, message(report_no=2, cancel=True, final=True))
    assert status == 202 and body["summary"]["alerted_villages"] == 0
    assert hook.reports[-1].cancel and hook.reports[-1].final
    assert [r["cancel"] for r in await stored(app)] == [False, True]


async def test_a_time_in_utc_is_the_same_instant(app: Api) -> None:
    utc = ORIGIN.astimezone(UTC).isoformat().replace("+00:00", "Z")
    status, _ = await post(app, message(origin_time=utc))
    assert status == 202
    assert await app.pool.fetchval("SELECT origin_time FROM eew_reports") == ORIGIN


# --- refused input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"status": None}, "status", "required, and missing"),
        ({"canceled": True}, "canceled", "is not a field"),
        ({"magnitude": "5.5"}, "magnitude", "must be a JSON number"),
        ({"magnitude": 10.5}, "magnitude", "less than or equal to 10"),
        ({"magnitude": -1}, "magnitude", "greater than or equal to 0"),
        ({"depth_km": 701}, "depth_km", "less than or equal to 700"),
        ({"lat": 91}, "lat", "less than or equal to 90"),
        ({"lon": -181}, "lon", "greater than or equal to -180"),
        ({"origin_time": "2026-07-29T01:59:55"}, "origin_time", "no UTC offset"),
        ({"origin_time": "soon"}, "origin_time", "not an ISO 8601 date-time"),
        ({"origin_time": 1785261595}, "origin_time", "not an ISO 8601 date-time"),
        ({"report_no": 0}, "report_no", "greater than or equal to 1"),
        ({"report_no": "1"}, "report_no", "must be a whole JSON number"),
        ({"event_id": "CEA 1"}, "event_id", "is not an event id"),
        ({"event_id": ""}, "event_id", "is not an event id"),
        ({"place": " "}, "place", "visible text"),
        ({"place": "a\u0000b"}, "place", "no control characters"),
        ({"final": "false"}, "final", "must be true or false"),
        ({"cancel": 1}, "cancel", "must be true or false"),
        ({"status": "Draft"}, "status", "not one of Actual, Exercise, Test"),
    ],
)
async def test_each_invalid_field_is_named_and_kept_for_the_officer(
    app: Api, changes: dict[str, Any], field: str, words: str
) -> None:
    body = message(**changes)
    body = {k: v for k, v in body.items() if v is not None}
    status, answer = await post(app, body)
    assert status == 422, answer
    assert answer["error"] == "invalid_eew"
    assert answer["detail"].startswith(f"{field}: ") and words in answer["detail"]
    assert await app.count("eew_reports") == 0
    [(feed, error, kept)] = await rejected(app)
    assert (feed, error) == ("cma", "invalid_eew")
    assert kept == json.dumps(body)  # the whole body, for the officer


async def test_several_problems_are_named_at_once(app: Api) -> None:
    body = message(magnitude=11, lat=95)
    del body["place"]
    status, answer = await post(app, body)
    assert status == 422
    detail = answer["detail"]
    assert "lat: " in detail and "magnitude: " in detail and "place: required" in detail


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"<alert/>", "malformed_json"),
        (b"[1, 2]", "invalid_eew"),
        (b"null", "invalid_eew"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_refused(
    app: Api, raw: bytes, error: str
) -> None:
    status, answer = await post(app, raw)
    assert status == (400 if error == "malformed_json" else 422)
    assert answer["error"] == error
    assert await app.count("eew_reports") == 0
    assert [(f, e) for f, e, _ in await rejected(app)] == [("cma", error)]


async def test_without_a_feed_token_nothing_is_recorded(app: Api) -> None:
    for token in (None, "not-a-token", OFFICER_TOKEN, CHIEF_TOKEN):
        status, answer = await post(app, message(), token=token)
        assert status == 401 and answer["error"] == "unauthorized"
    assert await app.count("eew_reports") == 0
    assert await app.count("rejected_messages") == 0


async def test_the_report_must_be_sent_as_json(app: Api) -> None:
    status, answer = await post(app, json.dumps(message()), content_type="text/plain")
    assert status == 415 and answer["error"] == "unsupported_media_type"
    assert "application/json" in answer["detail"]
    assert await app.count("eew_reports") == 0
    assert [(f, e) for f, e, _ in await rejected(app)] == [("cma", "unsupported_media_type")]


async def test_an_oversized_body_is_refused(app: Api) -> None:
    huge = message(place="微山县" + " " * 70_000)
    status, answer = await post(app, huge)
    assert status == 413 and answer["error"] == "too_large"
    assert await app.count("eew_reports") == 0
    assert [(f, e) for f, e, _ in await rejected(app)] == [("cma", "too_large")]


async def test_an_oversized_chunked_body_is_refused_while_reading(app: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"place": "'
        for _ in range(100):  # no Content-Length: the cap applies while reading
            yield b"x" * 8000

    response = await app.client.post(
        EEW,
        data=chunks(),
        headers={"Authorization": f"Bearer {FEED_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status == 413
    assert await app.count("eew_reports") == 0
    assert [(f, e) for f, e, _ in await rejected(app)] == [("cma", "too_large")]


# --- preview -----------------------------------------------------------------------------------


async def preview(app: Api, query: str, token: str = OFFICER_TOKEN) -> tuple[int, dict[str, Any]]:
    return await app.call("GET", f"{API}/eew/preview?{query}", token)


async def test_the_preview_counts_villages_people_and_speakers_per_county(app: Api) -> None:
    status, body = await preview(app, "lat=35.40&lon=116.60&depth=10&mag=5.5")
    assert status == 200, body
    summary = body["summary"]
    assert summary["villages"] == {"red": 0, "orange": 2, "yellow": 1}
    assert summary["blind_zone"] == 0  # at origin: 3.02 s … 19.5 s
    assert summary["countdown"]["min_s"] == pytest.approx(3.0, abs=0.1)
    assert summary["countdown"]["max_s"] == pytest.approx(19.5, abs=0.2)
    assert [v["code"] for v in body["alerted"]] == [VILLAGE_1, VILLAGE_2, OTHER_VILLAGE]
    assert [v["level"] for v in body["alerted"]] == ["orange", "orange", "yellow"]
    assert [v["degree"] for v in body["alerted"]] == [6, 6, 3]
    counties = {c["county_code"]: c for c in body["counties"]}
    assert list(counties) == [COUNTY, OTHER_COUNTY]  # most villages first
    rencheng = counties[COUNTY]
    assert rencheng["county_name"] == "任城区"
    # 3 households; responders: 任区长, 任地质 (county), 许镇长 (town), 张书记, 李书记
    assert (rencheng["villages"], rencheng["orange"], rencheng["households"]) == (2, 2, 3)
    assert (rencheng["responders"], rencheng["people"]) == (5, 8)
    assert (rencheng["speaker_villages"], rencheng["speakers"]) == (1, 0)  # 李庄村 is a blind spot
    sishui = counties[OTHER_COUNTY]
    assert (sishui["villages"], sishui["yellow"], sishui["households"], sishui["responders"]) == (
        1,
        1,
        1,
        1,
    )
    assert body["villages_without_coordinates"] == 0
    assert body["texts"][0].startswith("【济宁市应急管理局】地震预警：震中发生5.5级地震，预计3秒后")
    assert any("预计19秒后有震感（烈度3度）" in t for t in body["texts"])
    assert await app.count("eew_reports") == 0  # nothing recorded


async def test_the_preview_counts_loudspeakers_reported_by_channels(app: Api) -> None:
    await app.pool.execute(
        "INSERT INTO speakers (channel, id, division_code, online, state_at) "
        "VALUES ('mqtt', $1, $1, false, $2)",
        VILLAGE_1,
        NOW,
    )
    _, body = await preview(app, "lat=35.40&lon=116.60&depth=10&mag=5.5&elapsed=5")
    rencheng = body["counties"][0]
    assert (rencheng["speakers"], rencheng["speakers_offline"]) == (1, 1)
    assert body["summary"]["blind_zone"] == 2
    assert any(t.startswith("【济宁市应急管理局】地震已发生，立即避险！") for t in body["texts"])


async def test_the_preview_of_an_exercise_counts_only_exercise_people(app: Api) -> None:
    await app.pool.execute("UPDATE households SET exercise = true WHERE ref = 'h-1'")
    query = "lat=35.40&lon=116.60&depth=10&mag=5.5&exercise=true&place=任城区"
    _, body = await preview(app, query)
    rencheng = body["counties"][0]
    assert (rencheng["households"], rencheng["responders"]) == (1, 0)
    assert body["texts"][0].startswith("【济宁市应急管理局】【演练】地震预警：任城区发生5.5级地震")


async def test_the_preview_below_the_threshold_alerts_nobody(app: Api) -> None:
    status, body = await preview(app, "lat=35.40&lon=116.60&depth=10&mag=3.9")
    assert status == 200
    assert body["summary"]["public_alert"] is False and body["min_magnitude"] == 4.0
    assert body["counties"] == [] and body["alerted"] == [] and body["texts"] == []


async def test_villages_without_coordinates_are_counted(app: Api) -> None:
    await app.pool.execute("UPDATE divisions SET lat = NULL, lon = NULL WHERE code = $1", VILLAGE_2)
    _, body = await preview(app, "lat=35.40&lon=116.60&depth=10&mag=5.5")
    assert body["villages_without_coordinates"] == 1
    assert [v["code"] for v in body["alerted"]] == [VILLAGE_1, OTHER_VILLAGE]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("lon=116.6&depth=10&mag=5.5", "lat"),
        ("lat=95&lon=116.6&depth=10&mag=5.5", "lat"),
        ("lat=35.4&lon=116.6&depth=-1&mag=5.5", "depth"),
        ("lat=35.4&lon=116.6&depth=10&mag=big", "mag"),
        ("lat=35.4&lon=116.6&depth=10&mag=5&elapsed=-3", "elapsed"),
        ("lat=35.4&lon=116.6&depth=10&mag=nan", "mag"),
    ],
)
async def test_a_bad_preview_parameter_is_named(app: Api, query: str, name: str) -> None:
    status, body = await preview(app, query)
    assert status == 400 and body["error"] == "invalid_parameter"
    assert body["detail"].startswith(f"{name}: ")


async def test_only_officers_preview(app: Api) -> None:
    status, _ = await preview(app, "lat=35.4&lon=116.6&depth=10&mag=5", token=FEED_TOKEN)
    assert status == 401
    status, _ = await preview(app, "lat=35.4&lon=116.6&depth=10&mag=5", token=CHIEF_TOKEN)
    assert status == 200
