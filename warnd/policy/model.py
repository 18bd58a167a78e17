"""The dissemination policy: who is reached at each level, on which channels, who must answer.

Loaded from ``config/policy.toml`` (see the comments there for the shape and its meaning). Every
table forbids unknown keys so that a typo fails loudly at load or reload, never silently at
3 a.m. during a red warning. The policy also carries its compiled message templates, so that a
reload swaps rules and texts together or not at all.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from warnd.core.config import Duration
from warnd.core.eew import MAX_DEGREE, MIN_DEGREE, EewParameters
from warnd.core.errors import ConfigError
from warnd.core.vocabulary import HAZARDS, Audience, Level
from warnd.policy.templates import Templates

# The channel kinds a policy may name. Mirrors channels.base.ChannelKind without "other": a
# policy addresses people by how they are reached, and "other" says nothing about that.
CHANNEL_KINDS = ("sms", "voice", "broadcast")
RESPONDER_LEVELS = ("county", "town", "village")
DEFAULT_ACK_WITHIN = {
    "county": timedelta(minutes=5),
    "town": timedelta(minutes=10),
    "village": timedelta(minutes=10),
}
DEFAULT_SIGNATURE = "【济宁市应急管理局】"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _channel_kind(value: str) -> str:
    if value not in CHANNEL_KINDS:
        raise ValueError(f"{value!r} is not a channel kind ({', '.join(CHANNEL_KINDS)})")
    return value


ChannelKindName = Annotated[str, AfterValidator(_channel_kind)]


def _no_repeats(values: list[Any], what: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice in {what}")
        seen.add(value)


class AudienceRule(_Strict):
    """How one audience is reached at one level."""

    channels: list[ChannelKindName] = Field(min_length=1)
    """Channel kinds sent at the same time, in the order they should go out."""
    fallback: list[ChannelKindName] = Field(default_factory=list)
    """Kinds tried in order when a kind in ``channels`` fails permanently for a recipient."""
    night_channels: list[ChannelKindName] | None = Field(default=None, min_length=1)
    """If set, replaces ``channels`` inside the night window."""

    @model_validator(mode="after")
    def _consistent(self) -> AudienceRule:
        _no_repeats(self.channels, "channels")
        _no_repeats(self.fallback, "fallback")
        if self.night_channels is not None:
            _no_repeats(self.night_channels, "night_channels")
        both = [k for k in self.fallback if k in self.channels]
        if both:
            raise ValueError(f"fallback {both[0]!r} is already sent in channels")
        return self

    def channels_at(self, *, night: bool) -> list[str]:
        """The kinds sent together at this time of day."""
        if night and self.night_channels is not None:
            return list(self.night_channels)
        return list(self.channels)

    def fallback_at(self, *, night: bool) -> list[str]:
        """The fail-over kinds at this time of day, minus any already sent together."""
        sent = self.channels_at(night=night)
        return [k for k in self.fallback if k not in sent]

    def kinds(self) -> set[str]:
        """Every kind this rule may use, day or night, first choice or fallback."""
        return {*self.channels, *self.fallback, *(self.night_channels or ())}


def _responder_level(value: str) -> str:
    if value not in RESPONDER_LEVELS:
        raise ValueError(f"{value!r} is not a responder level ({', '.join(RESPONDER_LEVELS)})")
    return value


class AckRule(_Strict):
    """Whether responders must answer (a call-out is opened), and by when, per responder level."""

    required: bool = False
    within: dict[Annotated[str, AfterValidator(_responder_level)], Duration] = Field(
        default_factory=lambda: dict(DEFAULT_ACK_WITHIN)
    )
    """Answer deadline by responder level; an answer after it is recorded as late."""

    @field_validator("within", mode="after")
    @classmethod
    def _fill_defaults(cls, within: dict[str, timedelta]) -> dict[str, timedelta]:
        # Naming only the county deadline keeps the town and village defaults.
        return {**DEFAULT_ACK_WITHIN, **within}


EscalationAction = Literal["repeat", "backup", "superior", "duty_officer"]


class EscalationStep(_Strict):
    """One step of a call-out's escalation, due ``after`` the call-out opened unless answered."""

    action: EscalationAction
    after: Duration


