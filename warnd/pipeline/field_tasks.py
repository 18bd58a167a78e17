"""Field tasks (敲门入户, 鸣锣吹哨): the last kilometre, where a person must go in person.

For special-group persons (老幼病残孕) in a warned village, their helper gets a door-knocking task
listing whom to visit; for a blind-spot or remote village (警报盲区, no loudspeaker or signal),
its responsible person gets a gong-and-whistle task. Which tasks a warning gets is the policy's
``[field_tasks]`` (by level, and at night); each task has a deadline and a frozen escalation chain
like a call-out's, and progress comes back by SMS (``已通知 5``, ``完成``).

The texts are written here rather than in templates: they are lists of names that must be cut to
the channel, and their wording is fixed by practice, not by the issuing office.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from warnd.core.escalate import freeze, task_chain
from warnd.core.model import NormalisedWarning
from warnd.core.texts import TaskText, task_text
from warnd.core.vocabulary import HAZARDS
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.policy.model import FieldTaskRule, LevelRule


async def open_field_tasks(
    conn: Conn,
    warning_id: int,
    warning: NormalisedWarning,
    *,
    kind: str,
    task_rule: FieldTaskRule,
    level_rule: LevelRule,
    signature: str,
    place: str,
    channel_kinds: Sequence[str],
    max_chars: Mapping[str, int],
    speciality: str | None,
    priority: int,
    now: datetime,
    villages: Sequence[str] | None = None,
) -> int:
    """Open the warning's tasks of one kind and queue each new task's message; how many opened.
    Gongs go to the blind-spot and remote villages, or to ``villages`` when given (their
    loudspeakers failed)."""
    exercise_only = warning.status == "Exercise"
    if kind == "gong":
        rows = await conn.fetch(
            sql("gong_candidates"),
            warning_id,
            speciality,
            exercise_only,
            list(villages) if villages is not None else None,
        )
    else:
        rows = await conn.fetch(sql("door_knock_candidates"), warning_id, exercise_only)
    if not rows:
        return 0
    deadline = now + task_rule.within
    chain = task_chain(level_rule.escalation, task_rule.within)
    snapshots = [
        freeze(
            0,
            r["assignee_id"],
            now,
            deadline,
            chain,
            responder_name=r["assignee_name"],
            backup=(r["backup_id"], r["backup_name"]) if r["backup_id"] else None,
            superior=(r["superior_id"], r["superior_name"]) if r["superior_id"] else None,
        )
        for r in rows
    ]
    opened = await conn.fetch(
        sql("insert_field_tasks"),
        warning_id,
        kind,
        [r["village_code"] for r in rows],
        [r["assignee_id"] for r in rows],
        [r["phone"] for r in rows],
        [r["targets"] for r in rows],
        [s.to_json() for s in snapshots],
        [s.steps[0].due_at if s.steps else deadline for s in snapshots],
        deadline,
        now,
    )
    if not opened:
        return 0
    by_key = {(r["village_code"], r["assignee_id"]): r for r in rows}
    hazard = HAZARDS.get(warning.hazard, HAZARDS["other"]).zh
    task_ids: list[int] = []
    kinds: list[str] = []
    message_ids: list[int] = []
    for task in opened:
        row = by_key[(task["village_code"], task["assignee_id"])]
        text = TaskText(
            kind,
            place,
            hazard,
            warning.level.zh,
            row["village_name"],
            tuple(w for w in (row["whom"] or "").split("、") if w),
        )
        for channel_kind in channel_kinds:
            body = task_text(
                text,
                channel_kind,
                signature=signature,
                exercise=exercise_only,
                max_chars=max_chars.get(channel_kind),
            )
            message_ids.append(await _message(conn, warning_id, task["id"], channel_kind, body))
            task_ids.append(task["id"])
            kinds.append(channel_kind)
    await conn.execute(
        sql("task_deliveries"), warning_id, task_ids, kinds, message_ids, priority, now
    )
    return len(opened)


async def _message(conn: Conn, warning_id: int, task_id: int, channel_kind: str, body: str) -> int:
    # Each task's text is its own (it lists its persons): one message row per task and kind.
    message_id: int = await conn.fetchval(
        sql("upsert_message"), warning_id, f"task:{task_id}", channel_kind, body
    )
    return message_id


async def task_messages(conn: Conn, task_id: int) -> list[asyncpg.Record]:
    """The task's own messages (id, channel kind), re-sent by a "repeat" escalation step."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT DISTINCT message_id AS id, channel_kind FROM deliveries "
        "WHERE task_id = $1 AND step IS NULL",
        task_id,
    )
    return rows
