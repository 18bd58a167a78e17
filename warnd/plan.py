"""Planning: a published warning becomes deliveries in the outbox, responders first.

The decision of who gets what on which channel is pure (``decide``); the writing is a handful of
``INSERT … SELECT`` statements, one transaction per step, each step recorded on the warning so a
planner that dies mid-way is resumed from the next step by whichever process picks it up.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from warnd.clock import Clock
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.ingest import load_warning
from warnd.model import HAZARDS, Audience, NormalisedWarning, priority
from warnd.policy import Policy
from warnd.render import render
from warnd.wakeup import DELIVERIES_CHANNEL

log = structlog.get_logger(__name__)

VILLAGES_PER_CHUNK = 250  # about 120,000 households: one chunk is one transaction

# The steps of a plan, in order; households follow, one step per chunk of villages. City and
# county responders go alone first: a few dozen rows, so the first call-out leaves within
# milliseconds even for a city-wide warning.
# Each step lists (audience, responder levels) pairs; levels only matter for responders.
FIRST_STEPS: tuple[tuple[tuple[Audience, tuple[str, ...]], ...], ...] = (
    ((Audience.RESPONDER, ("city", "county")),),
    ((Audience.RESPONDER, ("town", "village")), (Audience.BROADCAST, ())),
    ((Audience.FACILITY, ()), (Audience.HELPER, ())),
)
_AUDIENCE_SQL = {
    Audience.RESPONDER: "plan_responders",
    Audience.BROADCAST: "plan_broadcast",
    Audience.FACILITY: "plan_facilities",
    Audience.HELPER: "plan_helpers",
    Audience.HOUSEHOLD: "plan_households",
}


@dataclass(frozen=True)
class AudiencePlan:
    """What one audience gets: channel kinds sent together, each with its fail-over kinds."""

    audience: Audience
    kinds: tuple[str, ...]
    fallbacks: tuple[tuple[str, ...], ...]  # per kind, the kinds to try after a permanent failure
    priority: int


def decide(
    policy: Policy,
    warning: NormalisedWarning,
    now: datetime,
    available: Collection[str] | None = None,
) -> dict[Audience, AudiencePlan]:
    """Which audiences get the warning on which channel kinds, by policy, level and time of day.

    ``available`` is the set of channel kinds this installation has; a kind the policy names but
    nobody configured is replaced by its first available fallback rather than queued forever.
    """
    if not warning.reaches_people:
        return {}
    rule = policy.rule(warning.hazard, warning.level)
    night = policy.night.is_night(now)
    plans: dict[Audience, AudiencePlan] = {}
    for audience, audience_rule in rule.audiences.items():
        wanted = audience_rule.channels_at(night=night)
        usable = [k for k in wanted if available is None or k in available]
        fallback = [
            k for k in audience_rule.fallback_at(night=night) if available is None or k in available
        ]
        if not usable:
            usable = fallback[:1]
        if not usable:
            log.warning("audience_without_channel", audience=audience.value, wanted=wanted)
            continue
        rest = tuple(k for k in fallback if k not in usable)
        plans[audience] = AudiencePlan(
            audience,
            tuple(usable),
            tuple(rest for _ in usable),
            priority(warning.hazard, warning.level, rule.rank(audience)),
        )
    return plans


def place_name(covered: Sequence[Mapping[str, Any]], area_desc: str) -> str:
    """The place a text names: the warning's own description, else the covered counties/towns."""
    if area_desc:
        return area_desc
    counties = [str(r["name"]) for r in covered if r["level"] == "county"]
    towns = [str(r["name"]) for r in covered if r["level"] == "town"]
    if len(counties) == 1 and 0 < len(towns) <= 3:
        return counties[0] + "、".join(towns)
    if len(counties) > 3:
        return "、".join(counties[:3]) + "等地"
    return "、".join(counties) or "济宁市"


@dataclass
class PlanResult:
    warning_id: int
    steps: int
    deliveries: int


class Planner:
    """Turns published warnings into deliveries; any number of planners may run at once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: Callable[[], Policy],
        clock: Clock,
        max_chars: Mapping[str, int],
        *,
        villages_per_chunk: int = VILLAGES_PER_CHUNK,
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._clock = clock
        self._max_chars = max_chars
        self._chunk = villages_per_chunk

    async def plan_pending(self) -> list[PlanResult]:
        """Plan every warning that waits (or was left half-planned); return what was done."""
        done = []
        async with self._pool.acquire() as conn:
            for row in await conn.fetch(sql("plan_candidates")):
                warning_id: int = row["id"]
                if not await conn.fetchval(sql("lock_plan"), warning_id):
                    continue  # another planner has it
                try:
                    done.append(await self._plan(conn, warning_id))
                finally:
                    await conn.fetchval(sql("unlock_plan"), warning_id)
        return done

    async def _plan(self, conn: Conn, warning_id: int) -> PlanResult:
        state = await conn.fetchrow(
            "SELECT plan_state, plan_cursor FROM warnings WHERE id = $1", warning_id
        )
        assert state is not None  # candidates come from the table; warnings are never deleted
        if state["plan_state"] == "done":
            return PlanResult(warning_id, 0, 0)
        warning = await load_warning(conn, warning_id)
        now = self._clock.now()
        plans = decide(self._policy(), warning, now, self._max_chars.keys())
        place = warning.area_desc
        if not place:
            covered = await conn.fetch(sql("covered_divisions"), warning_id)
            place = place_name([dict(r) for r in covered], warning.area_desc)
        exercise_only = warning.status == "Exercise"
        speciality = HAZARDS[warning.hazard].speciality
        chunks = await conn.fetch(sql("village_chunks"), warning_id, self._chunk)
        steps: list[list[tuple[Audience, tuple[object, ...]]]] = [
            [(a, (speciality, list(levels)) if levels else ()) for a, levels in step]
            for step in FIRST_STEPS
        ]
        steps += [[(Audience.HOUSEHOLD, (c["first"], c["last"]))] for c in chunks]
        written = 0
        bound = log.bind(warning_id=warning_id)
        for number, step in enumerate(steps, start=1):
            if number <= state["plan_cursor"]:
                continue
            async with conn.transaction():
                for audience, extra in step:
                    plan = plans.get(audience)
                    if plan is None:
                        continue
                    message_ids = [
                        await self._message(
                            conn, warning_id, warning, audience=audience, kind=kind, place=place
                        )
                        for kind in plan.kinds
                    ]
                    status = await conn.execute(
                        sql(_AUDIENCE_SQL[audience]),
                        warning_id,
                        list(plan.kinds),
                        message_ids,
                        [",".join(f) for f in plan.fallbacks],
                        plan.priority,
                        exercise_only,
                        now,
                        *extra,
                    )
                    written += int(status.rsplit(" ", 1)[1])
                await conn.execute(
                    sql("plan_step_done"), warning_id, number, number == len(steps), now
                )
                await conn.execute("SELECT pg_notify($1, $2)", DELIVERIES_CHANNEL, str(warning_id))
            bound.debug("plan_step_written", step=number, deliveries=written)
        bound.info("warning_planned", steps=len(steps), deliveries=written)
        return PlanResult(warning_id, len(steps), written)

    async def _message(
        self,
        conn: Conn,
        warning_id: int,
        warning: NormalisedWarning,
        *,
        audience: Audience,
        kind: str,
        place: str,
    ) -> int:
        body = render(
            self._policy(),
            warning,
            audience,
            kind,
            place=place,
            max_chars=self._max_chars.get(kind),
        )
        message_id: int = await conn.fetchval(
            sql("upsert_message"), warning_id, audience.value, kind, body
        )
        return message_id
