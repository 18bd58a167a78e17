"""Earthquake early warning, the use cases: receive a seismic feed's report (record it once,
hand it to the fast path, say what it means), and preview an earthquake for a drill.

The fast path itself (channels' priority lanes, expiring messages) is not here: a process that
has one sets ``Services.eew``, and each new report is handed to it as soon as the report is
recorded — before the summary the feed gets back is computed, so the answer never delays it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import numpy as np
import structlog

from warnd.app.services import Services
from warnd.app.views import (
    CountdownRange,
    EewAccepted,
    EewCountyOut,
    EewLevelCounts,
    EewPreview,
    EewSummary,
    EewVillageOut,
)
from warnd.app.warnings import parse_feed_cap, record_rejection, store_cap, text_for_db
from warnd.core.eew import (
    LEVEL_CODES,
    EewAssessment,
    EewParameters,
    EewReport,
    VillageArrays,
    assess,
    warning_text,
)
from warnd.core.errors import WarndError
from warnd.core.model import NormalisedWarning
from warnd.core.vocabulary import Level
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.ingest.eew import EewError, eew_from_cap, is_early_warning, parse_eew_json
from warnd.ingest.store import Stored

log = structlog.get_logger(__name__)

PREVIEW_EVENT = "preview"


class EewHandOffError(WarndError):
    """The fast path refused or failed on a new report; the feed should send it again."""

    code = "handoff_failed"


# --- the villages ------------------------------------------------------------------------------


async def load_villages(conn: Conn | asyncpg.Pool) -> tuple[VillageArrays, int]:
    """Every village with coordinates as arrays (one query), and how many have none."""
    rows = await conn.fetch(sql("eew_villages"))
    located = [r for r in rows if r["lat"] is not None and r["lon"] is not None]
    villages = VillageArrays.build((r["code"], r["name"], r["lat"], r["lon"]) for r in located)
    return villages, len(rows) - len(located)


def summary(assessment: EewAssessment) -> EewSummary:
    counts = assessment.counts()
    low_high = assessment.countdown_range()
    return EewSummary(
        public_alert=assessment.public,
        villages=EewLevelCounts(
            red=counts[Level.RED], orange=counts[Level.ORANGE], yellow=counts[Level.YELLOW]
        ),
        alerted_villages=assessment.alerted_count,
        blind_zone=assessment.blind_zone_count,
        countdown=CountdownRange(min_s=round(low_high[0], 1), max_s=round(low_high[1], 1))
        if low_high is not None
        else None,
        expires_at=assessment.latest_expiry(),
    )


# --- receiving ---------------------------------------------------------------------------------


async def receive_eew(services: Services, feed: str, body: bytes) -> EewAccepted:
    """Record a JSON report once, hand it to the fast path, and say what it means.

    A refused body is kept for the duty officer and raises ``EewError``; a second copy of a
    report answers ``created=False`` with what the first one was found to mean. A failed
    hand-off raises ``EewHandOffError`` and leaves the report ``failed``, so that the feed's
    retry is handed again rather than taken for a duplicate.
    """
    try:
        report = parse_eew_json(body)
    except EewError as exc:
        await record_rejection(services, feed, exc.code, exc.detail, body)
        raise
    return await receive_report(services, feed, report, text_for_db(body))


async def receive_eew_cap(services: Services, feed: str, body: bytes) -> EewAccepted:
    """As ``receive_eew``, for the seismic feed's CAP 1.2 (``CapError`` or ``EewError`` when
    refused, ``ForbiddenError`` for a sender that is not the feed's)."""
    return await _receive_cap_report(
        services, feed, await parse_feed_cap(services, feed, body), body
    )


