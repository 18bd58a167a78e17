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

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from warnd.core.escalate import freeze, task_chain
from warnd.core.model import HAZARDS, Audience, Level, NormalisedWarning
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.policy.model import FieldTaskRule, LevelRule, Policy
from warnd.policy.render import EXERCISE_MARK, text_length

if TYPE_CHECKING:
    from warnd.pipeline.planner import AudiencePlan

TASK_NAMES = {"door_knock": "敲门入户", "gong": "鸣锣吹哨"}


@dataclass(frozen=True)
class TaskText:
    """What a task message says, before it is fitted to a channel."""

    kind: str  # door_knock | gong
    place: str
    hazard: str  # in Chinese
    level: str  # in Chinese
    village: str
    whom: Sequence[str] = ()  # door-knocking: "name(address)" of each person


def task_text(
    task: TaskText, channel_kind: str, *, signature: str, exercise: bool, max_chars: int | None
) -> str:
    """The task message for one channel kind, listing as many persons as fit in ``max_chars``.

    Persons left out are counted (``等7人``): the helper knows whom they look after, and the
    count tells them the list was cut.
    """
    prefix = (signature if channel_kind == "sms" else "") + (EXERCISE_MARK if exercise else "")
    warning = f"{task.place}{task.hazard}{task.level}预警。"
    # "完成" finishes every open task of the sender, whichever warning it came with: a code glued
    # to it (完成A7) is not read as a code (warnd.core.replies), so none is asked for.
    reply = "完成后回复“完成”" if channel_kind == "sms" else "完成后请短信回复“完成”"
    if task.kind == "gong":
        body = f"{task.village}为警报盲区或偏远村，请立即鸣锣吹哨通知全村，急促锣声示意立即转移。"
        return prefix + warning + body + reply + "。"

    def build(shown: int) -> str:
        names = "、".join(task.whom[:shown])
        rest = len(task.whom) - shown
        more = f"等{len(task.whom)}人" if rest > 0 else f"共{len(task.whom)}人"
        return (
            f"{prefix}{warning}请立即上门通知{task.village}{names}{more}，必要时协助转移。"
            f"{reply}，或回复“已通知N”。"
        )

    shown = len(task.whom)
    while shown > 0 and max_chars is not None and text_length(build(shown)) > max_chars:
        shown -= 1
    return build(shown)


def applicable(policy: Policy, level: Level, *, night: bool) -> dict[str, FieldTaskRule]:
    """The field-task kinds the policy orders for this level now."""
    rules = {"gong": policy.field_tasks.gong, "door_knock": policy.field_tasks.door_knock}
    return {kind: rule for kind, rule in rules.items() if rule.applies(level, night=night)}


# Who receives each kind of task: door-knocking is the helpers' (it replaces their plain text),
# gongs the village responders'.
TASK_AUDIENCE = {"door_knock": Audience.HELPER, "gong": Audience.RESPONDER}


def task_kinds(
    policy: Policy,
    warning: NormalisedWarning,
    now: datetime,
    plans: Mapping[Audience, AudiencePlan],
    available: Collection[str],
) -> dict[str, tuple[str, ...]]:
    """The field tasks planning opens for this warning now, each with the channel kinds its
    message goes on: those of its audience, else SMS, among the kinds configured."""
    if not warning.reaches_people or warning.msg_type == "Cancel":
        return {}
    found: dict[str, tuple[str, ...]] = {}
    for kind in applicable(policy, warning.level, night=policy.night.is_night(now)):
        plan = plans.get(TASK_AUDIENCE[kind])
        kinds = tuple(k for k in (plan.kinds if plan else ()) if k in available)
        found[kind] = kinds or (("sms",) if "sms" in available else ())
    return found


async def count_tasks(
    conn: Conn, warning_id: int, kinds: Collection[str], *, speciality: str | None, exercise: bool
) -> dict[str, int]:
    """How many tasks of each kind planning would open (for the officer's preview)."""
    counts = {}
    if "door_knock" in kinds:
        counts["door_knock"] = len(
            await conn.fetch(sql("door_knock_candidates"), warning_id, exercise)
        )
    if "gong" in kinds:
        counts["gong"] = len(
            await conn.fetch(sql("gong_candidates"), warning_id, speciality, exercise)
        )
    return counts


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
) -> int:
    """Open the warning's tasks of one kind and queue each new task's message; how many opened."""
    exercise_only = warning.status == "Exercise"
    if kind == "gong":
        rows = await conn.fetch(sql("gong_candidates"), warning_id, speciality, exercise_only)
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
