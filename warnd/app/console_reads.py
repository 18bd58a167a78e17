"""What the duty officer's console reads beyond the API's reads: the division picker, the
villages' places for the map, and the notice a cancel would send before it is stored. (Its board
reads ``warnd.app.board``, as ``GET /api/v1/board`` does.)"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from warnd.app import reads
from warnd.app.services import Services
from warnd.app.views import FieldTaskProgress, ProgressReport
from warnd.core.errors import NotFoundError
from warnd.db.queries import sql
from warnd.ingest.amend import CancelRequest, cancellation, parse_request
from warnd.ingest.store import load_warning
from warnd.policy.texts import Text, notice_texts

DIVISION_MATCHES: Final = 30


@dataclass(frozen=True)
class DivisionMatch:
    code: str
    name: str
    level: str
    parents: str


@dataclass(frozen=True)
class VillagePoint:
    code: str
    name: str
    lat: float
    lon: float


def task_totals(report: ProgressReport) -> FieldTaskProgress:
    """The field tasks of a roll-up's divisions added up."""
    rows = [d.field_tasks for d in report.divisions]
    return FieldTaskProgress(
        total=sum(t.total for t in rows),
        done=sum(t.done for t in rows),
        open=sum(t.open for t in rows),
        overdue=sum(t.overdue for t in rows),
        persons=sum(t.persons for t in rows),
        reached=sum(t.reached for t in rows),
    )


async def search_divisions(services: Services, text: str) -> list[DivisionMatch]:
    """Counties, towns and villages whose name or code contains ``text``."""
    text = text.strip()[:40]
    if not text:
        return []
    rows = await services.pool.fetch(sql("search_divisions"), text, DIVISION_MATCHES)
    return [DivisionMatch(r["code"], r["name"], r["level"], r["parents"] or "") for r in rows]


@dataclass(frozen=True)
class AreaSummary:
    villages: int
    households: int
    responders: int


async def area_summary(services: Services, codes: list[str]) -> AreaSummary:
    """Villages, households and responsible people under the divisions picked while composing,
    before anything is stored (the preview after submitting counts by the policy)."""
    row = await services.pool.fetchrow(sql("area_summary"), [c.ljust(12, "0") for c in codes])
    assert row is not None  # scalar subqueries always answer
    return AreaSummary(row["villages"], row["households"], row["responders"])


async def division_names(services: Services, codes: list[str]) -> list[DivisionMatch]:
    """The divisions of ``codes`` (12 digits) that exist, in the order given."""
    rows = await services.pool.fetch(sql("division_names"), codes)
    return [DivisionMatch(r["code"], r["name"], r["level"], "") for r in rows]


async def village_points(services: Services, warning_id: int) -> list[VillagePoint]:
    """The warning's villages with their coordinates (none before it is planned)."""
    rows = await services.pool.fetch(sql("warning_village_points"), warning_id)
    return [VillagePoint(r["code"], r["name"], r["lat"], r["lon"]) for r in rows]


async def town_points(services: Services) -> tuple[list[VillagePoint], list[VillagePoint]]:
    """The counties and the towns with their coordinates: the map an area is drawn on."""
    rows = await services.pool.fetch(sql("town_points"))

    def at(level: str) -> list[VillagePoint]:
        return [
            VillagePoint(r["code"], r["name"], r["lat"], r["lon"])
            for r in rows
            if r["level"] == level
        ]

    return at("county"), at("town")


@dataclass(frozen=True)
class DivisionCard:
    """A division on the roster page: where it sits, what is under it, who answers for it."""

    code: str
    name: str
    level: str
    parent_code: str | None
    parent_name: str | None
    blind_spot: bool
    remote: bool
    households: int | None  # villages only
    children: list[dict[str, object]]
    responders: list[dict[str, object]]


async def division_card(services: Services, code: str) -> DivisionCard:
    """The division ``code`` (6, 9 or 12 digits) with its children and responders;
    ``NotFoundError`` when the roster has no such division."""
    full = code.ljust(12, "0")
    async with services.pool.acquire() as conn:
        row = await conn.fetchrow(sql("division_card"), full)
        if row is None:
            raise NotFoundError(f"division {code} is not in the roster")
        children = await conn.fetch(sql("division_children"), full)
        responders = await conn.fetch(sql("division_responders"), full)
    return DivisionCard(
        code=row["code"],
        name=row["name"],
        level=row["level"],
        parent_code=row["parent_code"],
        parent_name=row["parent_name"],
        blind_spot=row["blind_spot"],
        remote=row["remote"],
        households=row["households"],
        children=[dict(r) for r in children],
        responders=[dict(r) for r in responders],
    )


@dataclass(frozen=True)
class PendingAmendment:
    id: int
    msg_type: str  # Cancel or Update
    author: str | None
    received_at: datetime


async def pending_amendments(services: Services, warning_id: int) -> list[PendingAmendment]:
    """Cancels and corrections of the warning waiting for a second officer: the warning page
    says so, so that nobody cancels the same warning twice."""
    rows = await services.pool.fetch(sql("pending_amendments"), warning_id)
    return [PendingAmendment(r["id"], r["msg_type"], r["author"], r["received_at"]) for r in rows]


@dataclass(frozen=True)
class Timeline:
    """Deliveries delivered and call-outs answered per bucket since the warning arrived."""

    start: datetime
    end: datetime
    bucket: timedelta
    delivered: list[tuple[datetime, int]]
    answered: list[tuple[datetime, int]]


TIMELINE_BUCKETS: Final = 60  # points per series at most, whatever the warning's age


async def timeline(services: Services, warning_id: int) -> Timeline:
    """The warning's deliveries and answers over time, in at most ``TIMELINE_BUCKETS`` buckets
    of whole minutes from its arrival to now."""
    detail = await reads.warning_detail(services, warning_id)
    start, end = detail.received_at, services.clock.now()
    minutes = max(1, math.ceil((end - start).total_seconds() / 60 / TIMELINE_BUCKETS))
    bucket = timedelta(minutes=minutes)
    rows = await services.pool.fetch(sql("warning_timeline"), warning_id, bucket, start)
    series: dict[str, list[tuple[datetime, int]]] = {"delivered": [], "answered": []}
    for r in rows:
        series[r["series"]].append((r["t"], r["n"]))
    return Timeline(
        start, max(end, start + bucket), bucket, series["delivered"], series["answered"]
    )


async def cancel_notices(
    services: Services, officer: str, warning_id: int, message: str
) -> list[Text]:
    """The notices cancelling the warning with ``message`` would send now, to the kinds of
    phones and speakers it has reached, rendered as planning will render them; empty when it
    reached nobody. ``InputError`` when the message could not be sent."""
    # The reason is audited, never sent: the notices do not depend on it.
    request = parse_request(CancelRequest, {"reason": "preview", "message": message})
    async with services.pool.acquire() as conn:
        await reads.require_warning(conn, warning_id)
        original = await load_warning(conn, warning_id)
        place = await reads.place_of(conn, warning_id, original)
        reached = await conn.fetch(sql("reached_kinds"), [warning_id], None, None)
    successor = cancellation(original, request, officer=officer, now=services.clock.now())
    return notice_texts(
        services.current_policy(),
        successor,
        [(r["audience"], r["channel_kind"]) for r in reached],
        place=place,
        short_code=None,
        max_chars=services.max_chars,
    )
