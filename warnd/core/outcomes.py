"""What becomes of a sent batch: each claimed row is sent, retried later, or given up.

Retrying is decided here and only here (STYLE.md: classify failures once, retry at one level):
transient failures go back to the queue with exponential backoff and jitter until the attempts
run out; permanent ones are given up, and dispatch fails them over to the next channel kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from channels.base import OutboundMessage, Outcome, Reason, SendResult, WarningContext

_BACKOFF = wait_exponential_jitter(multiplier=2, max=300, exp_base=2, jitter=2)


def backoff_seconds(attempt: int) -> float:
    """Delay before attempt ``attempt + 1``: exponential from 2 s, capped at 5 min, with jitter."""
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return float(_BACKOFF(state))


class Claimed(NamedTuple):
    """A claimed row (a tuple: built by the thousand a second on the sending path)."""

    id: int
    warning_id: int
    address: str
    attempts: int
    fallback: tuple[str, ...]
    body: str
    priority: int = 0
    warning: WarningContext | None = None
    expires_at: datetime | None = None

    def message(self) -> OutboundMessage:
        """The message a channel is handed for this row."""
        return OutboundMessage(
            self.id, self.address, self.body, self.priority, self.warning, self.expires_at
        )


@dataclass(frozen=True)
class Outcomes:
    """The results of one batch, grouped the way they are written back.

    Each row carries its claim's ``attempts``: the fence that stops a worker whose lease ran out
    from overwriting the outcome of the worker that claimed the row after it.
    """

    sent: list[tuple[int, int, str, int | None]]  # id, attempts, external id, SMS parts
    retry: list[tuple[int, int, float, str]]  # id, attempts, delay, reason
    give_up: list[
        tuple[int, int, str]
    ]  # permanent, or transient too many times: id, attempts, reason
    # Too late to be of use: cancelled, never failed over (another route is later still).
    expired: list[tuple[int, int, str]] = field(default_factory=list)  # id, attempts, reason


def classify(
    claimed: Sequence[Claimed], results: Sequence[SendResult], max_attempts: int
) -> Outcomes:
    """Pure: what becomes of each claimed row, given the channel's results."""
    by_key = {r.key: r for r in results}
    sent, retry, give_up, expired = [], [], [], []
    for row in claimed:
        result = by_key.get(row.id)
        if result is None:
            result = SendResult(row.id, Outcome.TRANSIENT, detail="channel returned no result")
        if result.outcome is Outcome.ACCEPTED:
            sent.append((row.id, row.attempts, result.external_id or "", result.parts))
            continue
        reason = f"{result.reason or 'unknown'}: {result.detail}".rstrip(": ")
        if result.reason is Reason.EXPIRED:
            expired.append((row.id, row.attempts, reason))
        elif result.outcome is Outcome.TRANSIENT and row.attempts < max_attempts:
            retry.append((row.id, row.attempts, backoff_seconds(row.attempts), reason))
        else:
            give_up.append((row.id, row.attempts, reason))
    return Outcomes(sent, retry, give_up, expired)
