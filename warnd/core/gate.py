"""The gate: may a warning go out now, wait for a second officer, or reach nobody?"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from warnd.core.model import NormalisedWarning
from warnd.core.vocabulary import Level


@dataclass(frozen=True)
class Decision:
    state: str  # warnings.state: active | pending_approval | muted | expired
    plan: bool  # planning starts now
    reason: str


def admit(warning: NormalisedWarning, *, needs_approval: bool, now: datetime) -> Decision:
    """Decide the initial state of a newly stored warning.

    ``needs_approval`` is the policy's answer for this level and source (manual orange and red
    wait for a second officer, so one tired click cannot alarm a city; feeds publish directly
    unless the policy says otherwise).
    """
    if warning.msg_type == "Cancel":
        if needs_approval and warning.reaches_people:
            # Lifting a red warning lowers people's guard: it waits like issuing one.
            return Decision("pending_approval", plan=False, reason="waits for a second officer")
        # Muted: a Cancel alarms nobody. It is still planned when it reaches people, to tell
        # those the warnings it ends had reached that they are lifted.
        return Decision(
            "muted", plan=warning.reaches_people, reason="a cancel ends the warnings it references"
        )
    if not warning.reaches_people:
        return Decision("muted", plan=False, reason=f"status {warning.status} never reaches people")
    if warning.expires is not None and warning.expires <= now:
        return Decision("expired", plan=False, reason="already expired when it arrived")
    if needs_approval:
        return Decision("pending_approval", plan=False, reason="waits for a second officer")
    return Decision("active", plan=True, reason="published")


def amendment_needs_approval(
    original: NormalisedWarning,
    amendment: NormalisedWarning,
    *,
    guarded: Collection[Level],
) -> bool:
    """Whether an officer's cancel or correction of ``original`` waits for a second officer.

    Of a warning at a ``guarded`` level (the policy's manual approval levels: orange and red at
    least), a cancel lifts people's guard and a correction sends new words to everyone already
    reached: either is one tired click from a false alarm, so both wait. Only what reduces harm
    without new words goes at once: an earlier expiry, a lower level with the fixed texts. (A
    warning still waiting for approval reached nobody: cancelling it never waits, the caller's
    rule.)
    """
    if original.level not in guarded:
        return False
    if amendment.msg_type == "Cancel":
        return True
    new_words = any(
        getattr(amendment, name) != getattr(original, name)
        for name in ("headline", "description", "instruction")
    )
    # Giving a warning without an end an expiry ends it sooner: that too reduces harm.
    later = (
        amendment.expires is not None
        and original.expires is not None
        and amendment.expires > original.expires
    )
    return new_words or later or amendment.level.rank < original.level.rank
