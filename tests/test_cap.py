"""parse_cap against a corpus of real-shaped feed messages, feed mistakes and attacks.

The files in tests/cap are the messages a feed operator could send; the small builder below
makes the variations that would otherwise need a file each.
"""

from __future__ import annotations

import queue
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import tostring

import pytest
from defusedxml.ElementTree import fromstring

import warnd.ingest.cap
from warnd.core.errors import InputError
from warnd.core.model import Area, Circle, NormalisedWarning
from warnd.core.vocabulary import Level
from warnd.ingest.cap import CapError, parse_cap

CORPUS = Path(__file__).parent / "cap"
BEIJING = timezone(timedelta(hours=8))


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def rejection(body: bytes, *, max_bytes: int = 512 * 1024) -> CapError:
    with pytest.raises(CapError) as caught:
        parse_cap(body, max_bytes=max_bytes)
    return caught.value


# --- a builder for variations --------------------------------------------------------------


def area(
    desc: str = "任城区",
    *,
    polygons: tuple[str, ...] = (),
    circles: tuple[str, ...] = (),
    geocodes: tuple[str, ...] = ("370811",),
) -> str:
    parts = [f"<areaDesc>{desc}</areaDesc>"]
    parts += [f"<polygon>{polygon}</polygon>" for polygon in polygons]
    parts += [f"<circle>{circle}</circle>" for circle in circles]
    parts += [
        f"<geocode><valueName>行政区划代码</valueName><value>{code}</value></geocode>"
        for code in geocodes
    ]
    return f"<area>{''.join(parts)}</area>"


def info(
    *,
    language: str = "zh-CN",
    event: str = "暴雨",
    severity: str = "Severe",
    event_codes: tuple[str, ...] = (),
    effective: str = "",
    expires: str = "",
    headline: str = "",
    parameters: tuple[tuple[str, str], ...] = (),
    areas: tuple[str, ...] = (area(),),
) -> str:
    parts = [
        f"<language>{language}</language>" if language else "",
        f"<category>Met</category><event>{event}</event><urgency>Immediate</urgency>",
        f"<severity>{severity}</severity><certainty>Likely</certainty>",
        *(
            f"<eventCode><valueName>code</valueName><value>{v}</value></eventCode>"
            for v in event_codes
        ),
        f"<effective>{effective}</effective>" if effective else "",
        f"<expires>{expires}</expires>" if expires else "",
        f"<headline>{headline}</headline>" if headline else "",
        *(
            f"<parameter><valueName>{name}</valueName><value>{value}</value></parameter>"
            for name, value in parameters
        ),
        *areas,
    ]
    return f"<info>{''.join(parts)}</info>"


def alert(
    *,
    identifier: str = "37080041600000_20260729013000",
    sender: str = "37080041600000",
    sent: str = "2026-07-29T01:30:00+08:00",
    status: str = "Actual",
    msg_type: str = "Alert",
    scope: str = "Public",
    addresses: str = "",
    references: str = "",
    infos: tuple[str, ...] = (info(),),
    attributes: str = "",
) -> bytes:
    parts = [
        f"<identifier>{identifier}</identifier><sender>{sender}</sender><sent>{sent}</sent>",
        f"<status>{status}</status><msgType>{msg_type}</msgType><scope>{scope}</scope>",
        f"<addresses>{addresses}</addresses>" if addresses else "",
        f"<references>{references}</references>" if references else "",
        *infos,
    ]
    root = f'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"{attributes}>'
    return f"{root}{''.join(parts)}</alert>".encode()


ORIGINAL = "37080041600000,37080041600000_20260729013000,2026-07-29T01:30:00+08:00"


# --- the valid corpus ----------------------------------------------------------------------


