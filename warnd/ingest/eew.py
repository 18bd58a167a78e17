"""Earthquake early-warning intake: the seismic service's report, as compact JSON or as CAP 1.2,
becomes an ``EewReport`` (warnd.core.eew), or a refusal that names the field and the fix.

Both shapes carry the same facts (DOMAIN §3): event id, report number (1, 2, 3… for one event),
origin time, epicentre, depth, magnitude, place, final and cancel flags, status. The JSON model
is strict — unknown keys, strings for numbers and numbers for flags are refused — because a
misspelt ``"cancel"`` silently read as false would leave a false alarm standing. Status has no
default: a test feed that forgets it must not reach the public.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from warnd.core.eew import EEW_STATUSES, EewReport, EewStatus
from warnd.core.errors import InputError, location
from warnd.core.model import NormalisedWarning

EewErrorCode = Literal["malformed_json", "invalid_eew", "not_earthquake"]

_HTTP_STATUS: Final[dict[EewErrorCode, int]] = {
    "malformed_json": 400,
    "invalid_eew": 422,
    "not_earthquake": 422,
}

# An event id is a key across feeds and processes, and it appears in logs and texts' audit:
# printable ASCII without spaces or commas, like a CAP identifier.
EVENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
# A place is put into texts to people: no control characters (NUL cannot be stored at all).
PLACE_PATTERN: Final = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
MAX_REPORT_NO: Final = 9999
MAX_DEPTH_KM: Final = 700  # the deepest earthquakes recorded are about 700 km down
_MAX_REPORTED: Final = 10  # every field of a message, at worst


class EewError(InputError):
    """An early-warning message was refused: ``code`` names the kind, ``detail`` each field."""

    def __init__(self, code: EewErrorCode, detail: str) -> None:
        super().__init__(detail, code=code)
        self.http_status = _HTTP_STATUS[code]


class EewMessage(BaseModel):
    """``POST /api/v1/eew``: one report of the seismic service about one event."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={
            "example": {
                "event_id": "CEA20261202193000.0001",
                "report_no": 1,
                "origin_time": "2026-12-02T19:30:00.000+08:00",
                "lat": 35.40,
                "lon": 116.60,
                "depth_km": 10,
                "magnitude": 5.5,
                "place": "山东济宁市微山县",
                "final": False,
                "cancel": False,
                "status": "Actual",
            }
        },
    )

    event_id: str = Field(
        pattern=EVENT_ID_PATTERN,
        description="the event's id, the same in every report of the event (letters, digits, "
        "'.', '_', ':', '-'; at most 64)",
    )
    report_no: int = Field(
        ge=1, le=MAX_REPORT_NO, description="1 for the first report of the event, then 2, 3…"
    )
    origin_time: AwareDatetime = Field(
        description="when the earthquake began: ISO 8601 with a UTC offset, e.g. "
        "2026-12-02T19:30:00+08:00"
    )
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="epicentre, WGS 84")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="epicentre, WGS 84")
    depth_km: float = Field(ge=0, le=MAX_DEPTH_KM, allow_inf_nan=False, description="focal depth")
    magnitude: float = Field(ge=0, le=10, allow_inf_nan=False)
    place: str = Field(
        min_length=1,
        max_length=60,
        pattern=PLACE_PATTERN,
        description="the epicentre's name, as texts name it (e.g. 山东济宁市微山县)",
    )
    final: bool = Field(default=False, description="true: no further report of this event")
    cancel: bool = Field(default=False, description="true: the event is withdrawn (误报)")
    status: EewStatus = Field(
        description="Actual reaches the public; Exercise only people marked for exercises; "
        "Test nobody"
    )

    def to_report(self) -> EewReport:
        return EewReport(
            event_id=self.event_id,
            report_no=self.report_no,
            origin_time=self.origin_time,
            lat=self.lat,
            lon=self.lon,
            depth_km=self.depth_km,
            magnitude=self.magnitude,
            place=self.place.strip(),
            final=self.final,
            cancel=self.cancel,
            status=self.status,
        )


FIELDS: Final = ", ".join(EewMessage.model_fields)


