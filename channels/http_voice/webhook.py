"""What a voice-notification gateway posts back to warnd, read into ``CallResult`` events.

The body is one JSON object or a list of them (at most ``MAX_EVENTS``), one per ended call::

    {"call_id": "vc-123", "status": "answered", "keys": "1", "detail": "…"}

``call_id`` (a string or an integer) is the id the gateway answered the call request with.
``status`` is how the call ended: answered, no_answer, busy, declined, failed or unreachable, or
a common synonym of one (completed, no-answer, timeout, rejected, powered_off…; case, spaces and
hyphens do not matter). ``keys`` (optional) are the keys the callee pressed, in order ("21": the
script again, then confirmed); only an answered call has any. ``detail`` (optional) is the
gateway's own words, kept with the result. Unknown keys are refused, so a misspelt field is an
error, not silently lost. The whole body is validated before any of it is used: one bad result
refuses it all, naming the index and field (``[2].status: …``), so that the gateway can fix and
resend it whole.

An answered call becomes ``CallResult(answered=True, keys=…)``: "1" among the keys acknowledges
the call-out the call was made for. Every other status becomes ``answered=False`` with the
status (and the detail) as its cause, which marks the delivery failed and leaves the call-out to
its escalation chain.

Pure reading; the HTTP endpoint is warnd's (``warnd.web.webhooks.voice``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from channels.base import CallResult
from channels.registry import error_location

MAX_EVENTS: Final = 1000  # per request; a gateway with more sends several requests


class CallStatus(StrEnum):
    """How a call ended, as the webhook names it."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"  # rang until the ring timeout
    BUSY = "busy"
    DECLINED = "declined"  # the callee refused the call
    FAILED = "failed"  # the gateway or the network could not place it (a wrong number too)
    UNREACHABLE = "unreachable"  # switched off, out of coverage


# What gateways write for each end of a call, lower-cased, spaces and hyphens as "_".
STATUS_WORDS: Final[Mapping[str, CallStatus]] = {
    **{status.value: status for status in CallStatus},
    "answer": CallStatus.ANSWERED,
    "completed": CallStatus.ANSWERED,
    "connected": CallStatus.ANSWERED,
    "noanswer": CallStatus.NO_ANSWER,
    "not_answered": CallStatus.NO_ANSWER,
    "unanswered": CallStatus.NO_ANSWER,
    "timeout": CallStatus.NO_ANSWER,
    "ring_timeout": CallStatus.NO_ANSWER,
    "user_busy": CallStatus.BUSY,
    "rejected": CallStatus.DECLINED,
    "refused": CallStatus.DECLINED,
    "error": CallStatus.FAILED,
    "power_off": CallStatus.UNREACHABLE,
    "powered_off": CallStatus.UNREACHABLE,
    "out_of_service": CallStatus.UNREACHABLE,
    "not_reachable": CallStatus.UNREACHABLE,
}


class InboundCallResult(BaseModel):
    """How a call the gateway placed ended, named by the id it answered the request with."""

    model_config = ConfigDict(extra="forbid", strict=True)

    call_id: str | int
    status: CallStatus
    keys: str = Field(
        default="",
        max_length=32,
        pattern=r"^[0-9*#A-Da-d]*$",
        description="the keys pressed, in order (DTMF: 0-9, *, #, A-D)",
    )
    detail: str = Field(default="", max_length=500)

    @field_validator("call_id")
    @classmethod
    def _an_id(cls, value: str | int) -> str | int:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: object) -> CallStatus:
        if not isinstance(value, str):
            raise ValueError("must be a string")  # noqa: TRY004 - pydantic wants ValueError
        word = value.strip().lower().replace("-", "_").replace(" ", "_")
        status = STATUS_WORDS.get(word)
        if status is None:
            known = ", ".join(s.value for s in CallStatus)
            raise ValueError(f"{value[:40]!r} is not how a call ends (use {known})")
        return status

    @field_validator("keys")
    @classmethod
    def _keys_need_an_answer(cls, value: str, info: ValidationInfo) -> str:
        # A key on a call that was never answered contradicts itself: acknowledging on it
        # could credit a responder who never heard the warning.
        status = info.data.get("status")  # absent when the status itself is wrong
        if value and status is not None and status is not CallStatus.ANSWERED:
            raise ValueError(f"a call that ended {status.value} has no keys")
        return value


class InboundBodyError(ValueError):
    """The body is not a valid call result or list of them; the message names where."""


def _validate_one(item: object, index: str, now: datetime) -> tuple[CallResult | None, str]:
    """The call result ``item`` (at ``index`` of a list, "" for a whole body) describes, timed
    ``now``, or what is wrong with it (``location: problem``, each)."""
    if not isinstance(item, dict):
        return None, f"{index or 'body'}: must be an object (a call result)"
    try:
        parsed = InboundCallResult.model_validate(item)
    except ValidationError as exc:
        return None, "; ".join(
            f"{error_location(error['loc'], index) or 'body'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
    cause = f"{parsed.status.value} {parsed.detail}".strip()
    result = CallResult(
        str(parsed.call_id).strip(),
        answered=parsed.status is CallStatus.ANSWERED,
        keys=parsed.keys.upper(),
        cause=cause,
        at=now,
    )
    return result, ""


def parse_call_results(payload: object, now: datetime) -> list[CallResult]:
    """Every call result of a decoded body, timed ``now`` (when it arrived), or InboundBodyError
    naming each bad index and field."""
    if isinstance(payload, list):
        if len(payload) > MAX_EVENTS:
            raise InboundBodyError(
                f"body: {len(payload)} call results; send at most {MAX_EVENTS} per request"
            )
        items = [(item, f"[{index}]") for index, item in enumerate(payload)]
    else:
        items = [(payload, "")]
    results: list[CallResult] = []
    problems: list[str] = []
    for item, index in items:
        result, wrong = _validate_one(item, index, now)
        if result is None:
            problems.append(wrong)
        else:
            results.append(result)
    if problems:
        raise InboundBodyError("; ".join(problems))
    return results
