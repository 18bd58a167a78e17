"""Use cases on call-outs that the API and the console share: an officer records an answer
obtained another way (a call, in person), with the reason, audited in the same transaction."""

from __future__ import annotations

from datetime import tzinfo

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from structlog.contextvars import bound_contextvars

from warnd.app.reads import CalloutFilter, callouts
from warnd.app.services import Services
from warnd.app.views import CalloutOut, csv_time
from warnd.core.errors import ConflictError, InputError, NotFoundError, describe_errors
from warnd.core.texts import VISIBLE
from warnd.db.queries import sql

log = structlog.get_logger(__name__)


class OfficerAck(BaseModel):
    """An answer an officer obtained another way (a call, in person), recorded with why."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(
        min_length=1,
        max_length=500,
        pattern=VISIBLE,
        description="how the answer was obtained, e.g. 电话联系本人确认已收到",
    )


def parse_ack(payload: object) -> OfficerAck:
    """Validate an officer's acknowledgement; ``InputError`` says what is missing."""
    try:
        return OfficerAck.model_validate(payload)
    except ValidationError as exc:
        raise InputError(
            "say how the answer was obtained: " + describe_errors(exc.errors()),
            code="invalid_ack",
        ) from exc


async def acknowledge(
    services: Services, officer: str, callout_id: int, ack: OfficerAck
) -> CalloutOut:
    """Record the answer: the call-out is acknowledged via officer (late when past its
    deadline), its escalation stops and its queued messages are cancelled."""
    with bound_contextvars(callout_id=callout_id):  # what this request logs names it
        now = services.clock.now()
        async with services.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchrow(
                sql("acknowledge_by_officer"), callout_id, officer, ack.reason, now
            )
            if done is None:
                status = await conn.fetchrow(sql("callout_status"), callout_id)
                if status is None:
                    raise NotFoundError(f"call-out {callout_id} does not exist")
                raise _not_open(status, services.current_policy().night.zone)
            await conn.execute(
                sql("audit"),
                officer,
                "callout_acknowledged",
                f"callout:{callout_id}",
                {
                    "warning_id": done["warning_id"],
                    "via": "officer",
                    "reason": ack.reason,
                    "late": done["ack_late"],
                    "cancelled_deliveries": done["cancelled"],
                },
                now,
            )
            found = await callouts(
                conn, done["warning_id"], CalloutFilter(callout_id=callout_id), after=0, limit=1
            )
        log.info(
            "callout_acknowledged",
            callout_id=callout_id,
            warning_id=done["warning_id"],
            via="officer",
            officer=officer,
            late=done["ack_late"],
            cancelled=done["cancelled"],
        )
        return found[0]


def _not_open(row: asyncpg.Record, zone: tzinfo) -> ConflictError:
    """Why an acknowledgement changed nothing: the call-out was answered or closed before."""
    callout_id = row["id"]
    if row["state"] == "acknowledged":
        return ConflictError(
            "already_acknowledged",
            f"call-out {callout_id} was already acknowledged at "
            f"{csv_time(row['acknowledged_at'], zone)} via {row['ack_via']} by "
            f"{row['ack_by']}; nothing changed",
        )
    when = csv_time(row["closed_at"], zone) or "an unknown time"
    return ConflictError(
        "callout_closed",
        f"call-out {callout_id} was closed at {when} without an answer (its warning ended); "
        "nothing changed",
    )
