"""The HTTP API's shapes and its OpenAPI 3.1 document, built from the same pydantic models.

Handlers in ``warnd.web.api`` build every JSON response from the models below and validate the
manual-warning body with ``warnd.ingest.manual.ManualWarning``; the document takes its schemas from the
same classes, so what is documented is what is returned. Paths, parameters and roles are listed
here once; a test walks the application's router and checks both directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from warnd.ingest.amend import CancelRequest, CorrectRequest
from warnd.ingest.manual import ManualWarning

API = "/api/v1"

# --- response bodies -------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: a stable machine code and a sentence saying what and where."""

    error: str = Field(description="stable code, e.g. unauthorized, malformed_xml, invalid_warning")
    detail: str = Field(description="what is wrong, and where")


class WarningAccepted(BaseModel):
    """A warning stored (201), found already stored (200), or approved."""

    warning_id: int
    status: str = Field(description="the warning's state: active, pending_approval, muted …")
    created: bool = Field(description="false when the same message was stored before")
    unknown_codes: list[str] = Field(
        default_factory=list, description="division codes in the area that the roster lacks"
    )
    simulated: bool = Field(description="true when channels reach no real phone or speaker")


class CircleOut(BaseModel):
    lat: float
    lon: float
    radius_km: float


class AreaOut(BaseModel):
    codes: list[str]
    polygons: list[list[tuple[float, float]]] = Field(description="rings of [lat, lon]")
    circles: list[CircleOut]


class NormalisedOut(BaseModel):
    """The warning in normalised form, whatever it came from."""

    sender: str
    identifier: str
    sent: datetime
    status: str
    msg_type: str
    hazard: str
    level: str
    event: str
    headline: str
    description: str
    instruction: str
    area_desc: str
    area: AreaOut
    references: list[str]
    effective: datetime | None
    expires: datetime | None


class WarningSummary(BaseModel):
    id: int
    source: str
    sender: str
    identifier: str
    sent: datetime
    status: str
    msg_type: str
    hazard: str
    level: str
    event: str
    headline: str
    area_desc: str
    expires: datetime | None
    state: str
    plan_state: str
    author: str | None
    approver: str | None
    approved_at: datetime | None
    received_at: datetime
    supersedes_id: int | None


class WarningList(BaseModel):
    warnings: list[WarningSummary]
    next_before: int | None = Field(description="pass as ?before= for the next page; null at end")
    simulated: bool


class Progress(BaseModel):
    """Deliveries so far. States partition the total: queued, sending, sent (awaiting a
    receipt), delivered, failed, cancelled."""

    total: int
    by_state: dict[str, int]
    by_audience: dict[str, dict[str, int]] = Field(description="audience → state → count")
    first_sent_at: datetime | None = Field(description="first hand-over to a channel")
    last_sent_at: datetime | None = Field(description="latest hand-over to a channel")


class CalloutSummary(BaseModel):
    """A warning's call-outs (叫应) at a glance. Open means pending, notified or escalated."""

    total: int
    acknowledged_on_time: int
    acknowledged_late: int
    open: int = Field(description="not yet answered and not closed")
    overdue: int = Field(description="open and past the deadline now: the 未叫应名单")
    escalated: int = Field(
        description="call-outs at least one escalation step has fired for, answered since or not"
    )
    closed: int = Field(description="closed unanswered because the warning ended")


class WarningDetail(BaseModel):
    id: int
    source: str
    state: str
    plan_state: str
    plan_error: str | None = Field(
        default=None, description="why planning last failed (it is retried); none when fine"
    )
    author: str | None
    approver: str | None
    approved_at: datetime | None
    received_at: datetime
    supersedes_id: int | None
    warning: NormalisedOut
    progress: Progress
    callouts: CalloutSummary
    simulated: bool


class CoveredDivision(BaseModel):
    code: str
    name: str
    level: str = Field(description="county or town")
    villages: int = Field(description="covered villages inside it")


