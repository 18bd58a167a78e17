"""Blind drills (双盲演练): an officer gives a window and the scenarios to choose from; warnd picks
the moment and the scenario at random, and keeps both from everyone but that officer and the
audit log until the drill fires (``warnd.pipeline.drills``) as an Exercise warning.

What others see of a scheduled drill is that there is one, who scheduled it, its window and the
counties it may fall on: enough to know a drill is coming, not when or what.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from warnd.app.services import Services
from warnd.core.errors import (
    ConflictError,
    ForbiddenError,
    InputError,
    NotFoundError,
    describe_errors,
)
from warnd.core.texts import VISIBLE
from warnd.core.vocabulary import HAZARDS, Level
from warnd.db.queries import sql

MAX_WINDOW = timedelta(days=90)
MAX_SCENARIOS = 50


def _hazard(value: str) -> str:
    if value not in HAZARDS:
        raise ValueError(f"{value!r} is not a hazard ({', '.join(sorted(HAZARDS))})")
    return value


def _county(value: str) -> str:
    if len(value) not in (6, 12) or not value.isdigit() or value[6:].strip("0"):
        raise ValueError(f"{value!r} is not a county code (6 digits, or 12 ending in 000000)")
    return value[:6].ljust(12, "0")


CountyCode = Annotated[str, AfterValidator(_county)]
Text = Annotated[str, Field(max_length=500, pattern=VISIBLE)]


class Scenario(BaseModel):
    """One scenario a drill may be: a hazard and level in one of the listed counties."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    hazard: Annotated[str, AfterValidator(_hazard)]
    level: Level
    counties: list[CountyCode] = Field(min_length=1, max_length=20)
    headline: Text = ""
    description: Text = ""
    instruction: Text = ""


