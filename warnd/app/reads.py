"""What officers read: warnings, previews, progress, deliveries, call-outs, audit trails and
refused feed messages, as the view models of ``warnd.app.views``.

Long lists come as pages (JSON) or as batches of rows to stream (CSV), both from the same query.
A warning that does not exist is ``NotFoundError``, whatever is asked about it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
import structlog

from channels.base import Channel
from warnd.app.services import Services
from warnd.app.views import (
    PROGRESS_LEVELS,
    AreaOut,
    AuditEntry,
    AuditPage,
    CalloutOut,
    CalloutPage,
    CalloutSummary,
    ChannelOut,
    CircleOut,
    CoveredDivision,
    DeliveryOut,
    DeliveryPage,
    DivisionProgress,
    FieldTaskOut,
    FieldTaskPage,
    FieldTaskProgress,
    NormalisedOut,
    Preview,
    Progress,
    ProgressReport,
    Ready,
    RejectedList,
    RejectedOut,
    SpeakerList,
    SpeakerOut,
    TextOut,
    WarningDetail,
    WarningList,
    WarningSummary,
)
from warnd.core.errors import InputError, NotFoundError
from warnd.core.model import NormalisedWarning
from warnd.core.vocabulary import HAZARDS
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.ingest.store import load_warning, warning_from_row
from warnd.policy.targeting import add_tasks, decide, place_name, reach, task_kinds
from warnd.policy.texts import Text, digest, notice_texts, plan_texts

log = structlog.get_logger(__name__)

CSV_BATCH: Final = 5000  # rows per query while streaming a whole list
REJECTED_PREVIEW_CHARS: Final = 2000  # what the rejected list shows of each body
PROBE_TIMEOUT_S: Final = 2.0  # readiness and metrics must answer even when the database hangs
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def no_warning(warning_id: int) -> NotFoundError:
    return NotFoundError(f"warning {warning_id} does not exist")


async def require_warning(pool: asyncpg.Pool | Conn, warning_id: int) -> None:
    """``NotFoundError`` unless the warning exists."""
    if await pool.fetchrow(sql("warning_brief"), warning_id) is None:
        raise no_warning(warning_id)


# --- warnings ----------------------------------------------------------------------------------


async def warning_list(
    services: Services, *, state: str | None, before: int | None, limit: int
) -> WarningList:
    rows = await services.pool.fetch(sql("list_warnings"), state, before, limit)
    warnings = [WarningSummary.model_validate(dict(r)) for r in rows]
    next_before = warnings[-1].id if len(warnings) == limit else None
    return WarningList(warnings=warnings, next_before=next_before, simulated=services.simulated)


async def warning_detail(services: Services, warning_id: int) -> WarningDetail:
    async with services.pool.acquire() as conn:
        row = await conn.fetchrow(sql("get_warning"), warning_id)
        if row is None:
            raise no_warning(warning_id)
        counts = await conn.fetch(sql("delivery_counts"), warning_id)
        summary = await conn.fetchrow(sql("callout_summary"), warning_id, services.clock.now())
    assert summary is not None  # an aggregate without GROUP BY always has its row
    by_state: dict[str, int] = {}
    by_audience: dict[str, dict[str, int]] = {}
    sent_times: list[datetime] = []
    for count in counts:
        by_state[count["state"]] = by_state.get(count["state"], 0) + count["n"]
        by_audience.setdefault(count["audience"], {})[count["state"]] = count["n"]
        sent_times += [t for t in (count["first_sent"], count["last_sent"]) if t is not None]
    warning = warning_from_row(row)
    normalised = NormalisedOut(
        sender=warning.sender,
        identifier=warning.identifier,
        sent=warning.sent,
        status=warning.status,
        msg_type=warning.msg_type,
        hazard=warning.hazard,
        level=warning.level.value,
        event=warning.event,
        headline=warning.headline,
        description=warning.description,
        instruction=warning.instruction,
        area_desc=warning.area_desc,
        area=AreaOut(
            codes=list(warning.area.codes),
            polygons=[list(ring) for ring in warning.area.polygons],
            circles=[
                CircleOut(lat=c.lat, lon=c.lon, radius_km=c.radius_km) for c in warning.area.circles
            ],
        ),
        references=list(warning.references),
        effective=warning.effective,
        expires=warning.expires,
    )
    return WarningDetail(
        id=warning_id,
        source=row["source"],
        state=row["state"],
        plan_state=row["plan_state"],
        plan_error=row["plan_error"],
        author=row["author"],
        approver=row["approver"],
        approved_at=row["approved_at"],
        received_at=row["received_at"],
        supersedes_id=row["supersedes_id"],
        warning=normalised,
        progress=Progress(
            total=sum(by_state.values()),
            by_state=by_state,
            by_audience=by_audience,
            first_sent_at=min(sent_times, default=None),
            last_sent_at=max(sent_times, default=None),
        ),
        callouts=CalloutSummary.model_validate(dict(summary)),
        simulated=services.simulated,
    )


async def preview(services: Services, warning_id: int) -> Preview:
    """What publishing would send, by the policy in force: recipients and deliveries per
    audience, who the area holds but the warning does not reach, and the covered divisions."""
    async with services.pool.acquire() as conn:
        return await preview_on(services, conn, warning_id)


async def preview_on(services: Services, conn: Conn, warning_id: int) -> Preview:
    """``preview`` on the caller's connection (inside its transaction: a draft's preview)."""
    facts = await conn.fetchrow(sql("preview_facts"), warning_id)
    if facts is None:
        raise no_warning(warning_id)
    warning = await load_warning(conn, warning_id)
    hazard = HAZARDS.get(warning.hazard)
    speciality = hazard.speciality if hazard is not None else None
    exercise = warning.status == "Exercise"
    counts = await conn.fetch(sql("audience_counts"), warning_id, speciality, exercise)
    divisions = await conn.fetch(sql("covered_divisions"), warning_id)
    codes = list(warning.area.codes)
    unknown = [r["c"] for r in await conn.fetch(sql("unknown_codes"), codes)] if codes else []
    policy = services.current_policy()
    now = services.clock.now()
    available = {c.kind.value for c in services.channels.values()} or None
    plans = decide(policy, warning, now, available)
    wanted = plans if available is None else decide(policy, warning, now, None)
    held = {r["audience"]: (r["recipients"], r["addresses"]) for r in counts}
    reached = reach(warning, plans, wanted, held)
    kinds = available or {k for plan in plans.values() for k in plan.kinds}
    tasks = task_kinds(policy, warning, now, plans, kinds)
    if tasks:
        opened = await count_tasks(
            conn, warning_id, tasks, speciality=speciality, exercise=exercise
        )
        add_tasks(reached, tasks, opened)
    texts = await warning_texts(services, conn, warning_id, warning)
    return Preview(
        warning_id=warning_id,
        state=facts["state"],
        hazard=warning.hazard,
        level=warning.level.value,
        status=warning.status,
        reaches_people=warning.reaches_people,
        recipients=reached.recipients,
        total_recipients=sum(reached.recipients.values()),
        channels=reached.channels,
        deliveries=reached.deliveries,
        total_deliveries=sum(reached.deliveries.values()),
        not_reached=reached.not_reached,
        not_reached_reasons=reached.not_reached_reasons,
        villages=facts["villages"],
        divisions=[CoveredDivision.model_validate(dict(d)) for d in divisions],
        unknown_codes=unknown,
        texts=[
            TextOut(audience=t.key, channel_kind=t.channel_kind, notice=t.notice, body=t.body)
            for t in sorted(texts)
        ],
        texts_sha256=digest(texts),
        night=policy.night.is_night(now),
        night_window=policy.night.label,
        simulated=services.simulated,
    )


async def place_of(conn: Conn, warning_id: int, warning: NormalisedWarning) -> str:
    """The place texts name: the warning's own area description, else its covered divisions."""
    if warning.area_desc:
        return warning.area_desc
    covered = await conn.fetch(sql("covered_divisions"), warning_id)
    return place_name([dict(r) for r in covered], warning.area_desc)


