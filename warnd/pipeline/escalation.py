"""The escalation scanner: call-out and field-task timers kept in PostgreSQL, fired on time.

Due rows are claimed with ``FOR UPDATE SKIP LOCKED``; each row's decision is the pure
``warnd.core.escalate.next_step``, and a batch's decisions are written in a few set-based
statements in the transaction that holds the rows, so a restart, a crash or a second warnd
process never loses, repeats or double-fires a step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import structlog

from warnd.core.clock import Clock
from warnd.core.escalate import Decision, EscalationError, Snapshot, State, next_step
from warnd.core.texts import stand_in_text
from warnd.core.vocabulary import HAZARDS, Level, priority
from warnd.db import Conn
from warnd.db.notify import DELIVERIES_CHANNEL
from warnd.db.queries import columns, sql
from warnd.pipeline.field_tasks import task_messages
from warnd.policy.model import DEFAULT_SIGNATURE

log = structlog.get_logger(__name__)


class Escalation:
    """Works due call-outs and field tasks: repeat, backup, superior, duty officer."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        batch: int = 500,
        signature: Callable[[], str] = lambda: DEFAULT_SIGNATURE,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._batch = batch
        self._signature = signature

    async def scan(self) -> int:
        """Work one batch of due call-outs and field tasks; how many steps were fired or skipped.

        Each row's decision is the pure ``next_step``; what the batch decided is then written
        with a handful of set-based statements in the transaction that holds the rows, so a
        storm of due steps costs a few round trips per batch, not several per step.
        """
        now = self._clock.now()
        worked = 0
        for timers in (CALLOUT_TIMERS, TASK_TIMERS):
            async with self._pool.acquire() as conn, conn.transaction():
                due = await conn.fetch(sql(timers.due), now, self._batch)
                if due:
                    worked += await self._advance(conn, timers, due, now)
        if worked:
            await self._pool.execute("SELECT pg_notify($1, '')", DELIVERIES_CHANNEL)
        return worked

    async def _advance(
        self, conn: Conn, timers: _Timers, due: Sequence[asyncpg.Record], now: datetime
    ) -> int:
        """Decide every locked row, then write the events, the new cursors and the calls."""
        batch = _Batch()
        for row in due:
            state = State(
                cursor=row["cursor"],
                acknowledged=row["state"] == timers.answered_state,
                closed=row["warning_state"] not in ("active", "pending_approval"),
            )
            try:
                decision = next_step(Snapshot.from_json(_json(row["snapshot"])), state, now)
            except EscalationError as exc:
                # A broken row must not stop every other one's escalation: park it, visibly.
                log.warning(
                    "escalation_snapshot_invalid",
                    table=timers.name,
                    warning_id=row["warning_id"],
                    **{f"{timers.name}_id": row["id"]},
                    reason=str(exc),
                )
                batch.event(row["id"], "escalation_stopped", {"reason": str(exc)})
                batch.advance(row["id"], state.cursor, row["state"], None)
                continue
            batch.decide(row, state, decision, now)
        if batch.steps:
            await self._queue_steps(conn, timers, batch.steps, now)
        if batch.events:
            await conn.execute(sql(timers.events), *columns(batch.events), now)
        await conn.execute(sql(timers.advance), *columns(batch.advances), now)
        if batch.worked:
            log.info("escalated", table=timers.name, steps=batch.worked)
        return batch.worked

    async def _queue_steps(
        self, conn: Conn, timers: _Timers, steps: Sequence[_Step], now: datetime
    ) -> None:
        """Queue the fired steps' messages: the callee's own message again for a repeat, else a
        text telling the backup or superior whom they stand in for, and for what."""
        warnings = {
            r["id"]: r
            for r in await conn.fetch(sql("step_warnings"), sorted({s.warning_id for s in steps}))
        }
        # The responders' texts of each warning, one per kind: a call-out's repeat sends them
        # again, and stand-in texts go on the same kinds.
        responder: dict[int, list[tuple[str, int]]] = {}
        for warning_id in warnings:
            rows = await conn.fetch(sql("responder_messages"), warning_id)
            responder[warning_id] = [(m["channel_kind"], m["id"]) for m in rows]
        task_repeats: dict[int, list[tuple[str, int]]] = {}  # a task's repeat: its own message
        if timers is TASK_TIMERS:
            for step in steps:
                if step.action == "repeat":
                    rows = await task_messages(conn, step.row_id)
                    task_repeats[step.row_id] = [(m["channel_kind"], m["id"]) for m in rows]
        stand_ins = [s for s in steps if s.action != "repeat"]
        texts = await self._stand_in_messages(conn, timers, stand_ins, warnings, responder)
        calls: list[tuple[int, int, int, str, int, int]] = []
        for step in steps:
            warning = warnings[step.warning_id]
            urgency = priority(warning["hazard"], Level(warning["level"]), 0)
            if step.action == "repeat":
                messages = (
                    task_repeats[step.row_id]
                    if timers is TASK_TIMERS
                    else responder[step.warning_id]
                )
            else:
                messages = texts[(step.row_id, step.index)]
            calls += [
                (step.row_id, step.index, step.target, kind, message_id, urgency)
                for kind, message_id in messages
            ]
        if calls:
            await conn.execute(sql(timers.delivery), *columns(calls), now)

    async def _stand_in_messages(
        self,
        conn: Conn,
        timers: _Timers,
        steps: Sequence[_Step],
        warnings: Mapping[int, asyncpg.Record],
        responder: Mapping[int, list[tuple[str, int]]],
    ) -> dict[tuple[int, int], list[tuple[str, int]]]:
        """Render and store the stand-in texts of these steps; (row, step) -> (kind, message)."""
        if not steps:
            return {}
        about = {r["id"]: r for r in await conn.fetch(sql(timers.about), [s.row_id for s in steps])}
        kinds = {w: [kind for kind, _ in texts] or ["sms"] for w, texts in responder.items()}
        rows: list[tuple[int, str, str, str]] = []  # warning, audience key, kind, body
        for step in steps:
            warning = warnings[step.warning_id]
            for kind in kinds[step.warning_id]:
                text = stand_in_text(
                    dict(about[step.row_id]),
                    hazard=HAZARDS.get(warning["hazard"], HAZARDS["other"]).zh,
                    level=Level(warning["level"]).zh,
                    code=warning["short_code"] or "",
                    channel_kind=kind,
                    signature=self._signature(),
                    exercise=warning["status"] == "Exercise",
                )
                rows.append(
                    (step.warning_id, f"{timers.name}:{step.row_id}:{step.index}", kind, text)
                )
        stored = await conn.fetch(sql("upsert_messages"), *columns(rows))
        by_key = {(r["audience"], r["channel_kind"]): r["id"] for r in stored}
        return {
            (step.row_id, step.index): [
                (kind, by_key[(f"{timers.name}:{step.row_id}:{step.index}", kind)])
                for kind in kinds[step.warning_id]
            ]
            for step in steps
        }

    async def next_due(self) -> datetime | None:
        """When the earliest call-out or field task timer comes due, if any."""
        due: datetime | None = await self._pool.fetchval(sql("next_timer"))
        return due

    async def run(self, idle_seconds: float = 1.0) -> None:
        """Scan forever: at once while there is work; when idle, until the next timer is due
        (at most ``idle_seconds``: a timer set by another process is seen within that)."""
        while True:
            if await self.scan():
                continue
            wait = idle_seconds
            due = await self.next_due()
            if due is not None:
                wait = min(wait, max((due - self._clock.now()).total_seconds(), 0.0))
            await self._clock.sleep(wait)


