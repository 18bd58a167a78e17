"""A seismic feed's CAP 1.2 early warning becomes an EewReport (warnd.ingest.eew.eew_from_cap),
or a refusal naming the parameter; other CAP is parsed as before."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.fixtures import FEED_TOKEN, Api, cap_alert
from warnd.core.eew import EewReport
from warnd.ingest.cap import parse_cap
from warnd.ingest.eew import EewError, eew_from_cap
from warnd.web.routing import API

CST = timezone(timedelta(hours=8))
PARAMETERS = {
    "EventID": "CEA20261202193000.0001",
    "ReportNum": "2",
    "Magnitude": "5.5",
    "EventDepth": "10",
    "OriginTime": "2026-12-02T19:30:00+08:00",
}


def seismic_cap(
    parameters: dict[str, str] | None = None,
    *,
    msg_type: str = "Alert",
    status: str = "Actual",
    event: str = "地震预警",
    circle: str | None = "35.40,116.60 30",
    area_desc: str = "山东济宁市微山县",
) -> bytes:
    """An early warning as the seismic feed sends it in CAP 1.2."""
    given = PARAMETERS if parameters is None else parameters
    params = "".join(
        f"<parameter><valueName>{k}</valueName><value>{v}</value></parameter>"
        for k, v in given.items()
    )
    shape = f"<circle>{circle}</circle>" if circle else ""
    geocode = (
        "" if circle else "<geocode><valueName>code</valueName><value>370826</value></geocode>"
    )
    references = (
        "<references>CEA-EEW,CEA20261202193000.0001_1,2026-12-02T19:30:06+08:00</references>"
        if msg_type != "Alert"
        else ""
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>CEA20261202193000.0001_2</identifier>
  <sender>CEA-EEW</sender>
  <sent>2026-12-02T19:30:09+08:00</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {references}
  <info>
    <language>zh-CN</language>
    <category>Geo</category>
    <event>{event}</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Likely</certainty>
    <headline>山东济宁市微山县发生5.5级地震</headline>
    {params}
    <area><areaDesc>{area_desc}</areaDesc>{shape}{geocode}</area>
  </info>
</alert>
""".encode()


def test_the_facts_are_read_from_parameters_and_the_circle() -> None:
    report = eew_from_cap(parse_cap(seismic_cap()))
    assert report == EewReport(
        event_id="CEA20261202193000.0001",
        report_no=2,
        origin_time=datetime(2026, 12, 2, 19, 30, tzinfo=CST),
        lat=35.40,
        lon=116.60,
        depth_km=10.0,
        magnitude=5.5,
        place="山东济宁市微山县",
        final=False,
        cancel=False,
        status="Actual",
    )


def test_names_are_matched_without_case_and_final_and_cancel_are_read() -> None:
    parameters = {k.lower(): v for k, v in PARAMETERS.items()} | {"Final": "true"}
    parameters["eventdepth"] = "12.5 km"
    report = eew_from_cap(parse_cap(seismic_cap(parameters, msg_type="Cancel", status="Exercise")))
    assert (report.final, report.cancel, report.status, report.depth_km) == (
        True,
        True,
        "Exercise",
        12.5,
    )


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("EventID", None, "info/parameter EventID: required, and missing"),
        ("ReportNum", None, "info/parameter ReportNum: required, and missing"),
        ("Magnitude", None, "info/parameter Magnitude: required, and missing"),
        ("EventDepth", None, "info/parameter EventDepth: required, and missing"),
        ("OriginTime", None, "info/parameter OriginTime: required, and missing"),
        ("EventID", "CEA 1", "info/parameter EventID: 'CEA 1' is not an event id"),
        ("ReportNum", "first", "info/parameter ReportNum: 'first' is not a whole number"),
        ("ReportNum", "0", "info/parameter ReportNum: 0 is outside 1–9999"),
        ("Magnitude", "M5.5", "info/parameter Magnitude: 'M5.5' is not a number"),
        ("Magnitude", "11", "info/parameter Magnitude: 11 is outside 0–10"),
        ("EventDepth", "800", "info/parameter EventDepth: 800 km is outside 0–700 km"),
        ("OriginTime", "2026-12-02T11:30:00Z", "OriginTime: '2026-12-02T11:30:00Z' is not a date"),
        (
            "OriginTime",
            "2026-13-02T19:30:00+08:00",
            "OriginTime: '2026-13-02T19:30:00+08:00' is not a valid",
        ),
    ],
)
def test_a_missing_or_malformed_parameter_is_named(
    name: str, value: str | None, words: str
) -> None:
    parameters = dict(PARAMETERS)
    if value is None:
        del parameters[name]
    else:
        parameters[name] = value
    with pytest.raises(EewError) as caught:
        eew_from_cap(parse_cap(seismic_cap(parameters)))
    assert caught.value.code == "invalid_eew" and caught.value.http_status == 422
    assert words in caught.value.detail


def test_every_problem_is_listed() -> None:
    with pytest.raises(EewError) as caught:
        eew_from_cap(parse_cap(seismic_cap({"Magnitude": "x"}, circle=None)))
    detail = caught.value.detail
    for words in ("EventID: required", "Magnitude: 'x'", "no <circle> with the epicentre"):
        assert words in detail


def test_a_parameter_given_twice_differently_is_refused() -> None:
    cap = seismic_cap().replace(
        b"<parameter><valueName>Magnitude",
        b"<parameter><valueName>magnitude</valueName><value>6.1</value></parameter>"
        b"<parameter><valueName>Magnitude",
    )
    with pytest.raises(EewError, match="given twice"):
        eew_from_cap(parse_cap(cap))