class Preview(BaseModel):
    """Who a warning reaches, computed from the roster and the policy in force: shown before an
    officer publishes. It counts what planning would write now (the night window and the
    configured channel kinds included)."""

    warning_id: int
    state: str
    hazard: str
    level: str
    status: str
    reaches_people: bool = Field(description="false for Test, Draft and System messages")
    recipients: dict[str, int] = Field(
        description="audience → people reached, for each audience the policy sends to at this"
        " level (households: households, not phones; empty when the status reaches nobody)"
    )
    total_recipients: int
    channels: dict[str, list[str]] = Field(
        description="audience → the channel kinds each of its recipients gets at the same time"
    )
    deliveries: dict[str, int] = Field(
        description="audience → messages planned: addresses (a household's every phone) times"
        " channel kinds"
    )
    total_deliveries: int
    not_reached: dict[str, int] = Field(
        description="audience → people the area holds whom this warning does not reach"
    )
    not_reached_reasons: dict[str, str] = Field(
        description="audience → why it is not reached (policy level, no channel, status)"
    )
    villages: int = Field(description="villages the area resolves to")
    divisions: list[CoveredDivision]
    unknown_codes: list[str]
    simulated: bool


class FieldTaskProgress(BaseModel):
    """Field tasks (敲门入户, 鸣锣吹哨) of a division: how many are done, and the people they
    are about."""

    total: int
    done: int = Field(description="reported complete (完成)")
    open: int = Field(description="not yet complete (open or escalated)")
    overdue: int = Field(description="not yet complete and past the deadline now")
    persons: int = Field(description="people the tasks are about (doors to knock; 1 per gong)")
    reached: int = Field(description="of them, reported reached (已通知 N)")


class DivisionProgress(BaseModel):
    """One division: deliveries by state (total = queued + … + cancelled), its responders'
    call-outs, and its villages' field tasks."""

    code: str
    name: str
    total: int
    queued: int
    sending: int
    sent: int
    delivered: int
    failed: int
    cancelled: int
    callouts: CalloutSummary = Field(description="call-outs of responders in the division")
    field_tasks: FieldTaskProgress


class ProgressReport(BaseModel):
    """A warning rolled up per division of one level; people above it are in no row."""

    warning_id: int
    level: str
    as_of: datetime = Field(description="the time overdue is reckoned at")
    divisions: list[DivisionProgress]
    simulated: bool


class DeliveryOut(BaseModel):
    id: int
    audience: str
    recipient_kind: str = Field(description="responder, facility, household or loudspeaker")
    recipient_id: int
    name: str
    division_code: str
    channel_kind: str
    channel: str | None
    address: str = Field(description="phone number in full (officers call people back)")
    state: str
    attempts: int
    error: str | None
    queued_at: datetime
    sending_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    cancelled_at: datetime | None


class DeliveryPage(BaseModel):
    warning_id: int
    deliveries: list[DeliveryOut]
    next_after: int | None = Field(description="pass as ?after= for the next page; null at end")
    simulated: bool


class CalloutOut(BaseModel):
    """One call-out: who must answer, by when, and where it stands."""

    id: int
    warning_id: int
    responder_id: int
    name: str = Field(description="the responder's name")
    phone: str = Field(description="phone number in full (officers call people who do not answer)")
    division_code: str
    division_name: str
    level: str = Field(description="the responder's level: city, county, town or village")
    state: str = Field(description="pending, notified, acknowledged, escalated or closed")
    opened_at: datetime
    deadline: datetime
    notified_at: datetime | None
    acknowledged_at: datetime | None
    ack_late: bool | None = Field(description="true when acknowledged after the deadline")
    ack_via: str | None = Field(description="sms, voice, device or officer")
    ack_by: str | None = Field(description="the number that answered, or the officer")
    cursor: int = Field(description="escalation steps fired or skipped so far")
    escalation_steps: int = Field(description="steps in the call-out's frozen escalation chain")
    next_check_at: datetime | None = Field(description="when escalation looks at it next")
    closed_at: datetime | None
    last_event: str | None = Field(
        description="opened, acknowledged, step_fired, step_skipped or closed"
    )
    last_event_at: datetime | None
    last_event_actor: str | None
    last_step: str | None = Field(
        default=None,
        description="the latest escalation step passed (fired or skipped): repeat, backup, "
        "superior or duty_officer; null before the first",
    )
    last_step_target: str | None = Field(
        default=None, description="whom that step was for (the backup's name, …)"
    )


class CalloutPage(BaseModel):
    warning_id: int
    callouts: list[CalloutOut]
    next_after: int | None = Field(description="pass as ?after= for the next page; null at end")
    simulated: bool


