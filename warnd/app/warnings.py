"""Use cases on warnings that the API and the console share: receive a feed's CAP message, issue
a warning by hand, approve, cancel and correct one.

Each checks its state rules, writes the change with its audit entry in one transaction, and
wakes the planner; each refusal is a ``warnd.core.errors`` error with a stable code, which the
HTTP layer maps to its status and the console shows as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field
from structlog.contextvars import bound_contextvars

from warnd.app.reads import no_warning, preview_on, warning_texts
from warnd.app.services import Services
from warnd.app.views import Preview
from warnd.core.errors import ConflictError, ForbiddenError, InputError
from warnd.core.gate import amendment_needs_approval
from warnd.core.model import NormalisedWarning
from warnd.core.texts import TWO_VISIBLE
from warnd.db import Conn
from warnd.db.queries import sql
from warnd.ingest.amend import CancelRequest, CorrectRequest, cancellation, correction
from warnd.ingest.cap import CapError, parse_cap
from warnd.ingest.manual import parse_manual
from warnd.ingest.store import Amendment, Stored, load_warning, release, store_warning
from warnd.policy.texts import digest

log = structlog.get_logger(__name__)

REJECTED_BODY_BYTES: Final = 64 * 1024  # what a rejection keeps of the body, for the officer


def text_for_db(data: bytes | str) -> str:
    """Untrusted bytes as text PostgreSQL accepts: invalid UTF-8 and NUL replaced."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return text.replace("\x00", "\ufffd")


async def record_rejection(
    services: Services, feed: str, code: str, detail: str, body: bytes
) -> None:
    """Keep a refused feed message for the duty officer, and count it."""
    services.metrics.ingest.labels(source=feed, result="rejected", reason=code).inc()
    log.info("cap_rejected", feed=feed, error=code, detail=detail)
    try:
        await services.pool.execute(
            sql("insert_rejection"),
            feed,
            code,
            text_for_db(detail),
            text_for_db(body[:REJECTED_BODY_BYTES]),
        )
    # The feed still deserves its precise 4xx when the record of it cannot be written.
    except (asyncpg.PostgresError, OSError):
        log.exception("rejection_not_stored", feed=feed, error=code)


async def receive_cap(services: Services, feed: str, body: bytes) -> Stored:
    """Store one CAP 1.2 message from a feed, or record why it was refused and raise
    ``CapError`` / ``InputError`` saying so."""
    return await store_cap(services, feed, await parse_feed_cap(services, feed, body), body)


async def parse_feed_cap(services: Services, feed: str, body: bytes) -> NormalisedWarning:
    """A feed's CAP 1.2 message, validated, from a sender the feed may speak for; a refusal is
    kept for the duty officer and raised (``CapError``, ``ForbiddenError``)."""
    try:
        # Schema validation is CPU-bound: off the event loop, so other requests keep flowing,
        # and one at a time per feed, so a feed's costly messages hold up only that feed.
        async with services.parse_slot(feed):
            warning = await asyncio.to_thread(parse_cap, body, max_bytes=services.max_body_bytes)
    except CapError as exc:
        if exc.http_status >= 500:
            log.exception("cap_parse_failed", feed=feed, detail=exc.detail)
        await record_rejection(services, feed, exc.code, exc.detail, body)
        raise
    refusal = services.config.sender_refusal(feed, warning.sender)
    if refusal is not None:
        log.warning("cap_sender_refused", feed=feed, sender=warning.sender)
        await record_rejection(services, feed, "sender_not_allowed", refusal, body)
        raise ForbiddenError("sender_not_allowed", refusal)
    return warning


async def store_cap(
    services: Services, feed: str, warning: NormalisedWarning, body: bytes
) -> Stored:
    """Store a feed's parsed CAP warning (``parse_feed_cap``); ``InputError`` when refused."""
    policy = services.current_policy()
    try:
        stored = await store_warning(
            services.pool,
            warning,
            source=feed,
            now=services.clock.now(),
            needs_approval=policy.publish.needs_approval(warning.level, manual=False),
        )
    except InputError as exc:  # e.g. a Cancel for another feed's warning: nothing was stored
        await record_rejection(services, feed, exc.code, exc.detail, body)
        raise
    result = "accepted" if stored.created else "duplicate"
    services.metrics.ingest.labels(source=feed, result=result, reason=stored.state).inc()
    log.info(
        "cap_received",
        warning_id=stored.warning_id,
        feed=feed,
        created=stored.created,
        state=stored.state,
        unknown_codes=list(stored.unknown_codes),
    )
    services.plan_wakeup.set()
    return stored


