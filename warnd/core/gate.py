"""The gate: may a warning go out now, wait for a second officer, or reach nobody?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from warnd.core.model import NormalisedWarning


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