class OfficerAck(BaseModel):
    """An answer an officer obtained another way (a call, in person), recorded with why."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(
        min_length=1,
        max_length=500,
        description="how the answer was obtained, e.g. 电话联系本人确认已收到",
    )


class AuditEntry(BaseModel):
    """One recorded fact about a warning: an audit-log entry, a call-out event or a field-task
    event."""

    at: datetime
    source: str = Field(description="audit, callout or task")
    id: int = Field(description="the row's id in its own table (audit_log, callout_events, …)")
    actor: str = Field(description="the officer, the number that answered, or system")
    action: str = Field(
        description="the audit action or event kind: opened, acknowledged, step_fired, …"
    )
    subject: str = Field(description="warning:ID, callout:ID or task:ID")
    detail: dict[str, Any]


class AuditPage(BaseModel):
    """A warning's audit trail in time order, one page."""

    warning_id: int
    entries: list[AuditEntry]
    next_after: str | None = Field(description="pass as ?after= for the next page; null at end")


class RejectedOut(BaseModel):
    id: int
    received_at: datetime
    feed: str | None
    error: str
    detail: str
    body: str = Field(description="the message as received, decoded leniently")
    truncated: bool = Field(description="true when body is only a preview")


class RejectedList(BaseModel):
    rejected: list[RejectedOut]
    next_before: int | None


class Health(BaseModel):
    status: str


class ChannelOut(BaseModel):
    name: str
    kind: str
    simulated: bool
    ready: bool | None = Field(
        default=None, description="for channels holding connections: at least one link is up"
    )
    links: dict[str, dict[str, Any]] | None = Field(
        default=None, description="per link: bound, in flight, counters (SMPP)"
    )


class Ready(BaseModel):
    status: str = Field(description="ready, or unavailable")
    database: str = Field(description="ok, or what went wrong")
    mode: str = Field(description="live, or simulated when a channel reaches nobody real")
    channels: list[ChannelOut]


MODELS: tuple[type[BaseModel], ...] = (
    ErrorBody,
    ManualWarning,
    CancelRequest,
    CorrectRequest,
    WarningAccepted,
    WarningList,
    WarningDetail,
    Preview,
    ProgressReport,
    DeliveryPage,
    CalloutPage,
    OfficerAck,
    AuditPage,
    RejectedOut,
    RejectedList,
    Health,
    Ready,
)

# Request bodies: documented as what is accepted, not as what would be returned.
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    ManualWarning,
    OfficerAck,
    CancelRequest,
    CorrectRequest,
)

# --- operations --------------------------------------------------------------------------------

# Roles each operation needs; "admin" holds every role. None: no token (probes, scrapers, the
# document itself); "feed": a feed token. ``warnd.web.api`` registers its routes from the same table.
ROLES: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("POST", f"{API}/cap"): ("feed",),
    ("POST", f"{API}/warnings"): ("officer",),
    ("GET", f"{API}/warnings"): ("officer", "approver"),
    ("GET", f"{API}/warnings/{{warning_id}}"): ("officer", "approver"),
    ("POST", f"{API}/warnings/{{warning_id}}/approve"): ("approver",),
    # An approver refuses a waiting warning by cancelling it.
    ("POST", f"{API}/warnings/{{warning_id}}/cancel"): ("officer", "approver"),
    ("POST", f"{API}/warnings/{{warning_id}}/correct"): ("officer",),
    ("GET", f"{API}/warnings/{{warning_id}}/preview"): ("officer", "approver"),
    ("GET", f"{API}/warnings/{{warning_id}}/progress"): ("officer", "approver"),
    ("GET", f"{API}/warnings/{{warning_id}}/deliveries"): ("officer", "approver"),
    ("GET", f"{API}/warnings/{{warning_id}}/callouts"): ("officer", "approver"),
    ("GET", f"{API}/warnings/{{warning_id}}/audit"): ("officer", "approver"),
    ("POST", f"{API}/callouts/{{callout_id}}/ack"): ("officer",),
    ("POST", f"{API}/inbound/sms"): (
        "gateway",
    ),  # a channel's inbound_token (warnd.web.webhooks.sms)
    ("GET", f"{API}/rejected"): ("officer", "approver"),
    ("GET", f"{API}/rejected/{{rejected_id}}"): ("officer", "approver"),
    ("GET", f"{API}/openapi.json"): None,
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
}


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": f"#/components/schemas/{name}"}


