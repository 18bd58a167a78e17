"""The map (一张图) without tiles: each village a point on a plain background, coloured by where
its people stand, and the warning's drawn area (polygons, circles) over them. Pure: positions
and states from plain data, for the template to draw as SVG."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from warnd.app.console_reads import VillagePoint
from warnd.app.views import AreaOut, DivisionProgress

WIDTH: Final = 900.0
HEIGHT: Final = 600.0
MARGIN: Final = 30.0

# What a village's colour says, worst first: the officer looks at red and grey.
STATES: Final = {
    "overdue": "有人超时未应答",
    "not_reached": "尚未送达",
    "reached": "已送达，待应答",
    "answered": "已全部应答",
    "speaker_offline": "广播离线",
}


def village_state(row: DivisionProgress | None) -> str:
    """One word for a village's state, the most urgent first."""
    if row is None or row.delivered == 0:
        return "not_reached"
    if row.callouts.overdue:
        return "overdue"
    if row.speakers_offline:
        return "speaker_offline"
    answered = row.callouts.acknowledged_on_time + row.callouts.acknowledged_late
    if row.callouts.total and answered == row.callouts.total:
        return "answered"
    return "reached"


@dataclass(frozen=True)
class Dot:
    code: str
    name: str
    x: float
    y: float
    state: str


@dataclass(frozen=True)
class Shape:
    kind: str  # polygon | circle
    points: str = ""  # polygon: "x,y x,y …"
    cx: float = 0.0
    cy: float = 0.0
    r: float = 0.0


@dataclass(frozen=True)
class Drawing:
    dots: list[Dot]
    shapes: list[Shape]
    counts: dict[str, int]


class _Projection:
    """Longitude and latitude to the picture, equirectangular at the middle latitude (a county
    or a city is small enough for that), north up, the whole extent fitted with a margin."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        lats = [p[0] for p in points] or [35.4]
        lons = [p[1] for p in points] or [116.6]
        self.lat0, self.lon0 = max(lats), min(lons)
        self.kx = math.cos(math.radians((min(lats) + max(lats)) / 2))
        span_x = max((max(lons) - min(lons)) * self.kx, 1e-3)
        span_y = max(max(lats) - min(lats), 1e-3)
        self.scale = min((WIDTH - 2 * MARGIN) / span_x, (HEIGHT - 2 * MARGIN) / span_y)

    def __call__(self, lat: float, lon: float) -> tuple[float, float]:
        x = MARGIN + (lon - self.lon0) * self.kx * self.scale
        y = MARGIN + (self.lat0 - lat) * self.scale
        return round(x, 1), round(y, 1)

    def km(self, km: float) -> float:
        return round(km / 111.0 * self.scale, 1)


@dataclass(frozen=True)
class Canvas:
    """The compose page's map to draw an area on: the counties (labels) and the towns (points),
    and the projection's numbers, with which the page's script turns a click back into
    latitude and longitude."""

    counties: list[Dot]
    towns: list[Dot]
    lat0: float
    lon0: float
    kx: float
    scale: float
    margin: float = MARGIN


def canvas(counties: Sequence[VillagePoint], towns: Sequence[VillagePoint]) -> Canvas:
    project = _Projection([(p.lat, p.lon) for p in [*counties, *towns]])

    def dots(points: Sequence[VillagePoint], kind: str) -> list[Dot]:
        return [Dot(p.code, p.name, *project(p.lat, p.lon), kind) for p in points]

    return Canvas(
        dots(counties, "county"),
        dots(towns, "town"),
        project.lat0,
        project.lon0,
        round(project.kx, 6),
        round(project.scale, 4),
    )


def draw(
    villages: Sequence[VillagePoint], rows: Mapping[str, DivisionProgress], area: AreaOut
) -> Drawing:
    """The picture of a warning: its villages by state and its drawn area."""
    extent = [(v.lat, v.lon) for v in villages]
    for ring in area.polygons:
        extent += list(ring)
    for c in area.circles:
        d = c.radius_km / 111.0
        extent += [(c.lat - d, c.lon - d), (c.lat + d, c.lon + d)]
    project = _Projection(extent)
    dots = []
    for v in villages:
        x, y = project(v.lat, v.lon)
        dots.append(Dot(v.code, v.name, x, y, village_state(rows.get(v.code))))
    shapes = [
        Shape("polygon", points=" ".join("{},{}".format(*project(lat, lon)) for lat, lon in ring))
        for ring in area.polygons
    ]
    for c in area.circles:
        cx, cy = project(c.lat, c.lon)
        shapes.append(Shape("circle", cx=cx, cy=cy, r=project.km(c.radius_km)))
    counts = {state: sum(d.state == state for d in dots) for state in STATES}
    return Drawing(dots, shapes, counts)