async def receive_any_cap(services: Services, feed: str, body: bytes) -> Stored | EewAccepted:
    """A feed's CAP 1.2 on the general endpoint: an earthquake early warning (an earthquake
    carrying the parameter EventID) goes the early warning's way — a seismic feed pointed at
    the general endpoint must not turn seconds into minutes — and anything else is stored as a
    warning (``warnings.receive_cap``)."""
    warning = await parse_feed_cap(services, feed, body)
    if is_early_warning(warning):
        return await _receive_cap_report(services, feed, warning, body)
    return await store_cap(services, feed, warning, body)


async def _receive_cap_report(
    services: Services, feed: str, warning: NormalisedWarning, body: bytes
) -> EewAccepted:
    try:
        report = eew_from_cap(warning)
    except EewError as exc:
        await record_rejection(services, feed, exc.code, exc.detail, body)
        raise
    return await receive_report(services, feed, report, text_for_db(body))


async def receive_report(services: Services, feed: str, report: EewReport, raw: str) -> EewAccepted:
    """Record a parsed report once and hand it on (see ``receive_eew``); for JSON and CAP."""
    now = services.clock.now()
    hand = services.eew if report.reaches_people else None
    report_id = await services.pool.fetchval(
        sql("insert_eew_report"),
        feed,
        report.event_id,
        report.report_no,
        report.origin_time,
        report.lat,
        report.lon,
        report.depth_km,
        report.magnitude,
        report.place,
        report.final,
        report.cancel,
        report.status,
        "received" if hand is not None else "recorded",
        now,
        raw,
    )
    if report_id is None:
        report_id = await services.pool.fetchval(
            sql("retry_eew_report"), report.event_id, report.report_no
        )
        if report_id is None:
            return await _duplicate(services, feed, report)
        log.info("eew_retry", event_id=report.event_id, report_no=report.report_no, feed=feed)
    state = "recorded"
    assessment: EewAssessment | None = None
    if hand is not None:
        try:
            assessment = await hand(report)
        # The fast path is another team's code on the most urgent path warnd has: whatever it
        # raises, the report is marked for the feed's retry and the feed is told to retry.
        except Exception as exc:
            log.exception(
                "eew_handoff_failed", event_id=report.event_id, report_no=report.report_no
            )
            await services.pool.execute(sql("finish_eew_report"), report_id, "failed", None)
            raise EewHandOffError(
                f"event {report.event_id} report {report.report_no} was recorded but could not "
                f"be handed to the early-warning path ({type(exc).__name__}); send it again"
            ) from exc
        state = "handed"
    services.metrics.ingest.labels(source=feed, result="accepted", reason=state).inc()
    if assessment is None:  # no fast path here: assessed on the roster as stored now
        villages, _ = await load_villages(services.pool)
        parameters = services.current_policy().earthquake_early_warning.parameters
        assessment = assess(report, villages, parameters, now)
    found = summary(assessment)
    await services.pool.execute(
        sql("finish_eew_report"), report_id, state, found.model_dump(mode="json")
    )
    log.info(
        "eew_received",
        event_id=report.event_id,
        report_no=report.report_no,
        feed=feed,
        state=state,
        magnitude=report.magnitude,
        cancel=report.cancel,
        alerted=found.alerted_villages,
        elapsed_s=round((now - report.origin_time).total_seconds(), 3),
    )
    return EewAccepted(
        event_id=report.event_id,
        report_no=report.report_no,
        created=True,
        detail="accepted",
        state=state,
        summary=found,
        simulated=services.simulated,
    )


async def _duplicate(services: Services, feed: str, report: EewReport) -> EewAccepted:
    row = await services.pool.fetchrow(sql("find_eew_report"), report.event_id, report.report_no)
    assert row is not None  # the conflict that refused the insert is this row
    services.metrics.ingest.labels(source=feed, result="duplicate", reason=row["state"]).inc()
    log.info(
        "eew_duplicate",
        event_id=report.event_id,
        report_no=report.report_no,
        feed=feed,
        first_feed=row["feed"],
    )
    found = row["summary"]
    return EewAccepted(
        event_id=report.event_id,
        report_no=report.report_no,
        created=False,
        detail="already received",
        state=row["state"],
        summary=EewSummary.model_validate(found) if found is not None else None,
        simulated=services.simulated,
    )