def _json(model: type[BaseModel] | str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "Bad request: a malformed body or query parameter",
        401: "No token, or a token that is not valid here",
        403: "The token's user lacks the role, or may not do this to this warning",
        404: "No such warning, call-out or message",
        408: "The body did not arrive in time",
        409: "The warning or call-out is not in a state that allows this",
        413: "The body is larger than the limit",
        415: "The body is not of a media type this operation accepts",
        422: "The content is well-formed but invalid; detail names the field",
        500: "warnd failed; the detail says where, the log says why",
        503: "Not ready",
    }
    return {str(code): _json(ErrorBody, words[code]) for code in codes}


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


_WARNING_ID = _param("warning_id", "path", {"type": "integer"}, "the warning's id")

_CSV_FORMAT = _param(
    "format",
    "query",
    {"enum": ["json", "csv"], "default": "json"},
    "csv streams every matching row (limit is ignored), UTF-8 with a BOM, times "
    "in the city's time zone (policy night.timezone)",
)


def _page_or_csv(page: type[BaseModel], columns: Sequence[str]) -> dict[str, Any]:
    """A 200 that is one page as JSON, or every matching row as CSV."""
    return {
        "description": "A page (JSON) or every row (CSV)",
        "content": {
            "application/json": {"schema": _ref(page)},
            "text/csv": {
                "schema": {"type": "string", "description": "columns: " + ", ".join(columns)}
            },
        },
    }


_LIMIT = _param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "page size",
)
_BEFORE = _param("before", "query", {"type": "integer"}, "only ids below this (next page)")

WARNING_STATES = ("pending_approval", "active", "superseded", "cancelled", "expired", "muted")
DELIVERY_STATES = ("queued", "sending", "sent", "delivered", "failed", "cancelled")
AUDIENCES = ("responder", "broadcast", "facility", "helper", "household")
PROGRESS_LEVELS = {"county": 6, "town": 9, "village": 12}
CALLOUT_STATES = ("pending", "notified", "acknowledged", "escalated", "closed")
OPEN_CALLOUT_STATES = ("pending", "notified", "escalated")
CALLOUT_FILTERS = (*CALLOUT_STATES, "open")  # open: any of OPEN_CALLOUT_STATES
RESPONDER_LEVELS = ("city", "county", "town", "village")
CALLOUT_CSV_COLUMNS = (
    "callout_id",
    "name",
    "phone",
    "division_code",
    "division_name",
    "level",
    "state",
    "deadline",
    "acknowledged_at",
    "ack_late",
    "ack_via",
    "ack_by",
    "escalation_cursor",
    "escalation_steps",
    "last_event",
    "last_event_at",
    "last_step",
    "last_step_target",
)
AUDIT_CSV_COLUMNS = ("at", "source", "id", "actor", "action", "subject", "detail")
CSV_COLUMNS = (
    "delivery_id",
    "recipient_kind",
    "audience",
    "name",
    "division_code",
    "channel_kind",
    "channel",
    "address",
    "state",
    "attempts",
    "error",
    "queued_at",
    "sent_at",
    "delivered_at",
    "failed_at",
    "cancelled_at",
)


