"""The normalised warning and the vocabulary every stage shares: hazards, levels, audiences."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Level(StrEnum):
    """The four colour levels (CMA Order No. 16): blue IV … red I."""

    BLUE = "blue"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def zh(self) -> str:
        return _LEVEL_ZH[self]

    @property
    def rank(self) -> int:
        """0 for red … 3 for blue: lower goes first."""
        return _LEVEL_RANK[self]


_LEVEL_ZH = {Level.BLUE: "蓝色", Level.YELLOW: "黄色", Level.ORANGE: "橙色", Level.RED: "红色"}
_LEVEL_RANK = {Level.RED: 0, Level.ORANGE: 1, Level.YELLOW: 2, Level.BLUE: 3}

SEVERITY_LEVEL = {
    "Extreme": Level.RED,
    "Severe": Level.ORANGE,
    "Moderate": Level.YELLOW,
    "Minor": Level.BLUE,
}


@dataclass(frozen=True)
class Hazard:
    """A hazard type: its code, its Chinese name, and the responder speciality it calls on."""

    code: str
    zh: str
    speciality: str | None  # None: every responder, whatever their speciality


HAZARDS: dict[str, Hazard] = {
    h.code: h
    for h in [
        Hazard("rainstorm", "暴雨", "flood"),
        Hazard("gale", "大风", None),
        Hazard("thunder", "雷电", None),
        Hazard("heat", "高温", None),
        Hazard("cold_wave", "寒潮", None),
        Hazard("blizzard", "暴雪", None),
        Hazard("fog", "大雾", None),
        Hazard("hail", "冰雹", None),
        Hazard("frost", "霜冻", None),
        Hazard("haze", "霾", None),
        Hazard("road_icing", "道路结冰", None),
        Hazard("typhoon", "台风", "flood"),
        Hazard("drought", "干旱", None),
        Hazard("sandstorm", "沙尘暴", None),
        Hazard("flood", "洪水", "flood"),
        Hazard("waterlogging", "内涝", "flood"),
        Hazard("flash_flood", "山洪", "flood"),
        Hazard("geological", "地质灾害", "geological"),
        Hazard("earthquake", "地震", "earthquake"),
        Hazard("forest_fire", "森林火灾", "forest_fire"),
        Hazard("hazardous_chemicals", "危险化学品", None),
        Hazard("other", "突发事件", None),
    ]
}

SPECIALITIES = ("flood", "forest_fire", "geological", "earthquake", "all")


class Audience(StrEnum):
    """Who a delivery is for; the order is the order planning writes them and dispatch sends."""

    RESPONDER = "responder"
    BROADCAST = "broadcast"
    FACILITY = "facility"
    HELPER = "helper"
    HOUSEHOLD = "household"


def priority(hazard: str, level: Level, audience_rank: int) -> int:
    """Dispatch priority, lower first: seismic before everything, then by level, then by the
    audience's place in the policy's send order (responders first unless the policy says)."""
    tier = 0 if hazard == "earthquake" else 1 + level.rank
    return tier * 10 + audience_rank


@dataclass(frozen=True)
class Circle:
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class Area:
    """Where a warning applies: division codes (12 digits), polygons (lat, lon rings), circles."""

    codes: tuple[str, ...] = ()
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()
    circles: tuple[Circle, ...] = ()

    def is_empty(self) -> bool:
        return not (self.codes or self.polygons or self.circles)

    def to_json(self) -> dict[str, object]:
        return {
            "codes": list(self.codes),
            "polygons": [[list(p) for p in ring] for ring in self.polygons],
            "circles": [
                {"lat": c.lat, "lon": c.lon, "radius_km": c.radius_km} for c in self.circles
            ],
        }


@dataclass(frozen=True)
class NormalisedWarning:
    """A warning in normalised form, whatever it came from (CAP feed, seismic service, officer)."""

    sender: str
    identifier: str
    sent: datetime
    status: str  # Actual | Exercise | System | Test | Draft
    msg_type: str  # Alert | Update | Cancel
    hazard: str  # a key of HAZARDS
    level: Level
    area: Area
    event: str = ""
    headline: str = ""
    description: str = ""
    instruction: str = ""
    area_desc: str = ""
    references: tuple[str, ...] = ()  # "sender,identifier,sent" triples
    effective: datetime | None = None
    expires: datetime | None = None
    raw: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def reaches_people(self) -> bool:
        """Test, Draft and System messages are recorded but never sent to a person."""
        return self.status in ("Actual", "Exercise")