def parse_eew_json(body: bytes | str) -> EewReport:
    """The report in a JSON body, or ``EewError`` naming every field that is wrong."""
    try:
        message = EewMessage.model_validate_json(body)
    except ValidationError as exc:
        raise _refusal(exc.errors(include_url=False)) from None
    return message.to_report()


def _refusal(errors: list[ErrorDetails]) -> EewError:
    problems: list[str] = []
    for error in errors:
        kind = error["type"]
        where = location(error["loc"], whole="body")
        if kind == "json_invalid":
            reason = error.get("ctx", {}).get("error", error["msg"])
            return EewError("malformed_json", f"body is not JSON: {reason}")
        if kind in ("model_type", "model_attributes_type") and not error["loc"]:
            return EewError(
                "invalid_eew",
                f"body: must be one JSON object with the fields {FIELDS}",
            )
        problems.append(f"{where}: {_problem(kind, error)}")
    shown = "; ".join(problems[:_MAX_REPORTED])
    more = len(problems) - _MAX_REPORTED
    return EewError("invalid_eew", f"{shown}; and {more} more" if more > 0 else shown)


_TYPE_PROBLEMS: Final = {
    "float_type": "must be a JSON number",
    "int_type": "must be a whole JSON number",
    "int_from_float": "must be a whole JSON number",
    "bool_type": "must be true or false",
    "string_type": "must be a JSON string",
}


def _problem(kind: str, error: ErrorDetails) -> str:
    got = _show(error.get("input"))
    loc = error["loc"]
    fixed = {
        "missing": "required, and missing",
        "extra_forbidden": f"is not a field of an early-warning message (the fields are {FIELDS})",
        "timezone_aware": f"{got} has no UTC offset; write it with one, e.g. "
        "2026-12-02T19:30:00+08:00 for Beijing time",
        "literal_error": f"{got} is not one of {', '.join(EEW_STATUSES)}",
    }
    if kind in fixed:
        return fixed[kind]
    if kind in _TYPE_PROBLEMS:
        return f"{_TYPE_PROBLEMS[kind]} (got {got})"
    if kind.startswith("datetime"):
        return f"{got} is not an ISO 8601 date-time with offset, e.g. 2026-12-02T19:30:00+08:00"
    if kind == "string_pattern_mismatch" and loc == ("event_id",):
        return (
            f"{got} is not an event id: 1–64 letters, digits, '.', '_', ':' or '-', starting "
            "with a letter or digit"
        )
    if kind == "string_pattern_mismatch" and loc == ("place",):
        return f"{got} must hold visible text and no control characters"
    return f"{error['msg']} (got {got})"


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- CAP --------------------------------------------------------------------------------------

# valueName → what it carries. Matched without regard to case: feeds differ (EventID, EventId).
CAP_PARAMETERS: Final = {
    "eventid": "EventID",
    "reportnum": "ReportNum",
    "magnitude": "Magnitude",
    "eventdepth": "EventDepth",
    "origintime": "OriginTime",
}
_NUMBER: Final = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_CAP_TIME: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?[-+]\d{2}:\d{2}")


def is_early_warning(warning: NormalisedWarning) -> bool:
    """An earthquake that names its seismic event (parameter EventID): an early-warning report,
    wherever it was posted."""
    return warning.hazard == "earthquake" and any(
        name.strip().lower() == "eventid" for name, _ in warning.parameters
    )