def _json(value: object) -> dict[str, object]:
    if isinstance(value, str):
        loaded = json.loads(value)
        assert isinstance(loaded, dict)
        return loaded
    assert isinstance(value, dict)
    return value


@dataclass(frozen=True)
class _Timers:
    """The SQL of one kind of row the escalation scanner works: call-outs or field tasks."""

    name: str
    due: str
    advance: str
    events: str
    delivery: str
    about: str  # whom a stand-in (backup, superior) is told about
    answered_state: str


CALLOUT_TIMERS = _Timers(
    "callout",
    "due_callouts",
    "advance_callouts",
    "callout_events",
    "escalation_deliveries",
    "callouts_for_steps",
    "acknowledged",
)
TASK_TIMERS = _Timers(
    "task",
    "due_tasks",
    "advance_tasks",
    "task_events",
    "task_step_deliveries",
    "tasks_for_steps",
    "done",
)


@dataclass(frozen=True)
class _Step:
    """A step fired at a person: whose row, which step, what action, at whom."""

    row_id: int
    warning_id: int
    index: int
    action: str
    target: int


@dataclass
class _Batch:
    """What one scan decided for its rows, gathered to be written set-based."""

    events: list[tuple[int, str, dict[str, object]]] = field(default_factory=list)
    advances: list[tuple[int, int, str, datetime | None]] = field(default_factory=list)
    steps: list[_Step] = field(default_factory=list)
    worked: int = 0

    def event(self, row_id: int, kind: str, detail: dict[str, object]) -> None:
        self.events.append((row_id, kind, detail))

    def advance(self, row_id: int, cursor: int, state: str, next_check: datetime | None) -> None:
        self.advances.append((row_id, cursor, state, next_check))

    def decide(self, row: asyncpg.Record, state: State, decision: Decision, now: datetime) -> None:
        """Record one row's decision: a new timer, the end of its chain, or a step."""
        if decision.kind == "wait":
            self.advance(row["id"], state.cursor, row["state"], decision.next_check_at)
            return
        if decision.kind == "finished":
            self.advance(row["id"], state.cursor, "closed" if state.closed else row["state"], None)
            if state.closed:
                self.event(row["id"], "closed", {"reason": decision.reason})
            return
        step, index = decision.step, decision.step_index
        assert step is not None and index is not None
        detail: dict[str, object] = {
            "step": index,
            "action": step.action,
            "target_id": step.target_id,
            "target_name": step.target_name,
            "reason": decision.reason,
            "due_at": step.due_at.isoformat(),
            "late_ms": round(decision.late_by.total_seconds() * 1000),
        }
        if decision.kind == "fire" and step.target_id is not None:
            self.steps.append(
                _Step(row["id"], row["warning_id"], index, step.action, step.target_id)
            )
        if decision.kind == "skip":
            detail["skip_reason"] = step.skip_reason
        self.event(row["id"], "step_fired" if decision.kind == "fire" else "step_skipped", detail)
        # A skip looks again at once: the following step may be due already.
        self.advance(
            row["id"],
            index + 1,
            "escalated",
            now if decision.kind == "skip" else decision.next_check_at,
        )
        self.worked += 1
