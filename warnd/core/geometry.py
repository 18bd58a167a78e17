"""Warned areas as shapes: the limits a shape must keep, and what is wrong with a polygon ring
(too few distinct points, all on one line, edges that cross). Shared by CAP and manual warnings,
so a feed and an officer are held to the same rules."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import shapely
from numpy.typing import NDArray

# Each polygon and circle costs a search of the roster at ingest, and a 512 KB message could
# carry some 19,000 of them; real warnings name a few shapes or a list of division codes.
MAX_SHAPES: Final = 64  # polygons and circles together, in the chosen info block
MAX_POLYGON_POINTS: Final = 2000  # points in one polygon ring


# No place on earth is farther from a centre than half the circumference, 20,015.09 km on the
# 6371 km sphere the roster search uses: this circle covers the earth, and a larger radius is a
# unit or typing mistake, not a larger warning.
MAX_RADIUS_KM: Final = 20_016


# Points closer than this (in degrees: about 0.1 mm) are one place to the ring checks: decimal
# coordinates are not exact in binary, and a vertex written onto another edge must not read as
# a crossing.
_SAME_PLACE_DEG: Final = 1e-9
# Edges searched together for crossings: bounds the memory a hostile ring can take, one whose
# every edge's box overlaps every other's (a star of 2000 points).
_EDGES_PER_STEP: Final = 256


def ring_problem(ring: Sequence[tuple[float, float]], *, first_number: int = 1) -> str | None:
    """Why a closed ring of (lat, lon) points cannot be a warning's area; None when it can.

    The ring must enclose an area and must not cross itself. A crossing ring (a bow-tie) is
    nearly always two points given out of order, and the area it encloses is not the one that
    was meant, so warning the people inside it would be a guess. A ring that only touches itself
    (a vertex on another edge) encloses a clear area and is accepted. Points are numbered from
    ``first_number`` in the answer, as the sender numbers them.
    """
    distinct = set(ring)
    if len(distinct) < 3:
        return (
            f"ring has {len(distinct)} distinct point{'s' if len(distinct) != 1 else ''};"
            " a polygon needs at least 3 to enclose an area"
        )
    if _on_one_line(distinct, ring[0]):
        return "all points of the ring lie on one line, so it encloses no area"
    crossing = _first_crossing(ring)
    if crossing is None:
        return None
    first, second, (lat, lon) = crossing

    def edge(start: int) -> str:
        # The closing edge ends at the first point (repeated, or added for an officer).
        end = start + 1 if start + 2 < len(ring) else 0
        return f"the edge from point {start + first_number} to point {end + first_number}"

    return (
        f"ring crosses itself: {edge(first)} crosses {edge(second)} near {lat:.5f},{lon:.5f};"
        " list the points in order around the area"
    )


def _on_one_line(points: set[tuple[float, float]], origin: tuple[float, float]) -> bool:
    lat0, lon0 = origin
    far_lat, far_lon = max(points, key=lambda p: math.hypot(p[0] - lat0, p[1] - lon0))
    dlat, dlon = far_lat - lat0, far_lon - lon0
    tolerance = _SAME_PLACE_DEG * math.hypot(dlat, dlon)
    return all(abs(dlat * (lon - lon0) - dlon * (lat - lat0)) <= tolerance for lat, lon in points)


def _first_crossing(
    ring: Sequence[tuple[float, float]],
) -> tuple[int, int, tuple[float, float]] | None:
    """The first two edges (by number) that cross, and where (lat, lon); None if none do.

    Edge ``i`` runs from point ``i`` to point ``i + 1``. GEOS settles the usual case, a simple
    ring, in O(n log n); only a ring it finds invalid, which may merely touch itself, is searched
    pair by pair, over the pairs of edges whose boxes overlap, in vectorised steps.
    """
    xy = np.array([(lon, lat) for lat, lon in ring], dtype=np.float64)
    if shapely.is_valid(shapely.Polygon(xy)):
        return None
    starts, ends = xy[:-1], xy[1:]
    edges = np.asarray(shapely.linestrings(np.stack([starts, ends], axis=1)))
    tree = shapely.STRtree(edges)
    for step in range(0, len(edges), _EDGES_PER_STEP):
        mine, theirs = tree.query(edges[step : step + _EDGES_PER_STEP])
        mine = mine + step
        once = mine < theirs
        mine, theirs = mine[once], theirs[once]
        hits = np.flatnonzero(_cross(starts[mine], ends[mine], starts[theirs], ends[theirs]))
        if hits.size:
            hit = hits[np.lexsort((theirs[hits], mine[hits]))[0]]
            first, second = int(mine[hit]), int(theirs[hit])
            return first, second, _meeting_point(xy, first, second)
    return None


def _cross(
    a: NDArray[np.float64], b: NDArray[np.float64], c: NDArray[np.float64], d: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Which segments a→b and c→d cross at a point inside both; touching is not crossing."""
    ab, cd = b - a, d - c
    c_side, d_side = _turn(ab, c - a), _turn(ab, d - a)
    a_side, b_side = _turn(cd, a - c), _turn(cd, b - c)
    # Each turn is the segment's length times the other point's distance from its line.
    near_ab = _SAME_PLACE_DEG * np.hypot(ab[:, 0], ab[:, 1])
    near_cd = _SAME_PLACE_DEG * np.hypot(cd[:, 0], cd[:, 1])
    crossed: NDArray[np.bool_] = (
        (np.minimum(np.abs(c_side), np.abs(d_side)) > near_ab)
        & (np.sign(c_side) != np.sign(d_side))
        & (np.minimum(np.abs(a_side), np.abs(b_side)) > near_cd)
        & (np.sign(a_side) != np.sign(b_side))
    )
    return crossed


def _turn(u: NDArray[np.float64], v: NDArray[np.float64]) -> NDArray[np.float64]:
    turn: NDArray[np.float64] = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    return turn


def _meeting_point(xy: NDArray[np.float64], first: int, second: int) -> tuple[float, float]:
    (ax, ay), (bx, by) = xy[first], xy[first + 1]
    (cx, cy), (dx, dy) = xy[second], xy[second + 1]
    along = ((cx - ax) * (dy - cy) - (cy - ay) * (dx - cx)) / (
        (bx - ax) * (dy - cy) - (by - ay) * (dx - cx)
    )
    return float(ay + along * (by - ay)), float(ax + along * (bx - ax))