async def warning_texts(
    services: Services, conn: Conn, warning_id: int, warning: NormalisedWarning
) -> list[Text]:
    """Every text the warning sends (or would, once approved), as planning will write them:
    the policy in force, the configured channel kinds, the place, the reply code, and for an
    Update or Cancel what the warning it ends reached."""
    row = await conn.fetchrow(sql("texts_facts"), warning_id)
    assert row is not None  # the caller found the warning
    place = await place_of(conn, warning_id, warning)
    policy = services.current_policy()
    texts: list[Text] = []
    if warning.msg_type != "Cancel":
        available = services.max_chars.keys() or None  # no channel yet: every kind
        plans = decide(policy, warning, services.clock.now(), available)
        texts += plan_texts(
            policy,
            warning,
            plans,
            place=place,
            short_code=row["short_code"],
            max_chars=services.max_chars,
        )
    if row["ended"]:
        reached = await conn.fetch(sql("reached_kinds"), list(row["ended"]), None, None)
        texts += notice_texts(
            policy,
            warning,
            [(r["audience"], r["channel_kind"]) for r in reached],
            place=place,
            short_code=row["short_code"],
            max_chars=services.max_chars,
        )
    return texts


async def progress(
    services: Services, warning_id: int, level: str, within: str | None = None
) -> ProgressReport:
    """Deliveries, call-outs and field tasks rolled up per county, town or village; within one
    division above the level (its code) when given, everywhere otherwise."""
    now = services.clock.now()
    async with services.pool.acquire() as conn:
        await require_warning(conn, warning_id)
        prefix, within_name = (None, None)
        if within is not None:
            prefix, within_name = await _prefix_within(conn, within, level)
        rows = await conn.fetch(
            sql("progress_by_division"), warning_id, PROGRESS_LEVELS[level], now, prefix
        )
    return ProgressReport(
        warning_id=warning_id,
        level=level,
        within=within,
        within_name=within_name,
        as_of=now,
        divisions=[_division_progress(r) for r in rows],
        simulated=services.simulated,
    )


