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
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.policy.model import Policy
from warnd.policy.texts import notice_texts

log = structlog.get_logger(__name__)


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
    ids: tuple[int, int],
) -> int:
    """Queue the notices of an Update or Cancel to those the deliveries ``ids`` (first, last)
    of the warnings it ends reached; return how many were queued."""
    ended = [
        r["id"] for r in await conn.fetch("SELECT id FROM warnings WHERE ended_by = $1", warning_id)
    ]
    if not ended:
        return 0
    cancel = warning.msg_type == "Cancel"
    reached = await conn.fetch(sql("reached_kinds"), ended, *ids)
    texts = notice_texts(
        policy,
        warning,
        [(r["audience"], r["channel_kind"]) for r in reached],
        place=place,
        short_code=short_code,
        max_chars=max_chars,
    )
    message_ids = [
        await conn.fetchval(sql("upsert_message"), warning_id, t.key, t.channel_kind, t.body)
        for t in texts
    ]
    status = await conn.execute(
        sql("write_notices"),
        warning_id,
        ended,
        cancel,
        [t.notice for t in texts],
        [t.reached for t in texts],
        [t.channel_kind for t in texts],
        message_ids,
        priority,
        now,
        *ids,
    )
    queued = int(status.rsplit(" ", 1)[1])
    log.info("notices_queued", warning_id=warning_id, ended=ended, notices=queued, ids=ids)
    return queued


async def notice_chunks(conn: Conn, warning_id: int, size: int) -> list[tuple[int, int]]:
    """The ranges of delivery ids (first, last) of the warnings an Update or Cancel ends, ``size``
    ids each from the first: one plan step each. The same ranges come out again after a
    restart (deliveries added to an ended warning since only add ranges at the end)."""
    row = await conn.fetchrow(sql("ended_delivery_ids"), warning_id)
    if row is None or row["first"] is None:
        return []
    first, last = row["first"], row["last"]
    return [(start, min(start + size - 1, last)) for start in range(first, last + 1, size)]