def test_red_rainstorm_for_rencheng_maps_every_field() -> None:
    body = corpus("valid_rainstorm_red_rencheng.xml")
    warning = parse_cap(body)
    assert warning.sender == "37080041600000"
    assert warning.identifier == "37080041600000_20260729013000"
    assert warning.sent == datetime(2026, 7, 29, 1, 30, tzinfo=BEIJING)
    assert warning.sent.utcoffset() == timedelta(hours=8)
    assert (warning.status, warning.msg_type) == ("Actual", "Alert")
    assert warning.hazard == "rainstorm"  # the description's 内涝/山洪/滑坡 do not count
    assert warning.level is Level.RED
    assert warning.area == Area(codes=("370811000000",))
    assert warning.area_desc == "任城区"
    assert warning.event == "暴雨"
    assert warning.headline == "济宁市气象台发布暴雨红色预警信号"
    assert warning.description.startswith("济宁市气象台2026年7月29日1时30分发布暴雨红色预警信号")
    assert warning.instruction.startswith("1. 政府及相关部门按照职责做好防暴雨应急和抢险工作")
    assert warning.effective == datetime(2026, 7, 29, 1, 30, tzinfo=BEIJING)
    assert warning.expires == datetime(2026, 7, 29, 13, 30, tzinfo=BEIJING)
    assert warning.references == ()
    assert warning.raw == body.decode("utf-8")
    assert warning.extra == {
        "senderName": "济宁市气象台",
        "web": "http://jining.example/qx/37080041600000_20260729013000",
        "contact": "12121",
    }
    assert warning.reaches_people


def test_gb_t_35965_identifiers_are_accepted_as_they_are() -> None:
    identifiers = [
        parse_cap(corpus(name)).identifier
        for name in ("valid_rainstorm_red_rencheng.xml", "valid_update_rainstorm.xml")
    ]
    assert identifiers == ["37080041600000_20260729013000", "37080041600000_20260729043000_1"]
    for identifier in identifiers:
        assert re.fullmatch(r"\d{14}_\d{14}(_\d)?", identifier)


def test_the_chinese_block_of_a_multi_language_message_is_used() -> None:
    warning = parse_cap(corpus("valid_multilanguage_gale.xml"))
    assert warning.event == "大风"
    assert warning.headline == "济宁市气象台发布大风橙色预警信号"
    assert warning.hazard == "gale"
    # Severity says Moderate (yellow); the declared colour wins.
    assert warning.level is Level.ORANGE
    # Duplicates (6- and 12-digit forms of 嘉祥县) collapse; the station code is ignored.
    assert warning.area.codes == ("370832000000", "370829000000")
    assert warning.area_desc == "梁山县、嘉祥县"
    assert warning.extra["web"] == "http://jining.example/qx/gale"
    assert warning.extra["senderName"] == "济宁市气象台"


def test_a_polygon_and_a_machine_event_code() -> None:
    warning = parse_cap(corpus("valid_polygon_flash_flood.xml"))
    assert warning.hazard == "flash_flood"
    assert warning.level is Level.ORANGE  # from severity Severe: no colour anywhere
    assert warning.area == Area(
        polygons=(
            ((35.62, 117.30), (35.70, 117.42), (35.61, 117.55), (35.52, 117.41), (35.62, 117.30)),
        )
    )
    assert warning.extra == {"senderName": "泗水县防汛抗旱指挥部"}


def test_a_circle_and_a_roman_grade_parameter() -> None:
    warning = parse_cap(corpus("valid_circle_chemical.xml"))
    assert warning.hazard == "hazardous_chemicals"
    assert warning.level is Level.YELLOW  # 预警级别 Ⅲ级 beats severity Severe
    assert warning.area == Area(circles=(Circle(lat=35.405, lon=116.966, radius_km=3.0),))
    assert warning.area_desc == "泄漏点周边3公里"


def test_an_update_carries_its_references_and_the_new_level() -> None:
    warning = parse_cap(corpus("valid_update_rainstorm.xml"))
    assert warning.msg_type == "Update"
    assert warning.references == (ORIGINAL,)
    # "将暴雨红色预警信号降级为暴雨橙色预警信号": the level after the change verb.
    assert warning.level is Level.ORANGE
    assert warning.area.codes == ("370811000000", "370812000000")
    assert warning.area_desc == "任城区、兖州区"


def test_a_cancel_without_info() -> None:
    warning = parse_cap(corpus("valid_cancel_rainstorm.xml"))
    assert warning.msg_type == "Cancel"
    assert warning.references == (
        ORIGINAL,
        "37080041600000,37080041600000_20260729043000_1,2026-07-29T04:30:00+08:00",
    )
    assert warning.hazard == "other"
    assert warning.level is Level.BLUE
    assert warning.area.is_empty()
    assert (warning.event, warning.headline, warning.area_desc) == ("", "", "")


