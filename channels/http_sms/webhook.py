"""What an HTTP SMS gateway posts back to warnd, read into inbound events: replies (SMS MO) and
delivery receipts.

The body is one JSON object or a list of them (at most ``MAX_EVENTS``)::

    {"from": "+8613900000004", "to": "12379", "text": "1"}                a reply (SMS MO)
    {"message_id": "gw-123", "status": "delivered", "detail": "…"}        a delivery receipt

``to`` and ``detail`` are optional. A receipt's status is delivered, undeliverable, expired or
rejected, or a common synonym of one (SMPP's DELIVRD, UNDELIV, REJECTD, DELETED; failed;
case does not matter). Unknown keys are refused, so a misspelt field is an error, not silently
lost. The whole body is validated before any of it is used: one bad event refuses it all, naming
the index and field (``[2].status: …``), so that the gateway can fix and resend it whole.

Pure reading and the constant-time token match; the HTTP endpoint is warnd's
(``warnd.web.webhooks.sms``), which hands the events to the channel the token names.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from channels.base import DeliveryReceipt, InboundEvent, ReceiptStatus, Reply
from channels.registry import error_location

MAX_EVENTS: Final = 1000  # per request; a gateway with more sends several requests

# What gateways write for each final state, lower-cased; SMPP's stat words among them.
STATUS_WORDS: Final[Mapping[str, ReceiptStatus]] = {
    "delivered": ReceiptStatus.DELIVERED,
    "delivrd": ReceiptStatus.DELIVERED,
    "undeliverable": ReceiptStatus.UNDELIVERABLE,
    "undelivered": ReceiptStatus.UNDELIVERABLE,
    "undeliv": ReceiptStatus.UNDELIVERABLE,
    "failed": ReceiptStatus.UNDELIVERABLE,
    "deleted": ReceiptStatus.UNDELIVERABLE,
    "expired": ReceiptStatus.EXPIRED,
    "rejected": ReceiptStatus.REJECTED,
    "rejectd": ReceiptStatus.REJECTED,
}


class InboundReply(BaseModel):
    """A text a phone sent to the gateway's number."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sender: str = Field(alias="from", min_length=1, max_length=40, description="the phone")
    to: str = Field(default="", max_length=40, description="the number it was sent to")
    text: str = Field(max_length=2000)


class InboundReceipt(BaseModel):
    """What became of a message the gateway accepted, named by the id it answered with."""

    model_config = ConfigDict(extra="forbid", strict=True)

    message_id: str | int
    status: ReceiptStatus
    detail: str = Field(default="", max_length=500)

    @field_validator("message_id")
    @classmethod
    def _an_id(cls, value: str | int) -> str | int:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: object) -> ReceiptStatus:
        if not isinstance(value, str):
            raise ValueError("must be a string")  # noqa: TRY004 - pydantic wants ValueError
        status = STATUS_WORDS.get(value.strip().lower())
        if status is None:
            known = ", ".join(s.value for s in ReceiptStatus)
            raise ValueError(f"{value[:40]!r} is not a receipt status (use {known})")
        return status


class InboundBodyError(ValueError):
    """The body is not a valid reply, receipt or list of them; the message names where."""


def _validate_one(
    item: object, at: tuple[int, ...], now: datetime
) -> tuple[InboundEvent | None, list[str]]:
    """The event ``item`` describes, timed ``now``, or the problems with it (each
    ``location: problem``)."""
    index = f"[{at[0]}]" if at else ""
    where = index or "body"
    if not isinstance(item, dict):
        return None, [f"{where}: must be an object (a reply or a receipt)"]
    model: type[InboundReply | InboundReceipt]
    if "message_id" in item or "status" in item:
        model = InboundReceipt
    elif "from" in item or "text" in item:
        model = InboundReply
    else:
        return None, [
            f"{where}: neither a reply (from, to, text) nor a receipt (message_id, status)"
        ]
    try:
        parsed = model.model_validate(item)
    except ValidationError as exc:
        return None, [
            "; ".join(
                f"{error_location(error['loc'], index) or 'body'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
        ]
    if isinstance(parsed, InboundReceipt):
        external_id = str(parsed.message_id).strip()
        return DeliveryReceipt(external_id, parsed.status, at=now, detail=parsed.detail), []
    return Reply(parsed.sender, parsed.text, to=parsed.to, at=now), []


def parse_inbound(payload: object, now: datetime) -> list[InboundEvent]:
    """Every event of a decoded body, timed ``now`` (when it arrived), or InboundBodyError
    naming each bad index and field."""
    if isinstance(payload, list):
        if len(payload) > MAX_EVENTS:
            raise InboundBodyError(
                f"body: {len(payload)} events; send at most {MAX_EVENTS} per request"
            )
        items: list[tuple[object, tuple[int, ...]]] = [
            (item, (index,)) for index, item in enumerate(payload)
        ]
    else:
        items = [(payload, ())]
    events: list[InboundEvent] = []
    problems: list[str] = []
    for item, at in items:
        event, wrong = _validate_one(item, at, now)
        problems.extend(wrong)
        if event is not None:
            events.append(event)
    if problems:
        raise InboundBodyError("; ".join(problems))
    return events
