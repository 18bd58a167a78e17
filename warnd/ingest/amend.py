"""A duty officer's one-click cancellation and correction of a published warning.

Both become ordinary CAP-shaped messages — a Cancel or an Update referencing the warning — and go
through the same ingest as a feed's, so they end the warning, carry its call-outs over and notify
exactly the people it reached in the same way, and are audited the same way.

A correction publishes at once, without a second officer, because it can only make a warning
milder or clearer: new wording, a lower level, an earlier expiry. Raising the level or changing
the area is a new warning, which goes through approval (DOMAIN §8: no false alarm by one click).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from warnd.core.errors import InputError, describe_errors
from warnd.core.model import NormalisedWarning
from warnd.core.texts import TWO_VISIBLE, VISIBLE
from warnd.core.vocabulary import HAZARDS, Level


class CancelRequest(BaseModel):
    """``POST /api/v1/warnings/{id}/cancel``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(
        min_length=2, max_length=500, pattern=TWO_VISIBLE, description="why, for the audit log"
    )
    message: str = Field(
        default="",
        max_length=200,
        description="optional words for the people told, e.g. 降雨已减弱 (the reason is not sent)",
    )


class CorrectRequest(BaseModel):
    """``POST /api/v1/warnings/{id}/correct``: only what changes; the rest stays as it was."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        # At least one thing to correct, as the document states it.
        json_schema_extra={
            "anyOf": [
                {"required": [name]}
                for name in ("headline", "description", "instruction", "level", "expires")
            ]
        },
    )

    reason: str = Field(
        min_length=2, max_length=500, pattern=TWO_VISIBLE, description="why, for the audit log"
    )
    headline: str | None = Field(default=None, min_length=1, max_length=200, pattern=VISIBLE)
    description: str | None = Field(default=None, max_length=4000)
    instruction: str | None = Field(default=None, max_length=2000)
    level: Level | None = Field(default=None, description="the same or a lower level")
    expires: AwareDatetime | None = Field(
        default=None, description="a new end of validity: after now, with a UTC offset"
    )


T = TypeVar("T", bound=BaseModel)


def parse_request(model: type[T], payload: Any) -> T:
    """Validate decoded JSON; InputError names the fields that are wrong."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InputError(describe_errors(exc.errors()), code="invalid_request") from exc


def reference(warning: NormalisedWarning) -> str:
    """The CAP reference ``sender,identifier,sent`` of a stored warning."""
    return f"{warning.sender},{warning.identifier},{warning.sent.isoformat()}"


def _successor(
    original: NormalisedWarning, msg_type: str, officer: str, now: datetime
) -> NormalisedWarning:
    sent = now.replace(microsecond=0)
    return replace(
        original,
        sender=f"officer:{officer}",
        identifier=f"warnd-{msg_type.lower()}-{sent:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:12]}",
        sent=sent,
        msg_type=msg_type,
        references=(reference(original),),
        effective=None,
        raw=None,
        extra={},
    )


def cancellation(
    original: NormalisedWarning, request: CancelRequest, *, officer: str, now: datetime
) -> NormalisedWarning:
    """The Cancel of ``original``: same status, hazard, level and area, so that its notice names
    what is lifted, and only the officer's optional message as its text."""
    cancel = _successor(original, "Cancel", officer, now)
    return replace(cancel, description=request.message, instruction="")


def correction(
    original: NormalisedWarning, request: CorrectRequest, *, officer: str, now: datetime
) -> NormalisedWarning:
    """The Update correcting ``original``; InputError when it would raise the level or expire."""
    if request.level is not None and request.level.rank < original.level.rank:
        raise InputError(
            f"level: {request.level.value} is higher than {original.level.value}; a correction "
            "may only lower the level — issue a new warning instead (a second officer approves it)",
            code="invalid_request",
        )
    if request.expires is not None and request.expires <= now:
        raise InputError(
            f"expires: {request.expires.isoformat()} is not after now ({now.isoformat()})",
            code="invalid_request",
        )
    update = _successor(original, "Update", officer, now)
    changes: dict[str, Any] = {
        name: value
        for name in ("headline", "description", "instruction", "level", "expires")
        if (value := getattr(request, name)) is not None
    }
    if not changes:
        raise InputError(
            "nothing to correct: give headline, description, instruction, level or expires",
            code="invalid_request",
        )
    if request.level is not None:
        changes["event"] = f"{HAZARDS[original.hazard].zh}{request.level.zh}预警"
    return replace(update, **changes)
