"""The duty officer's board (值班台): the live figures of every warning under way.

Every open console asks for them every few seconds (the JSON API, the console's page and its
live updates call ``board_figures``), so each figure is read from tallies and call-outs: the cost
grows with divisions and responders, not with the millions of deliveries of a city-wide warning.
"""

from __future__ import annotations

from typing import Final

import asyncpg

from warnd.app.reads import callout_summary, task_progress
from warnd.app.services import Services
from warnd.app.views import (
    DELIVERY_STATES,
    BoardFigures,
    BoardWarning,
    RejectedOut,
    SilentFeed,
    SpeakerOut,
)
from warnd.db import Conn
from warnd.db.queries import sql

BOARD_WARNINGS: Final = 50  # more under way at once is a disaster of its own: the board says so
BOARD_SPEAKERS: Final = 10  # offline speakers listed; the count is of all of them
BOARD_REJECTED: Final = 5  # newest refused feed messages listed
REJECTED_PREVIEW_CHARS: Final = 200  # of each body: the board shows a line, the API has the rest


async def board_figures(services: Services) -> BoardFigures:
    """Warnings active or waiting for approval with their deliveries, call-outs and field tasks;
    silent feeds, offline speakers and the newest refused feed messages. One snapshot: the
    figures of one update never mix two moments."""
    now = services.clock.now()
    async with (
        services.pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        rows = await conn.fetch(sql("board_warnings"), now, BOARD_WARNINGS + 1)
        counts = await conn.fetchrow(sql("board_counts"))
        silent = await conn.fetch(sql("silent_feeds"))
        # The lists of GET /api/v1/speakers?state=offline and GET /api/v1/rejected, first page.
        speakers = await conn.fetch(sql("list_speakers"), "", False, "", "", BOARD_SPEAKERS)
        rejected = await conn.fetch(
            sql("list_rejected"), None, BOARD_REJECTED, REJECTED_PREVIEW_CHARS
        )
    assert counts is not None  # scalar subqueries always make their row
    warnings = [_board_warning(r) for r in rows[:BOARD_WARNINGS]]
    return BoardFigures(
        as_of=now,
        warnings=warnings,
        more_warnings=len(rows) > BOARD_WARNINGS,
        pending_approval=counts["pending_approval"],
        silent_feeds=[SilentFeed(feed=r["feed"], since=r["changed_at"]) for r in silent],
        speakers_online=counts["speakers_online"],
        speakers_offline=counts["speakers_offline"],
        offline_speakers=[SpeakerOut.model_validate(dict(r)) for r in speakers],
        rejected=[RejectedOut.model_validate(dict(r)) for r in rejected],
        simulated=services.simulated,
    )


def _board_warning(row: asyncpg.Record) -> BoardWarning:
    by_state = {state: row[state] for state in DELIVERY_STATES if row[state]}
    return BoardWarning(
        id=row["id"],
        source=row["source"],
        status=row["status"],
        msg_type=row["msg_type"],
        hazard=row["hazard"],
        level=row["level"],
        event=row["event"],
        headline=row["headline"],
        area_desc=row["area_desc"],
        state=row["state"],
        plan_state=row["plan_state"],
        author=row["author"],
        approver=row["approver"],
        received_at=row["received_at"],
        expires=row["expires"],
        deliveries=sum(by_state.values()),
        by_state=by_state,
        callouts=callout_summary(row),
        field_tasks=task_progress(row),
    )


async def fold_tallies(pool: asyncpg.Pool | Conn) -> int:
    """Fold the deliveries' tally changes into their tallies; how many change rows were folded.
    Counts are exact without it: folding keeps what every read adds up short."""
    folded: int = await pool.fetchval(sql("fold_delivery_tallies"))
    return folded