async def _prefix_within(conn: Conn, code: str, level: str) -> tuple[str, str]:
    """The code prefix and the name of the division ``code``, which must lie above ``level``."""
    row = await conn.fetchrow(
        "SELECT name, code_prefix_length(level) AS length FROM divisions WHERE code = $1", code
    )
    if row is None:
        raise InputError(f"within: no division {code} in the roster", code="unknown_division")
    if row["length"] >= PROGRESS_LEVELS[level]:
        raise InputError(
            f"within: {row['name']} ({code}) is not above the {level} level; "
            "roll up to a lower level or leave within out"
        )
    return code[: row["length"]], row["name"]


def _division_progress(row: asyncpg.Record) -> DivisionProgress:
    return DivisionProgress(
        code=row["code"],
        name=row["name"],
        total=row["total"],
        queued=row["queued"],
        sending=row["sending"],
        sent=row["sent"],
        delivered=row["delivered"],
        failed=row["failed"],
        cancelled=row["cancelled"],
        callouts=callout_summary(row),
        field_tasks=task_progress(row),
        speakers=row["s_total"],
        speakers_offline=row["s_offline"],
    )


# --- deliveries --------------------------------------------------------------------------------

_RECIPIENT_KIND: Final = {
    "responder": "responder",
    "helper": "responder",
    "facility": "facility",
    "household": "household",
    "broadcast": "loudspeaker",
}


@dataclass(frozen=True)
class DeliveryFilter:
    """Which of a warning's deliveries a list shows."""

    state: str | None = None
    audience: str | None = None


def _delivery(row: asyncpg.Record) -> DeliveryOut:
    return DeliveryOut.model_validate(
        {**row, "recipient_kind": _RECIPIENT_KIND.get(row["audience"], row["audience"])}
    )


async def _deliveries(
    pool: asyncpg.Pool, warning_id: int, after: int, limit: int, where: DeliveryFilter
) -> list[DeliveryOut]:
    rows = await pool.fetch(
        sql("list_deliveries"), warning_id, after, limit, where.state, where.audience
    )
    return [_delivery(r) for r in rows]


