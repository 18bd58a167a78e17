"""Ingest: store a normalised warning exactly once, apply Update/Cancel, resolve its area.

Parsing (CAP, manual JSON) happens before this module; here the warning is keyed by
(sender, identifier, sent), admitted by the gate, and its area resolved to villages in the same
transaction, so a stored warning always has its targets and a duplicate changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog
from asyncpg.types import Polygon

from warnd.core.errors import ConflictError, InputError
from warnd.core.gate import admit
from warnd.core.model import Area, Circle, NormalisedWarning
from warnd.core.references import next_short_code, parse_reference
from warnd.core.vocabulary import Level
from warnd.db import Conn
from warnd.db.notify import PLAN_CHANNEL
from warnd.db.queries import sql

log = structlog.get_logger(__name__)


SHORT_CODE_LOCK = 0x77A2_C0DE


@dataclass(frozen=True)
class Amendment:
    """What an officer's cancel or correction ends, and how it is audited."""

    warning_id: int
    action: str  # warning_cancelled | warning_corrected
    reason: str


@dataclass(frozen=True)
class Stored:
    warning_id: int
    state: str
    created: bool  # False for a duplicate of a message already stored
    unknown_codes: tuple[str, ...] = ()
    ended: tuple[int, ...] = ()  # warnings this Update or Cancel superseded or cancelled


async def store_warning(
    pool: asyncpg.Pool,
    warning: NormalisedWarning,
    *,
    source: str,
    now: datetime,
    needs_approval: bool = False,
    author: str | None = None,
    override_source: bool = False,
    amends: Amendment | None = None,
    within: Callable[[Conn, int], Awaitable[None]] | None = None,
) -> Stored:
    """Store a warning once; resolve its area; end what an Update or Cancel references.

    ``override_source``: a duty officer's cancel or correction may end another source's warning.
    ``amends``: an officer's cancel or correction, which must end that warning (``ConflictError``
    and nothing stored otherwise, e.g. when another officer ended it first) and is audited in
    the same transaction. An Update or Cancel that waits for a second officer ends nothing yet:
    the warning it is for stays in force until ``release``. ``within`` runs in the same
    transaction once a new warning is stored and its area resolved (the earthquake fast path
    writes the deliveries it has sent), so the planner never sees the warning without it.
    """
    decision = admit(warning, needs_approval=needs_approval, now=now)
    async with pool.acquire() as conn, conn.transaction():
        warning_id = await conn.fetchval(
            sql("insert_warning"),
            source,
            warning.sender,
            warning.identifier,
            warning.sent,
            warning.status,
            warning.msg_type,
            list(warning.references),
            warning.hazard,
            warning.level.value,
            warning.event,
            warning.headline,
            warning.description,
            warning.instruction,
            warning.area_desc,
            warning.area.to_json(),
            warning.effective,
            warning.expires,
            decision.state,
            author,
            warning.raw,
            "pending" if decision.plan else "none",
            now,
            amends.warning_id if amends is not None else None,
        )
        if warning_id is None:
            row = await conn.fetchrow(
                sql("find_warning_by_key"), source, warning.sender, warning.identifier, warning.sent
            )
            assert row is not None  # the conflict that suppressed the insert is this row
            return Stored(row["id"], row["state"], created=False)
        unknown = await resolve_area(conn, warning_id, warning.area)
        if within is not None:
            await within(conn, warning_id)
        waits = decision.state == "pending_approval"
        only = amends.warning_id if amends is not None else None
        # A waiting Update or Cancel checks its references now (a refusal tells the sender at
        # once) and ends them when released.
        targets = await _referenced(
            conn, warning, source, override_source=override_source, only=only
        )
        ended = () if waits else await _end(conn, warning_id, warning, targets, now)
        if amends is not None:
            if amends.warning_id not in (targets if waits else ended):
                raise ConflictError(
                    "not_active", f"warning {amends.warning_id} was ended meanwhile"
                )
            await conn.execute(
                sql("audit"),
                author,
                amends.action if not waits else f"{amends.action}_requested",
                f"warning:{amends.warning_id}",
                {"reason": amends.reason, "by_warning": warning_id},
                now,
            )
        if decision.state == "active" or (waits and warning.msg_type == "Alert"):
            await _assign_short_code(conn, warning_id, ended)
        await conn.execute(
            sql("audit"),
            author or f"feed:{source}",
            "warning_received",
            f"warning:{warning_id}",
            {"state": decision.state, "reason": decision.reason, "msg_type": warning.msg_type},
            now,
        )
        if decision.plan:
            await conn.execute("SELECT pg_notify($1, $2)", PLAN_CHANNEL, str(warning_id))
    log.info(
        "warning_stored",
        warning_id=warning_id,
        state=decision.state,
        reason=decision.reason,
        source=source,
    )
    return Stored(warning_id, decision.state, True, unknown, ended)


