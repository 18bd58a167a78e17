"""The loudspeakers' watch: a county whose speakers are going silent raises an alarm.

A dead speaker is a blind spot nobody chose (DOMAIN: 鸣锣吹哨 where no loudspeaker reaches), and
it is found before the rain or not at all. The broadcast channels report each speaker's state
(kept in ``speakers`` by inbound); this watch counts them per county and, when more than
``offline_alarm_share`` of a county's speakers (and at least ``offline_alarm_min``) are offline,
raises the same kind of alarm a silent feed does: logged, in metrics, audited once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from warnd.app.metrics import Metrics
from warnd.core.config import SpeakersConfig
from warnd.db.queries import sql

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CountySpeakers:
    code: str
    name: str
    total: int
    offline: int


def alarmed(county: CountySpeakers, rule: SpeakersConfig) -> bool:
    """Whether a county's offline speakers are too many to leave to the next patrol."""
    return (
        county.offline >= rule.offline_alarm_min
        and county.offline > rule.offline_alarm_share * county.total
    )


class SpeakerWatch:
    """Counts offline speakers per county; reports each change into or out of alarm once."""

    def __init__(self, pool: asyncpg.Pool, rule: SpeakersConfig, metrics: Metrics) -> None:
        self._pool = pool
        self._rule = rule
        self._metrics = metrics

    async def check(self, now: datetime) -> set[str]:
        """The counties in alarm now; a change is logged and audited by one process only."""
        rows = await self._pool.fetch(sql("speakers_by_county"))
        counties = [
            CountySpeakers(r["county_code"], r["name"], r["total"], r["offline"]) for r in rows
        ]
        in_alarm = {c.code for c in counties if alarmed(c, self._rule)}
        for county in counties:
            self._export(county, county.code in in_alarm)
            await self._record(county, county.code in in_alarm, now)
        return in_alarm

    def _export(self, county: CountySpeakers, is_alarmed: bool) -> None:
        self._metrics.speakers.labels(county.code, "online").set(county.total - county.offline)
        self._metrics.speakers.labels(county.code, "offline").set(county.offline)
        self._metrics.speakers_alarm.labels(county.code).set(1 if is_alarmed else 0)

    async def _record(self, county: CountySpeakers, is_alarmed: bool, now: datetime) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            changed = await conn.fetchrow(sql("speaker_alarm_change"), county.code, is_alarmed, now)
            if changed is None or (changed["first"] and not is_alarmed):
                return  # no change, or a county first seen well: nothing to report
            facts = {"county": county.name, "offline": county.offline, "total": county.total}
            if is_alarmed:
                log.warning("speakers_offline_alarm", county_code=county.code, **facts)
            else:
                log.info("speakers_offline_alarm_over", county_code=county.code, **facts)
            action = "speakers_offline" if is_alarmed else "speakers_back_online"
            await conn.execute(sql("audit"), "system", action, f"county:{county.code}", facts, now)