# --- preview for drills ------------------------------------------------------------------------


async def preview(
    pool: asyncpg.Pool,
    parameters: EewParameters,
    *,
    lat: float,
    lon: float,
    depth_km: float,
    magnitude: float,
    now: datetime,
    signature: str,
    elapsed_s: float = 0.0,
    exercise: bool = False,
    place: str = "震中",
) -> EewPreview:
    """Who an earthquake here would warn, at which level, with how many seconds, county by
    county with their people and loudspeakers. Sends nothing, records nothing."""
    report = EewReport(
        event_id=PREVIEW_EVENT,
        report_no=1,
        origin_time=now - timedelta(seconds=elapsed_s),
        lat=lat,
        lon=lon,
        depth_km=depth_km,
        magnitude=magnitude,
        place=place,
        status="Exercise" if exercise else "Actual",
    )
    async with pool.acquire() as conn:
        villages, unlocated = await load_villages(conn)
        result = assess(report, villages, parameters, now)
        alerted_codes = villages.codes[result.order].tolist()
        reach = await conn.fetch(sql("eew_reach_by_county"), alerted_codes, exercise)
    return EewPreview(
        lat=lat,
        lon=lon,
        depth_km=depth_km,
        magnitude=magnitude,
        elapsed_s=elapsed_s,
        min_magnitude=parameters.min_magnitude,
        summary=summary(result),
        counties=_counties(result, reach),
        villages_without_coordinates=unlocated,
        texts=_sample_texts(result, signature),
        alerted=[
            EewVillageOut(
                code=v.code,
                name=v.name,
                county_code=v.county_code,
                level=v.level.value if v.level is not None else "",
                degree=v.degree,
                intensity=round(v.intensity, 2),
                distance_km=round(v.distance_km, 1),
                countdown_s=round(v.countdown_s, 1),
                blind=v.blind,
            )
            for v in result.alerted()
        ],
    )


def _counties(result: EewAssessment, reach: Sequence[asyncpg.Record]) -> list[EewCountyOut]:
    order = result.order
    counties = result.villages.county_codes[order]
    levels = result.levels[order]
    blind = result.countdown_s[order] <= 0
    out = []
    for row in reach:
        mine = counties == row["county_code"]
        level_count = {
            lv: int(np.count_nonzero(mine & (levels == c))) for lv, c in LEVEL_CODES.items()
        }
        out.append(
            EewCountyOut(
                county_code=row["county_code"],
                county_name=row["county_name"],
                villages=int(np.count_nonzero(mine)),
                red=level_count[Level.RED],
                orange=level_count[Level.ORANGE],
                yellow=level_count[Level.YELLOW],
                blind_zone=int(np.count_nonzero(mine & blind)),
                households=row["households"],
                responders=row["responders"],
                people=row["households"] + row["responders"],
                speaker_villages=row["speaker_villages"],
                speakers=row["speakers"],
                speakers_offline=row["speakers_offline"],
            )
        )
    return sorted(out, key=lambda c: (-c.villages, c.county_code))


def _sample_texts(result: EewAssessment, signature: str) -> list[str]:
    """The texts of the first and last alerted village, and the blind zone's if any."""
    order = result.order
    if not len(order):
        return []
    picks = [int(order[0]), int(order[-1])]
    blind = order[result.countdown_s[order] <= 0]
    if len(blind):
        picks.append(int(blind[0]))
    texts: list[str] = []
    for index in picks:
        countdown = float(result.countdown_s[index])
        text = warning_text(
            result.report,
            int(result.degree[index]),
            countdown if math.isfinite(countdown) else 0.0,
            signature=signature,
        )
        if text not in texts:
            texts.append(text)
    return texts