class ScheduleRequest(BaseModel):
    """``POST /api/v1/drills``: the window, the scenarios, and optionally the only counties."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_start: datetime
    window_end: datetime
    scenarios: list[Scenario] = Field(min_length=1, max_length=MAX_SCENARIOS)
    counties: list[CountyCode] | None = Field(
        default=None, description="only scenarios' counties among these (none: all listed)"
    )

    @model_validator(mode="after")
    def _window(self) -> ScheduleRequest:
        for name in ("window_start", "window_end"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"{name} needs a time zone (e.g. +08:00)")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if self.window_end - self.window_start > MAX_WINDOW:
            raise ValueError(f"the window may be at most {MAX_WINDOW.days} days long")
        return self


class DrillOut(BaseModel):
    """A drill as its reader may see it: ``fire_at`` and ``scenario`` only for the officer who
    scheduled it, or once it has fired (then the warning is public anyway)."""

    model_config = ConfigDict(frozen=True)

    id: int
    state: str
    scheduled_by: str
    scheduled_at: datetime
    window_start: datetime
    window_end: datetime
    counties: list[str]
    postponements: int
    warning_id: int | None
    fired_at: datetime | None
    cancelled_by: str | None
    cancelled_at: datetime | None
    approved_by: str | None
    approved_at: datetime | None
    secret: bool = Field(description="true: the moment and scenario are withheld from you")
    fire_at: datetime | None = None
    scenario: dict[str, Any] | None = None
    scenarios: list[dict[str, Any]] | None = Field(
        default=None,
        description="what it is drawn from: for its scheduler and for approvers, who release it",
    )


class DrillList(BaseModel):
    drills: list[DrillOut]


def parse_schedule(payload: object) -> ScheduleRequest:
    try:
        return ScheduleRequest.model_validate(payload)
    except ValidationError as exc:
        raise InputError(describe_errors(exc.errors()), code="invalid_drill") from exc


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def drill_out(row: asyncpg.Record, reader: str, *, approver: bool = False) -> DrillOut:
    """What ``reader`` may see: the moment and the scenario drawn only if they scheduled it (or
    it has fired); the scenarios it is drawn from also if they may approve it."""
    mine = row["scheduled_by"] == reader
    revealed = mine or row["state"] == "fired"
    hidden = ("secret", "fire_at", "scenario", "scenarios")
    return DrillOut(
        **{k: row[k] for k in DrillOut.model_fields if k not in hidden},
        secret=not revealed,
        fire_at=row["fire_at"] if revealed else None,
        scenario=(_json(row["scenario"]) | {"county_name": row["county_name"]})
        if revealed
        else None,
        scenarios=_json(row["scenarios"]) if mine or approver or revealed else None,
    )


def pick(request: ScheduleRequest, rng: secrets.SystemRandom) -> tuple[datetime, dict[str, Any]]:
    """The moment (a whole second inside the window) and the scenario, at random."""
    allowed = set(request.counties) if request.counties is not None else None
    choices = [
        (scenario, county)
        for scenario in request.scenarios
        for county in scenario.counties
        if allowed is None or county in allowed
    ]
    if not choices:
        raise InputError("counties: no scenario lists any of these counties", code="invalid_drill")
    scenario, county = rng.choice(choices)
    span = int((request.window_end - request.window_start).total_seconds())
    fire_at = request.window_start + timedelta(seconds=rng.randrange(span))
    chosen = scenario.model_dump(mode="json", exclude={"counties"}) | {"county": county}
    return fire_at, chosen


async def schedule(services: Services, officer: str, payload: object) -> DrillOut:
    """Schedule a blind drill: the moment and scenario are drawn here and audited."""
    request = parse_schedule(payload)
    now = services.clock.now()
    if request.window_end <= now:
        raise InputError("window_end: the window is already over", code="invalid_drill")
    counties = sorted({c for s in request.scenarios for c in s.counties})
    known = {r["code"] for r in await services.pool.fetch(sql("drill_counties_known"), counties)}
    if unknown := [c[:6] for c in counties if c not in known]:
        raise InputError(
            f"scenarios: {', '.join(unknown)} are not counties of the roster", code="invalid_drill"
        )
    # Orange and red wait for a second officer, as a manual warning does (the two-person rule);
    # the approver reads the scenarios it is drawn from, never which one or when.
    policy = services.current_policy()
    waits = any(policy.needs_approval(sc.level, manual=True) for sc in request.scenarios)
    start = max(request.window_start, now)
    fire_at, scenario = pick(request.model_copy(update={"window_start": start}), _RNG)
    allowed = sorted(set(request.counties) & set(counties)) if request.counties else counties
    async with services.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            sql("drill_insert"),
            officer,
            now,
            request.window_start,
            request.window_end,
            allowed,
            fire_at,
            scenario,
            [sc.model_dump(mode="json") for sc in request.scenarios],
            "pending_approval" if waits else "scheduled",
        )
        assert row is not None
        # The audit log is the one other place the secret is kept: append-only, for review.
        await conn.execute(
            sql("audit"),
            officer,
            "drill_scheduled",
            f"drill:{row['id']}",
            {"fire_at": fire_at.isoformat(), "scenario": scenario, "counties": allowed},
            now,
        )
    stored = await services.pool.fetchrow(sql("drill_get"), row["id"])
    assert stored is not None
    return drill_out(stored, officer)


async def list_drills(
    services: Services, reader: str, *, approver: bool = False, limit: int = 100
) -> DrillList:
    rows = await services.pool.fetch(sql("drill_list"), limit)
    return DrillList(drills=[drill_out(r, reader, approver=approver) for r in rows])


async def get_drill(
    services: Services, reader: str, drill_id: int, *, approver: bool = False
) -> DrillOut:
    row = await services.pool.fetchrow(sql("drill_get"), drill_id)
    if row is None:
        raise NotFoundError(f"drill {drill_id} does not exist")
    return drill_out(row, reader, approver=approver)


async def approve(services: Services, approver: str, drill_id: int) -> DrillOut:
    """A second officer releases an orange or red drill; they never learn which or when."""
    now = services.clock.now()
    async with services.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql("drill_approve"), drill_id, approver, now)
        if row is None:
            existing = await conn.fetchrow(sql("drill_get"), drill_id)
            if existing is None:
                raise NotFoundError(f"drill {drill_id} does not exist")
            if existing["scheduled_by"] == approver:
                raise ForbiddenError(
                    "self_approval",
                    f"drill {drill_id} was scheduled by {approver!r}; "
                    "a second officer must approve it",
                )
            if existing["state"] == "pending_approval":
                raise ConflictError("window_over", f"drill {drill_id}'s window is over")
            raise ConflictError(
                "not_pending", f"drill {drill_id} is {existing['state']}, not waiting for approval"
            )
        await conn.execute(sql("audit"), approver, "drill_approved", f"drill:{drill_id}", {}, now)
    return await get_drill(services, approver, drill_id, approver=True)


async def cancel(services: Services, officer: str, drill_id: int) -> DrillOut:
    """Cancel a drill before it fires; any officer may (a real emergency needs everyone)."""
    now = services.clock.now()
    async with services.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql("drill_cancel"), drill_id, officer, now)
        if row is None:
            existing = await conn.fetchrow(sql("drill_get"), drill_id)
            if existing is None:
                raise NotFoundError(f"drill {drill_id} does not exist")
            raise ConflictError(
                "not_scheduled",
                f"drill {drill_id} is {existing['state']}: it can no longer be cancelled",
            )
        await conn.execute(sql("audit"), officer, "drill_cancelled", f"drill:{drill_id}", {}, now)
    return await get_drill(services, officer, drill_id)


_RNG = secrets.SystemRandom()