# inbound/sms: the webhook body (validated by warnd.web.webhooks.sms, whose models it mirrors).
_INBOUND_SMS_EVENT: dict[str, Any] = {
    "oneOf": [
        {
            "title": "reply",
            "type": "object",
            "required": ["from", "text"],
            "additionalProperties": False,
            "properties": {
                "from": {"type": "string", "minLength": 1, "maxLength": 40},
                "to": {"type": "string", "maxLength": 40},
                "text": {"type": "string", "maxLength": 2000},
            },
        },
        {
            "title": "receipt",
            "type": "object",
            "required": ["message_id", "status"],
            "additionalProperties": False,
            "properties": {
                "message_id": {"type": ["string", "integer"]},
                "status": {"type": "string", "description": "delivered, undeliverable, …"},
                "detail": {"type": "string", "maxLength": 500},
            },
        },
    ]
}
_INBOUND_SMS_BODY: dict[str, Any] = {
    "oneOf": [_INBOUND_SMS_EVENT, {"type": "array", "maxItems": 1000, "items": _INBOUND_SMS_EVENT}]
}


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    xml = {"schema": {"type": "string", "description": "a CAP 1.2 <alert> document"}}
    return {
        ("POST", f"{API}/cap"): {
            "summary": "Receive a CAP 1.2 warning from a feed",
            "description": (
                "Parsed without external entities or entity expansion, validated against the "
                "OASIS schema and the rules it cannot check. A message is keyed by (sender, "
                "identifier, sent): the same message again answers 200 with the stored state. "
                "Refused messages are kept for the duty officer (GET /api/v1/rejected)."
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "application/xml": xml,
                    "text/xml": xml,
                    "application/cap+xml": xml,
                },
            },
            "responses": {
                "201": _json(WarningAccepted, "Stored"),
                "200": _json(WarningAccepted, "Already stored (a duplicate); nothing changed"),
                **_errors(400, 401, 408, 413, 415, 422, 500),
            },
        },
        ("POST", f"{API}/warnings"): {
            "summary": "Issue a warning by hand",
            "description": (
                "Orange and red (and any level the policy names) wait for a second officer: "
                "status pending_approval until POST /api/v1/warnings/{warning_id}/approve."
            ),
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(ManualWarning)}},
            },
            "responses": {
                "201": _json(WarningAccepted, "Stored"),
                **_errors(400, 401, 403, 408, 413, 415, 422, 500),
            },
        },
        ("GET", f"{API}/warnings"): {
            "summary": "List warnings, newest first",
            "parameters": [
                _param("state", "query", {"enum": list(WARNING_STATES)}, "only in this state"),
                _LIMIT,
                _BEFORE,
            ],
            "responses": {"200": _json(WarningList, "A page"), **_errors(400, 401, 403, 500)},
        },
        ("GET", f"{API}/warnings/{{warning_id}}"): {
            "summary": "A warning with its delivery progress",
            "parameters": [_WARNING_ID],
            "responses": {
                "200": _json(WarningDetail, "The warning"),
                **_errors(401, 403, 404, 500),
            },
        },
        ("POST", f"{API}/warnings/{{warning_id}}/approve"): {
            "summary": "Approve a warning waiting for a second officer",
            "description": "The approver must not be the author. Planning starts at once.",
            "parameters": [_WARNING_ID],
            "responses": {
                "200": _json(WarningAccepted, "Approved: now active"),
                **_errors(401, 403, 404, 409, 500),
            },
        },
        ("POST", f"{API}/warnings/{{warning_id}}/cancel"): {
            "summary": "Cancel a warning (解除), or refuse one waiting for approval",
            "description": (
                "Stores a Cancel referencing the warning: its unsent messages stop, its "
                "call-outs and field tasks close, and everyone it reached is told it is lifted, "
                "on the channel that reached them (the new warning's deliveries). The reason is "
                "audited, not sent; `message` is. 409 when the warning is no longer active or "
                "waiting."
            ),
            "parameters": [_WARNING_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(CancelRequest)}},
            },
            "responses": {
                "201": _json(WarningAccepted, "The Cancel, stored; its notices are planned"),
                **_errors(400, 401, 403, 404, 409, 415, 422, 500),
            },
        },
        ("POST", f"{API}/warnings/{{warning_id}}/correct"): {
            "summary": "Correct an active warning (更正): wording, a lower level, the expiry",
            "description": (
                "Stores an Update referencing the warning and publishes it at once: people the "
                "warning reached get the corrected text once, people it had not reached yet get "
                "the whole warning, and open call-outs carry over with their deadlines. A higher "
                "level or another area is a new warning (422), which a second officer approves. "
                "409 when the warning is not active."
            ),
            "parameters": [_WARNING_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(CorrectRequest)}},
            },
            "responses": {
                "201": _json(WarningAccepted, "The Update, stored and published"),
                **_errors(400, 401, 403, 404, 409, 415, 422, 500),
            },
        },
        ("GET", f"{API}/warnings/{{warning_id}}/preview"): {
            "summary": "Who the warning reaches: recipients per audience and covered divisions",
            "parameters": [_WARNING_ID],
            "responses": {"200": _json(Preview, "The preview"), **_errors(401, 403, 404, 500)},
        },
        ("GET", f"{API}/warnings/{{warning_id}}/progress"): {
            "summary": "Deliveries, call-outs and field tasks per county, town or village",
            "description": (
                "Per division: deliveries by state; call-outs of the responders in it (total, "
                "acknowledged on time and late, open, overdue now, escalated: a step has fired, "
                "closed); field tasks of its villages (done of total, overdue, people reached of "
                "people concerned). Each counts under the division of the level that contains "
                "its person; people above the level (a county head in a town roll-up) are in no "
                "row."
            ),
            "parameters": [
                _WARNING_ID,
                _param(
                    "level",
                    "query",
                    {"enum": list(PROGRESS_LEVELS), "default": "town"},
                    "the division level to roll up to",
                ),
            ],
            "responses": {
                "200": _json(ProgressReport, "The roll-up"),
                **_errors(400, 401, 403, 404, 500),
            },
        },
        ("GET", f"{API}/warnings/{{warning_id}}/deliveries"): {
            "summary": "A warning's deliveries, one page as JSON or all of them as CSV",
            "parameters": [
                _WARNING_ID,
                _param("state", "query", {"enum": list(DELIVERY_STATES)}, "only in this state"),
                _param("audience", "query", {"enum": list(AUDIENCES)}, "only this audience"),
                _LIMIT,
                _param("after", "query", {"type": "integer"}, "only ids above this (next page)"),
                _CSV_FORMAT,
            ],
            "responses": {
                "200": _page_or_csv(DeliveryPage, CSV_COLUMNS),
                **_errors(400, 401, 403, 404, 500),
            },
        },
        ("GET", f"{API}/warnings/{{warning_id}}/callouts"): {
            "summary": "A warning's call-outs (叫应), one page as JSON or all of them as CSV",
            "description": (
                "Each call-out with the responder's name and phone in full, division, level, "
                "state, deadline, acknowledgement (time, late or not, route, by whom), the "
                "escalation cursor and the latest event. ?overdue=true is the 未叫应名单: open "
                "call-outs past their deadline now, to call by hand."
            ),
            "parameters": [
                _WARNING_ID,
                _param(
                    "state",
                    "query",
                    {"enum": list(CALLOUT_FILTERS)},
                    "only in this state; open means pending, notified or escalated",
                ),
                _param(
                    "level", "query", {"enum": list(RESPONDER_LEVELS)}, "only responders of a level"
                ),
                _param(
                    "division",
                    "query",
                    {"type": "string", "pattern": "^([0-9]{6}|[0-9]{9}|[0-9]{12})$"},
                    "only responders whose division code starts with this 6 (county), "
                    "9 (town) or 12 (village) digit prefix",
                ),
                _param(
                    "overdue",
                    "query",
                    {"type": "boolean", "default": False},
                    "true: only open call-outs past their deadline now",
                ),
                _LIMIT,
                _param("after", "query", {"type": "integer"}, "only ids above this (next page)"),
                _CSV_FORMAT,
            ],
            "responses": {
                "200": _page_or_csv(CalloutPage, CALLOUT_CSV_COLUMNS),
                **_errors(400, 401, 403, 404, 500),
            },
        },
        ("GET", f"{API}/warnings/{{warning_id}}/audit"): {
            "summary": "A warning's audit trail: one page as JSON or all of it as CSV",
            "description": (
                "In time order: audit-log entries about the warning (issue, approval, cancel, "
                "correction), officers' actions on its call-outs, policy reloads between its "
                "arrival and its expiry, every event of its call-outs (opened, acknowledged, "
                "step_fired, step_skipped, closed, …) and of its field tasks. The tables behind "
                "it are append-only: the database refuses UPDATE and DELETE."
            ),
            "parameters": [
                _WARNING_ID,
                _param(
                    "limit",
                    "query",
                    {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
                    "page size",
                ),
                _param("after", "query", {"type": "string"}, "next_after of the previous page"),
                _CSV_FORMAT,
            ],
            "responses": {
                "200": _page_or_csv(AuditPage, AUDIT_CSV_COLUMNS),
                **_errors(400, 401, 403, 404, 500),
            },
        },
        ("POST", f"{API}/callouts/{{callout_id}}/ack"): {
            "summary": "Record an acknowledgement an officer obtained another way",
            "description": (
                "For a call-out that is still open (pending, notified or escalated): it becomes "
                "acknowledged via officer, late when past its deadline, its escalation stops and "
                "its queued messages on every channel are cancelled. The officer and the reason "
                "are kept in the call-out's events and the audit log. 409 when it was already "
                "acknowledged or closed; the detail says which, when and by whom."
            ),
            "parameters": [_param("callout_id", "path", {"type": "integer"}, "the call-out's id")],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(OfficerAck)}},
            },
            "responses": {
                "200": _json(CalloutOut, "Acknowledged: the call-out as it now stands"),
                **_errors(400, 401, 403, 404, 408, 409, 413, 415, 422, 500),
            },
        },
        # --- inbound/sms: begin (warnd.web.webhooks.sms) ---
        ("POST", f"{API}/inbound/sms"): {
            "summary": "Receive SMS replies and delivery receipts from an HTTP SMS gateway",
            "description": (
                "One event or a list of at most 1000. A reply is {from, to?, text}; a receipt is "
                "{message_id, status, detail?} with status delivered, undeliverable, expired or "
                "rejected (or DELIVRD, UNDELIV, REJECTD, DELETED, failed). The bearer token is "
                "the inbound_token of the channel the events belong to; receipts match that "
                "channel's deliveries by message_id, replies acknowledge the sender's open "
                "call-outs. The whole body is validated first: any invalid event refuses it "
                "(400, the detail names index and field) and nothing of it is applied."
            ),
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _INBOUND_SMS_BODY}},
            },
            "responses": {
                "202": {
                    "description": "Accepted: handed to the channel's inbound path",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["accepted", "channel"],
                                "properties": {
                                    "accepted": {"type": "integer"},
                                    "channel": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                **_errors(400, 401, 408, 413, 415, 500),
            },
        },
        # --- inbound/sms: end ---
        ("GET", f"{API}/rejected"): {
            "summary": "Messages refused from feeds, newest first (bodies cut to a preview)",
            "parameters": [_LIMIT, _BEFORE],
            "responses": {"200": _json(RejectedList, "A page"), **_errors(400, 401, 403, 500)},
        },
        ("GET", f"{API}/rejected/{{rejected_id}}"): {
            "summary": "One refused message with its stored body (first 64 KiB)",
            "parameters": [
                _param("rejected_id", "path", {"type": "integer"}, "the rejected message's id")
            ],
            "responses": {
                "200": _json(RejectedOut, "The message"),
                **_errors(401, 403, 404, 500),
            },
        },
        ("GET", f"{API}/openapi.json"): {
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
            },
        },
        ("GET", "/healthz"): {
            "summary": "Liveness: the process answers",
            "responses": {"200": _json(Health, "Up")},
        },
        ("GET", "/readyz"): {
            "summary": "Readiness: the database answers; channels and live/simulated mode",
            "responses": {"200": _json(Ready, "Ready"), "503": _json(Ready, "Not ready")},
        },
        ("GET", "/metrics"): {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        },
    }


