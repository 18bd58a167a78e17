"""The query parameters of the officers' lists, one model each: parsed with it, documented from
it (``warnd.web.openapi``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from warnd.app.reads import AUDIT_PAGE_MAX, AuditCursor
from warnd.app.report import ReportFormat
from warnd.app.views import (
    AudienceName,
    CalloutFilterState,
    DeliveryState,
    ProgressLevel,
    ResponderLevel,
    WarningState,
)
from warnd.web.http import MAX_ID, QueryBool, QueryModel

_CSV = (
    "csv streams every matching row (limit is ignored), UTF-8 with a BOM, times in the city's "
    "time zone (policy night.timezone)"
)

Limit = Annotated[int, Field(ge=1, le=1000, description="page size")]
Before = Annotated[
    int | None, Field(ge=1, le=MAX_ID, description="only ids below this (next page)")
]
After = Annotated[int, Field(ge=0, le=MAX_ID, description="only ids above this (next page)")]
Format = Annotated[Literal["json", "csv"], Field(description=_CSV)]


class WarningsQuery(QueryModel):
    state: WarningState | None = Field(default=None, description="only in this state")
    limit: Limit = 100
    before: Before = None


class ProgressQuery(QueryModel):
    level: ProgressLevel = Field(default="town", description="the division level to roll up to")
    within: str | None = Field(
        default=None,
        pattern=r"^[0-9]{12}$",
        description="only the divisions inside this one (12-digit code above the level)",
    )


class DeliveriesQuery(QueryModel):
    state: DeliveryState | None = Field(default=None, description="only in this state")
    audience: AudienceName | None = Field(default=None, description="only this audience")
    limit: Limit = 100
    after: After = 0
    format: Format = "json"


def _audit_cursor(value: str | None) -> str | None:
    if value is not None:
        AuditCursor.parse(value)  # ValueError says what is wrong
    return value


class AuditQuery(QueryModel):
    limit: Annotated[int, Field(ge=1, le=AUDIT_PAGE_MAX, description="page size")] = 1000
    after: Annotated[str | None, AfterValidator(_audit_cursor)] = Field(
        default=None,
        pattern=r"^[0-9]{1,20}\.[0-9]\.[0-9]{1,19}$",
        description="next_after of the previous page",
    )
    format: Format = "json"

    @property
    def cursor(self) -> AuditCursor | None:
        return AuditCursor.parse(self.after) if self.after is not None else None


_DIVISION_PREFIX = r"^([0-9]{6}|[0-9]{9}|[0-9]{12})$"


class SpeakersQuery(QueryModel):
    state: Literal["online", "offline"] | None = Field(
        default=None, description="only speakers in this state"
    )
    division: str | None = Field(
        default=None,
        pattern=_DIVISION_PREFIX,
        description="only speakers whose village code starts with this 6 (county), 9 (town) or "
        "12 (village) digit prefix",
    )
    limit: Limit = 100
    after: str = Field(default="", max_length=200, description="next_after of the previous page")


class TasksQuery(QueryModel):
    kind: Literal["door_knock", "gong"] | None = Field(default=None, description="only this kind")
    state: Literal["open", "escalated", "done", "closed"] | None = Field(
        default=None, description="only in this state"
    )
    limit: Limit = 100
    after: After = 0


class CalloutsQuery(QueryModel):
    state: CalloutFilterState | None = Field(
        default=None, description="only in this state; open means pending, notified or escalated"
    )
    level: ResponderLevel | None = Field(default=None, description="only responders of a level")
    division: str | None = Field(
        default=None,
        pattern=_DIVISION_PREFIX,
        description="only responders whose division code starts with this 6 (county), "
        "9 (town) or 12 (village) digit prefix",
    )
    overdue: QueryBool = Field(
        default=False, description="true: only open call-outs past their deadline now"
    )
    limit: Limit = 100
    after: After = 0
    format: Format = "json"


class RejectedQuery(QueryModel):
    limit: Limit = 100
    before: Before = None


class EewPreviewQuery(QueryModel):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="epicentre latitude")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="epicentre longitude")
    depth: float = Field(ge=0, le=700, allow_inf_nan=False, description="focal depth, km")
    mag: float = Field(ge=0, le=10, allow_inf_nan=False, description="magnitude")
    elapsed: float = Field(
        default=0,
        ge=0,
        le=600,
        allow_inf_nan=False,
        description="seconds after origin the countdowns are taken at (a first report comes "
        "some 5 s after origin)",
    )
    exercise: QueryBool = Field(
        default=False, description="true: count only people marked for exercises"
    )
    place: str = Field(
        default="震中",
        min_length=1,
        max_length=60,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="the place the sample texts name",
    )


class ReportQuery(QueryModel):
    format: ReportFormat = Field(
        default="json",
        description=(
            "json: the figures; xlsx: one sheet per section with Excel charts; pdf: the report "
            "in Chinese to file and print"
        ),
    )
