"""How a call ended, in words: the cause of every CallResult and the counter it feeds.

Pure functions over the facts a worker reports (:class:`channels.sip.protocol.CallEnded`). A cause
starts with a fixed phrase an operator can count on ("busy", "no answer", "engine lost"…) and
goes on with the detail (the SIP status, how many times the prompt was said).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from channels.sip.protocol import (
    PHASE_WAITING,
    WHY_KEY,
    WHY_NO_KEY,
    WHY_NO_MEDIA,
    WHY_RING_TIMEOUT,
    WHY_STOPPED,
    CallEnded,
)


class Ending(StrEnum):
    """The kinds of endings, as counted in ``health()``."""

    ACKNOWLEDGED = "acknowledged"  # answered, "1" pressed
    NO_KEY = "no_key"  # answered, the prompt said every time, no "1"
    HUNG_UP = "hung_up"  # answered, the callee hung up before pressing "1"
    NO_ANSWER = "no_answer"  # rang out, or the network said nobody answered (408, 480, 487)
    BUSY = "busy"  # 486, 600
    DECLINED = "declined"  # 603
    UNREACHABLE = "unreachable"  # 5xx, transport failure, no ringing at all
    REJECTED = "rejected"  # other 4xx and 6xx: unknown number, forbidden…
    FAILED = "failed"  # answered but no audio path
    LOST = "lost"  # the engine worker died during the call
    STOPPED = "stopped"  # the channel stopped during the call


@dataclass(frozen=True)
class Outcome:
    ending: Ending
    answered: bool
    keys: str
    cause: str


# What the network's final answer to an unanswered call means, in the order checked.
_BY_STATUS: tuple[tuple[frozenset[int], Ending, str, str], ...] = (
    (frozenset({486, 600}), Ending.BUSY, "busy", ""),
    (frozenset({603}), Ending.DECLINED, "declined", ""),
    (frozenset({408, 480, 487}), Ending.NO_ANSWER, "no answer", ""),
    (
        frozenset({401, 403, 407}),
        Ending.REJECTED,
        "rejected",
        " (check the trunk's username and password)",
    ),
)


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def acknowledged(keys: str, plays: int) -> Outcome:
    """A "1" was pressed: the call-out is answered (reported at once, before the hang-up)."""
    return Outcome(
        Ending.ACKNOWLEDGED, True, keys, f"answered, key 1 (prompt said {_times(plays)})"
    )


def lost(how: str, *, answered: bool) -> Outcome:
    """The worker holding the call died: nothing more will be heard of it, so it counts as not
    answered and the escalation chain carries on."""
    state = "answered, no key yet" if answered else "not answered yet"
    return Outcome(Ending.LOST, False, "", f"engine lost: {how} ({state})")


def ended(facts: CallEnded, ring_timeout: float) -> Outcome:
    """The outcome of a call that ended without a "1" (or with one, if the key event was
    missed: the key still counts)."""
    if "1" in facts.keys or facts.why == WHY_KEY:
        return acknowledged(facts.keys, facts.plays)
    if facts.why == WHY_STOPPED:
        cause = "stopped: the channel stopped during the call"
        return Outcome(Ending.STOPPED, facts.answered, facts.keys, cause)
    if facts.answered:
        return _answered(facts)
    return _unanswered(facts, ring_timeout)


def _answered(facts: CallEnded) -> Outcome:
    if facts.why == WHY_NO_KEY:
        cause = f"answered, no key (prompt said {_times(facts.plays)})"
        return Outcome(Ending.NO_KEY, True, facts.keys, cause)
    if facts.why == WHY_NO_MEDIA:
        return Outcome(Ending.FAILED, True, facts.keys, "answered, but no audio path came up")
    if facts.phase == PHASE_WAITING:
        cause = f"hung up without a key (prompt said {_times(facts.plays)})"
    else:
        cause = f"hung up during the prompt (play {max(facts.plays, 1)})"
    return Outcome(Ending.HUNG_UP, True, facts.keys, cause)


def _unanswered(facts: CallEnded, ring_timeout: float) -> Outcome:
    if facts.why == WHY_RING_TIMEOUT:
        if facts.rang:
            return Outcome(Ending.NO_ANSWER, False, "", f"no answer: rang {ring_timeout:g} s")
        cause = f"unreachable: no ringing within {ring_timeout:g} s"
        return Outcome(Ending.UNREACHABLE, False, "", cause)
    code = facts.code
    status = f"{code} {facts.reason}".strip() if code else facts.reason or "no status"
    for codes, ending, phrase, advice in _BY_STATUS:
        if code in codes:
            return Outcome(ending, False, "", f"{phrase}: {status}{advice}")
    if 400 <= code < 500 or code >= 600:
        return Outcome(Ending.REJECTED, False, "", f"rejected: {status}")
    return Outcome(Ending.UNREACHABLE, False, "", f"unreachable: {status}")