async def _assign_short_code(conn: Conn, warning_id: int, ended: Sequence[int]) -> None:
    """The code responders may name in a reply when several warnings are open. An Update keeps
    the code of the warning it supersedes: responders were told to reply with it, and their
    call-outs carry over."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", SHORT_CODE_LOCK)
    used = {r["short_code"] for r in await conn.fetch(sql("open_short_codes"))}
    inherited = await conn.fetchval(sql("inherited_short_code"), list(ended))
    code = inherited if inherited and inherited not in used else next_short_code(used)
    await conn.execute(sql("set_short_code"), warning_id, code)


@dataclass(frozen=True)
class Released:
    """A warning a second officer approved: the state it took, and what it ended."""

    state: str
    plan: bool
    ended: tuple[int, ...]


async def release(conn: Conn, warning_id: int, *, approver: str, now: datetime) -> Released:
    """Publish a warning waiting for approval, in the caller's transaction: it takes the state
    the gate gives it, and an Update or Cancel ends what it is for now. ``ConflictError`` when
    it is no longer waiting, or when what it amends was ended meanwhile."""
    row = await conn.fetchrow(sql("warning_for_release"), warning_id)
    if row is None or row["state"] != "pending_approval":
        raise ConflictError("not_pending", f"warning {warning_id} is no longer pending")
    warning = await load_warning(conn, warning_id)
    decision = admit(warning, needs_approval=False, now=now)
    ended: tuple[int, ...] = ()
    if warning.msg_type in ("Update", "Cancel"):
        targets = await _referenced(
            conn,
            warning,
            row["source"],
            override_source=row["amends_id"] is not None,
            only=row["amends_id"],
        )
        ended = await _end(conn, warning_id, warning, targets, now)
        if row["amends_id"] is not None and row["amends_id"] not in ended:
            raise ConflictError(
                "not_active", f"warning {row['amends_id']} it amends was ended meanwhile"
            )
    approved = await conn.fetchval(
        sql("approve_warning"), warning_id, approver, now, decision.state, decision.plan
    )
    if approved is None:  # another approver was faster
        raise ConflictError("not_pending", f"warning {warning_id} is no longer pending")
    if decision.state == "active" and warning.msg_type != "Alert":
        await _assign_short_code(conn, warning_id, ended)
    if decision.plan:
        await conn.execute("SELECT pg_notify($1, $2)", PLAN_CHANNEL, str(warning_id))
    return Released(decision.state, decision.plan, ended)


async def resolve_area(conn: Conn, warning_id: int, area: Area) -> tuple[str, ...]:
    """Write the villages the area covers; return the division codes the roster does not know."""
    if area.codes:
        await conn.execute(sql("resolve_codes"), warning_id, list(area.codes))
    for ring in area.polygons:
        # asyncpg sends a polygon parameter in PostgreSQL's binary form: its own Polygon type,
        # float8 pairs with x = lon, y = lat. (A text '((lon,lat),…)' is refused by the codec.)
        polygon = Polygon(*((lon, lat) for lat, lon in ring))
        await conn.execute(sql("resolve_polygon"), warning_id, polygon)
    for circle in area.circles:
        await conn.execute(
            sql("resolve_circle"), warning_id, circle.lat, circle.lon, circle.radius_km
        )
    if not area.codes:
        return ()
    return tuple(r["c"] for r in await conn.fetch(sql("unknown_codes"), list(area.codes)))


async def _referenced(
    conn: Conn,
    warning: NormalisedWarning,
    source: str,
    *,
    override_source: bool = False,
    only: int | None = None,
) -> tuple[int, ...]:
    """The warnings an Update or Cancel references, checked: only warnings of the same source
    and status may be ended. A Test or an Exercise never ends a live warning, and one feed never
    cancels another's (a duty officer may: ``override_source``). Such a reference refuses the
    whole message (the transaction rolls back), so the sender learns that nothing was ended.
    References to messages warnd never received are accepted and end nothing. A reference names
    a key that several sources may have used: the referencing source's own warning is meant,
    else (an officer's amendment) the warning ``only`` names.
    """
    if warning.msg_type not in ("Update", "Cancel"):
        return ()
    ids = []
    for number, ref in enumerate(warning.references, start=1):
        key = parse_reference(ref)
        if key is None:
            continue
        rows = await conn.fetch(sql("find_referenced"), *key, source)
        row = next((r for r in rows if only is None or r["id"] == only), None)
        if row is None:
            continue
        if (row["source"] != source and not override_source) or row["status"] != warning.status:
            raise InputError(
                f"references[{number}]: {ref} is a {row['status']} warning from "
                f"{row['source']!r}; a {warning.status} {warning.msg_type} from {source!r} "
                "cannot end it",
                code="rule_violation",
            )
        ids.append(row["id"])
    return tuple(ids)


async def _end(
    conn: Conn,
    warning_id: int,
    warning: NormalisedWarning,
    targets: Sequence[int],
    now: datetime,
) -> tuple[int, ...]:
    """An Update supersedes, a Cancel cancels, the ``targets`` still in force.

    The ended warnings' open call-outs and field tasks carry over to an Update when their person
    or village is still inside its area, keeping their deadlines and escalation chains; the rest
    are closed at once. Notices to the people already reached are the planner's job.
    """
    if not targets:
        return ()
    new_state = "superseded" if warning.msg_type == "Update" else "cancelled"
    ended = [
        r["id"]
        for r in await conn.fetch(sql("end_referenced"), list(targets), new_state, warning_id)
    ]
    if ended:
        await conn.execute(
            "UPDATE warnings SET supersedes_id = $2 WHERE id = $1", warning_id, ended[0]
        )
        await conn.execute(sql("cancel_queued"), ended, f"{new_state} by warning {warning_id}", now)
        if warning.msg_type == "Update":
            await conn.execute(sql("carry_callouts"), ended, warning_id, now)
            await conn.execute(sql("carry_field_tasks"), ended, warning_id, now)
        reason = f"warning {new_state} by warning {warning_id}"
        await conn.execute(sql("close_callouts"), ended, reason, now)
        await conn.execute(sql("close_field_tasks"), ended, reason, now)
    return tuple(ended)


async def load_warning(conn: Conn, warning_id: int) -> NormalisedWarning:
    """Read a stored warning back in normalised form."""
    row = await conn.fetchrow(sql("get_warning"), warning_id)
    if row is None:
        raise LookupError(f"no warning {warning_id}")
    return warning_from_row(row)


def warning_from_row(row: asyncpg.Record) -> NormalisedWarning:
    """A row of ``get_warning`` in normalised form."""
    area = row["area"]  # as ``Area.to_json`` stored it
    return NormalisedWarning(
        sender=row["sender"],
        identifier=row["identifier"],
        sent=row["sent"],
        status=row["status"],
        msg_type=row["msg_type"],
        hazard=row["hazard"],
        level=Level(row["level"]),
        area=Area(
            codes=tuple(area.get("codes", ())),
            polygons=tuple(tuple((p[0], p[1]) for p in ring) for ring in area.get("polygons", ())),
            circles=tuple(Circle(**c) for c in area.get("circles", ())),
        ),
        event=row["event"],
        headline=row["headline"],
        description=row["description"],
        instruction=row["instruction"],
        area_desc=row["area_desc"],
        references=tuple(row["refs"]),
        effective=row["effective"],
        expires=row["expires"],
        raw=row["raw"],
    )