class LevelRule(_Strict):
    """Everything the policy says about one level (of one hazard)."""

    audiences: dict[Audience, AudienceRule] = Field(default_factory=dict)
    """Who is reached; an audience that is absent is not sent at this level."""
    order: list[Audience] = Field(default_factory=list)
    """Audiences to send before the usual order (responder, broadcast, facility, helper,
    household); the rest keep the usual order after them."""
    ack: AckRule = Field(default_factory=AckRule)
    escalation: list[EscalationStep] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> LevelRule:
        for audience, rule in self.audiences.items():
            for kind in sorted(rule.kinds()):
                # A loudspeaker has no phone number and a phone is no loudspeaker.
                if (audience is Audience.BROADCAST) != (kind == "broadcast"):
                    raise ValueError(
                        f"audiences.{audience.value}: the {audience.value} audience cannot be "
                        f"reached by {kind!r} (only the broadcast audience uses 'broadcast')"
                    )
        _no_repeats(self.order, "order")
        if self.ack.required and Audience.RESPONDER not in self.audiences:
            raise ValueError("ack.required needs the responder audience (only responders answer)")
        if self.escalation and not self.ack.required:
            raise ValueError("escalation is only for call-outs: set ack.required = true")
        previous = timedelta(0)
        for number, step in enumerate(self.escalation):
            if step.after <= previous:
                raise ValueError(
                    f"escalation[{number}]: after must be later than the previous step "
                    "(each 'after' counts from when the call-out opened)"
                )
            previous = step.after
        return self

    def rank(self, audience: Audience) -> int:
        """The audience's place in the send order of this rule, 0 first."""
        if audience in self.order:
            return self.order.index(audience)
        rest = [a for a in Audience if a not in self.order]
        return len(self.order) + rest.index(audience)


class HazardRule(_Strict):
    """A hazard's own rules: replace the level rules, per level or for all levels at once."""

    all_levels: LevelRule | None = None
    levels: dict[Level, LevelRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_empty(self) -> HazardRule:
        if self.all_levels is None and not self.levels:
            raise ValueError("a hazard table needs 'all_levels' or at least one 'levels.<level>'")
        return self

    def rule(self, level: Level) -> LevelRule | None:
        return self.levels.get(level, self.all_levels)


class NightWindow(_Strict):
    """The night hours, local time; the window may wrap midnight (22:00–06:00)."""

    start: time = time(22, 0)
    end: time = time(6, 0)
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name!r} is not a known time zone (e.g. 'Asia/Shanghai')") from None
        return name

    @model_validator(mode="after")
    def _not_empty(self) -> NightWindow:
        if self.start == self.end:
            raise ValueError("night.start and night.end are equal: the window would be empty")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("night.start and night.end are local times; set night.timezone")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def label(self) -> str:
        """The window as officers read it: ``22:00–06:00``."""
        return f"{self.start:%H:%M}–{self.end:%H:%M}"

    def is_night(self, at: datetime) -> bool:
        """Whether ``at`` (an aware datetime) falls in the night window, start inclusive."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("is_night needs an aware datetime")
        local = at.astimezone(self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class FieldTaskRule(_Strict):
    """When a field task (door-knocking, gongs) is created for the villages of a warning."""

    levels: list[Level]
    at_night_all_levels: bool = False
    within: Duration = timedelta(minutes=30)
    """How long the assignee has to report the task done; then it escalates like a call-out."""

    def applies(self, level: Level, *, night: bool) -> bool:
        return level in self.levels or (night and self.at_night_all_levels)


class FieldTaskRules(_Strict):
    """The last kilometre (DOMAIN §5): tasks for village responders and helpers to confirm."""

    door_knock: FieldTaskRule = Field(
        default_factory=lambda: FieldTaskRule(
            levels=[Level.ORANGE, Level.RED], at_night_all_levels=True
        )
    )
    """Door-to-door notice (敲门入户) of special-group members (老幼病残孕)."""
    gong: FieldTaskRule = Field(
        default_factory=lambda: FieldTaskRule(
            levels=[Level.ORANGE, Level.RED], within=timedelta(minutes=15)
        )
    )
    """Gongs and whistles (鸣锣吹哨) in remote villages and alarm blind spots."""


# Second-officer approval of manual orange and red warnings is a requirement (DOMAIN §8,
# Hawaii 2018), not a preference: the policy may add levels, never remove these.
REQUIRED_MANUAL_APPROVAL = (Level.ORANGE, Level.RED)


class PublishRules(_Strict):
    """Which warnings go out at once and which wait for a second officer."""

    feed_approval_levels: list[Level] = Field(default_factory=list)
    """Levels at which a feed's warning waits for an approver; empty: feeds publish directly."""
    manual_approval_levels: list[Level] = Field(
        default_factory=lambda: list(REQUIRED_MANUAL_APPROVAL)
    )
    """Levels at which an officer's warning waits for a second officer."""

    @field_validator("manual_approval_levels")
    @classmethod
    def _keeps_required(cls, levels: list[Level]) -> list[Level]:
        missing = [lv.value for lv in REQUIRED_MANUAL_APPROVAL if lv not in levels]
        if missing:
            raise ValueError(
                f"must include {', '.join(missing)}: manual orange and red warnings always "
                "need a second officer"
            )
        return levels

    def needs_approval(self, level: Level, manual: bool) -> bool:
        return level in (self.manual_approval_levels if manual else self.feed_approval_levels)


