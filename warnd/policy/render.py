"""Message texts: a warning rendered for one audience and channel kind from a zh-CN template.

Templates are Jinja2 files in ``config/templates`` (named per audience and kind by the policy),
rendered in a sandbox with undefined variables as errors. What the law and safety require of
every text is added here, not left to the template: the SMS signature at the very start and
``【演练】`` on every exercise. Texts that must fit a channel are shortened by cutting the
description first, then the instruction — never the place, hazard, level, signature or the reply
instruction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from warnd.core.errors import ConfigError
from warnd.core.model import Area, NormalisedWarning
from warnd.core.texts import text_length
from warnd.core.vocabulary import EXERCISE_MARK, HAZARDS, Audience, Level
from warnd.policy.model import Policy
from warnd.policy.templates import Templates

ELLIPSIS = "…"
# A description or instruction cut shorter than this says nothing: it is dropped instead (and
# without an instruction the template gives its own short advice).
MIN_FRAGMENT = 8
_SENTENCE_END = "。！？!?…；;."
_TRAILING_SEPARATORS = "，,、；;：: "


def _sentence(text: str) -> str:
    """A field as one line ending with sentence punctuation, or empty."""
    text = re.sub(r"\s+", " ", text).strip()
    # A space between two Chinese characters is a line break that crept in, not a word gap.
    text = re.sub(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])", "", text)
    if text and text[-1] not in _SENTENCE_END:
        text += "。"
    return text


def _cut(text: str, units: int) -> str:
    """``text`` shortened to at most ``units`` (ellipsis included), ending with "…" if cut."""
    if text_length(text) <= units:
        return text
    if units <= 0:
        return ""
    used = 0
    end = 0
    for end, char in enumerate(text):  # noqa: B007 - end is the cut point after the loop
        used += 2 if ord(char) > 0xFFFF else 1
        if used > units - 1:
            break
    kept = text[:end].rstrip(_TRAILING_SEPARATORS)
    return kept + ELLIPSIS if kept else ""


def _local_time(at: datetime | None, zone: ZoneInfo) -> str:
    if at is None:
        return ""
    local = at.astimezone(zone) if at.tzinfo is not None else at
    return f"{local.month}月{local.day}日{local.hour}时{local.minute:02d}分"


VOICE_KEYS = "确认收到请按1，重听请按2"


def reply_instruction(audience: Audience, channel_kind: str, reply_code: str) -> str:
    """How a responder answers on this kind of channel; empty for everyone else."""
    if audience is not Audience.RESPONDER:
        return ""
    if channel_kind == "sms":
        return f"收到请回复{reply_code}"
    if channel_kind == "voice":
        # The call itself identifies the warning: no per-warning code. "2" says it again, for
        # someone woken by the ring who missed the start.
        return VOICE_KEYS
    return ""


def _prefix(policy: Policy, warning: NormalisedWarning, channel_kind: str) -> str:
    # Chinese operators require the sender's signature in 【】 at the start of an SMS; the
    # exercise mark follows it so that it is the first thing of the message a reader sees.
    prefix = policy.signature if channel_kind == "sms" else ""
    if warning.status == "Exercise":
        prefix += EXERCISE_MARK
    return prefix


def _template_name(
    policy: Policy,
    warning: NormalisedWarning,
    audience: Audience,
    channel_kind: str,
    *,
    withdrawn: bool = False,
) -> str:
    cancel = warning.msg_type == "Cancel"
    name = policy.templates.name(audience, channel_kind, cancel=cancel, withdrawn=withdrawn)
    if name is None:
        section = "cancel" if cancel else "withdrawn" if withdrawn else audience.value
        raise ConfigError(f"templates.{section}.{channel_kind}: no template named in the policy")
    return name


def _renderer(
    policy: Policy,
    templates: Templates,
    warning: NormalisedWarning,
    audience: Audience,
    channel_kind: str,
    *,
    place: str,
    reply_code: str,
    withdrawn: bool = False,
) -> tuple[str, Callable[[str, str], str]]:
    """The template's name and a function rendering it with a given description and instruction."""
    name = _template_name(policy, warning, audience, channel_kind, withdrawn=withdrawn)
    template = templates.get(name)
    hazard = HAZARDS.get(warning.hazard, HAZARDS["other"])
    zone = policy.night.zone
    prefix = _prefix(policy, warning, channel_kind)
    fixed = {
        "place": place,
        "hazard": hazard.zh,
        "hazard_code": hazard.code,
        "level": warning.level.zh,
        "level_code": warning.level.value,
        "signature": policy.signature,
        "issuer": policy.signature.removeprefix("【").removesuffix("】"),
        "exercise": warning.status == "Exercise",
        "update": warning.msg_type == "Update",
        "cancel": warning.msg_type == "Cancel",
        "reply": "" if withdrawn else reply_instruction(audience, channel_kind, reply_code),
        "headline": warning.headline,
        "event": warning.event,
        "area_desc": warning.area_desc,
        "sent": _local_time(warning.sent, zone),
        "effective": _local_time(warning.effective, zone),
        "expires": _local_time(warning.expires, zone),
        "extra": dict(warning.extra),
    }

    def build(description: str, instruction: str) -> str:
        try:
            body = template.render(fixed, description=description, instruction=instruction)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{templates.folder / name}: {exc}") from None
        # Lines are joined without a separator so templates can be laid out readably.
        return prefix + "".join(line.strip() for line in body.splitlines())

    return name, build