def eew_from_cap(warning: NormalisedWarning) -> EewReport:
    """The report a seismic feed's CAP 1.2 message carries (``parse_cap`` has validated it).

    Its facts are ``<parameter>``s EventID, ReportNum, Magnitude, EventDepth (km) and OriginTime
    (optionally Final: true/false), the epicentre the first ``<circle>`` ("lat,lon radius"), the
    place its ``<areaDesc>``; msgType Cancel withdraws the event (it must still carry the info
    block with EventID, so that warnd knows which event). ``EewError`` lists every problem.
    """
    if warning.hazard != "earthquake":
        raise EewError(
            "not_earthquake",
            f"info/event: {warning.event or warning.headline!r} is not an earthquake (地震); an "
            "early warning names it in eventCode or event",
        )
    problems: list[str] = []
    values: dict[str, str] = {}
    for name, value in warning.parameters:
        key = name.strip().lower()
        if key in values and values[key] != value:
            problems.append(f"info/parameter {name}: given twice, with different values")
        values.setdefault(key, value.strip())

    def required(key: str) -> str | None:
        if key not in values:
            problems.append(f"info/parameter {CAP_PARAMETERS[key]}: required, and missing")
            return None
        return values[key]

    event_id = required("eventid")
    if event_id is not None and not re.fullmatch(EVENT_ID_PATTERN, event_id):
        problems.append(
            f"info/parameter EventID: {_show(event_id)} is not an event id (1–64 letters, "
            "digits, '.', '_', ':' or '-')"
        )
    report_no = _whole(required("reportnum"), "ReportNum", 1, MAX_REPORT_NO, problems)
    magnitude = _number(required("magnitude"), "Magnitude", 0, 10, problems)
    depth_text = required("eventdepth")
    if depth_text is not None:
        depth_text = depth_text.removesuffix("km").removesuffix("KM").strip()
    depth = _number(depth_text, "EventDepth", 0, MAX_DEPTH_KM, problems, unit=" km")
    origin = _origin(required("origintime"), problems)
    final = _flag(values.get("final"), problems)
    if not warning.area.circles:
        problems.append(
            "info/area: no <circle> with the epicentre; give it as 'lat,lon radius', e.g. "
            "<circle>35.40,116.60 0</circle>"
        )
    if warning.status not in EEW_STATUSES:
        problems.append(
            f"status: {warning.status} is not for early warning ({', '.join(EEW_STATUSES)})"
        )
    place = warning.area_desc.strip() or warning.headline.strip()
    if problems:
        shown = "; ".join(problems[:_MAX_REPORTED])
        more = len(problems) - _MAX_REPORTED
        raise EewError("invalid_eew", f"{shown}; and {more} more" if more > 0 else shown)
    assert event_id and report_no is not None and magnitude is not None and depth is not None
    assert origin is not None  # each None above added a problem
    epicentre = warning.area.circles[0]
    return EewReport(
        event_id=event_id,
        report_no=report_no,
        origin_time=origin,
        lat=epicentre.lat,
        lon=epicentre.lon,
        depth_km=depth,
        magnitude=magnitude,
        place=place[:60],
        final=final,
        cancel=warning.msg_type == "Cancel",
        status=warning.status,  # type: ignore[arg-type]  # checked against EEW_STATUSES above
    )


def _number(
    text: str | None,
    name: str,
    low: float,
    high: float,
    problems: list[str],
    *,
    unit: str = "",
) -> float | None:
    if text is None:
        return None
    if not _NUMBER.fullmatch(text):
        problems.append(f"info/parameter {name}: {_show(text)} is not a number")
        return None
    value = float(text)
    if not (math.isfinite(value) and low <= value <= high):
        problems.append(f"info/parameter {name}: {text}{unit} is outside {low:g}–{high:g}{unit}")
        return None
    return value


def _whole(text: str | None, name: str, low: int, high: int, problems: list[str]) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        problems.append(f"info/parameter {name}: {_show(text)} is not a whole number")
        return None
    value = int(text)
    if not low <= value <= high:
        problems.append(f"info/parameter {name}: {value} is outside {low}–{high}")
        return None
    return value


def _origin(text: str | None, problems: list[str]) -> datetime | None:
    if text is None:
        return None
    if not _CAP_TIME.fullmatch(text):
        problems.append(
            f"info/parameter OriginTime: {_show(text)} is not a date-time with a numeric offset, "
            "e.g. 2026-12-02T19:30:00+08:00"
        )
        return None
    try:
        moment = datetime.fromisoformat(text)
        moment.astimezone(UTC)
    except (ValueError, OverflowError):
        problems.append(f"info/parameter OriginTime: {_show(text)} is not a valid date-time")
        return None
    return moment


def _flag(text: str | None, problems: list[str]) -> bool:
    if text is None:
        return False
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    problems.append(f"info/parameter Final: {_show(text)} is not true or false")
    return False