class IntensityFormula(_Strict):
    """I = a + b·M − c·log10(R): estimated intensity at hypocentral distance R km."""

    a: float = Field(default=0.92, allow_inf_nan=False)
    b: float = Field(default=1.63, gt=0, allow_inf_nan=False)
    """Intensity per unit of magnitude: must be positive (a larger quake shakes harder)."""
    c: float = Field(default=3.49, gt=0, allow_inf_nan=False)
    """Attenuation with distance: must be positive (shaking weakens farther away)."""


Degree = Annotated[float, Field(ge=MIN_DEGREE, le=MAX_DEGREE, allow_inf_nan=False)]


class IntensityLevels(_Strict):
    """The lowest intensity degree (I–XII, as people are told it) of each level."""

    red: Degree = 7.0
    orange: Degree = 5.0
    yellow: Degree = 3.0

    @model_validator(mode="after")
    def _rising(self) -> IntensityLevels:
        if not self.red > self.orange > self.yellow:
            raise ValueError(
                f"degrees must rise from yellow to red (yellow {self.yellow:g} < orange "
                f"{self.orange:g} < red {self.red:g})"
            )
        return self


class EarthquakeEarlyWarning(_Strict):
    """Earthquake early warning (DOMAIN §3): when the public is warned, and at which level."""

    min_magnitude: float = Field(default=4.0, ge=0, le=10, allow_inf_nan=False)
    """A public alert only for a magnitude at least this."""
    s_wave_km_s: float = Field(default=3.5, ge=2.0, le=5.0, allow_inf_nan=False)
    """S-wave speed: the countdown is R / s_wave_km_s minus the time since origin."""
    intensity: IntensityFormula = Field(default_factory=IntensityFormula)
    levels: IntensityLevels = Field(default_factory=IntensityLevels)
    grace: Duration = timedelta(seconds=30)
    """How long after the S-wave reaches a village a message to it is still worth sending."""

    @field_validator("grace")
    @classmethod
    def _short_grace(cls, grace: timedelta) -> timedelta:
        if not timedelta(0) <= grace <= timedelta(minutes=10):
            raise ValueError("must be between 0s and 10m: an early warning is about seconds")
        return grace

    @property
    def parameters(self) -> EewParameters:
        """The numbers as the pure model takes them."""
        return EewParameters(
            a=self.intensity.a,
            b=self.intensity.b,
            c=self.intensity.c,
            s_wave_km_s=self.s_wave_km_s,
            min_magnitude=self.min_magnitude,
            red=self.levels.red,
            orange=self.levels.orange,
            yellow=self.levels.yellow,
            grace_s=self.grace.total_seconds(),
        )


_DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "responder": {"sms": "responder_sms.j2", "voice": "responder_voice.j2"},
    "broadcast": {"broadcast": "broadcast.j2"},
    "facility": {"sms": "facility_sms.j2", "voice": "facility_voice.j2"},
    "helper": {"sms": "helper_sms.j2", "voice": "helper_voice.j2"},
    "household": {"sms": "household_sms.j2", "voice": "household_voice.j2"},
    "cancel": {
        "sms": "cancel_sms.j2",
        "voice": "cancel_voice.j2",
        "broadcast": "cancel_broadcast.j2",
    },
    "withdrawn": {
        "sms": "withdrawn_sms.j2",
        "voice": "withdrawn_voice.j2",
        "broadcast": "withdrawn_broadcast.j2",
    },
}


def _template_file(value: str) -> str:
    # A bare file name: templates live in one folder, and a path could reach outside it.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.j2", value):
        raise ValueError(f"{value!r} is not a template file name like 'household_sms.j2'")
    return value


TemplateTable = dict[ChannelKindName, Annotated[str, AfterValidator(_template_file)]]


class TemplateNames(_Strict):
    """Which template file renders each (audience, channel kind), and the cancellation notices."""

    folder: str = "templates"
    """Folder of the ``.j2`` files, relative to the policy file."""
    responder: TemplateTable = Field(default_factory=dict)
    broadcast: TemplateTable = Field(default_factory=dict)
    facility: TemplateTable = Field(default_factory=dict)
    helper: TemplateTable = Field(default_factory=dict)
    household: TemplateTable = Field(default_factory=dict)
    cancel: TemplateTable = Field(default_factory=dict)
    withdrawn: TemplateTable = Field(default_factory=dict)
    """Sent, after an Update, to those it reached who are no longer inside the warned area."""

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: object) -> object:
        # A table names only what it changes; every other (audience, kind) keeps its default.
        if not isinstance(data, dict):
            return data
        merged: dict[str, object] = dict(data)
        for section, defaults in _DEFAULT_TEMPLATES.items():
            given = data.get(section, {})
            merged[section] = {**defaults, **given} if isinstance(given, dict) else given
        return merged

    def name(
        self, audience: Audience, kind: str, *, cancel: bool = False, withdrawn: bool = False
    ) -> str | None:
        """The template file for this audience and kind (or the cancellation or withdrawal)."""
        section = "cancel" if cancel else "withdrawn" if withdrawn else audience.value
        table: dict[str, str] = getattr(self, section)
        return table.get(kind)


def _signature(value: str) -> str:
    inner = value.removeprefix("【").removesuffix("】")
    if not (value.startswith("【") and value.endswith("】")) or not 2 <= len(inner) <= 16:
        raise ValueError(f"{value!r} is not an SMS signature like 【济宁市应急管理局】")
    if "【" in inner or "】" in inner:
        raise ValueError(f"{value!r} is not an SMS signature like 【济宁市应急管理局】")
    return value