def _security(roles: tuple[str, ...] | None) -> list[dict[str, list[str]]]:
    if roles is None:
        return []
    if roles == ("feed",):
        return [{"feedToken": []}]
    if roles == ("gateway",):
        return [{"gatewayToken": []}]
    return [{"userToken": list(roles)}]


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API."""
    _, schemas = models_json_schema(
        [(model, "serialization") for model in MODELS if model not in REQUEST_MODELS]
        + [(model, "validation") for model in REQUEST_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in _operations().items():
        roles = ROLES[(method, path)]
        if roles is None:
            roles_text = "No token needed."
        elif roles == ("feed",):
            roles_text = "Needs a feed token."
        elif roles == ("gateway",):
            roles_text = "Needs a channel's inbound_token."
        else:
            roles_text = f"Needs a user token with role {' or '.join(roles)} (admin holds all)."
        paths.setdefault(path, {})[method.lower()] = {
            **operation,
            "operationId": _operation_id(method, path),
            "security": _security(roles),
            "x-roles": list(roles) if roles is not None else [],
            "description": (operation.get("description", "") + "\n\n" + roles_text).strip(),
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "warnd",
            "version": "1",
            "description": (
                "Warning dissemination and call-and-respond for Jining (济宁市). Every error is "
                '{"error": code, "detail": sentence}. /healthz, /readyz and /metrics take no '
                "token because load balancers, orchestrators and Prometheus probe them; they "
                "reveal no personal data. Everything under /api/v1 needs a bearer token except "
                "this document."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "feedToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a feed's token from [feeds.<name>] in the config file",
                },
                "userToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an officer's token from [users.<name>]; roles from there",
                },
                "gatewayToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an SMS gateway's inbound_token from [channels.<name>]",
                },
            },
        },
    }


def _operation_id(method: str, path: str) -> str:
    words = [p.strip("{}") for p in path.removeprefix(API).split("/") if p]
    return "_".join([method.lower(), *words]).replace(".", "_")
