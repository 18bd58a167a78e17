"""The HTTP API: CAP from feeds, manual warnings and approval, progress, call-outs, probes and
metrics.

Who may call what is declared once, in ``warnd.web.openapi.ROLES``; a middleware enforces it for
every route before the handler runs, and refuses any /api/v1 route missing from the table. Bad
input of any kind becomes ``{"error": code, "detail": sentence}`` with a 4xx status; anything
unexpected becomes a 500 with the same shape, logged with its traceback (the client never sees
one). Phone numbers are returned in full to officers, who need to call people, and are masked
in logs by ``warnd.runtime.logs``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from channels.base import Channel
from warnd.app.services import Services
from warnd.core.config import Role, User
from warnd.core.errors import InputError, describe_errors
from warnd.core.vocabulary import HAZARDS
from warnd.db import Conn
from warnd.db.notify import PLAN_CHANNEL
from warnd.db.queries import sql
from warnd.ingest.amend import (
    CancelRequest,
    CorrectRequest,
    cancellation,
    correction,
    parse_request,
)
from warnd.ingest.cap import CapError, parse_cap
from warnd.ingest.manual import parse_manual
from warnd.ingest.store import Stored, load_warning, store_warning
from warnd.pipeline.field_tasks import count_tasks
from warnd.policy.targeting import add_tasks, decide, reach, task_kinds
from warnd.web.openapi import (
    API,
    AUDIENCES,
    AUDIT_CSV_COLUMNS,
    CALLOUT_CSV_COLUMNS,
    CALLOUT_FILTERS,
    CSV_COLUMNS,
    DELIVERY_STATES,
    OPEN_CALLOUT_STATES,
    PROGRESS_LEVELS,
    RESPONDER_LEVELS,
    ROLES,
    WARNING_STATES,
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
    ErrorBody,
    FieldTaskProgress,
    Health,
    NormalisedOut,
    OfficerAck,
    Preview,
    Progress,
    ProgressReport,
    Ready,
    RejectedList,
    RejectedOut,
    WarningAccepted,
    WarningDetail,
    WarningList,
    WarningSummary,
    document,
)
from warnd.web.webhooks.sms import post_inbound_sms

log = structlog.get_logger(__name__)

SERVICES: Final = web.AppKey("services", Services)
OPENAPI: Final = web.AppKey("openapi", dict[str, Any])  # built once per application
USER: Final = web.RequestKey("user", User)  # set by the auth middleware for user-token routes
FEED: Final = web.RequestKey("feed", str)  # set by the auth middleware for feed-token routes

XML_TYPES: Final = frozenset({"application/xml", "text/xml", "application/cap+xml"})
REJECTED_BODY_BYTES: Final = 64 * 1024  # what a rejection keeps of the body, for the officer
REJECTED_PREVIEW_CHARS: Final = 2000  # what the rejected list shows of each body
CSV_BATCH: Final = 5000  # rows per query while streaming CSV
PROBE_TIMEOUT_S: Final = 2.0  # /readyz and /metrics must answer even when the database hangs
MAX_ID: Final = 2**63 - 1  # bigint
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
READ_CHUNK: Final = 64 * 1024
BODY_TIMEOUT_S: Final = 30.0  # a body slower than this is refused (408)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than success: status, a stable code and a sentence for the caller."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


class StreamAbortedError(Exception):
    """A streamed response failed after its headers were sent: the connection must be cut so
    the client sees a truncated transfer, never a short file that looks complete."""


# --- responses ---------------------------------------------------------------------------------


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def _error(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = _json(ErrorBody(error=code, detail=detail), status)
    response.headers.update(headers or {})
    return response


_HTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as ``{"error", "detail"}``; unexpected ones logged, never shown."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.code, exc.detail, exc.headers)
    except InputError as exc:
        status = exc.http_status if isinstance(exc, CapError) else 422
        return _error(status, exc.code, exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        detail = f"{request.method} {request.path}: {exc.reason}"
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow",)}
        return _error(exc.status, code, detail, headers)
    except StreamAbortedError:
        raise
    # The one place a request's unforeseen failure is caught: it is logged with its traceback
    # and the caller gets a 500 naming the request, so a feed can never crash or hang warnd.
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("request_failed", method=request.method, path=request.path, incident=incident)
        return _error(
            500,
            "internal",
            f"warnd failed while handling {request.method} {request.path}; "
            f"the operators can find incident {incident} in the log",
        )


# --- authentication and roles ------------------------------------------------------------------


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def has_role(user: User, role: str) -> bool:
    """Admin holds every role."""
    return any(r.value in (role, Role.ADMIN.value) for r in user.roles)


def _unauthorised(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": 'Bearer realm="warnd"'})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and authorise by the route's entry in ``ROLES`` before its handler runs."""
    resource = request.match_info.route.resource
    if resource is None:  # no route matched: the handler raises 404 or 405
        return await handler(request)
    method = "GET" if request.method == "HEAD" else request.method
    key = (method, resource.canonical)
    if key not in ROLES:
        # A route without declared roles is a programming error; refuse rather than serve it open.
        raise RuntimeError(f"route {method} {resource.canonical} has no entry in openapi.ROLES")
    roles = ROLES[key]
    if roles is None:
        return await handler(request)
    if roles == ("gateway",):  # the token names the channel: the handler authenticates
        return await handler(request)
    services = request.app[SERVICES]
    token = _bearer(request)
    if roles == ("feed",):
        feed = services.config.feed_for_token(token) if token else None
        if feed is None:
            services.metrics.ingest.labels(
                source="unauthenticated", result="rejected", reason="unauthorized"
            ).inc()
            log.warning("feed_unauthorized", path=request.path, remote=request.remote)
            raise _unauthorised(
                "send 'Authorization: Bearer <token>' with the token of a configured feed"
                if token is None
                else "the bearer token is not the token of any configured feed"
            )
        request[FEED] = feed
        return await handler(request)
    user = services.config.user_for_token(token) if token else None
    if user is None:
        log.warning("user_unauthorized", path=request.path, remote=request.remote)
        raise _unauthorised(
            "send 'Authorization: Bearer <token>' with an officer's token"
            if token is None
            else "the bearer token is not the token of any configured user"
        )
    if not any(has_role(user, role) for role in roles):
        log.warning("user_forbidden", user=user.name, path=request.path, needs=list(roles))
        raise ApiError(
            403,
            "forbidden",
            f"user {user.name!r} lacks the role for {method} {resource.canonical}: "
            f"needs {' or '.join(roles)}",
        )
    request[USER] = user
    return await handler(request)