def test_an_exercise_keeps_its_status_and_town_and_village_codes() -> None:
    warning = parse_cap(corpus("valid_exercise_earthquake.xml"))
    assert warning.status == "Exercise"
    assert warning.reaches_people
    assert warning.hazard == "earthquake"
    assert warning.level is Level.RED
    assert "演练" in warning.headline
    assert warning.area.codes == ("370826001000", "370826101201")
    assert warning.area_desc == "夏镇街道、韩庄镇韩庄村"


def test_a_test_message_is_parsed_but_reaches_nobody() -> None:
    warning = parse_cap(corpus("valid_test_message.xml"))
    assert warning.status == "Test"
    assert not warning.reaches_people
    assert warning.hazard == "other"
    assert warning.level is Level.BLUE
    assert warning.sent == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # -00:00 is UTC
    assert warning.area.codes == ("370811002201",)


# --- the invalid and hostile corpus ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "status", "phrase"),
    [
        ("bad_external_entity.xml", "forbidden_xml", 400, "<!DOCTYPE alert> is not allowed"),
        ("bad_billion_laughs.xml", "forbidden_xml", 400, "<!DOCTYPE lolz> is not allowed"),
        ("bad_wrong_namespace.xml", "wrong_namespace", 422, "CAP 1.1 alert"),
        ("bad_z_time_zone.xml", "rule_violation", 422, "sent: '2026-07-28T17:30:00Z' ends in 'Z'"),
        (
            "bad_unclosed_polygon.xml",
            "rule_violation",
            422,
            "info[1]/area[2]/polygon[1]: ring is not closed"
            " (first point 35.62,117.30 differs from last 35.52,117.41)",
        ),
        (
            "bad_update_without_references.xml",
            "rule_violation",
            422,
            "references: required for msgType Update",
        ),
        ("bad_missing_sender.xml", "schema_invalid", 422, "alert: required element <sender>"),
        (
            "bad_wrong_element_order.xml",
            "schema_invalid",
            422,
            "info[1]/severity: <severity> is not expected here, <urgency> belongs",
        ),
        (
            "bad_private_without_addresses.xml",
            "rule_violation",
            422,
            "addresses: required when scope is Private",
        ),
        ("bad_not_xml.xml", "malformed_xml", 400, "line 1, column 1"),
        ("bad_empty.xml", "malformed_xml", 400, "body is empty"),
        (
            "bad_non_utf8_gbk.xml",
            "malformed_xml",
            400,
            "line 12, byte 379: 0xb1 is not valid UTF-8",
        ),
    ],
)
def test_bad_messages_are_refused_precisely(name: str, code: str, status: int, phrase: str) -> None:
    error = rejection(corpus(name))
    assert (error.code, error.http_status) == (code, status)
    assert phrase in error.detail


def test_every_corpus_file_is_used() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    unused = [path.name for path in CORPUS.glob("*.xml") if f'"{path.name}"' not in source]
    assert unused == []


def test_billion_laughs_is_refused_without_expanding() -> None:
    start = time.perf_counter()
    error = rejection(corpus("bad_billion_laughs.xml"))
    assert error.code == "forbidden_xml"
    assert time.perf_counter() - start < 1.0


def test_the_external_entity_is_never_read() -> None:
    error = rejection(corpus("bad_external_entity.xml"))
    assert "root:" not in error.detail  # nothing of /etc/passwd leaks into the answer


# --- size and encoding ----------------------------------------------------------------------


def test_oversize_body_is_refused_before_parsing() -> None:
    body = corpus("valid_rainstorm_red_rencheng.xml")
    error = rejection(body, max_bytes=1000)
    assert (error.code, error.http_status) == ("too_large", 413)
    assert f"body is {len(body)} bytes; at most 1000 bytes" in error.detail
    assert parse_cap(body, max_bytes=len(body)).identifier  # the limit itself is allowed


def test_a_utf16_body_is_refused_as_not_utf8() -> None:
    body = corpus("valid_test_message.xml").decode().encode("utf-16")
    error = rejection(body)
    assert (error.code, error.http_status) == ("malformed_xml", 400)
    assert "line 1, byte 0: 0xff is not valid UTF-8" in error.detail


def test_a_byte_order_mark_is_tolerated_and_dropped_from_raw() -> None:
    body = corpus("valid_test_message.xml")
    warning = parse_cap(b"\xef\xbb\xbf" + body)
    assert warning.raw == body.decode()


