"""The warning page's time chart: delivered and answered, cumulative, as SVG polylines. Pure:
points from plain data, for the template to draw."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from warnd.app.console_reads import Timeline

WIDTH: Final = 900.0
HEIGHT: Final = 220.0
LEFT: Final = 60.0
BOTTOM: Final = 24.0
TOP: Final = 10.0


@dataclass(frozen=True)
class Chart:
    delivered: str  # "x,y x,y …"
    answered: str
    delivered_total: int
    answered_total: int
    top: int  # the count at the top of the y axis
    start: datetime
    end: datetime


def _cumulative(points: list[tuple[datetime, int]]) -> list[tuple[datetime, int]]:
    total = 0
    out = []
    for at, n in points:
        total += n
        out.append((at, total))
    return out


def chart(line: Timeline) -> Chart:
    """Both series cumulative over the same axes; a series starts at zero at the arrival."""
    delivered = _cumulative(line.delivered)
    answered = _cumulative(line.answered)
    top = max([n for _, n in delivered + answered] + [1])
    span = max((line.end - line.start).total_seconds(), 1.0)

    def xy(at: datetime, n: int) -> str:
        x = LEFT + (WIDTH - LEFT - 10) * min(max((at - line.start).total_seconds(), 0) / span, 1)
        y = HEIGHT - BOTTOM - (HEIGHT - BOTTOM - TOP) * n / top
        return f"{x:.1f},{y:.1f}"

    def polyline(points: list[tuple[datetime, int]]) -> str:
        if not points:
            return ""
        # Flat between buckets (a count stays what it was), rising within each bucket, and
        # flat at the last value until now.
        steps = [xy(line.start, 0)]
        before = 0
        for at, n in points:
            steps += [xy(at, before), xy(at + line.bucket, n)]
            before = n
        return " ".join([*steps, xy(line.end, before)])

    return Chart(
        delivered=polyline(delivered),
        answered=polyline(answered),
        delivered_total=delivered[-1][1] if delivered else 0,
        answered_total=answered[-1][1] if answered else 0,
        top=top,
        start=line.start,
        end=line.end,
    )