# --- reading requests --------------------------------------------------------------------------


class BodyError(ApiError):
    """The body could not be read whole: too large (413) or too slow (408)."""

    def __init__(self, status: int, code: str, detail: str, head: bytes) -> None:
        super().__init__(status, code, detail)
        self.head = head  # what arrived before reading stopped, for the rejection record


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, read in chunks, refused as soon as it passes ``limit`` bytes or stalls."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyError(
            413, "too_large", f"body is {declared} bytes; at most {limit} bytes are accepted", b""
        )
    parts: list[bytes] = []
    size = 0
    try:
        # A sender that stalls mid-body holds only its own request, and not for long.
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.content.iter_chunked(READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise BodyError(
                        413,
                        "too_large",
                        f"body is larger than {limit} bytes, the most accepted",
                        b"".join(parts),
                    )
                parts.append(chunk)
    except TimeoutError:
        raise BodyError(
            408,
            "request_timeout",
            f"the body did not arrive within {BODY_TIMEOUT_S:g} s ({size} bytes came)",
            b"".join(parts),
        ) from None
    return b"".join(parts)


def _text_for_db(data: bytes | str) -> str:
    """Untrusted bytes as text PostgreSQL accepts: invalid UTF-8 and NUL replaced."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return text.replace("\x00", "\ufffd")


def _id(request: web.Request, name: str) -> int:
    value = int(request.match_info[name])  # the route pattern admits digits only
    if value > MAX_ID:
        raise ApiError(404, "not_found", f"{name} {value} does not exist")
    return value


def _query_int(
    request: web.Request, name: str, default: int | None, low: int, high: int = MAX_ID
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            400, "invalid_parameter", f"{name}: {raw!r} is not an integer from {low} to {high}"
        )
    return value


def _query_choice(
    request: web.Request, name: str, choices: tuple[str, ...] | list[str]
) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ApiError(
            400, "invalid_parameter", f"{name}: {raw!r} is not one of {', '.join(choices)}"
        )
    return raw


def _query_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return False
    if raw not in ("true", "false"):
        raise ApiError(400, "invalid_parameter", f"{name}: {raw!r} is not true or false")
    return raw == "true"


def _query_division(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) in (6, 9, 12)):
        raise ApiError(
            400,
            "invalid_parameter",
            f"{name}: {raw!r} is not a division code prefix of 6 (county), 9 (town) "
            "or 12 (village) digits",
        )
    return raw


# --- feeds: CAP --------------------------------------------------------------------------------


async def _reject(services: Services, feed: str, error: ApiError, body: bytes) -> ApiError:
    """Keep a refused message for the duty officer, count it, and return the answer to raise."""
    services.metrics.ingest.labels(source=feed, result="rejected", reason=error.code).inc()
    log.info("cap_rejected", feed=feed, error=error.code, detail=error.detail)
    try:
        await services.pool.execute(
            sql("insert_rejection"),
            feed,
            error.code,
            _text_for_db(error.detail),
            _text_for_db(body[:REJECTED_BODY_BYTES]),
        )
    # The feed still deserves its precise 4xx when the record of it cannot be written.
    except (asyncpg.PostgresError, OSError):
        log.exception("rejection_not_stored", feed=feed, error=error.code)
    return error


async def post_cap(request: web.Request) -> web.Response:
    """Receive one CAP 1.2 message from an authenticated feed."""
    services = request.app[SERVICES]
    feed = request[FEED]
    if request.content_type not in XML_TYPES:
        unsupported = ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {request.content_type!r} is not CAP XML; "
            f"send one of {', '.join(sorted(XML_TYPES))}",
        )
        raise await _reject(services, feed, unsupported, b"")
    try:
        body = await read_body(request, services.max_body_bytes)
    except BodyError as exc:
        raise await _reject(services, feed, exc, exc.head) from None
    try:
        # Schema validation is CPU-bound: off the event loop, so other requests keep flowing.
        warning = await asyncio.to_thread(parse_cap, body, max_bytes=services.max_body_bytes)
    except CapError as exc:
        if exc.http_status >= 500:
            log.exception("cap_parse_failed", feed=feed, detail=exc.detail)
        invalid = ApiError(exc.http_status, exc.code, exc.detail)
        raise await _reject(services, feed, invalid, body) from None
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
        raise await _reject(services, feed, ApiError(422, exc.code, exc.detail), body) from None
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
    return _accepted(services, stored)


def _accepted(services: Services, stored: Stored) -> web.Response:
    body = WarningAccepted(
        warning_id=stored.warning_id,
        status=stored.state,
        created=stored.created,
        unknown_codes=list(stored.unknown_codes),
        simulated=services.simulated,
    )
    return _json(body, 201 if stored.created else 200)


# --- officers: issue and approve ---------------------------------------------------------------


async def post_warning(request: web.Request) -> web.Response:
    """Issue a manual warning; orange and red wait for a second officer."""
    services = request.app[SERVICES]
    user = request[USER]
    payload = await json_payload(request)
    now = services.clock.now()
    warning = parse_manual(payload).to_normalised(user.name, now)
    needs_approval = services.current_policy().publish.needs_approval(warning.level, manual=True)
    stored = await store_warning(
        services.pool,
        warning,
        source="officer",
        now=now,
        needs_approval=needs_approval,
        author=user.name,
    )
    services.metrics.ingest.labels(source="officer", result="accepted", reason=stored.state).inc()
    log.info(
        "manual_warning_issued",
        warning_id=stored.warning_id,
        author=user.name,
        level=warning.level.value,
        hazard=warning.hazard,
        state=stored.state,
    )
    services.plan_wakeup.set()
    return _accepted(services, stored)


async def approve_warning(request: web.Request) -> web.Response:
    """A second officer releases a warning waiting for approval."""
    services = request.app[SERVICES]
    user = request[USER]
    warning_id = _id(request, "warning_id")
    now = services.clock.now()
    async with services.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql("warning_brief"), warning_id)
        if row is None:
            raise _no_warning(warning_id)
        if row["author"] == user.name:
            log.warning("self_approval_refused", warning_id=warning_id, user=user.name)
            raise ApiError(
                403,
                "self_approval",
                f"warning {warning_id} was issued by {user.name!r}; "
                "a second officer must approve it",
            )
        if row["state"] != "pending_approval":
            raise ApiError(
                409,
                "not_pending",
                f"warning {warning_id} is {row['state']}, not pending approval",
            )
        if row["expires"] is not None and row["expires"] <= now:
            raise ApiError(
                409,
                "expired",
                f"warning {warning_id} expired at {row['expires'].isoformat()}; issue a new one",
            )
        approved = await conn.fetchval(sql("approve_warning"), warning_id, user.name, now)
        if approved is None:  # another approver was faster
            raise ApiError(409, "not_pending", f"warning {warning_id} is no longer pending")
        await conn.execute(
            sql("audit"),
            user.name,
            "warning_approved",
            f"warning:{warning_id}",
            {"author": row["author"], "level": row["level"], "hazard": row["hazard"]},
            now,
        )
        await conn.execute("SELECT pg_notify($1, $2)", PLAN_CHANNEL, str(warning_id))
    log.info("warning_approved", warning_id=warning_id, approver=user.name, author=row["author"])
    services.plan_wakeup.set()
    return _json(
        WarningAccepted(
            warning_id=warning_id, status="active", created=False, simulated=services.simulated
        )
    )


async def cancel_warning(request: web.Request) -> web.Response:
    """Cancel a published or waiting warning: pending sends stop, escalation stops, and everyone
    it reached is told on the channel that reached them. Also how a waiting warning is refused."""
    payload = parse_request(CancelRequest, await json_payload(request))
    return await _amend(request, "cancel", payload.reason, payload)


async def correct_warning(request: web.Request) -> web.Response:
    """Correct a published warning: those it reached get the correction, the rest the warning;
    open call-outs carry over with their deadlines."""
    payload = parse_request(CorrectRequest, await json_payload(request))
    return await _amend(request, "correct", payload.reason, payload)


async def _amend(
    request: web.Request, action: str, reason: str, payload: CancelRequest | CorrectRequest
) -> web.Response:
    services = request.app[SERVICES]
    user = request[USER]
    warning_id = _id(request, "warning_id")
    now = services.clock.now()
    async with services.pool.acquire() as conn:
        row = await conn.fetchrow(sql("warning_brief"), warning_id)
        if row is None:
            raise _no_warning(warning_id)
        original = await load_warning(conn, warning_id)
    allowed = ("active", "pending_approval") if action == "cancel" else ("active",)
    done = "cancelled" if action == "cancel" else "corrected"
    if row["state"] not in allowed:
        raise ApiError(
            409,
            "not_active",
            f"warning {warning_id} is {row['state']}; only "
            f"{' or '.join(a.replace('_', ' ') for a in allowed)} warnings can be {done}",
        )
    if isinstance(payload, CancelRequest):
        successor = cancellation(original, payload, officer=user.name, now=now)
    else:
        successor = correction(original, payload, officer=user.name, now=now)
    stored = await store_warning(
        services.pool,
        successor,
        source="officer",
        now=now,
        author=user.name,
        override_source=True,
    )
    if warning_id not in stored.ended:  # another officer's cancel or correction came first
        raise ApiError(409, "not_active", f"warning {warning_id} was ended meanwhile")
    await services.pool.execute(
        sql("audit"),
        user.name,
        f"warning_{done}",
        f"warning:{warning_id}",
        {"reason": reason, "by_warning": stored.warning_id},
        now,
    )
    log.info("warning_amended", action=action, warning_id=warning_id, by=stored.warning_id)
    services.plan_wakeup.set()
    return _accepted(services, stored)


async def json_payload(request: web.Request) -> object:
    """The request's JSON body, decoded; 415 or 400 with the reason otherwise."""
    services = request.app[SERVICES]
    if request.content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {request.content_type!r}: send application/json",
        )
    body = await read_body(request, services.max_body_bytes)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"body is not JSON: {exc}") from None


