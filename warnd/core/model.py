"""The normalised warning: what every source (CAP feed, seismic service, officer) becomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from warnd.core.vocabulary import Level


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
    # The chosen info block's <parameter>s as (valueName, value), in document order: a seismic
    # feed's early-warning CAP carries its facts there (warnd.ingest.eew).
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def reaches_people(self) -> bool:
        """Test, Draft and System messages are recorded but never sent to a person."""
        return self.status in ("Actual", "Exercise")