async def deliveries_page(
    services: Services, warning_id: int, where: DeliveryFilter, *, after: int, limit: int
) -> DeliveryPage:
    await require_warning(services.pool, warning_id)
    deliveries = await _deliveries(services.pool, warning_id, after, limit, where)
    return DeliveryPage(
        warning_id=warning_id,
        deliveries=deliveries,
        next_after=deliveries[-1].id if len(deliveries) == limit else None,
        simulated=services.simulated,
    )


async def all_deliveries(
    services: Services, warning_id: int, where: DeliveryFilter, *, after: int
) -> AsyncIterator[list[DeliveryOut]]:
    """Every matching delivery above ``after``, in batches of ``CSV_BATCH``. Check that the
    warning exists first (``require_warning``): a stream already begun cannot become a 404."""
    while batch := await _deliveries(services.pool, warning_id, after, CSV_BATCH, where):
        yield batch
        if len(batch) < CSV_BATCH:
            return
        after = batch[-1].id


# --- call-outs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalloutFilter:
    """Which of a warning's call-outs a list shows; ``overdue_at`` keeps only the open ones past
    their deadline at that time."""

    states: list[str] | None = None
    level: str | None = None
    division: str | None = None
    overdue_at: datetime | None = None
    callout_id: int | None = None


async def callouts(
    pool: asyncpg.Pool | Conn, warning_id: int, where: CalloutFilter, *, after: int, limit: int
) -> list[CalloutOut]:
    rows = await pool.fetch(
        sql("list_callouts"),
        warning_id,
        after,
        limit,
        where.states,
        where.level,
        where.division,
        where.overdue_at,
        where.callout_id,
    )
    return [CalloutOut.model_validate(dict(r)) for r in rows]


async def callouts_page(
    services: Services, warning_id: int, where: CalloutFilter, *, after: int, limit: int
) -> CalloutPage:
    await require_warning(services.pool, warning_id)
    found = await callouts(services.pool, warning_id, where, after=after, limit=limit)
    return CalloutPage(
        warning_id=warning_id,
        callouts=found,
        next_after=found[-1].id if len(found) == limit else None,
        simulated=services.simulated,
    )


async def all_callouts(
    services: Services, warning_id: int, where: CalloutFilter, *, after: int
) -> AsyncIterator[list[CalloutOut]]:
    """Every matching call-out above ``after``, in batches of ``CSV_BATCH`` (check that the
    warning exists first, as for ``all_deliveries``)."""
    while batch := await callouts(services.pool, warning_id, where, after=after, limit=CSV_BATCH):
        yield batch
        if len(batch) < CSV_BATCH:
            return
        after = batch[-1].id


# --- the audit trail ---------------------------------------------------------------------------

AUDIT_PAGE_MAX: Final = 10_000
_MAX_RANK: Final = 9  # the union's tables are ranked 0, 1, 2
_MAX_ID: Final = 2**63 - 1


@dataclass(frozen=True)
class AuditCursor:
    """Where an audit page ends: the union of three tables has no single id to page on, so the
    position is (time, table rank, id), written ``<µs since 1970>.<rank>.<id>``."""

    at: datetime
    rank: int
    row_id: int

    @classmethod
    def parse(cls, text: str) -> AuditCursor:
        """The cursor ``text`` names; ``ValueError`` if it is not one this API wrote."""
        wrong = ValueError(f"{text[:60]!r} is not the next_after of an audit page")
        try:
            micros, rank, row_id = (int(part) for part in text.split("."))
            at = EPOCH + timedelta(microseconds=micros)
        except (ValueError, OverflowError):
            raise wrong from None
        if not (0 <= rank <= _MAX_RANK and 0 <= row_id <= _MAX_ID):
            raise wrong  # out of the database's range: a 400 now, not a 500 there
        return cls(at, rank, row_id)

    def __str__(self) -> str:
        return f"{(self.at - EPOCH) // timedelta(microseconds=1)}.{self.rank}.{self.row_id}"


