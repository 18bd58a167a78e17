"""Fires blind drills when they are due: the secret scenario becomes an Exercise warning for the
people marked for exercises, planned like any other (【演练】 on every text, the same
call-and-respond and escalation). A live orange or red warning in the drill's county postpones
it: a drill must never compete with the real thing for the same people's phones and attention.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
import structlog

from warnd.core.clock import Clock
from warnd.core.model import Area, NormalisedWarning
from warnd.core.vocabulary import HAZARDS, Level
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.ingest.store import store_warning

log = structlog.get_logger(__name__)

DRILL_SENDER: Final = "warnd-drill"
POSTPONE: Final = timedelta(hours=1)  # looked at again then; a live warning rarely ends sooner
DRILL_LASTS: Final = timedelta(hours=2)  # the Exercise warning expires then


class _AlreadyFiredError(Exception):
    """Another process fired or cancelled the drill first: roll the warning back."""


def drill_warning(drill_id: int, scenario: dict[str, Any], now: datetime) -> NormalisedWarning:
    """The Exercise warning a drill's scenario becomes."""
    level = Level(scenario["level"])
    hazard = HAZARDS[scenario["hazard"]]
    event = f"{hazard.zh}{level.zh}预警"
    return NormalisedWarning(
        sender=DRILL_SENDER,
        identifier=f"blind-drill-{drill_id}",
        sent=now,
        status="Exercise",
        msg_type="Alert",
        hazard=hazard.code,
        level=level,
        area=Area(codes=(scenario["county"],)),
        event=event,
        headline=scenario.get("headline") or event,  # 【演练】 is added to every text anyway
        description=scenario.get("description") or "",
        instruction=scenario.get("instruction") or "",
        expires=now + DRILL_LASTS,
    )


class DrillScanner:
    """Fires or postpones due drills; with several warnd processes, one fires each."""

    def __init__(
        self, pool: asyncpg.Pool, clock: Clock, on_fired: Callable[[], None] | None = None
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._on_fired = on_fired  # wakes the planner

    async def scan(self) -> list[int]:
        """Fire or postpone every due drill; the warnings fired."""
        now = self._clock.now()
        fired: list[int] = []
        for drill in await self._pool.fetch(sql("drills_due"), now):
            scenario = drill["scenario"]
            if isinstance(scenario, str):
                scenario = json.loads(scenario)
            live = await self._pool.fetchval(sql("drill_live_warning"), scenario["county"], now)
            if live is not None:
                await self._postpone(drill["id"], int(live), now)
                continue
            warning_id = await self._fire(drill["id"], scenario, now)
            if warning_id is not None:
                fired.append(warning_id)
        if fired and self._on_fired is not None:
            self._on_fired()
        return fired

    async def _postpone(self, drill_id: int, live: int, now: datetime) -> None:
        until = now + POSTPONE
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.execute(sql("drill_postpone"), drill_id, until, now) != "UPDATE 1":
                return  # another process postponed or fired it meanwhile
            detail = {"live_warning_id": live, "until": until.isoformat()}
            await conn.execute(
                sql("audit"), "system", "drill_postponed", f"drill:{drill_id}", detail, now
            )
        log.info("drill_postponed", drill_id=drill_id, live_warning_id=live)

    async def _fire(self, drill_id: int, scenario: dict[str, Any], now: datetime) -> int | None:
        warning = drill_warning(drill_id, scenario, now)

        async def mark(conn: Conn, warning_id: int) -> None:
            if await conn.execute(sql("drill_fired"), drill_id, warning_id, now) != "UPDATE 1":
                raise _AlreadyFiredError
            detail = {"warning_id": warning_id, "scenario": scenario}
            await conn.execute(
                sql("audit"), "system", "drill_fired", f"drill:{drill_id}", detail, now
            )

        try:
            stored = await store_warning(
                self._pool, warning, source="drill", now=now, author=DRILL_SENDER, within=mark
            )
        except _AlreadyFiredError:
            return None
        log.info("drill_fired", drill_id=drill_id, warning_id=stored.warning_id)
        return stored.warning_id

    async def run(self, idle_seconds: float = 5.0) -> None:
        """Scan forever: a drill fires within ``idle_seconds`` of its moment."""
        while True:
            await self.scan()
            wait = idle_seconds
            due = await self._pool.fetchval(sql("drill_next_due"))
            if due is not None:
                wait = min(wait, max((due - self._clock.now()).total_seconds(), 0.0))
            await self._clock.sleep(wait)
            await asyncio.sleep(0)
