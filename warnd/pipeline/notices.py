"""Notices for the people a warning already reached, when an Update or a Cancel ends it.

A Cancel: everyone the ended warning reached is told it is lifted, on the channel that reached
them. An Update: those reached and still inside its area get the correction — one message, the
Update's own text for their audience — and those no longer inside are told it no longer concerns
them. The Update's planner then skips everyone who got a notice, so the rest of its plan reaches
only people the earlier warning never reached. Call-outs and field tasks carry over at ingest
(``warnd.ingest.store``); this module only writes messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import structlog

from warnd.core.model import NormalisedWarning
from warnd.core.vocabulary import Audience
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.policy.model import Policy
from warnd.policy.render import render

log = structlog.get_logger(__name__)

# The template a correction is rendered with, by the audience column of the delivery that
# reached the person: escalation and task messages went to responders.
_TEXT_AUDIENCE = {
    "responder": Audience.RESPONDER,
    "escalation": Audience.RESPONDER,
    "field_task": Audience.RESPONDER,
    "helper": Audience.HELPER,
    "facility": Audience.FACILITY,
    "household": Audience.HOUSEHOLD,
    "broadcast": Audience.BROADCAST,
}


async def write_notices(
    conn: Conn,
    policy: Policy,
    warning_id: int,
    warning: NormalisedWarning,
    *,
    place: str,
    short_code: str | None,
    max_chars: Mapping[str, int],
    priority: int,
    now: datetime,
) -> int:
    """Queue the notices of an Update or Cancel; return how many were queued."""
    ended = [
        r["id"] for r in await conn.fetch("SELECT id FROM warnings WHERE ended_by = $1", warning_id)
    ]
    if not ended:
        return 0
    cancel = warning.msg_type == "Cancel"
    reached = await conn.fetch(sql("reached_kinds"), ended)
    pairs = [(r["audience"], r["channel_kind"]) for r in reached]
    texts: list[tuple[str, str, str, int]] = []  # (notice, audience or '*', kind, message id)

    async def message(key: str, kind: str, body: str) -> int:
        message_id: int = await conn.fetchval(sql("upsert_message"), warning_id, key, kind, body)
        return message_id

    for kind in sorted({kind for _, kind in pairs}):
        limit = max_chars.get(kind)
        if cancel:
            body = render(policy, warning, Audience.RESPONDER, kind, place=place, max_chars=limit)
            texts.append(("cancelled", "*", kind, await message("notice:cancelled", kind, body)))
            continue
        body = render(
            policy, warning, Audience.RESPONDER, kind, place=place, max_chars=limit, withdrawn=True
        )
        texts.append(("withdrawn", "*", kind, await message("notice:withdrawn", kind, body)))
    if not cancel:
        for audience, kind in sorted(set(pairs)):
            text_audience = _TEXT_AUDIENCE[audience]
            if (audience == "broadcast") != (kind == "broadcast"):
                continue  # a failover never crosses between phones and loudspeakers
            body = render(
                policy,
                warning,
                text_audience,
                kind,
                place=place,
                max_chars=max_chars.get(kind),
                reply_code=f"1{short_code or ''}",
            )
            key = text_audience.value if audience == text_audience.value else f"notice:{audience}"
            texts.append(("correction", audience, kind, await message(key, kind, body)))
    status = await conn.execute(
        sql("write_notices"),
        warning_id,
        ended,
        cancel,
        [t[0] for t in texts],
        [t[1] for t in texts],
        [t[2] for t in texts],
        [t[3] for t in texts],
        priority,
        now,
    )
    queued = int(status.rsplit(" ", 1)[1])
    log.info("notices_queued", warning_id=warning_id, ended=ended, notices=queued)
    return queued