def test_a_system_message_is_no_early_warning() -> None:
    with pytest.raises(EewError, match="status: System"):
        eew_from_cap(parse_cap(seismic_cap(status="System")))


def test_another_hazard_is_refused() -> None:
    with pytest.raises(EewError) as caught:
        eew_from_cap(parse_cap(seismic_cap(event="暴雨")))
    assert caught.value.code == "not_earthquake"


def test_other_cap_is_parsed_as_before_and_keeps_its_parameters() -> None:
    warning = parse_cap(cap_alert().encode())
    assert warning.hazard == "rainstorm" and warning.parameters == ()
    seismic = parse_cap(seismic_cap())
    assert seismic.hazard == "earthquake"
    assert dict(seismic.parameters) == PARAMETERS


# --- through the API: POST /api/v1/eew/cap ------------------------------------------------------


async def post_cap(
    app: Api, body: bytes, *, content_type: str = "application/cap+xml", path: str = "eew/cap"
) -> tuple[int, dict[str, Any]]:
    response = await app.client.post(
        f"{API}/{path}",
        data=body,
        headers={"Authorization": f"Bearer {FEED_TOKEN}", "Content-Type": content_type},
    )
    return response.status, await response.json()


async def test_a_cap_report_is_recorded_and_a_json_copy_is_a_duplicate(app: Api) -> None:
    status, body = await post_cap(app, seismic_cap())
    assert status == 202, body
    assert (body["event_id"], body["report_no"], body["state"]) == (
        "CEA20261202193000.0001",
        2,
        "recorded",
    )
    assert body["summary"]["public_alert"] is True
    row = await app.pool.fetchrow("SELECT feed, magnitude, place, raw FROM eew_reports")
    assert row is not None
    assert (row["feed"], row["magnitude"], row["place"]) == ("cma", 5.5, "山东济宁市微山县")
    assert row["raw"].startswith("<?xml")
    status, again = await post_cap(app, seismic_cap())
    assert status == 200 and again["detail"] == "already received"
    as_json = {
        "event_id": "CEA20261202193000.0001",
        "report_no": 2,
        "origin_time": "2026-12-02T19:30:00+08:00",
        "lat": 35.4,
        "lon": 116.6,
        "depth_km": 10,
        "magnitude": 5.5,
        "place": "山东济宁市微山县",
        "status": "Actual",
    }
    status, same = await app.call("POST", f"{API}/eew", FEED_TOKEN, json=as_json)
    assert status == 200 and same["detail"] == "already received"
    assert await app.count("eew_reports") == 1
    assert await app.count("warnings") == 0


async def test_a_cap_report_is_handed_to_the_fast_path(app: Api) -> None:
    handed: list[EewReport] = []

    async def hook(report: EewReport) -> None:
        handed.append(report)

    app.services.eew = hook
    status, body = await post_cap(app, seismic_cap(msg_type="Cancel"))
    assert status == 202 and body["state"] == "handed"
    assert [(r.report_no, r.cancel) for r in handed] == [(2, True)]


async def test_an_early_warning_posted_to_the_general_cap_endpoint_goes_the_fast_way(
    app: Api,
) -> None:
    """A seismic feed pointed at POST /api/v1/cap: its early warning is a report, handed to the
    fast path as on /eew/cap (not a warning for the ordinary planner); the copy on /eew/cap is
    its duplicate. An earthquake without EventID is an ordinary warning there."""
    handed: list[EewReport] = []

    async def hook(report: EewReport) -> None:
        handed.append(report)

    app.services.eew = hook
    status, body = await post_cap(app, seismic_cap(), path="cap")
    assert status == 202 and body["state"] == "handed" and body["created"]
    assert [r.event_id for r in handed] == [PARAMETERS["EventID"]]
    assert await app.count("eew_reports") == 1 and await app.count("warnings") == 0
    status, body = await post_cap(app, seismic_cap())
    assert status == 200 and not body["created"] and len(handed) == 1
    status, body = await post_cap(app, seismic_cap(), path="cap")
    assert status == 200 and not body["created"] and body["state"] == "handed"

    parameters = dict(PARAMETERS)
    del parameters["EventID"]
    status, body = await post_cap(app, seismic_cap(parameters), path="cap")
    assert status == 201 and body["warning_id"] > 0
    assert await app.count("warnings") == 1 and len(handed) == 1


async def test_a_cap_report_missing_a_parameter_is_422_and_kept(app: Api) -> None:
    parameters = dict(PARAMETERS)
    del parameters["Magnitude"]
    status, body = await post_cap(app, seismic_cap(parameters))
    assert status == 422 and body["error"] == "invalid_eew"
    assert body["detail"] == "info/parameter Magnitude: required, and missing"
    assert await app.count("eew_reports") == 0
    row = await app.pool.fetchrow("SELECT feed, error, body FROM rejected_messages")
    assert row is not None and (row["feed"], row["error"]) == ("cma", "invalid_eew")
    assert "EventDepth" in row["body"]


async def test_invalid_cap_is_refused_as_any_cap(app: Api) -> None:
    status, body = await post_cap(app, b"<alert")
    assert status == 400 and body["error"] == "malformed_xml"
    status, body = await post_cap(app, seismic_cap(event="暴雨"))
    assert status == 422 and body["error"] == "not_earthquake"
    status, body = await post_cap(app, seismic_cap(), content_type="application/json")
    assert status == 415
    errors = await app.pool.fetch("SELECT error FROM rejected_messages ORDER BY id")
    assert [r["error"] for r in errors] == [
        "malformed_xml",
        "not_earthquake",
        "unsupported_media_type",
    ]
    assert await app.count("eew_reports") == 0