def _hazard_code(value: str) -> str:
    if value not in HAZARDS:
        close = difflib.get_close_matches(value, list(HAZARDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{value!r} is not a hazard{hint}")
    return value


class DrillScoring(_Strict):
    """How the evaluation report scores each town and county (0-100) after a drill or warning:
    a weighted mean of the answer rate, a time score and the share of field tasks done. The time
    score is 1 when the median time to answer is at or under ``target``, 0 at or over ``limit``,
    linear between. A division without field tasks is scored on the other two, re-weighted."""

    answer_rate: float = Field(default=0.5, ge=0, le=1, allow_inf_nan=False)
    time_to_answer: float = Field(default=0.3, ge=0, le=1, allow_inf_nan=False)
    task_completion: float = Field(default=0.2, ge=0, le=1, allow_inf_nan=False)
    target: Duration = timedelta(minutes=2)
    limit: Duration = timedelta(minutes=10)

    @model_validator(mode="after")
    def _consistent(self) -> DrillScoring:
        total = self.answer_rate + self.time_to_answer + self.task_completion
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                "answer_rate + time_to_answer + task_completion must add up to 1 "
                f"(they add up to {total:g})"
            )
        if self.answer_rate + self.time_to_answer <= 0:
            raise ValueError("answer_rate and time_to_answer cannot both be 0")
        if self.limit <= self.target:
            raise ValueError("limit must be longer than target")
        return self


class Policy(_Strict):
    """The whole dissemination policy, as loaded from ``policy.toml``."""

    signature: Annotated[str, AfterValidator(_signature)] = DEFAULT_SIGNATURE
    night: NightWindow = Field(default_factory=NightWindow)
    levels: dict[Level, LevelRule]
    hazards: dict[Annotated[str, AfterValidator(_hazard_code)], HazardRule] = Field(
        default_factory=dict
    )
    field_tasks: FieldTaskRules = Field(default_factory=FieldTaskRules)
    publish: PublishRules = Field(default_factory=PublishRules)
    templates: TemplateNames = Field(default_factory=TemplateNames)
    earthquake_early_warning: EarthquakeEarlyWarning = Field(default_factory=EarthquakeEarlyWarning)
    drill_scoring: DrillScoring = Field(default_factory=DrillScoring)

    _compiled: Templates | None = PrivateAttr(default=None)
    _fingerprint: str = PrivateAttr(default="")

    @field_validator("levels")
    @classmethod
    def _every_level(cls, levels: dict[Level, LevelRule]) -> dict[Level, LevelRule]:
        # A level left out would mean that level reaches nobody: never by omission.
        missing = [lv.value for lv in Level if lv not in levels]
        if missing:
            raise ValueError(f"every level needs a rule; missing: {', '.join(missing)}")
        return levels

    @model_validator(mode="after")
    def _cross_checks(self) -> Policy:
        for where, level, rule in self.all_rules():
            if level is Level.RED:
                _red_rings_at_night(where, rule)
            for audience, audience_rule in rule.audiences.items():
                for kind in sorted(audience_rule.kinds()):
                    if self.templates.name(audience, kind) is None:
                        raise ValueError(
                            f"templates.{audience.value}.{kind}: no template named, but "
                            f"{where}.audiences.{audience.value} uses {kind!r}"
                        )
                    for notice in ("cancel", "withdrawn"):
                        if self.templates.name(audience, kind, **{notice: True}) is None:
                            raise ValueError(
                                f"templates.{notice}.{kind}: no {notice} notice template named, "
                                f"but {where}.audiences.{audience.value} uses {kind!r}"
                            )
        return self

    def all_rules(self) -> list[tuple[str, Level, LevelRule]]:
        """Every level rule in the file with its key path and the level(s) it serves."""
        found = [(f"levels.{lv.value}", lv, rule) for lv, rule in self.levels.items()]
        for code, hazard in self.hazards.items():
            for lv in Level:
                if lv in hazard.levels:
                    found.append((f"hazards.{code}.levels.{lv.value}", lv, hazard.levels[lv]))
                elif hazard.all_levels is not None:
                    found.append((f"hazards.{code}.all_levels", lv, hazard.all_levels))
        return found

    def rule(self, hazard: str, level: Level) -> LevelRule:
        """The rule for a warning of this hazard and level: the hazard's own, else the level's."""
        override = self.hazards.get(hazard)
        if override is not None:
            found = override.rule(level)
            if found is not None:
                return found
        return self.levels[level]

    def needs_approval(self, level: Level, manual: bool) -> bool:
        """Whether a warning of this level waits for a second officer before it goes out."""
        return self.publish.needs_approval(level, manual)

    @property
    def compiled_templates(self) -> Templates:
        """The templates loaded with this policy; render uses them."""
        if self._compiled is None:
            raise ConfigError("the policy was built without templates (use load_policy)")
        return self._compiled

    @property
    def fingerprint(self) -> str:
        """A digest of the policy file and its templates, for the audit log of a reload."""
        return self._fingerprint

    def with_templates(self, templates: Templates, fingerprint: str = "") -> Policy:
        """This policy with its templates attached (the loader has checked that they render)."""
        copy = self.model_copy()
        copy._compiled = templates
        copy._fingerprint = fingerprint
        return copy


def _red_rings_at_night(where: str, rule: LevelRule) -> None:
    # Turkey 2023 (DOMAIN §8): a red warning at night rings responders' phones, it never
    # silently degrades to a quiet SMS. Refuse a policy that would.
    responders = rule.audiences.get(Audience.RESPONDER)
    if responders is None or "voice" not in responders.channels_at(night=True):
        raise ValueError(
            f"{where}.audiences.responder: a red warning must call responders by voice at night "
            "(put 'voice' in channels or night_channels)"
        )