def _audit_entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        at=row["at"],
        source=row["source"],
        id=row["id"],
        actor=row["actor"],
        action=row["action"],
        subject=row["subject"],
        detail=row["detail"],
    )


def _audit_start(after: AuditCursor | None) -> tuple[object, object, object]:
    return (after.at, after.rank, after.row_id) if after is not None else (None, None, None)


async def audit_page(
    services: Services, warning_id: int, *, after: AuditCursor | None, limit: int
) -> AuditPage:
    """Everything recorded about a warning in time order, one page."""
    await require_warning(services.pool, warning_id)
    rows = await services.pool.fetch(sql("warning_audit"), warning_id, *_audit_start(after), limit)
    last = rows[-1] if len(rows) == limit else None
    return AuditPage(
        warning_id=warning_id,
        entries=[_audit_entry(r) for r in rows],
        next_after=str(AuditCursor(last["at"], last["rank"], last["id"])) if last else None,
    )


async def all_audit(
    services: Services, warning_id: int, *, after: AuditCursor | None
) -> AsyncIterator[list[AuditEntry]]:
    """The whole trail in batches, read through one cursor (check the warning exists first)."""
    # A read-only transaction costs nothing while the file streams, and the union has no
    # single id to page on cheaply.
    async with services.pool.acquire() as conn, conn.transaction(readonly=True):
        cursor = await conn.cursor(sql("warning_audit"), warning_id, *_audit_start(after), None)
        while batch := await cursor.fetch(CSV_BATCH):
            yield [_audit_entry(r) for r in batch]


# --- refused feed messages ---------------------------------------------------------------------


async def rejected_list(services: Services, *, before: int | None, limit: int) -> RejectedList:
    rows = await services.pool.fetch(sql("list_rejected"), before, limit, REJECTED_PREVIEW_CHARS)
    rejected = [RejectedOut.model_validate(dict(r)) for r in rows]
    next_before = rejected[-1].id if len(rejected) == limit else None
    return RejectedList(rejected=rejected, next_before=next_before)


async def rejected_one(services: Services, rejected_id: int) -> RejectedOut:
    row = await services.pool.fetchrow(sql("get_rejected"), rejected_id)
    if row is None:
        raise NotFoundError(f"rejected message {rejected_id} does not exist")
    return RejectedOut.model_validate(dict(row))


async def field_tasks_page(
    services: Services,
    warning_id: int,
    *,
    kind: str | None,
    state: str | None,
    after: int,
    limit: int,
) -> FieldTaskPage:
    """A warning's field tasks, door-knocking and gongs, a page at a time."""
    async with services.pool.acquire() as conn:
        await require_warning(conn, warning_id)
        rows = await conn.fetch(sql("list_field_tasks"), warning_id, kind, state, after, limit)
    tasks = [FieldTaskOut.model_validate(dict(r)) for r in rows]
    return FieldTaskPage(
        warning_id=warning_id,
        tasks=tasks,
        next_after=tasks[-1].id if len(tasks) == limit else None,
        simulated=services.simulated,
    )


async def speakers_list(
    services: Services, *, online: bool | None, division: str | None, after: str, limit: int
) -> SpeakerList:
    """Loudspeakers of a division (a code prefix), online or offline or both, by id."""
    prefix = division or ""
    # The cursor is "id/channel": an id is one MQTT topic level, so it holds no "/".
    after_id, _, after_channel = after.partition("/")
    async with services.pool.acquire() as conn:
        counts = await conn.fetchrow(sql("count_speakers"), prefix)
        rows = await conn.fetch(
            sql("list_speakers"), prefix, online, after_id, after_channel, limit
        )
    assert counts is not None  # an aggregate always answers
    speakers = [SpeakerOut.model_validate(dict(r)) for r in rows]
    last = speakers[-1] if len(speakers) == limit else None
    return SpeakerList(
        online=counts["online"],
        offline=counts["offline"],
        speakers=speakers,
        next_after=f"{last.id}/{last.channel}" if last is not None else None,
    )


