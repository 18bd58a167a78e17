"""Every text a warning sends, keyed as the outbox stores them: one per audience and channel
kind it plans, and for an Update or Cancel the notices to those the ended warning reached.

Planning, notices and the second officer's approval all take their texts from here, so what an
approver reads is what goes out: the approval stores these texts, and planning keeps a text
already stored for its key (the first one written wins).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from warnd.core.model import NormalisedWarning
from warnd.core.vocabulary import Audience
from warnd.policy.model import Policy
from warnd.policy.render import render
from warnd.policy.targeting import AudiencePlan

# The template a correction is rendered with, by the audience column of the delivery that
# reached the person: escalation and task messages went to responders.
NOTICE_AUDIENCE = {
    "responder": Audience.RESPONDER,
    "escalation": Audience.RESPONDER,
    "field_task": Audience.RESPONDER,
    "helper": Audience.HELPER,
    "facility": Audience.FACILITY,
    "household": Audience.HOUSEHOLD,
    "broadcast": Audience.BROADCAST,
}


@dataclass(frozen=True, order=True)
class Text:
    """One text: its key in ``messages.audience``, the channel kind, and the words."""

    key: str
    channel_kind: str
    body: str
    notice: str = ""  # correction | withdrawn | cancelled; "" for the warning itself
    reached: str = ""  # a correction: the audience of the deliveries that reached the person


def audience_text(
    policy: Policy,
    warning: NormalisedWarning,
    audience: Audience,
    kind: str,
    *,
    place: str,
    short_code: str | None,
    max_chars: Mapping[str, int],
) -> Text:
    """The warning's own text for one audience on one channel kind."""
    body = render(
        policy,
        warning,
        audience,
        kind,
        place=place,
        max_chars=max_chars.get(kind),
        reply_code=f"1{short_code or ''}",
    )
    return Text(audience.value, kind, body)


def plan_texts(
    policy: Policy,
    warning: NormalisedWarning,
    plans: Mapping[Audience, AudiencePlan],
    *,
    place: str,
    short_code: str | None,
    max_chars: Mapping[str, int],
) -> list[Text]:
    """The texts planning writes: each planned audience on its kinds and its first fail-over
    kinds (a delivery that fails over carries the text of the kind it moves to)."""
    return [
        audience_text(
            policy, warning, audience, kind, place=place, short_code=short_code, max_chars=max_chars
        )
        for audience, plan in plans.items()
        for kind in dict.fromkeys([*plan.kinds, *plan.fallbacks[0]])
    ]


def notice_texts(
    policy: Policy,
    warning: NormalisedWarning,
    reached: Collection[tuple[str, str]],
    *,
    place: str,
    short_code: str | None,
    max_chars: Mapping[str, int],
) -> list[Text]:
    """An Update's or Cancel's notices to those the ended warnings ``reached`` ((audience,
    kind) pairs of their deliveries): the cancellation, or the withdrawal for those no longer
    inside and the correction, per audience, for those still inside."""
    cancel = warning.msg_type == "Cancel"
    texts: list[Text] = []
    for kind in sorted({kind for _, kind in reached}):
        limit = max_chars.get(kind)
        notice = "cancelled" if cancel else "withdrawn"
        body = render(
            policy,
            warning,
            Audience.RESPONDER,
            kind,
            place=place,
            max_chars=limit,
            withdrawn=not cancel,
        )
        texts.append(Text(f"notice:{notice}", kind, body, notice, "*"))
    if cancel:
        return texts
    for audience, kind in sorted(set(reached)):
        text_audience = NOTICE_AUDIENCE[audience]
        if (audience == "broadcast") != (kind == "broadcast"):
            continue  # a failover never crosses between phones and loudspeakers
        own = audience_text(
            policy,
            warning,
            text_audience,
            kind,
            place=place,
            short_code=short_code,
            max_chars=max_chars,
        )
        key = text_audience.value if audience == text_audience.value else f"notice:{audience}"
        texts.append(Text(key, kind, own.body, "correction", audience))
    return texts


def digest(texts: Collection[Text]) -> str:
    """What an approver confirms having read: a SHA-256 over every text's key, kind and words."""
    h = hashlib.sha256()
    for text in sorted({(t.key, t.channel_kind, t.body) for t in texts}):
        for part in text:
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
    return h.hexdigest()
