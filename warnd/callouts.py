"""Call-outs (叫应): opened when a warning needs an answer, answered from any route, escalated.

The decisions are pure and live elsewhere: what a reply means (``warnd.acknowledge``) and what an
overdue call-out needs next (``warnd.escalate``). This module is their I/O edge: it opens
call-outs in the planner's transaction, applies answers as set-based updates, and runs the
escalation timers that live in PostgreSQL, claiming due call-outs with ``FOR UPDATE SKIP
LOCKED`` so that a restart, a crash or a second warnd process never loses, repeats or
double-fires a step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from rosters.phones import normalise_phone
from warnd.acknowledge import parse_reply
from warnd.clock import Clock
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.errors import InputError
from warnd.escalate import EscalationError, Snapshot, State, deadline_for, freeze, next_step
from warnd.model import Audience, Level, priority
from warnd.policy import LevelRule
from warnd.wakeup import DELIVERIES_CHANNEL

log = structlog.get_logger(__name__)


async def open_callouts(
    conn: Conn,
    warning_id: int,
    rule: LevelRule,
    *,
    speciality: str | None,
    levels: Sequence[str],
    exercise_only: bool,
    now: datetime,
) -> int:
    """Open one call-out per responder of these levels who must answer; return how many opened.

    Runs inside the planning step that wrote the responders' deliveries, so a call-out exists
    exactly when its first message does.
    """
    if not rule.ack.required:
        return 0
    callees = await conn.fetch(sql("callees"), warning_id, speciality, list(levels), exercise_only)
    if not callees:
        return 0
    snapshots = []
    for r in callees:
        deadline = deadline_for(r["level"], rule.ack.within, now)
        snapshots.append(
            freeze(
                0,  # the id is not known yet; the row's own id is authoritative
                r["id"],
                now,
                deadline,
                rule.escalation,
                responder_name=r["name"],
                backup=(r["backup_id"], r["backup_name"]) if r["backup_id"] else None,
                superior=(r["superior_id"], r["superior_name"]) if r["superior_id"] else None,
            )
        )
    opened: int = await conn.fetchval(
        sql("insert_callouts"),
        warning_id,
        [r["id"] for r in callees],
        [r["phone"] for r in callees],
        [r["level"] for r in callees],
        [s.deadline for s in snapshots],
        [s.to_json() for s in snapshots],
        [s.steps[0].due_at if s.steps else None for s in snapshots],
        now,
    )
    return opened


@dataclass(frozen=True)
class Answer:
    """What became of one inbound answer, for metrics, logs and the officer's inbox."""

    kind: str  # ack | progress | unrecognised | unknown_number
    callouts: tuple[int, ...] = ()
    late: bool = False


