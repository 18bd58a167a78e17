"""Texts written by code rather than templates: field tasks and stand-in (backup, superior)
messages. They list names that must be cut to the channel, and their wording is fixed by practice,
not by the issuing office."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from warnd.core.vocabulary import EXERCISE_MARK

# What a text field must hold once surrounding whitespace is stripped, as JSON Schema patterns:
# the request models strip it, and the API document must say what is then accepted.
VISIBLE = r"\S"  # at least one character that is not a space
TWO_VISIBLE = r"\S[\s\S]*\S"  # at least two, first and last not spaces


def text_length(text: str) -> int:
    """Length in UTF-16 code units: what one UCS-2 SMS part counts (70 for Chinese)."""
    return len(text.encode("utf-16-le")) // 2


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


def stand_in_text(
    about: Mapping[str, object],
    *,
    hazard: str,
    level: str,
    code: str,
    channel_kind: str,
    signature: str,
    exercise: bool,
) -> str:
    """What a backup (B角) or superior is told when a call-out or field task escalates to them:
    who did not answer (or finish), where, for which warning, and how to take it over."""
    prefix = (signature if channel_kind == "sms" else "") + (EXERCISE_MARK if exercise else "")
    if channel_kind == "voice":
        prefix += signature.removeprefix("【").removesuffix("】").join(("这里是", "。"))
    who = f"{about['person']}（{about['division']}）"
    if about.get("task_kind"):
        task = TASK_NAMES.get(str(about["task_kind"]), "现场")
        what = f"未完成{hazard}{level}预警的{task}任务（已完成{about['done']}/{about['targets']}）"
        ask = "请您立即代为落实。" + (
            "完成后回复“完成”" if channel_kind == "sms" else "完成后请短信回复“完成”"
        )
    else:
        what = f"未确认{hazard}{level}预警"
        ask = "请您立即联系落实防范。" + (
            f"收到请回复1{code}" if channel_kind != "voice" else "确认收到请按1，重听请按2"
        )
    return prefix + who + what + "，" + ask
