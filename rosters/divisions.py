"""The real divisions of Jining (city, 12 county-level units, 158 towns) and where they lie.

Codes and names are the National Bureau of Statistics list shipped beside this module
(``jining-divisions.csv``). The file has no coordinates, so each county-level unit gets an
approximate centre and a radius (a circle that roughly covers it); towns are placed inside their
county's circle deterministically from their code, and the generator places villages around their
town so that every village falls inside its county's circle.
"""

# ruff: noqa: S311 - coordinates from a seeded generator, reproducible by design; not a secret

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass
from functools import cache
from importlib import resources

from rosters.queries import sql
from warnd.db import Conn

CITY_CODE = "370800000000"
LEVELS = ("city", "county", "town", "village")
# Code prefix length that is significant at each level; the rest is zero padding.
PREFIX_LENGTH = {"city": 4, "county": 6, "town": 9, "village": 12}
EARTH_RADIUS_KM = 6371.0088
# Towns sit within this share of their county's radius; villages within VILLAGE_SPREAD of their
# town. Together they stay inside the circle with a margin for the flat-earth offsets used below.
TOWN_SPREAD = 0.62
VILLAGE_SPREAD = 0.33


@dataclass(frozen=True)
class Circle:
    """An approximate extent: centre (WGS 84) and radius in kilometres."""

    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class Division:
    """A row of the ``divisions`` table from the shipped reference list."""

    code: str  # 12 digits
    name: str
    level: str
    parent_code: str | None  # 12 digits; None for the city (the province is not stored)
    lat: float | None
    lon: float | None


# Approximate centres of the county-level units (seat of government or geometric middle) and a
# radius that roughly covers each; Weishan stretches along Nansi Lake, hence its large radius.
COUNTY_CIRCLES: dict[str, Circle] = {
    "370811": Circle(35.41, 116.59, 16.0),  # 任城区
    "370812": Circle(35.55, 116.78, 13.0),  # 兖州区
    "370826": Circle(34.81, 117.13, 24.0),  # 微山县
    "370827": Circle(35.01, 116.65, 13.0),  # 鱼台县
    "370828": Circle(35.07, 116.31, 15.0),  # 金乡县
    "370829": Circle(35.41, 116.34, 15.0),  # 嘉祥县
    "370830": Circle(35.73, 116.49, 16.0),  # 汶上县
    "370831": Circle(35.66, 117.25, 20.0),  # 泗水县
    "370832": Circle(35.80, 116.10, 17.0),  # 梁山县
    "370871": Circle(35.38, 116.72, 8.0),  # 济宁高新技术产业开发区
    "370881": Circle(35.58, 116.99, 15.0),  # 曲阜市
    "370883": Circle(35.40, 117.00, 20.0),  # 邹城市
}
CITY_CENTRE = Circle(35.41, 116.59, 75.0)


def pad(code: str) -> str:
    """A 6- or 9-digit division code padded with zeros to the 12 digits the database uses."""
    return code.ljust(12, "0")


def level_of(code: str) -> str:
    """The level a 12-digit code denotes by its zero padding (370811000000 is a county)."""
    if code[9:] != "000":
        return "village"
    if code[6:9] != "000":
        return "town"
    if code[4:6] != "00":
        return "county"
    return "city"


def parent_of(code: str) -> str | None:
    """The 12-digit code of the division one level up, or None for the city."""
    level = level_of(code)
    if level == "city":
        return None
    up = LEVELS[LEVELS.index(level) - 1]
    return pad(code[: PREFIX_LENGTH[up]])


def county_of(code: str) -> str:
    """The 6-digit county code a 12-digit code belongs to."""
    return code[:6]


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def offset(lat: float, lon: float, north_km: float, east_km: float) -> tuple[float, float]:
    """The point ``north_km`` north and ``east_km`` east of (lat, lon); fine at county scale."""
    dlat = math.degrees(north_km / EARTH_RADIUS_KM)
    dlon = math.degrees(east_km / (EARTH_RADIUS_KM * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


def scatter(rng: random.Random, lat: float, lon: float, radius_km: float) -> tuple[float, float]:
    """A point uniformly distributed in the disc of ``radius_km`` around (lat, lon)."""
    distance = radius_km * math.sqrt(rng.random())
    angle = rng.random() * 2 * math.pi
    return offset(lat, lon, distance * math.cos(angle), distance * math.sin(angle))


def _read_reference() -> list[dict[str, str]]:
    text = resources.files("rosters").joinpath("jining-divisions.csv").read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@cache
def real_divisions() -> tuple[Division, ...]:
    """The city, its counties and its towns, parents before children, with coordinates."""
    rows = _read_reference()
    divisions: list[Division] = []
    for level in ("city", "county", "town"):
        for row in rows:
            if row["level"] != level:
                continue
            code = pad(row["code"])
            if level == "city":
                lat, lon = CITY_CENTRE.lat, CITY_CENTRE.lon
                parent = None
            elif level == "county":
                circle = COUNTY_CIRCLES[row["code"]]
                lat, lon = circle.lat, circle.lon
                parent = pad(row["parent_code"])
            else:
                circle = COUNTY_CIRCLES[row["parent_code"]]
                # Seeded by the code alone, so loading the reference data is idempotent.
                rng = random.Random(f"town:{row['code']}")
                lat, lon = scatter(rng, circle.lat, circle.lon, circle.radius_km * TOWN_SPREAD)
                lat, lon = round(lat, 6), round(lon, 6)
                parent = pad(row["parent_code"])
            divisions.append(Division(code, row["name"], level, parent, lat, lon))
    return tuple(divisions)


def counties() -> tuple[Division, ...]:
    """The 12 county-level units in code order."""
    return tuple(d for d in real_divisions() if d.level == "county")


def towns() -> tuple[Division, ...]:
    """The 158 town-level units in code order."""
    return tuple(sorted((d for d in real_divisions() if d.level == "town"), key=lambda d: d.code))


async def load_divisions(conn: Conn) -> int:
    """Insert or update the city, county and town rows; return how many there are (171)."""
    rows = real_divisions()
    await conn.execute(
        sql("upsert_reference_divisions"),
        [d.code for d in rows],
        [d.name for d in rows],
        [d.level for d in rows],
        [d.parent_code for d in rows],
        [d.lat for d in rows],
        [d.lon for d in rows],
    )
    return len(rows)


async def division_levels(conn: Conn) -> dict[str, str]:
    """The level of every division in the database, by its 12-digit code."""
    return {r["code"]: r["level"] for r in await conn.fetch(sql("division_levels"))}