def test_a_wrong_encoding_declaration_on_a_utf8_body_does_not_garble_text() -> None:
    body = corpus("valid_rainstorm_red_rencheng.xml").replace(b'"UTF-8"', b'"ISO-8859-1"')
    assert parse_cap(body).event == "暴雨"


def test_a_mismatched_tag_is_reported_with_its_line_and_column() -> None:
    body = corpus("valid_rainstorm_red_rencheng.xml").replace(b"</event>", b"</evnt>")
    error = rejection(body)
    assert (error.code, error.http_status) == ("malformed_xml", 400)
    assert error.detail.startswith("line 12, column 16: mismatched tag;")  # at "evnt"


def test_a_truncated_body_is_malformed() -> None:
    body = corpus("valid_rainstorm_red_rencheng.xml")
    error = rejection(body[: body.index(b"<urgency>")])
    assert error.code == "malformed_xml"
    assert "no element found" in error.detail


# --- namespace and schema -------------------------------------------------------------------


def test_an_alert_without_namespace_is_refused() -> None:
    body = alert().replace(b' xmlns="urn:oasis:names:tc:emergency:cap:1.2"', b"")
    error = rejection(body)
    assert (error.code, error.http_status) == ("wrong_namespace", 422)
    assert "root element <alert> has no namespace" in error.detail


def test_an_enumeration_error_shows_the_value_and_the_place() -> None:
    error = rejection(alert(infos=(info(severity="Big"),)))
    assert error.code == "schema_invalid"
    assert error.detail.startswith("info[1]/severity: 'Big': value must be one of")


def test_an_impossible_date_is_a_schema_error_with_the_expected_form() -> None:
    error = rejection(alert(sent="2026-13-01T00:00:00+08:00"))
    assert error.code == "schema_invalid"
    assert "sent: '2026-13-01T00:00:00+08:00' is not a CAP date-time" in error.detail


def test_an_unknown_element_is_named() -> None:
    body = alert().replace(b"<scope>Public</scope>", b"<scope>Public</scope><priority>1</priority>")
    error = rejection(body)
    assert error.code == "schema_invalid"
    assert error.detail.startswith("priority: <priority> is not allowed here")


def test_a_deeply_nested_signature_is_refused_without_recursing() -> None:
    nested = "<Object>" * 10_000 + "</Object>" * 10_000
    signature = f'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">{nested}</Signature>'
    body = alert().replace(b"</alert>", signature.encode() + b"</alert>")
    error = rejection(body)
    assert (error.code, error.http_status) == ("schema_invalid", 422)
    assert "nested more than 32 deep" in error.detail