class CallOuts:
    """Applies answers to call-outs and runs the escalation timers."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, *, batch: int = 500) -> None:
        self._pool = pool
        self._clock = clock
        self._batch = batch

    async def answer_sms(self, sender: str, text: str) -> Answer:
        """One SMS reply (see ``answer_replies``)."""
        return (await self.answer_replies([(sender, text)]))[0]

    async def answer_replies(self, replies: Sequence[tuple[str, str]]) -> list[Answer]:
        """SMS replies (sender, text), in one statement: each acknowledges the sender's open
        call-outs, or only those of the warning whose short code it names."""
        parsed = [(_phone(sender), parse_reply(text)) for sender, text in replies]
        codes = sorted({r.code for _, r in parsed if r.kind == "ack" and r.code})
        by_code = {}
        if codes:
            rows = await self._pool.fetch(sql("warnings_by_code"), codes)
            by_code = {r["short_code"]: r["id"] for r in rows}
        answers: list[Answer | None] = []
        asks: list[tuple[str, int | None]] = []
        for phone, reply in parsed:
            if phone is None:
                answers.append(Answer("unknown_number"))
            elif reply.kind != "ack":
                answers.append(Answer(reply.kind))
            elif reply.code and reply.code not in by_code:
                answers.append(Answer("unknown_code"))
            else:
                answers.append(None)
                asks.append((phone, by_code.get(reply.code) if reply.code else None))
        acknowledged = await self._acknowledge(asks, "sms")
        pending = iter(acknowledged[phone] for phone, _ in asks)
        return [answer if answer is not None else next(pending) for answer in answers]

    async def answer_call(self, channel: str, external_id: str, keys: str) -> Answer:
        """A voice call's result: pressing 1 acknowledges the call-out the call was made for."""
        if "1" not in keys:
            return Answer("unrecognised")
        row = await self._pool.fetchrow(sql("delivery_for_call"), channel, external_id)
        if row is None or row["callout_id"] is None:
            return Answer("unknown_call")
        acknowledged = await self._acknowledge(
            [(row["address"], None)], "voice", only=[row["callout_id"]]
        )
        return acknowledged[row["address"]]

    async def _acknowledge(
        self,
        asks: Sequence[tuple[str, int | None]],
        via: str,
        *,
        only: Sequence[int] | None = None,
    ) -> dict[str, Answer]:
        """Acknowledge for (phone, warning id or None) pairs; the answer per phone."""
        result: dict[str, Answer] = {phone: Answer("ack") for phone, _ in asks}
        if not asks:
            return result
        rows = await self._pool.fetch(
            sql("acknowledge"),
            [phone for phone, _ in asks],
            [warning_id for _, warning_id in asks],
            via,
            self._clock.now(),
            list(only) if only is not None else [None] * len(asks),
        )
        for r in rows:
            before = result[r["phone"]]
            result[r["phone"]] = Answer(
                "ack", (*before.callouts, r["id"]), late=before.late or r["ack_late"]
            )
        if rows:
            log.info("callouts_acknowledged", callouts=[r["id"] for r in rows], via=via)
        return result

    async def scan(self) -> int:
        """Work one batch of due call-outs; return how many steps were fired or skipped."""
        now = self._clock.now()
        worked = 0
        async with self._pool.acquire() as conn, conn.transaction():
            due = await conn.fetch(sql("due_callouts"), now, self._batch)
            for row in due:
                worked += await self._advance(conn, row, now)
        if worked:
            await self._pool.execute("SELECT pg_notify($1, '')", DELIVERIES_CHANNEL)
        return worked

    async def _advance(self, conn: Conn, row: asyncpg.Record, now: datetime) -> int:
        callout_id: int = row["id"]
        state = State(
            cursor=row["cursor"],
            acknowledged=row["state"] == "acknowledged",
            closed=row["warning_state"] != "active",
        )
        try:
            decision = next_step(Snapshot.from_json(_json(row["snapshot"])), state, now)
        except EscalationError as exc:
            # A broken row must not stop every other call-out's escalation: park it, visibly.
            log.warning("callout_snapshot_invalid", callout_id=callout_id, reason=str(exc))
            await conn.execute(
                sql("callout_event"), callout_id, now, "escalation_stopped", {"reason": str(exc)}
            )
            await conn.execute(
                sql("advance_callout"), callout_id, state.cursor, row["state"], None, now
            )
            return 0
        if decision.kind == "wait":
            await conn.execute(
                sql("advance_callout"),
                callout_id,
                state.cursor,
                row["state"],
                decision.next_check_at,
                now,
            )
            return 0
        if decision.kind == "finished":
            final = "closed" if state.closed else row["state"]
            await conn.execute(sql("advance_callout"), callout_id, state.cursor, final, None, now)
            if state.closed:
                await conn.execute(
                    sql("callout_event"), callout_id, now, "closed", {"reason": decision.reason}
                )
            return 0
        assert decision.step is not None and decision.step_index is not None
        step = decision.step
        detail = {
            "step": decision.step_index,
            "action": step.action,
            "target_id": step.target_id,
            "target_name": step.target_name,
            "reason": decision.reason,
            "due_at": step.due_at.isoformat(),
            "late_ms": round(decision.late_by.total_seconds() * 1000),
        }
        if decision.kind == "fire" and step.target_id is not None:
            await self._queue_step(
                conn,
                callout_id,
                warning_id=row["warning_id"],
                step=decision.step_index,
                target=step.target_id,
                now=now,
            )
        kind = "step_fired" if decision.kind == "fire" else "step_skipped"
        if decision.kind == "skip":
            detail["skip_reason"] = step.skip_reason
        await conn.execute(sql("callout_event"), callout_id, now, kind, detail)
        await conn.execute(
            sql("advance_callout"),
            callout_id,
            decision.step_index + 1,
            "escalated",
            now if decision.kind == "skip" else decision.next_check_at,
            now,
        )
        log.info("callout_escalated", callout_id=callout_id, step=decision.step_index, kind=kind)
        return 1

    async def _queue_step(
        self, conn: Conn, callout_id: int, *, warning_id: int, step: int, target: int, now: datetime
    ) -> None:
        """Queue the escalation step's calls, reusing the responder texts of the warning."""
        messages = await conn.fetch(
            "SELECT m.id, m.channel_kind, w.hazard, w.level FROM messages m "
            "JOIN warnings w ON w.id = m.warning_id "
            "WHERE m.warning_id = $1 AND m.audience = $2",
            warning_id,
            Audience.RESPONDER.value,
        )
        if not messages:
            return
        urgency = priority(messages[0]["hazard"], Level(messages[0]["level"]), 0)
        await conn.execute(
            sql("escalation_delivery"),
            callout_id,
            step,
            target,
            [m["channel_kind"] for m in messages],
            [m["id"] for m in messages],
            urgency,
            now,
        )

    async def run(self, idle_seconds: float = 1.0) -> None:
        """Scan forever: at once while there is work, then every ``idle_seconds``."""
        while True:
            if not await self.scan():
                await self._clock.sleep(idle_seconds)


def _phone(sender: str) -> str | None:
    """The sender's number in the roster's form, or None if it is no phone number at all."""
    try:
        return normalise_phone(sender)
    except InputError:
        return None


def _json(value: object) -> dict[str, object]:
    if isinstance(value, str):
        loaded = json.loads(value)
        assert isinstance(loaded, dict)
        return loaded
    assert isinstance(value, dict)
    return value
