"""The evaluation report (效果评估) of one warning, live or drill: its figures, read from the
database by the set-based statements of ``warnd/db/sql/report.sql``.

The model is the report's one shape: the JSON answer is it, and the XLSX and PDF renderers
(``warnd.app.report_files``) lay out the same figures. Times are aware datetimes; renderers show
them in ``timezone`` (the policy's, Asia/Shanghai).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from warnd.app.reads import no_warning
from warnd.app.services import Services
from warnd.core.escalate import ACTIONS
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.policy.model import DrillScoring

REPORT_WORK_MEM = "128MB"

ReportFormat = Literal["json", "xlsx", "pdf"]
REPORT_FORMATS: tuple[ReportFormat, ...] = ("json", "xlsx", "pdf")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReportWarning(_Out):
    id: int
    status: str
    msg_type: str
    hazard: str
    level: str
    event: str
    headline: str
    area_desc: str
    state: str
    sent: datetime
    issued_at: datetime = Field(description="released: approved, or received when no approval")
    expires: datetime | None
    counties: list[str]
    villages: int
    blind_drill_id: int | None = Field(default=None, description="the blind drill it was")
    drill_scheduled_by: str | None = None
    drill_window_start: datetime | None = None
    drill_window_end: datetime | None = None
    drill_postponements: int = 0


class Reach(_Out):
    """Deliveries of one audience or division."""

    key: str = Field(description="the audience, or the division code")
    name: str = Field(description="the audience, or the division's name")
    county: str = Field(default="", description="the county of a town row")
    people: int
    messages: int
    delivered: int
    failed: int
    cancelled: int
    first_s: float | None = Field(description="seconds from issue to the first delivery")
    p90_s: float | None = Field(description="seconds from issue until 90 % were delivered")


class Failure(_Out):
    audience: str
    channel_kind: str
    reason: str
    count: int


class LevelOutcome(_Out):
    level: str = Field(description="responder level, or 'all'")
    total: int
    on_time: int
    late: int
    never: int
    p50_s: float | None
    p90_s: float | None


class DivisionOutcome(_Out):
    """Call-and-respond, field tasks and the drill score of one county or town."""

    code: str
    name: str
    county: str
    total: int
    on_time: int
    late: int
    never: int
    answer_rate: float | None
    p50_s: float | None
    p90_s: float | None
    tasks: int
    tasks_done: int
    time_score: float | None
    task_rate: float | None
    score: float | None = Field(description="0-100, weights from the policy's drill_scoring")


class StepCount(_Out):
    action: str
    fired: int
    skipped: int


class Unanswered(_Out):
    name: str
    phone: str
    level: str
    role: str
    division: str
    town: str
    county: str
    state: str
    deadline: datetime
    steps_fired: int
    backup_name: str
    backup_phone: str


class VillageTasks(_Out):
    village_code: str
    village: str
    town: str
    county: str
    kinds: str
    ordered: int
    done: int
    overdue: int
    persons: int
    reached: int


class ChannelFigures(_Out):
    channel: str
    channel_kind: str
    messages: int
    accepted: int
    delivered: int
    failed: int
    cancelled: int
    failed_over_in: int
    per_minute: float | None = Field(description="accepted per minute, first to last hand-over")
    receipt_p50_s: float | None


class Failover(_Out):
    from_kind: str
    to_kind: str
    count: int
    delivered: int


class TimelinePoint(_Out):
    minute: int = Field(description="minutes from issue to the bucket's start")
    delivered: int
    answered: int


class DrillRound(_Out):
    warning_id: int
    sent: datetime
    event: str
    level: str
    total: int
    answered: int
    on_time: int
    answer_rate: float | None
    p50_s: float | None


class DrillTown(_Out):
    """A town's figures in one of the drills compared."""

    warning_id: int
    code: str
    name: str
    total: int
    answer_rate: float | None
    score: float | None


class Scoring(_Out):
    answer_rate: float
    time_to_answer: float
    task_completion: float
    target_s: float
    limit_s: float


class EvaluationReport(_Out):
    """Everything the bureau files after a warning or a drill."""

    generated_at: datetime
    timezone: str
    warning: ReportWarning
    reach_by_audience: list[Reach]
    reach_by_county: list[Reach]
    reach_by_town: list[Reach]
    failures: list[Failure]
    callouts_by_level: list[LevelOutcome]
    escalation_steps: list[StepCount]
    never_answered: list[Unanswered]
    counties: list[DivisionOutcome]
    towns: list[DivisionOutcome]
    field_tasks: list[VillageTasks]
    channels: list[ChannelFigures]
    failovers: list[Failover]
    timeline_bucket_minutes: int
    timeline: list[TimelinePoint]
    scoring: Scoring
    drills: list[DrillRound] = Field(
        description="for a drill: it and the previous drills of the same counties, newest first"
    )
    drill_towns: list[DrillTown] = Field(
        description="for a drill: each town's answer rate and score in each of those drills"
    )

    @property
    def is_drill(self) -> bool:
        return self.warning.status == "Exercise"