@pytest.fixture
def listener() -> Iterator[tuple[int, queue.Queue[str]]]:
    """A local TCP port that records every connection made to it, in the order they were made."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    seen: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, peer = server.accept()
            except TimeoutError:
                continue
            seen.put(str(peer))
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


def test_schema_location_hints_in_a_message_are_never_fetched(
    listener: tuple[int, queue.Queue[str]],
) -> None:
    port, seen = listener
    hints = (
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation='
        f'"urn:oasis:names:tc:emergency:cap:1.2 http://127.0.0.1:{port}/cap.xsd"'
    )
    assert parse_cap(alert(attributes=hints)).hazard == "rainstorm"
    # A connection of the test's own, made after the parse: the port accepts connections in the
    # order they were made, so a fetch by the parser would be seen before this one.
    with socket.create_connection(("127.0.0.1", port)) as knock:
        assert seen.get(timeout=10) == str(knock.getsockname())


# --- rules the schema cannot check ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        (
            {"sender": "3708 0041600000"},
            "sender '3708 0041600000': contains a space at character 5",
        ),
        ({"identifier": "a,b"}, "identifier 'a,b': contains a comma at character 2"),
        ({"identifier": "a&amp;b"}, "identifier 'a&b': contains '&' at character 2"),
        ({"sender": "x&lt;y"}, "sender 'x<y': contains '<' at character 2"),
        ({"msg_type": "Cancel", "infos": ()}, "references: required for msgType Cancel"),
        (
            {"msg_type": "Update", "references": "a,b"},
            "references entry 1 'a,b': is not a sender,identifier,sent triple (2 comma-separated",
        ),
        (
            {"msg_type": "Update", "references": "a,b,2026-07-29T01:30:00Z"},
            "references entry 1 'a,b,2026-07-29T01:30:00Z': sent part '2026-07-29T01:30:00Z'",
        ),
        ({"scope": "Private", "addresses": " "}, "addresses: required when scope is Private"),
    ],
)
def test_header_rules(fields: dict[str, Any], phrase: str) -> None:
    error = rejection(alert(**fields))
    assert (error.code, error.http_status) == ("rule_violation", 422)
    assert phrase in error.detail


def test_private_with_addresses_and_update_with_references_pass() -> None:
    warning = parse_cap(
        alert(scope="Private", addresses="jining-duty", msg_type="Update", references=ORIGINAL)
    )
    assert warning.references == (ORIGINAL,)


@pytest.mark.parametrize(
    ("times", "phrase"),
    [
        (
            {"expires": "2026-07-29T12:00:00"},
            "info[1]/expires: '2026-07-29T12:00:00' has no UTC offset; CAP 1.2 requires one"
            " (if it is Beijing time, write 2026-07-29T12:00:00+08:00)",
        ),
        ({"effective": "2026-07-29T01:30:00z"}, "info[1]/effective: '2026-07-29T01:30:00z' ends"),
        (
            {"expires": "9999-12-31T23:30:00Z"},
            "info[1]/expires: '9999-12-31T23:30:00Z' ends in 'Z'; CAP 1.2 requires a numeric UTC"
            " offset, e.g. +08:00",
        ),
        (
            {"expires": "9999-12-31T24:00:00-12:00"},
            "info[1]/expires: '9999-12-31T24:00:00-12:00' is outside the range",
        ),
        (
            {"expires": "2026-07-29T01:00:00+08:00"},
            "info[1]/expires: 2026-07-29T01:00:00+08:00 is not after sent",
        ),
        (
            {"effective": "2026-07-29T06:00:00+08:00", "expires": "2026-07-29T05:00:00+08:00"},
            "info[1]/expires: 2026-07-29T05:00:00+08:00 is not after effective"
            " 2026-07-29T06:00:00+08:00",
        ),
    ],
)
def test_time_rules(times: dict[str, Any], phrase: str) -> None:
    error = rejection(alert(infos=(info(**times),)))
    assert (error.code, error.http_status) == ("rule_violation", 422)
    assert phrase in error.detail


def test_expiry_compares_instants_not_wall_clocks() -> None:
    # 18:00 UTC on the 28th is 02:00 in Beijing on the 29th: after sent.
    warning = parse_cap(alert(infos=(info(expires="2026-07-28T18:00:00-00:00"),)))
    assert warning.expires == datetime(2026, 7, 29, 2, 0, tzinfo=BEIJING)


def test_end_of_day_as_24_00_is_the_next_midnight() -> None:
    warning = parse_cap(alert(infos=(info(expires="2026-07-29T24:00:00+08:00"),)))
    assert warning.expires == datetime(2026, 7, 30, 0, 0, tzinfo=BEIJING)


@pytest.mark.parametrize(
    ("geometry", "phrase"),
    [
        (
            {"polygons": ("35.6,117.3 35.7,117.4 35.6,117.3",)},
            "info[1]/area[1]/polygon[1]: ring has 3 points; a CAP polygon needs at least 4",
        ),
        (
            {"polygons": ("117.30,35.62 117.42,35.70 117.55,35.61 117.30,35.62",)},
            "polygon[1]: point 1: latitude 117.30 is outside [-90, 90]; latitude and longitude"
            " look swapped",
        ),
        (
            {"polygons": ("35.6,117.3 35.7;117.4 35.5,117.5 35.6,117.3",)},
            "polygon[1]: point 2: '35.7;117.4' is not a lat,lon pair",
        ),
        (
            {"polygons": ("35.6,117.3 35.7,nan 35.5,117.5 35.6,117.3",)},
            "point 2: '35.7,nan' is not a lat,lon pair",
        ),
        ({"circles": ("35.4,116.9 0",)}, "info[1]/area[1]/circle[1]: radius 0 km must be greater"),
        ({"circles": ("35.4,196.9 2",)}, "circle[1]: centre: longitude 196.9 is outside"),
        ({"circles": ("35.4,116.9",)}, "circle[1]: '35.4,116.9' is not 'lat,lon radius'"),
        ({"circles": ("35.4,116.9 1e3",)}, "circle[1]: radius '1e3' is not a number"),
    ],
)
def test_geometry_rules(geometry: dict[str, Any], phrase: str) -> None:
    error = rejection(alert(infos=(info(areas=(area(**geometry),)),)))
    assert (error.code, error.http_status) == ("rule_violation", 422)
    assert phrase in error.detail


def test_rules_are_checked_in_every_language_block() -> None:
    broken = info(language="en-US", event="Rainstorm", areas=(area(circles=("35.4,116.9 -1",)),))
    error = rejection(alert(infos=(broken, info())))
    assert error.code == "rule_violation"
    assert error.detail.startswith("info[1]/area[1]/circle[1]: radius -1 km")


def test_many_problems_are_summarised() -> None:
    bad_area = area(polygons=("1,1 2,2 1,1",) * 4)
    error = rejection(alert(sender="a b", infos=(info(areas=(bad_area,)),)))
    assert error.detail.startswith("sender 'a b': contains a space")
    assert error.detail.endswith("; and 2 more")


def ring(points: int, *, lat: float = 35.4, lon: float = 116.6) -> str:
    """A closed ring of ``points`` points (the first repeated as the last) round a centre."""
    step = 0.3 / points
    coordinates = [f"{lat + i * step:.5f},{lon + (i % 2) * 0.1:.5f}" for i in range(points - 1)]
    return " ".join([*coordinates, coordinates[0]])


def test_area_limits_are_at_the_limit_accepted() -> None:
    polygons = (ring(2000), *(ring(4),) * 31)
    shapes = area(polygons=polygons, circles=("35.4,116.9 2",) * 32, geocodes=())
    codes = area("许庄街道", geocodes=tuple(f"370811{i:06d}" for i in range(1, 501)))
    warning = parse_cap(alert(infos=(info(areas=(shapes, codes)),)))
    assert (len(warning.area.polygons), len(warning.area.circles)) == (32, 32)
    assert len(warning.area.polygons[0]) == 2000
    assert len(warning.area.codes) == 500


@pytest.mark.parametrize(
    ("areas", "phrase"),
    [
        (
            (area(circles=("35.4,116.9 2",) * 40), area(polygons=(ring(4),) * 25)),
            "info[1]: 65 polygons and circles in its areas; at most 64 are accepted",
        ),
        (
            (area(), area(polygons=(ring(4), ring(2001)))),
            "info[1]/area[2]/polygon[2]: 2001 points; at most 2000 are accepted in one polygon",
        ),
        (
            (area(geocodes=("370811",) * 300), area(geocodes=("370812",) * 201)),
            "info[1]: 501 geocodes in its areas; at most 500 are accepted",
        ),
    ],
)
def test_areas_beyond_the_limits_are_refused(areas: tuple[str, ...], phrase: str) -> None:
    error = rejection(alert(infos=(info(areas=areas),)))
    assert (error.code, error.http_status) == ("rule_violation", 422)
    assert phrase in error.detail


def test_area_limits_apply_to_the_chosen_block_only() -> None:
    crowded = (area(circles=("35.4,116.9 2",) * 65),)
    english = info(language="en-US", event="Rainstorm", areas=crowded)
    warning = parse_cap(alert(infos=(english, info())))
    assert warning.area.circles == ()

    english = info(language="en-US", event="Rainstorm")
    error = rejection(alert(infos=(english, info(areas=crowded))))
    assert error.detail.startswith("info[2]: 65 polygons and circles")


def test_every_area_limit_broken_is_named() -> None:
    heavy = area(circles=("35.4,116.9 2",) * 64, polygons=(ring(2500),), geocodes=("370811",) * 501)
    error = rejection(alert(infos=(info(areas=(heavy,)),)))
    assert "65 polygons and circles" in error.detail
    assert "info[1]/area[1]/polygon[1]: 2500 points" in error.detail
    assert "501 geocodes" in error.detail


# --- what warnd cannot use ------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", ["Ack", "Error"])
def test_acks_and_errors_are_unsupported(msg_type: str) -> None:
    error = rejection(alert(msg_type=msg_type, references=ORIGINAL, infos=()))
    assert (error.code, error.http_status) == ("unsupported", 422)
    assert error.detail.startswith(f"msgType: {msg_type} messages")


@pytest.mark.parametrize("msg_type", ["Alert", "Update"])
def test_an_alert_or_update_without_info_is_unsupported(msg_type: str) -> None:
    error = rejection(alert(msg_type=msg_type, references=ORIGINAL, infos=()))
    assert (error.code, error.http_status) == ("unsupported", 422)
    assert f"a {msg_type} without an <info> block" in error.detail


def test_an_alert_without_area_breaks_a_rule() -> None:
    error = rejection(alert(infos=(info(areas=()),)))
    assert (error.code, error.http_status) == ("rule_violation", 422)
    assert "info[1]: has no <area>; an Alert must say where it applies" in error.detail


def test_an_area_warnd_cannot_locate_is_unsupported() -> None:
    unlocatable = area("南四湖湖区", geocodes=("3708", "ABCDEF", "３７０８１１"))
    error = rejection(alert(infos=(info(areas=(unlocatable,)),)))
    assert (error.code, error.http_status) == ("unsupported", 422)
    assert "info[1]: no area can be located ('南四湖湖区')" in error.detail


def test_the_chosen_language_block_decides_the_area() -> None:
    english = info(language="en-US", event="Rainstorm", areas=(area(geocodes=("370832",)),))
    chinese = info(language="zh-cn", areas=(area(geocodes=("370883",)),))
    warning = parse_cap(alert(infos=(english, chinese)))
    assert warning.area.codes == ("370883000000",)


def test_without_chinese_the_first_block_is_used() -> None:
    english = info(language="en-US", event="Gale", areas=(area(geocodes=("370832",)),))
    french = info(language="fr-FR", event="Rainstorm")
    warning = parse_cap(alert(infos=(english, french)))
    assert (warning.hazard, warning.area.codes) == ("gale", ("370832000000",))


def test_traditional_chinese_is_taken_when_there_is_no_simplified() -> None:
    english = info(language="en-US", event="Gale")
    chinese = info(language="zh-TW", event="暴雪")
    assert parse_cap(alert(infos=(english, chinese))).hazard == "blizzard"


# --- hazard and level -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "hazard"),
    [
        ("暴雨", "rainstorm"),
        ("雷雨大风", "thunder"),
        ("大风", "gale"),
        ("道路结冰", "road_icing"),
        ("森林火险", "forest_fire"),
        ("泥石流", "geological"),
        ("地质灾害气象风险", "geological"),
        ("城市内涝", "waterlogging"),
        ("地震", "earthquake"),
        ("霾", "haze"),
        ("Flash Flood", "flash_flood"),
        ("Floods", "flood"),
        ("Heavy rain", "rainstorm"),
        ("Dust storm", "sandstorm"),
        ("Cold Wave", "cold_wave"),
        ("Road icing", "road_icing"),
        ("Hazardous chemicals", "hazardous_chemicals"),
        ("Industrial accident", "other"),
        ("Heating failure", "other"),
        ("停电通知", "other"),
    ],
)
def test_hazard_from_event(event: str, hazard: str) -> None:
    assert parse_cap(alert(infos=(info(event=event),))).hazard == hazard


def test_hazard_from_event_code_comes_first() -> None:
    warning = parse_cap(alert(infos=(info(event="暴雨", event_codes=("X99", "HAIL")),)))
    assert warning.hazard == "hail"


def test_hazard_from_headline_when_the_event_names_none() -> None:
    warning = parse_cap(alert(infos=(info(event="气象预警", headline="济宁市发布冰雹橙色预警"),)))
    assert warning.hazard == "hail"


@pytest.mark.parametrize(
    ("fields", "level"),
    [
        ({"severity": "Extreme"}, Level.RED),
        ({"severity": "Severe"}, Level.ORANGE),
        ({"severity": "Moderate"}, Level.YELLOW),
        ({"severity": "Minor"}, Level.BLUE),
        ({"severity": "Minor", "headline": "发布暴雨红色预警信号"}, Level.RED),
        ({"severity": "Extreme", "event": "暴雨蓝色预警"}, Level.BLUE),
        ({"severity": "Unknown", "headline": "Yellow rainstorm warning"}, Level.YELLOW),
        ({"severity": "Minor", "parameters": (("alertLevel", "II"),)}, Level.ORANGE),
        ({"severity": "Minor", "parameters": (("预警级别", "Ⅰ级"),)}, Level.RED),
        ({"severity": "Minor", "parameters": (("预警等级", "较重"),)}, Level.YELLOW),
        ({"severity": "Minor", "parameters": (("颜色", "Orange"),)}, Level.ORANGE),
        # A parameter beats the headline; a level-named parameter beats any other parameter.
        (
            {
                "headline": "红色预警",
                "parameters": (("说明", "原黄色预警"), ("warningLevel", "IV")),
            },
            Level.BLUE,
        ),
        ({"headline": "暴雨橙色预警升级为红色预警"}, Level.RED),
        ({"headline": "Orange warning downgraded to yellow"}, Level.YELLOW),
        # Two levels and no word saying which is current: the higher one.
        ({"severity": "Minor", "headline": "暴雨黄色预警、雷电红色预警"}, Level.RED),
        # Roman numerals are read in parameters only: "Ⅳ级应急响应" is a response level.
        ({"severity": "Severe", "headline": "启动Ⅳ级应急响应"}, Level.ORANGE),
        # "Reduced" is not "red".
        ({"severity": "Minor", "headline": "Reduced visibility"}, Level.BLUE),
    ],
)
def test_level(fields: dict[str, Any], level: Level) -> None:
    assert parse_cap(alert(infos=(info(**fields),))).level is level


def test_unknown_severity_without_a_colour_breaks_a_rule() -> None:
    error = rejection(alert(infos=(info(severity="Unknown"),)))
    assert (error.code, error.http_status) == ("rule_violation", 422)
    assert error.detail.startswith("info[1]/severity: Unknown, and no colour")


def test_a_cancel_with_unknown_severity_is_still_accepted() -> None:
    warning = parse_cap(
        alert(msg_type="Cancel", references=ORIGINAL, infos=(info(severity="Unknown"),))
    )
    assert (warning.msg_type, warning.level, warning.hazard) == ("Cancel", Level.BLUE, "rainstorm")


# --- the error value and the last guard -----------------------------------------------------


def test_cap_error_is_an_input_error_whose_message_is_the_detail() -> None:
    error = rejection(b"")
    assert isinstance(error, InputError)
    assert str(error) == error.detail
    assert repr(error) == f"CapError('malformed_xml', {error.detail!r})"


def test_an_unforeseen_failure_becomes_a_cap_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> NormalisedWarning:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(warnd.ingest.cap, "_to_warning", explode)
    error = rejection(corpus("valid_rainstorm_red_rencheng.xml"))
    assert (error.code, error.http_status) == ("internal_error", 500)
    assert "RecursionError" in error.detail
    assert isinstance(error.__cause__, RecursionError)


def test_mangled_messages_are_refused_not_crashed() -> None:
    """Seeded mutations of the valid corpus: every outcome is a warning or a specific refusal."""
    pool = [
        "",
        " ",
        "Z",
        "2026-07-29T24:00:00+08:00",
        "2026-02-30T00:00:00+08:00",
        "0001-01-01T00:00:00+08:00",
        "9999-12-31T23:59:59-12:00",
        "90,180 -90,-180 0,0 90,180",
        "1,1",
        ",,",
        "x,y,2026-07-29T01:30:00+08:00",
        "Unknown",
        "Cancel",
        "Private",
        "IIII级",
        "红色橙色",
        "1e999,1",
        "35.4,116.9 1e-400",
        "１２３４５６",
        "\x01",
        "a b",
        "<&>",
    ]
    rng = random.Random(20260729)
    originals = [path.read_bytes() for path in sorted(CORPUS.glob("valid_*.xml"))]
    outcomes: set[str] = set()
    for _ in range(400):
        root = fromstring(rng.choice(originals))
        elements = list(root.iter())
        for _ in range(rng.randint(1, 3)):
            element = rng.choice(elements)
            if len(element) == 0:
                element.text = rng.choice(pool)
            else:
                element.remove(rng.choice(list(element)))
        try:
            parse_cap(tostring(root, encoding="utf-8"))
            outcomes.add("accepted")
        except CapError as error:
            assert error.code != "internal_error", repr(error.__cause__)
            outcomes.add(error.code)
    assert {"accepted", "schema_invalid", "rule_violation"} <= outcomes