async def _store_manual(
    services: Services,
    officer: str,
    payload: object,
    within: Callable[[Conn, int], Awaitable[None]] | None = None,
) -> tuple[NormalisedWarning, Stored]:
    """Parse and store a manual warning (``InputError`` names a bad field); orange and red wait
    for a second officer. ``within`` runs in the storing transaction (``store_warning``)."""
    now = services.clock.now()
    warning = parse_manual(payload).to_normalised(officer, now)
    needs_approval = services.current_policy().publish.needs_approval(warning.level, manual=True)
    stored = await store_warning(
        services.pool,
        warning,
        source="officer",
        now=now,
        needs_approval=needs_approval,
        author=officer,
        within=within,
    )
    return warning, stored


class _Previewed(Exception):  # noqa: N818 - not an error: how a draft's preview gets out
    """Carries a draft's preview out of the transaction it rolls back."""

    def __init__(self, shown: Preview) -> None:
        super().__init__("previewed")
        self.shown = shown


async def preview_draft(services: Services, officer: str, payload: object) -> Preview:
    """The preview of a manual warning not issued yet (the compose page's 预览): it is stored
    and its area resolved in a transaction that is then rolled back, so the counts are the
    ones its own preview would show, and nothing is kept, audited or planned. ``InputError``
    names what is wrong with ``payload``, as issuing it would."""

    async def look(conn: Conn, warning_id: int) -> None:
        raise _Previewed(await preview_on(services, conn, warning_id))

    try:
        await _store_manual(services, officer, payload, within=look)
    except _Previewed as previewed:
        return previewed.shown
    # Not stored: a warning with its key already exists (the same draft, issued meanwhile).
    raise InputError("this warning has just been issued; open it from the board")


async def issue(services: Services, officer: str, payload: object) -> Stored:
    """Issue a manual warning; orange and red wait for a second officer."""
    warning, stored = await _store_manual(services, officer, payload)
    services.metrics.ingest.labels(source="officer", result="accepted", reason=stored.state).inc()
    log.info(
        "manual_warning_issued",
        warning_id=stored.warning_id,
        author=officer,
        level=warning.level.value,
        hazard=warning.hazard,
        state=stored.state,
    )
    services.plan_wakeup.set()
    return stored


class ApproveRequest(BaseModel):
    """``POST /api/v1/warnings/{id}/approve``: the texts the approver read, by their digest."""

    model_config = ConfigDict(extra="forbid")

    texts_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="texts_sha256 of the preview the approver read: approval releases exactly "
        "those texts, or is refused (409 texts_changed) when they have changed since",
    )


