"""Manual warnings: validation that names the field, and the normalised form (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from warnd.core.errors import InputError, location
from warnd.core.model import Circle
from warnd.core.vocabulary import Level
from warnd.ingest.manual import ManualWarning, parse_manual

NOW = datetime(2026, 7, 29, 2, 0, 30, 123456, tzinfo=UTC)


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "hazard": "flash_flood",
        "level": "orange",
        "area": {"codes": ["370831", "370831101", "370831101201"]},
        "headline": "泗水县山洪预警",
        "area_desc": "泗水县东部山区",
    }
    base.update(changes)
    return base


def problems(payload: Any) -> str:
    with pytest.raises(InputError) as caught:
        parse_manual(payload)
    assert caught.value.code == "invalid_warning"
    return caught.value.detail


def test_codes_are_padded_to_twelve_digits_and_deduplicated() -> None:
    warning = parse_manual(body(area={"codes": ["370831", "370831000000", " 370831101 "]}))
    normalised = warning.to_normalised("zhang", NOW)
    assert normalised.area.codes == ("370831000000", "370831101000")


def test_the_normalised_form() -> None:
    warning = parse_manual(body(expires="2026-07-29T14:00:00+08:00"))
    first = warning.to_normalised("zhang", NOW)
    second = warning.to_normalised("zhang", NOW)
    assert first.sender == "officer:zhang"
    assert first.identifier != second.identifier  # unique per issue, even within one second
    assert first.identifier.startswith("warnd-20260729020030-")
    assert not set(first.identifier) & set(" ,<&")
    assert first.sent == NOW.replace(microsecond=0)
    assert (first.status, first.msg_type, first.hazard, first.level) == (
        "Actual",
        "Alert",
        "flash_flood",
        Level.ORANGE,
    )
    assert first.event == "山洪橙色预警"
    assert first.expires == datetime(2026, 7, 29, 6, 0, tzinfo=UTC)
    assert first.raw is not None
    assert '"hazard":"flash_flood"' in first.raw


def test_exercise_and_polygons_and_circles() -> None:
    warning = parse_manual(
        body(
            status="Exercise",
            area={
                "polygons": [[[35.6, 117.2], [35.7, 117.2], [35.7, 117.3]]],
                "circles": [{"lat": 35.65, "lon": 117.25, "radius_km": 5}],
            },
        )
    )
    normalised = warning.to_normalised("li", NOW)
    assert normalised.status == "Exercise"
    # An open ring is closed for the officer.
    assert normalised.area.polygons == (
        ((35.6, 117.2), (35.7, 117.2), (35.7, 117.3), (35.6, 117.2)),
    )
    assert normalised.area.circles == (Circle(lat=35.65, lon=117.25, radius_km=5.0),)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"area": {"codes": ["370831", "3708"]}},
            "area.codes[1]: '3708' is not a 6-, 9- or 12-digit division code",
        ),
        ({"area": {"codes": ["37083a"]}}, "area.codes[0]: '37083a' is not a 6-, 9- or 12-digit"),
        ({"area": {}}, "area: give at least one division code, polygon or circle"),
        ({"hazard": "tsunami"}, "hazard: 'tsunami' is not a hazard warnd knows; use one of: "),
        ({"level": "purple"}, "level: Input should be 'blue', 'yellow', 'orange' or 'red'"),
        ({"status": "Test"}, "status: Input should be 'Actual' or 'Exercise'"),
        ({"msg_type": "Cancel"}, "msg_type: Input should be 'Alert'"),
        ({"headline": "  "}, "headline: String should have at least 1 character"),
        ({"expires": "2026-07-29T14:00:00"}, "expires: Input should have timezone info"),
        ({"areas": {"codes": ["370831"]}}, "areas: Extra inputs are not permitted"),
        (
            {"area": {"polygons": [[[35.6, 117.2], [35.6, 117.2]]]}},
            "area.polygons[0]: a polygon needs at least 3 distinct [lat, lon] points",
        ),
        (
            {"area": {"circles": [{"lat": 95, "lon": 117, "radius_km": 0}]}},
            "area.circles[0].lat: Input should be less than or equal to 90; "
            "area.circles[0].radius_km: Input should be greater than 0",
        ),
    ],
)
def test_errors_name_the_field(changes: dict[str, Any], expected: str) -> None:
    assert problems(body(**changes)).startswith(expected)


def test_several_errors_are_all_reported() -> None:
    detail = problems({"hazard": "rainstorm"})
    for field in ("level", "area", "headline", "area_desc"):
        assert f"{field}: Field required" in detail


def test_a_body_that_is_not_an_object() -> None:
    assert problems([1, 2]).startswith("body: ")


def test_a_warning_over_before_it_starts_is_refused() -> None:
    warning = parse_manual(body(expires=(NOW - timedelta(minutes=1)).isoformat()))
    with pytest.raises(InputError, match=r"^expires: .* is not after now"):
        warning.to_normalised("zhang", NOW)


def test_error_location() -> None:
    assert location(("area", "codes", 1)) == "area.codes[1]"
    assert location((), whole="body") == "body"


def test_the_schema_is_generated_from_the_model() -> None:
    schema = ManualWarning.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["status"]["default"] == "Actual"