def _no_warning(warning_id: int) -> ApiError:
    return ApiError(404, "not_found", f"warning {warning_id} does not exist")


# --- officers: read ----------------------------------------------------------------------------


async def list_warnings(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    state = _query_choice(request, "state", WARNING_STATES)
    limit = _query_int(request, "limit", 100, 1, 1000)
    before = _query_int(request, "before", None, 1)
    rows = await services.pool.fetch(sql("list_warnings"), state, before, limit)
    warnings = [WarningSummary.model_validate(dict(r)) for r in rows]
    next_before = warnings[-1].id if len(warnings) == limit else None
    return _json(
        WarningList(warnings=warnings, next_before=next_before, simulated=services.simulated)
    )


async def get_warning(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    warning_id = _id(request, "warning_id")
    async with services.pool.acquire() as conn:
        row = await conn.fetchrow(sql("get_warning"), warning_id)
        if row is None:
            raise _no_warning(warning_id)
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
    area = row["area"]  # as ``Area.to_json`` stored it
    normalised = NormalisedOut(
        sender=row["sender"],
        identifier=row["identifier"],
        sent=row["sent"],
        status=row["status"],
        msg_type=row["msg_type"],
        hazard=row["hazard"],
        level=row["level"],
        event=row["event"],
        headline=row["headline"],
        description=row["description"],
        instruction=row["instruction"],
        area_desc=row["area_desc"],
        area=AreaOut(
            codes=area.get("codes", []),
            polygons=area.get("polygons", []),
            circles=[CircleOut.model_validate(c) for c in area.get("circles", [])],
        ),
        references=list(row["refs"]),
        effective=row["effective"],
        expires=row["expires"],
    )
    detail = WarningDetail(
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
    return _json(detail)


async def preview_warning(request: web.Request) -> web.Response:
    """What publishing would send, by the policy in force: recipients and deliveries per
    audience, who the area holds but the warning does not reach, and the covered divisions."""
    services = request.app[SERVICES]
    warning_id = _id(request, "warning_id")
    async with services.pool.acquire() as conn:
        facts = await conn.fetchrow(sql("preview_facts"), warning_id)
        if facts is None:
            raise _no_warning(warning_id)
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
        async with services.pool.acquire() as conn:
            opened = await count_tasks(
                conn, warning_id, tasks, speciality=speciality, exercise=exercise
            )
        add_tasks(reached, tasks, opened)
    preview = Preview(
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
        simulated=services.simulated,
    )
    return _json(preview)


async def warning_progress(request: web.Request) -> web.Response:
    """Deliveries, call-outs and field tasks rolled up per county, town or village."""
    services = request.app[SERVICES]
    warning_id = _id(request, "warning_id")
    level = _query_choice(request, "level", list(PROGRESS_LEVELS)) or "town"
    now = services.clock.now()
    async with services.pool.acquire() as conn:
        if await conn.fetchrow(sql("warning_brief"), warning_id) is None:
            raise _no_warning(warning_id)
        rows = await conn.fetch(
            sql("progress_by_division"), warning_id, PROGRESS_LEVELS[level], now
        )
    report = ProgressReport(
        warning_id=warning_id,
        level=level,
        as_of=now,
        divisions=[_division_progress(r) for r in rows],
        simulated=services.simulated,
    )
    return _json(report)


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
        callouts=CalloutSummary(
            total=row["c_total"],
            acknowledged_on_time=row["c_on_time"],
            acknowledged_late=row["c_late"],
            open=row["c_open"],
            overdue=row["c_overdue"],
            escalated=row["c_escalated"],
            closed=row["c_closed"],
        ),
        field_tasks=FieldTaskProgress(
            total=row["t_total"],
            done=row["t_done"],
            open=row["t_open"],
            overdue=row["t_overdue"],
            persons=row["t_persons"],
            reached=row["t_reached"],
        ),
    )


_RECIPIENT_KIND: Final = {
    "responder": "responder",
    "helper": "responder",
    "facility": "facility",
    "household": "household",
    "broadcast": "loudspeaker",
}


def _delivery(row: asyncpg.Record) -> DeliveryOut:
    return DeliveryOut.model_validate(
        {**row, "recipient_kind": _RECIPIENT_KIND.get(row["audience"], row["audience"])}
    )


async def list_deliveries(request: web.Request) -> web.StreamResponse:
    """One page of deliveries as JSON, or every matching delivery streamed as CSV."""
    services = request.app[SERVICES]
    warning_id = _id(request, "warning_id")
    state = _query_choice(request, "state", DELIVERY_STATES)
    audience = _query_choice(request, "audience", AUDIENCES)
    output = _query_choice(request, "format", ("json", "csv")) or "json"
    limit = _query_int(request, "limit", 100, 1, 1000)
    after = _query_int(request, "after", 0, 0) or 0
    if await services.pool.fetchrow(sql("warning_brief"), warning_id) is None:
        raise _no_warning(warning_id)
    if output == "csv":
        return await _deliveries_csv(
            request, warning_id, after=after, state=state, audience=audience
        )
    rows = await services.pool.fetch(
        sql("list_deliveries"), warning_id, after, limit, state, audience
    )
    deliveries = [_delivery(r) for r in rows]
    page = DeliveryPage(
        warning_id=warning_id,
        deliveries=deliveries,
        next_after=deliveries[-1].id if len(deliveries) == limit else None,
        simulated=services.simulated,
    )
    return _json(page)


def _csv_time(value: datetime | None, zone: tzinfo) -> str:
    # Local time with its offset: people read the CSV in a spreadsheet, in the city's time.
    return value.astimezone(zone).isoformat() if value is not None else ""


Page = Callable[[int], Awaitable[list[asyncpg.Record]]]  # rows with ids above the argument


async def _stream_csv(
    request: web.Request,
    filename: str,
    columns: tuple[str, ...],
    page: Page,
    cells: Callable[[asyncpg.Record, tzinfo], tuple[object, ...]],
) -> web.StreamResponse:
    """Every row ``page`` yields, fetched in batches of ``CSV_BATCH`` and written as they come."""
    services = request.app[SERVICES]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
    )
    zone = services.current_policy().night.zone
    await response.prepare(request)
    after = 0
    try:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        # The BOM makes spreadsheet programs read the Chinese names as UTF-8.
        buffer.write("\ufeff")
        writer.writerow(columns)
        while True:
            rows = await page(after)
            writer.writerows(cells(r, zone) for r in rows)
            await response.write(buffer.getvalue().encode("utf-8"))
            buffer.seek(0)
            buffer.truncate()
            if len(rows) < CSV_BATCH:
                break
            after = rows[-1]["id"]
    except (asyncpg.PostgresError, OSError) as exc:
        log.exception("csv_failed", path=request.path)
        raise StreamAbortedError(f"CSV {filename} cut off: {exc}") from exc
    await response.write_eof()
    return response


def _delivery_cells(row: asyncpg.Record, zone: tzinfo) -> tuple[object, ...]:
    d = _delivery(row)
    return (
        d.id,
        d.recipient_kind,
        d.audience,
        d.name,
        d.division_code,
        d.channel_kind,
        d.channel or "",
        d.address,
        d.state,
        d.attempts,
        d.error or "",
        _csv_time(d.queued_at, zone),
        _csv_time(d.sent_at, zone),
        _csv_time(d.delivered_at, zone),
        _csv_time(d.failed_at, zone),
        _csv_time(d.cancelled_at, zone),
    )


async def _deliveries_csv(
    request: web.Request, warning_id: int, *, after: int, state: str | None, audience: str | None
) -> web.StreamResponse:
    pool = request.app[SERVICES].pool

    async def page(above: int) -> list[asyncpg.Record]:
        return await pool.fetch(
            sql("list_deliveries"), warning_id, max(above, after), CSV_BATCH, state, audience
        )

    return await _stream_csv(
        request, f"warning-{warning_id}-deliveries.csv", CSV_COLUMNS, page, _delivery_cells
    )


# --- officers: call-outs (叫应) -----------------------------------------------------------------


@dataclass(frozen=True)
class CalloutFilter:
    """Which of a warning's call-outs a list shows; ``overdue_at`` keeps only the open ones past
    their deadline at that time."""

    states: list[str] | None = None
    level: str | None = None
    division: str | None = None
    overdue_at: datetime | None = None
    callout_id: int | None = None


async def _fetch_callouts(
    conn: asyncpg.Pool | Conn,
    warning_id: int,
    after: int,
    limit: int,
    where: CalloutFilter,
) -> list[asyncpg.Record]:
    return await conn.fetch(
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


def _callout_cells(row: asyncpg.Record, zone: tzinfo) -> tuple[object, ...]:
    c = CalloutOut.model_validate(dict(row))
    return (
        c.id,
        c.name,
        c.phone,
        c.division_code,
        c.division_name,
        c.level,
        c.state,
        _csv_time(c.deadline, zone),
        _csv_time(c.acknowledged_at, zone),
        "" if c.ack_late is None else str(c.ack_late).lower(),
        c.ack_via or "",
        c.ack_by or "",
        c.cursor,
        c.escalation_steps,
        c.last_event or "",
        _csv_time(c.last_event_at, zone),
        c.last_step or "",
        c.last_step_target or "",
    )


async def list_callouts(request: web.Request) -> web.StreamResponse:
    """A warning's call-outs, filtered: one page as JSON, or every match streamed as CSV.
    ``?overdue=true`` is the list of those not yet answered in time (未叫应名单)."""
    services = request.app[SERVICES]
    warning_id = _id(request, "warning_id")
    state = _query_choice(request, "state", CALLOUT_FILTERS)
    where = CalloutFilter(
        states=list(OPEN_CALLOUT_STATES) if state == "open" else [state] if state else None,
        level=_query_choice(request, "level", RESPONDER_LEVELS),
        division=_query_division(request, "division"),
        overdue_at=services.clock.now() if _query_bool(request, "overdue") else None,
    )
    output = _query_choice(request, "format", ("json", "csv")) or "json"
    limit = _query_int(request, "limit", 100, 1, 1000) or 100
    after = _query_int(request, "after", 0, 0) or 0
    if await services.pool.fetchrow(sql("warning_brief"), warning_id) is None:
        raise _no_warning(warning_id)
    if output == "csv":

        async def page(above: int) -> list[asyncpg.Record]:
            return await _fetch_callouts(
                services.pool, warning_id, max(above, after), CSV_BATCH, where
            )

        return await _stream_csv(
            request,
            f"warning-{warning_id}-callouts.csv",
            CALLOUT_CSV_COLUMNS,
            page,
            _callout_cells,
        )
    rows = await _fetch_callouts(services.pool, warning_id, after, limit, where)
    callouts = [CalloutOut.model_validate(dict(r)) for r in rows]
    return _json(
        CalloutPage(
            warning_id=warning_id,
            callouts=callouts,
            next_after=callouts[-1].id if len(callouts) == limit else None,
            simulated=services.simulated,
        )
    )


# --- officers: the audit trail of a warning (begin) ---------------------------------------------


AUDIT_PAGE_MAX: Final = 10_000


def _audit_after(request: web.Request) -> tuple[datetime, int, int] | None:
    """The ``after`` of an audit page: ``next_after`` of the one before, "<µs>.<rank>.<id>"."""
    raw = request.query.get("after")
    if raw is None or raw == "":
        return None
    try:
        micros, rank, row_id = (int(part) for part in raw.split("."))
        at = EPOCH + timedelta(microseconds=micros)
    except (ValueError, OverflowError):
        raise ApiError(
            400, "invalid_parameter", f"after: {raw!r} is not the next_after of an audit page"
        ) from None
    return at, rank, row_id


def _audit_next(row: asyncpg.Record) -> str:
    micros = (row["at"] - EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{row['rank']}.{row['id']}"


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


def _audit_cells(row: asyncpg.Record, zone: tzinfo) -> tuple[object, ...]:
    return (
        _csv_time(row["at"], zone),
        row["source"],
        row["id"],
        row["actor"],
        row["action"],
        row["subject"],
        json.dumps(row["detail"], ensure_ascii=False, sort_keys=True),
    )


async def warning_audit(request: web.Request) -> web.StreamResponse:
    """Everything recorded about a warning in time order: one page as JSON, or all as CSV."""
    services = request.app[SERVICES]
    warning_id = _id(request, "warning_id")
    output = _query_choice(request, "format", ("json", "csv")) or "json"
    limit = _query_int(request, "limit", 1000, 1, AUDIT_PAGE_MAX) or 1000
    after = _audit_after(request)
    if await services.pool.fetchrow(sql("warning_brief"), warning_id) is None:
        raise _no_warning(warning_id)
    start = after or (None, None, None)
    if output == "csv":
        # One query read through a cursor: the union has no single id to page on cheaply, and
        # a read-only transaction costs nothing while the file streams.
        async with services.pool.acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(sql("warning_audit"), warning_id, *start, None)

            async def page(_above: int) -> list[asyncpg.Record]:
                return await cursor.fetch(CSV_BATCH)

            return await _stream_csv(
                request, f"warning-{warning_id}-audit.csv", AUDIT_CSV_COLUMNS, page, _audit_cells
            )
    rows = await services.pool.fetch(sql("warning_audit"), warning_id, *start, limit)
    return _json(
        AuditPage(
            warning_id=warning_id,
            entries=[_audit_entry(r) for r in rows],
            next_after=_audit_next(rows[-1]) if len(rows) == limit else None,
        )
    )


# --- officers: the audit trail of a warning (end) -----------------------------------------------


async def _officer_ack(request: web.Request) -> OfficerAck:
    """The body of an officer's acknowledgement; none at all is a missing reason (422)."""
    body = await read_body(request, request.app[SERVICES].max_body_bytes)
    payload: object = {}
    if body.strip():
        if request.content_type != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type {request.content_type!r}: send the reason as application/json",
            )
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise ApiError(400, "malformed_json", f"body is not JSON: {exc}") from None
    try:
        return OfficerAck.model_validate(payload)
    except ValidationError as exc:
        raise InputError(
            "say how the answer was obtained: " + describe_errors(exc.errors()),
            code="invalid_ack",
        ) from exc


def _not_open(row: asyncpg.Record, zone: tzinfo) -> ApiError:
    """Why an acknowledgement changed nothing: the call-out was answered or closed before."""
    callout_id = row["id"]
    if row["state"] == "acknowledged":
        return ApiError(
            409,
            "already_acknowledged",
            f"call-out {callout_id} was already acknowledged at "
            f"{_csv_time(row['acknowledged_at'], zone)} via {row['ack_via']} by "
            f"{row['ack_by']}; nothing changed",
        )
    when = _csv_time(row["closed_at"], zone) or "an unknown time"
    return ApiError(
        409,
        "callout_closed",
        f"call-out {callout_id} was closed at {when} without an answer (its warning ended); "
        "nothing changed",
    )


async def acknowledge_callout(request: web.Request) -> web.Response:
    """An officer records an answer obtained another way, with the reason; audited."""
    services = request.app[SERVICES]
    user = request[USER]
    callout_id = _id(request, "callout_id")
    ack = await _officer_ack(request)
    now = services.clock.now()
    async with services.pool.acquire() as conn, conn.transaction():
        done = await conn.fetchrow(
            sql("acknowledge_by_officer"), callout_id, user.name, ack.reason, now
        )
        if done is None:
            status = await conn.fetchrow(sql("callout_status"), callout_id)
            if status is None:
                raise ApiError(404, "not_found", f"call-out {callout_id} does not exist")
            raise _not_open(status, services.current_policy().night.zone)
        await conn.execute(
            sql("audit"),
            user.name,
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
        rows = await _fetch_callouts(
            conn, done["warning_id"], 0, 1, CalloutFilter(callout_id=callout_id)
        )
    log.info(
        "callout_acknowledged",
        callout_id=callout_id,
        warning_id=done["warning_id"],
        via="officer",
        officer=user.name,
        late=done["ack_late"],
        cancelled=done["cancelled"],
    )
    return _json(CalloutOut.model_validate(dict(rows[0])))


async def list_rejected(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    limit = _query_int(request, "limit", 100, 1, 1000)
    before = _query_int(request, "before", None, 1)
    rows = await services.pool.fetch(sql("list_rejected"), before, limit, REJECTED_PREVIEW_CHARS)
    rejected = [RejectedOut.model_validate(dict(r)) for r in rows]
    next_before = rejected[-1].id if len(rejected) == limit else None
    return _json(RejectedList(rejected=rejected, next_before=next_before))


async def get_rejected(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    rejected_id = _id(request, "rejected_id")
    row = await services.pool.fetchrow(sql("get_rejected"), rejected_id)
    if row is None:
        raise ApiError(404, "not_found", f"rejected message {rejected_id} does not exist")
    return _json(RejectedOut.model_validate(dict(row)))


# --- probes, metrics, the document -------------------------------------------------------------


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answering at all is the answer."""
    return _json(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers; which channels exist and whether they are simulated."""
    services = request.app[SERVICES]
    try:
        await asyncio.wait_for(services.pool.fetchval(sql("ping")), PROBE_TIMEOUT_S)
        database, ready = "ok", True
    except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        database, ready = f"unreachable: {type(exc).__name__}: {exc}", False
        log.warning("database_not_ready", error=database)
    body = Ready(
        status="ready" if ready else "unavailable",
        database=database,
        mode="simulated" if services.simulated else "live",
        channels=[
            _channel_out(name, channel) for name, channel in sorted(services.channels.items())
        ],
    )
    return _json(body, 200 if ready else 503)


def _channel_out(name: str, channel: Channel) -> ChannelOut:
    health = channel.health() or {}
    links = health.get("links")
    ready = health.get("ready")
    return ChannelOut(
        name=name,
        kind=str(channel.kind),
        simulated=channel.simulated,
        ready=ready if isinstance(ready, bool) else None,
        links=links if isinstance(links, dict) else None,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; the queue-depth gauge is read from the outbox just before rendering."""
    services = request.app[SERVICES]
    gauge = services.metrics.queue_depth
    try:
        rows = await asyncio.wait_for(services.pool.fetch(sql("queue_depth")), PROBE_TIMEOUT_S)
    except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        log.warning("queue_depth_unavailable", exc_info=True)
    else:
        depth = {str(c.kind): 0 for c in services.channels.values()}
        depth.update({r["channel_kind"]: r["queued"] for r in rows})
        gauge.clear()
        for kind, queued in depth.items():
            gauge.labels(channel_kind=kind).set(queued)
    return web.Response(
        body=generate_latest(services.metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


# --- the application ---------------------------------------------------------------------------

ROUTES: Final[tuple[tuple[str, str, Handler], ...]] = (
    ("POST", f"{API}/cap", post_cap),
    ("POST", f"{API}/warnings", post_warning),
    ("GET", f"{API}/warnings", list_warnings),
    ("GET", f"{API}/warnings/{{warning_id:\\d+}}", get_warning),
    ("POST", f"{API}/warnings/{{warning_id:\\d+}}/approve", approve_warning),
    ("POST", f"{API}/warnings/{{warning_id:\\d+}}/cancel", cancel_warning),
    ("POST", f"{API}/warnings/{{warning_id:\\d+}}/correct", correct_warning),
    ("GET", f"{API}/warnings/{{warning_id:\\d+}}/preview", preview_warning),
    ("GET", f"{API}/warnings/{{warning_id:\\d+}}/progress", warning_progress),
    ("GET", f"{API}/warnings/{{warning_id:\\d+}}/deliveries", list_deliveries),
    ("GET", f"{API}/warnings/{{warning_id:\\d+}}/callouts", list_callouts),
    ("GET", f"{API}/warnings/{{warning_id:\\d+}}/audit", warning_audit),
    ("POST", f"{API}/callouts/{{callout_id:\\d+}}/ack", acknowledge_callout),
    ("POST", f"{API}/inbound/sms", post_inbound_sms),
    ("GET", f"{API}/rejected", list_rejected),
    ("GET", f"{API}/rejected/{{rejected_id:\\d+}}", get_rejected),
    ("GET", f"{API}/openapi.json", openapi_json),
    # No token on these three: load balancers, orchestrators and Prometheus must reach them,
    # and they reveal no personal data.
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics),
)


def build_app(services: Services) -> web.Application:
    """The aiohttp application serving the API from ``services``."""
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=services.max_body_bytes,
    )
    app[SERVICES] = services
    app[OPENAPI] = document()
    for method, path, handler in ROUTES:
        route = app.router.add_route(method, path, handler)
        canonical = route.resource.canonical if route.resource is not None else path
        if (method, canonical) not in ROLES:
            raise RuntimeError(f"route {method} {canonical} has no entry in openapi.ROLES")
    return app