def _reach(rows: Sequence[asyncpg.Record], *, by_audience: bool) -> list[Reach]:
    return [
        Reach(
            key=r["audience"] if by_audience else r["code"],
            name=r["audience"] if by_audience else r["name"],
            county="" if by_audience else r["county"],
            **{k: r[k] for k in ("people", "messages", "delivered", "failed", "cancelled")},
            first_s=r["first_s"],
            p90_s=r["p90_s"],
        )
        for r in rows
    ]


async def _divisions(
    conn: Conn, warning_ids: list[int], prefix: int, scoring: DrillScoring
) -> list[asyncpg.Record]:
    return await conn.fetch(
        sql("report_callout_divisions"),
        warning_ids,
        prefix,
        scoring.answer_rate,
        scoring.time_to_answer,
        scoring.task_completion,
        scoring.target.total_seconds(),
        scoring.limit.total_seconds(),
    )


async def build_report(
    conn: Conn, warning_id: int, *, now: datetime, scoring: DrillScoring, timezone: str
) -> EvaluationReport:
    """Every figure of the warning's report, read in one repeatable-read snapshot so that the
    sections agree with one another while the warning is still running."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # A city-wide warning's figures sort and group millions of deliveries: memory enough to
        # do it without spilling to disk, and no JIT (compiling cost a second a query, measured
        # on 1 M deliveries). For this transaction only.
        await conn.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        await conn.execute("SET LOCAL jit = off")
        head = await conn.fetchrow(sql("report_warning"), warning_id)
        if head is None:
            raise no_warning(warning_id)
        issued = head["issued_at"]
        audiences = await conn.fetch(sql("report_reach_audiences"), warning_id, issued)
        counties = await conn.fetch(sql("report_reach_divisions"), warning_id, issued, 6)
        towns = await conn.fetch(sql("report_reach_divisions"), warning_id, issued, 9)
        failures = await conn.fetch(sql("report_failures"), warning_id)
        outcomes = await conn.fetch(sql("callout_outcomes"), warning_id)
        steps = await conn.fetch(sql("escalation_steps"), warning_id)
        never = await conn.fetch(sql("report_never_answered"), warning_id)
        county_scores = await _divisions(conn, [warning_id], 6, scoring)
        town_scores = await _divisions(conn, [warning_id], 9, scoring)
        tasks = await conn.fetch(sql("report_field_tasks"), warning_id, now)
        channels = await conn.fetch(sql("report_channels"), warning_id)
        failovers = await conn.fetch(sql("report_failovers"), warning_id)
        timeline = await conn.fetch(sql("report_timeline"), warning_id, issued)
        drills = (
            await conn.fetch(sql("report_drills"), warning_id)
            if head["status"] == "Exercise"
            else []
        )
        # Each town's score in this drill and the previous ones: which town is weakest over time.
        drill_towns = (
            await _divisions(conn, [r["id"] for r in drills], 9, scoring) if drills else []
        )
    return EvaluationReport(
        generated_at=now,
        timezone=timezone,
        warning=ReportWarning.model_validate(dict(head)),
        reach_by_audience=_reach(audiences, by_audience=True),
        reach_by_county=_reach(counties, by_audience=False),
        reach_by_town=_reach(towns, by_audience=False),
        failures=[Failure.model_validate(dict(r)) for r in failures],
        callouts_by_level=[
            LevelOutcome.model_validate(dict(r) | {"level": r["level"] or "all"}) for r in outcomes
        ],
        escalation_steps=sorted(
            (StepCount.model_validate(dict(r)) for r in steps),
            key=lambda s: ACTIONS.index(s.action) if s.action in ACTIONS else len(ACTIONS),
        ),
        never_answered=[Unanswered.model_validate(dict(r)) for r in never],
        counties=[DivisionOutcome.model_validate(dict(r)) for r in county_scores],
        towns=[DivisionOutcome.model_validate(dict(r)) for r in town_scores],
        field_tasks=[VillageTasks.model_validate(dict(r)) for r in tasks],
        channels=[ChannelFigures.model_validate(dict(r)) for r in channels],
        failovers=[Failover.model_validate(dict(r)) for r in failovers],
        timeline_bucket_minutes=timeline[0]["bucket"] if timeline else 1,
        timeline=[
            TimelinePoint(minute=r["minute"], delivered=r["delivered"], answered=r["answered"])
            for r in timeline
        ],
        scoring=Scoring(
            answer_rate=scoring.answer_rate,
            time_to_answer=scoring.time_to_answer,
            task_completion=scoring.task_completion,
            target_s=scoring.target.total_seconds(),
            limit_s=scoring.limit.total_seconds(),
        ),
        drills=[DrillRound.model_validate(dict(r) | {"warning_id": r["id"]}) for r in drills],
        drill_towns=[DrillTown.model_validate(dict(r)) for r in drill_towns],
    )


async def evaluation_report(services: Services, warning_id: int) -> EvaluationReport:
    """The report of a warning as of now, scored with the current policy."""
    policy = services.policy.current
    async with services.pool.acquire() as conn:
        return await build_report(
            conn,
            warning_id,
            now=services.clock.now(),
            scoring=policy.drill_scoring,
            timezone=policy.night.timezone,
        )
