"""Manual warnings: what a duty officer sends as JSON, validated, and its normalised form.

The model is strict (unknown fields are refused) because a typo in a field name must not
silently drop the area or the level of a warning that will wake a city. Validation errors are
turned into one line per problem that names the field, e.g.
``area.codes[1]: '3708' is not a 6-, 9- or 12-digit division code``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from warnd.core.errors import InputError, describe_errors
from warnd.core.geometry import MAX_POLYGON_POINTS, MAX_SHAPES, ring_problem
from warnd.core.model import Area, Circle, NormalisedWarning
from warnd.core.texts import VISIBLE
from warnd.core.vocabulary import HAZARDS, Level

# Division codes by level: county (6), town (9), village (12); stored padded to 12 digits.
_CODE_LENGTHS = (6, 9, 12)


def _division_code(value: str) -> str:
    code = value.strip()
    if not (code.isascii() and code.isdigit() and len(code) in _CODE_LENGTHS):
        raise PydanticCustomError(
            "division_code",
            "{value} is not a 6-, 9- or 12-digit division code",
            {"value": repr(value)},
        )
    return code.ljust(12, "0")


DivisionCode = Annotated[str, AfterValidator(_division_code)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


def _closed_ring(ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
    points = list(ring)
    if points and points[0] != points[-1]:
        points.append(points[0])
    if len(set(points)) < 3:
        raise PydanticCustomError(
            "polygon_too_small", "a polygon needs at least 3 distinct [lat, lon] points"
        )
    # Points numbered from 0, as in the field names (area.polygons[0][2]).
    problem = ring_problem(points, first_number=0)
    if problem:
        raise PydanticCustomError("polygon_invalid", "{problem}", {"problem": problem})
    return points


Ring = Annotated[
    list[tuple[Latitude, Longitude]],
    # Fewer than 3 points are refused with the ring's own words (_closed_ring); the document
    # states it as a minimum.
    Field(max_length=MAX_POLYGON_POINTS, json_schema_extra={"minItems": 3}),
    AfterValidator(_closed_ring),
]


class ManualCircle(BaseModel):
    """A circle around a point (WGS 84), radius in kilometres."""

    model_config = ConfigDict(extra="forbid")

    lat: Latitude
    lon: Longitude
    radius_km: float = Field(gt=0, le=500, allow_inf_nan=False)


class ManualArea(BaseModel):
    """Where the warning applies: division codes, polygons and circles (any mix, at least one)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"minItems": 1}}}
                for name in ("codes", "polygons", "circles")
            ]
        },
    )

    codes: list[DivisionCode] = Field(
        default_factory=list,
        description="6-digit county, 9-digit town or 12-digit village codes; padded to 12 digits",
    )
    polygons: list[Ring] = Field(
        default_factory=list,
        max_length=MAX_SHAPES,
        description="rings of [lat, lon] points (WGS 84); an open ring is closed for you; at "
        "least 3 distinct points, not all on one line, no two edges crossing",
    )
    circles: list[ManualCircle] = Field(default_factory=list, max_length=MAX_SHAPES)

    @model_validator(mode="after")
    def _not_empty(self) -> ManualArea:
        if not (self.codes or self.polygons or self.circles):
            raise PydanticCustomError(
                "area_empty", "give at least one division code, polygon or circle"
            )
        shapes = len(self.polygons) + len(self.circles)
        if shapes > MAX_SHAPES:
            raise PydanticCustomError(
                "too_many_shapes",
                "{shapes} polygons and circles; at most {limit} are accepted (merge shapes, or"
                " name the divisions with codes)",
                {"shapes": shapes, "limit": MAX_SHAPES},
            )
        return self


class ManualWarning(BaseModel):
    """A warning a duty officer issues by hand (``POST /api/v1/warnings``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    hazard: str = Field(
        description="hazard code, e.g. rainstorm, flash_flood, geological",
        json_schema_extra={"enum": list(HAZARDS)},
    )
    level: Level
    area: ManualArea
    headline: str = Field(min_length=1, max_length=200, pattern=VISIBLE)
    description: str = Field(default="", max_length=4000)
    instruction: str = Field(default="", max_length=2000)
    area_desc: str = Field(
        min_length=1, max_length=500, pattern=VISIBLE, description="the place, in words"
    )
    status: Literal["Actual", "Exercise"] = Field(
        default="Actual", description="Exercise reaches only people marked for exercises"
    )
    msg_type: Literal["Alert"] = Field(
        default="Alert", description="only new warnings here; updates and cancels are separate"
    )
    event: str | None = Field(
        default=None,
        max_length=100,
        description="defaults to the hazard and level, e.g. 暴雨红色预警",
    )
    expires: AwareDatetime | None = Field(
        default=None, description="end of validity, with a UTC offset (e.g. +08:00)"
    )

    @field_validator("hazard")
    @classmethod
    def _known_hazard(cls, value: str) -> str:
        if value not in HAZARDS:
            raise PydanticCustomError(
                "unknown_hazard",
                "{value} is not a hazard warnd knows; use one of: {known}",
                {"value": repr(value), "known": ", ".join(HAZARDS)},
            )
        return value

    def to_normalised(self, author: str, now: datetime) -> NormalisedWarning:
        """The warning in normalised form, sent by ``officer:<author>`` at ``now``.

        Raises InputError when it would already have expired: an officer issuing a warning that
        is over before it starts has made a mistake worth telling them about.
        """
        if self.expires is not None and self.expires <= now:
            raise InputError(
                f"expires: {self.expires.isoformat()} is not after now ({now.isoformat()})",
                code="invalid_warning",
            )
        sent = now.replace(microsecond=0)
        hazard = HAZARDS[self.hazard]
        return NormalisedWarning(
            sender=f"officer:{author}",
            # Unique without coordination between processes; no spaces, commas, '<' or '&'.
            identifier=f"warnd-{sent:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:12]}",
            sent=sent,
            status=self.status,
            msg_type=self.msg_type,
            hazard=self.hazard,
            level=self.level,
            area=Area(
                codes=tuple(dict.fromkeys(self.area.codes)),
                polygons=tuple(tuple(ring) for ring in self.area.polygons),
                circles=tuple(
                    Circle(lat=c.lat, lon=c.lon, radius_km=c.radius_km) for c in self.area.circles
                ),
            ),
            event=self.event or f"{hazard.zh}{self.level.zh}预警",
            headline=self.headline,
            description=self.description,
            instruction=self.instruction,
            area_desc=self.area_desc,
            expires=self.expires,
            raw=self.model_dump_json(),
        )


def parse_manual(payload: Any) -> ManualWarning:
    """Validate decoded JSON as a manual warning; InputError says which fields are wrong."""
    try:
        return ManualWarning.model_validate(payload)
    except ValidationError as exc:
        raise InputError(describe_errors(exc.errors()), code="invalid_warning") from exc