# --- probes ------------------------------------------------------------------------------------


async def readiness(services: Services) -> Ready:
    """Whether the database answers; which channels exist and whether they are simulated."""
    try:
        await asyncio.wait_for(services.pool.fetchval(sql("ping")), PROBE_TIMEOUT_S)
        database = "ok"
    except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # The probe needs no token: the reason (a host, a path) goes to the log, not the answer.
        database = "unreachable"
        log.warning("database_not_ready", error=f"{type(exc).__name__}: {exc}")
    return Ready(
        status="ready" if database == "ok" else "unavailable",
        database=database,
        mode="simulated" if services.simulated else "live",
        channels=[
            _channel_out(name, channel, services.channel_owner)
            for name, channel in sorted(services.channels.items())
        ],
    )


# What an unauthenticated probe may learn of a link: its state, not where it goes or its errors.
_LINK_STATE: Final = (
    "bound",
    "in_flight",
    "window",
    "rate_per_s",
    "configured_rate_per_s",
    "registered",  # SIP: None without a registrar
    "workers",
    "workers_up",
    "waiting",
    "protocol",  # MQTT: the protocol version the broker took
    "speakers_online",
    "speakers_offline",
    "speakers_stale",
)


def _channel_out(
    name: str, channel: Channel, owner: Callable[[str], tuple[bool, str | None]] | None = None
) -> ChannelOut:
    held, holder = owner(name) if owner is not None else (None, None)
    # A channel another process holds is not started here: its links are the holder's to say.
    health = (channel.health() or {}) if held is not False else {}
    links = health.get("links")
    ready = health.get("ready")
    return ChannelOut(
        name=name,
        kind=str(channel.kind),
        simulated=channel.simulated,
        held=held,
        holder=holder,
        ready=ready if isinstance(ready, bool) else None,
        links={
            link: {key: facts[key] for key in _LINK_STATE if key in facts}
            for link, facts in links.items()
            if isinstance(facts, dict)
        }
        if isinstance(links, dict)
        else None,
    )


async def queue_depth(services: Services) -> Mapping[str, int] | None:
    """Queued deliveries per channel kind (every configured kind, 0 when none); None when the
    database does not answer in time."""
    try:
        rows = await asyncio.wait_for(services.pool.fetch(sql("queue_depth")), PROBE_TIMEOUT_S)
    except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        log.warning("queue_depth_unavailable", exc_info=True)
        return None
    depth = {str(c.kind): 0 for c in services.channels.values()}
    depth.update({r["channel_kind"]: r["queued"] for r in rows})
    return depth


async def count_tasks(
    conn: Conn, warning_id: int, kinds: Collection[str], *, speciality: str | None, exercise: bool
) -> dict[str, int]:
    """How many tasks of each kind planning would open (for the officer's preview)."""
    counts = {}
    if "door_knock" in kinds:
        counts["door_knock"] = len(
            await conn.fetch(sql("door_knock_candidates"), warning_id, exercise)
        )
    if "gong" in kinds:
        counts["gong"] = len(
            await conn.fetch(sql("gong_candidates"), warning_id, speciality, exercise, None)
        )
    return counts


def callout_summary(row: asyncpg.Record) -> CalloutSummary:
    """A division's or warning's call-outs from a row's ``c_*`` columns (read.sql, board.sql)."""
    return CalloutSummary(
        total=row["c_total"],
        acknowledged_on_time=row["c_on_time"],
        acknowledged_late=row["c_late"],
        open=row["c_open"],
        overdue=row["c_overdue"],
        escalated=row["c_escalated"],
        closed=row["c_closed"],
    )


def task_progress(row: asyncpg.Record) -> FieldTaskProgress:
    """Field tasks from a row's ``t_*`` columns (read.sql, board.sql)."""
    return FieldTaskProgress(
        total=row["t_total"],
        done=row["t_done"],
        open=row["t_open"],
        overdue=row["t_overdue"],
        persons=row["t_persons"],
        reached=row["t_reached"],
    )
