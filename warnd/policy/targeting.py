"""The policy's decisions about one warning, over plain data: which audiences get it on which
channel kinds, which field tasks it orders, the place its texts name, and what the officer's
preview says it reaches. No I/O: the planner and the preview feed these functions what they read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from warnd.core.model import NormalisedWarning
from warnd.core.vocabulary import Audience, Level, priority
from warnd.policy.model import FieldTaskRule, Policy

log = structlog.get_logger(__name__)


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


@dataclass(frozen=True)
class Reach:
    """What a warning reaches, per audience: the preview's figures, computed without I/O."""

    recipients: dict[str, int]
    channels: dict[str, list[str]]
    deliveries: dict[str, int]
    not_reached: dict[str, int]
    not_reached_reasons: dict[str, str]


def reach(
    warning: NormalisedWarning,
    plans: Mapping[Audience, AudiencePlan],
    wanted: Mapping[Audience, AudiencePlan],
    held: Mapping[str, tuple[int, int]],
) -> Reach:
    """Recipients and deliveries of the audiences ``plans`` sends to, and the people of the
    others that the area holds, each with the reason.

    ``plans`` is ``decide`` with the configured channel kinds, ``wanted`` the same with every
    kind: an audience in ``wanted`` only lacks a channel. ``held`` maps an audience to the
    (people, addresses) the area holds, addresses being what planning writes one row per kind
    for (every phone of a household).
    """
    result = Reach({}, {}, {}, {}, {})
    for audience in Audience:
        name = audience.value
        people, addresses = held.get(name, (0, 0))
        plan = plans.get(audience)
        if plan is not None:
            result.recipients[name] = people
            result.channels[name] = list(plan.kinds)
            result.deliveries[name] = addresses * len(plan.kinds)
            continue
        if people == 0:
            continue
        result.not_reached[name] = people
        if not warning.reaches_people:
            reason = f"status {warning.status}: recorded, never sent to a person"
        elif audience in wanted:
            kinds = " or ".join(wanted[audience].kinds)
            reason = f"the policy sends {kinds}, and no channel of that kind is configured"
        else:
            reason = f"the policy does not send to {name} at {warning.level.value} level"
        result.not_reached_reasons[name] = reason
    return result


def add_tasks(
    reached: Reach, tasks: Mapping[str, tuple[str, ...]], opened: Mapping[str, int]
) -> None:
    """Field tasks in the preview, as planning writes them: under the ``field_task`` audience,
    one message per task and kind; door-knocking replaces the helpers' plain text."""
    if "door_knock" in tasks:
        for table in (
            reached.recipients,
            reached.channels,
            reached.deliveries,
            reached.not_reached,
            reached.not_reached_reasons,
        ):
            table.pop(Audience.HELPER.value, None)
    reached.recipients["field_task"] = sum(opened.values())
    reached.channels["field_task"] = sorted({k for kinds in tasks.values() for k in kinds})
    reached.deliveries["field_task"] = sum(n * len(tasks[kind]) for kind, n in opened.items())