class RejectRequest(BaseModel):
    """``POST /api/v1/warnings/{id}/reject``: why the warning must not go out."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(
        min_length=2, max_length=500, pattern=TWO_VISIBLE, description="why, for the audit log"
    )


async def approve(
    services: Services, approver: str, warning_id: int, request: ApproveRequest
) -> Stored:
    """A second officer releases a warning waiting for approval, with exactly the texts they
    read: an Update or Cancel ends the warning it is for only now, and the texts are stored
    (planning keeps them) and audited with the approval, in one transaction."""
    with bound_contextvars(warning_id=warning_id):  # what this request logs names it
        now = services.clock.now()
        async with services.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql("warning_brief"), warning_id)
            if row is None:
                raise no_warning(warning_id)
            if row["author"] == approver:
                log.warning("self_approval_refused", user=approver)
                raise ForbiddenError(
                    "self_approval",
                    f"warning {warning_id} was issued by {approver!r}; "
                    "a second officer must approve it",
                )
            if row["state"] != "pending_approval":
                raise ConflictError(
                    "not_pending", f"warning {warning_id} is {row['state']}, not pending approval"
                )
            if row["expires"] is not None and row["expires"] <= now:
                raise ConflictError(
                    "expired",
                    f"warning {warning_id} expired at {row['expires'].isoformat()}; "
                    "issue a new one",
                )
            warning = await load_warning(conn, warning_id)
            texts = await warning_texts(services, conn, warning_id, warning)
            if digest(texts) != request.texts_sha256:
                raise ConflictError(
                    "texts_changed",
                    f"the texts of warning {warning_id} are not those you read (the policy, "
                    "the channels or the warning it amends changed since): read the preview "
                    "again and approve what it shows",
                )
            released = await release(conn, warning_id, approver=approver, now=now)
            for text in texts:
                await conn.execute(
                    sql("upsert_message"), warning_id, text.key, text.channel_kind, text.body
                )
            await conn.execute(
                sql("audit"),
                approver,
                "warning_approved",
                f"warning:{warning_id}",
                {
                    "author": row["author"],
                    "level": row["level"],
                    "hazard": row["hazard"],
                    "msg_type": warning.msg_type,
                    "ended": list(released.ended),
                    "texts_sha256": request.texts_sha256,
                    "texts": [
                        {"audience": t.key, "channel_kind": t.channel_kind, "body": t.body}
                        for t in sorted(texts)
                    ],
                },
                now,
            )
        log.info("warning_approved", approver=approver, author=row["author"], state=released.state)
        services.plan_wakeup.set()
        return Stored(warning_id, released.state, False, (), released.ended)


async def reject(
    services: Services, approver: str, warning_id: int, request: RejectRequest
) -> None:
    """An approver refuses a warning waiting for approval: it never goes out, and a cancel or
    correction it was leaves the warning it was for as it is."""
    with bound_contextvars(warning_id=warning_id):
        now = services.clock.now()
        async with services.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql("warning_brief"), warning_id)
            if row is None:
                raise no_warning(warning_id)
            if await conn.fetchval(sql("reject_warning"), warning_id) is None:
                raise ConflictError(
                    "not_pending", f"warning {warning_id} is {row['state']}, not pending approval"
                )
            await conn.execute(
                sql("audit"),
                approver,
                "warning_rejected",
                f"warning:{warning_id}",
                {"author": row["author"], "reason": request.reason},
                now,
            )
        log.info("warning_rejected", approver=approver, author=row["author"])


async def cancel(
    services: Services, officer: str, warning_id: int, request: CancelRequest
) -> Stored:
    """Cancel a published or waiting warning: pending sends stop, escalation stops, and everyone
    it reached is told on the channel that reached them. Also how a waiting warning is refused."""
    return await _amend(services, officer, warning_id, request)


async def correct(
    services: Services, officer: str, warning_id: int, request: CorrectRequest
) -> Stored:
    """Correct a published warning: those it reached get the correction, the rest the warning;
    open call-outs carry over with their deadlines."""
    return await _amend(services, officer, warning_id, request)


async def _amend(
    services: Services, officer: str, warning_id: int, request: CancelRequest | CorrectRequest
) -> Stored:
    with bound_contextvars(warning_id=warning_id):  # what this request logs names it
        cancelling = isinstance(request, CancelRequest)
        now = services.clock.now()
        async with services.pool.acquire() as conn:
            row = await conn.fetchrow(sql("warning_brief"), warning_id)
            if row is None:
                raise no_warning(warning_id)
            original = await load_warning(conn, warning_id)
        allowed = ("active", "pending_approval") if cancelling else ("active",)
        done = "cancelled" if cancelling else "corrected"
        if row["state"] not in allowed:
            raise ConflictError(
                "not_active",
                f"warning {warning_id} is {row['state']}; only "
                f"{' or '.join(a.replace('_', ' ') for a in allowed)} warnings can be {done}",
            )
        if isinstance(request, CancelRequest):
            successor = cancellation(original, request, officer=officer, now=now)
        else:
            successor = correction(original, request, officer=officer, now=now)
        # A waiting warning reached nobody: refusing it by a cancel never waits.
        guarded = services.current_policy().publish.manual_approval_levels
        waits = row["state"] == "active" and amendment_needs_approval(
            original, successor, guarded=guarded
        )
        stored = await store_warning(
            services.pool,
            successor,
            source="officer",
            now=now,
            needs_approval=waits,
            author=officer,
            override_source=True,
            amends=Amendment(warning_id, f"warning_{done}", request.reason),
        )
        log.info(
            "warning_amended",
            action=done,
            by=stored.warning_id,
            state=stored.state,
            waits_for_approval=waits,
        )
        services.plan_wakeup.set()
        return stored
