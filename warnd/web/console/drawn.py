"""An area drawn on the compose page's map, as its two fields carry it: ``polygon`` holds the
vertices (``lat,lon lat,lon …``, CAP's way of writing them) and ``circle`` the centre and radius
(``lat,lon radius_km``). The page's script fills them from clicks; an officer may type them too.
Only the form's shape is checked here; whether a ring crosses itself or a radius is too large is
the warning's own validation (``warnd.ingest.manual``), which names ``area.polygons[0]`` and so
on."""

from __future__ import annotations

import math
from typing import Any, Final

from warnd.core.errors import InputError

MAX_TEXT: Final = 20_000  # about 1,000 points: the manual warning's own limit refuses more


def _number(field: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{field}: {what} {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{field}: {what} {text[:40]!r} is not a number")
    return value


def _point(field: str, token: str, what: str) -> list[float]:
    lat, comma, lon = token.partition(",")
    if not comma:
        raise InputError(f"{field}: {what} {token[:40]!r} is not 'latitude,longitude'")
    return [_number(field, lat, f"{what} latitude"), _number(field, lon, f"{what} longitude")]


def polygon(text: str) -> list[list[float]]:
    """The vertices of the ``polygon`` field, in order."""
    if len(text) > MAX_TEXT:
        raise InputError(f"polygon: more than {MAX_TEXT} characters")
    return [_point("polygon", t, f"point {n}") for n, t in enumerate(text.split(), 1)]


def circle(text: str) -> dict[str, Any]:
    """The ``circle`` field as the manual warning's circle."""
    parts = text.split()
    if len(parts) != 2:
        raise InputError(f"circle: {text[:60]!r} is not 'latitude,longitude radius' (radius in km)")
    lat, lon = _point("circle", parts[0], "the centre")
    return {"lat": lat, "lon": lon, "radius_km": _number("circle", parts[1], "the radius")}


def require_name(chosen: dict[str, Any], area_desc: str) -> None:
    """A drawn area has no division name to fall back on: the officer names it (the approver
    types that name)."""
    if not area_desc and (chosen.get("polygons") or chosen.get("circles")):
        raise InputError("area_desc: name the area drawn on the map (the approver types it)")


def area(codes: list[str], polygon_text: str, circle_text: str) -> dict[str, Any]:
    """The manual warning's ``area`` from the chosen divisions and the drawn shapes."""
    chosen: dict[str, Any] = {"codes": codes}
    if polygon_text.strip():
        chosen["polygons"] = [polygon(polygon_text)]
    if circle_text.strip():
        chosen["circles"] = [circle(circle_text)]
    return chosen