def _longest(build: Callable[[int], str], upper: int, lower: int, limit: int) -> str | None:
    """The longest ``build(n)``, ``lower <= n <= upper``, that fits ``limit``; None if none does."""
    best = None
    low, high = lower, upper
    while low <= high:
        middle = (low + high) // 2
        text = build(middle)
        if text_length(text) <= limit:
            best, low = text, middle + 1
        else:
            high = middle - 1
    return best


def _render_with(
    policy: Policy,
    templates: Templates,
    warning: NormalisedWarning,
    audience: Audience,
    channel_kind: str,
    *,
    place: str,
    max_chars: int | None,
    reply_code: str,
    withdrawn: bool = False,
) -> str:
    name, build = _renderer(
        policy,
        templates,
        warning,
        audience,
        channel_kind,
        place=place,
        reply_code=reply_code,
        withdrawn=withdrawn,
    )
    description = _sentence(warning.description)
    instruction = _sentence(warning.instruction)
    text = build(description, instruction)
    if max_chars is None or text_length(text) <= max_chars:
        return text
    # Cut the description first (what to do matters more to the reader than why), then drop
    # it, then cut the instruction. A fragment shorter than MIN_FRAGMENT says nothing: skip it.
    shorter = _longest(
        lambda n: build(_cut(description, n), instruction),
        text_length(description) - 1,
        MIN_FRAGMENT,
        max_chars,
    )
    if shorter is None:
        candidate = build("", instruction)
        shorter = candidate if text_length(candidate) <= max_chars else None
    if shorter is None:
        shorter = _longest(
            lambda n: build("", _cut(instruction, n)),
            text_length(instruction) - 1,
            MIN_FRAGMENT,
            max_chars,
        )
    if shorter is None:
        # Without an instruction the template falls back to its own short advice.
        minimum = build("", "")
        if text_length(minimum) > max_chars:
            raise ConfigError(
                f"{templates.folder / name}: even the shortest text is {text_length(minimum)} "
                f"characters, more than the {max_chars} allowed: {minimum}"
            )
        shorter = minimum
    return shorter


def render(
    policy: Policy,
    warning: NormalisedWarning,
    audience: Audience,
    channel_kind: str,
    *,
    place: str,
    max_chars: int | None = None,
    reply_code: str = "1",
    withdrawn: bool = False,
) -> str:
    """The text of ``warning`` for ``audience`` on ``channel_kind``, naming ``place``.

    A Cancel uses the policy's cancellation template for the kind; ``withdrawn`` the notice that
    an Update no longer covers the reader (``place`` is then the area it now covers). With
    ``max_chars`` (UTF-16 units) the description, then the instruction, are cut to fit, ending
    with "…"; if the essentials alone do not fit, ``ConfigError`` names the template.
    ``reply_code`` is what a responder replies by SMS ("1" unless several warnings are open).
    """
    return _render_with(
        policy,
        policy.compiled_templates,
        warning,
        audience,
        channel_kind,
        place=place,
        max_chars=max_chars,
        reply_code=reply_code,
        withdrawn=withdrawn,
    )


# --- load-time check -------------------------------------------------------------------------

_SAMPLE_PLACE = "任城区"


def _sample(status: str, msg_type: str) -> NormalisedWarning:
    return NormalisedWarning(
        sender="check@warnd",
        identifier="template-check",
        sent=datetime(2024, 7, 1, 6, 0, tzinfo=UTC),
        status=status,
        msg_type=msg_type,
        hazard="rainstorm",
        level=Level.RED,
        area=Area(codes=("370811000000",)),
        description="预计未来3小时任城区降雨量将达100毫米以上。",
        instruction="请远离河道和低洼地带。",
    )


def check_templates(policy: Policy, templates: Templates) -> None:
    """Render every template the policy uses on sample warnings; refuse one that breaks a rule.

    Run at load and reload, so that a broken template is found by the engineer who edited it,
    not during a red warning. Each text must name the place, hazard and level; a responder's
    text must end with the reply instruction.
    """
    used: set[tuple[Audience, str]] = set()
    for _where, _level, rule in policy.all_rules():
        for audience, audience_rule in rule.audiences.items():
            used.update((audience, kind) for kind in audience_rule.kinds())
    for audience, kind in sorted(used):
        for status in ("Actual", "Exercise"):
            for msg_type, withdrawn in (
                ("Alert", False),
                ("Update", False),
                ("Update", True),
                ("Cancel", False),
            ):
                warning = _sample(status, msg_type)
                text = _render_with(
                    policy,
                    templates,
                    warning,
                    audience,
                    kind,
                    place=_SAMPLE_PLACE,
                    max_chars=None,
                    reply_code="1",
                    withdrawn=withdrawn,
                )
                name = _template_name(policy, warning, audience, kind, withdrawn=withdrawn)
                _check_text(
                    templates.folder / name, text, warning, audience, kind, notice=withdrawn
                )


def _check_text(
    file: Path,
    text: str,
    warning: NormalisedWarning,
    audience: Audience,
    kind: str,
    *,
    notice: bool = False,
) -> None:
    hazard = HAZARDS[warning.hazard].zh
    for what, value in (("place", _SAMPLE_PLACE), ("hazard", hazard), ("level", warning.level.zh)):
        if value not in text:
            raise ConfigError(f"{file}: the text does not name the {what} ({{{{ {what} }}}})")
    reply = reply_instruction(audience, kind, "1")
    if reply and not notice and warning.msg_type != "Cancel" and not text.endswith(reply):
        raise ConfigError(f"{file}: a responder's text must end with {{{{ reply }}}} ({reply})")
