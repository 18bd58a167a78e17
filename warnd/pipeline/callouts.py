"""Opening call-outs (叫应): one per responder who must answer, in the planner's transaction.

What happens to them afterwards is elsewhere: answers in ``warnd.pipeline.answers``, the
escalation timers in ``warnd.pipeline.escalation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from warnd.core.escalate import deadline_for, freeze
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.policy.model import LevelRule


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
