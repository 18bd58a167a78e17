"""What officers see: the read models of warnings, deliveries, call-outs, progress and audit.

The API returns them as JSON (and documents them in OpenAPI from the same classes); the console
renders them. The CSV forms of the long lists are here too, so every export has one shape.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

WarningState = Literal["pending_approval", "active", "superseded", "cancelled", "expired", "muted"]
DeliveryState = Literal["queued", "sending", "sent", "delivered", "failed", "cancelled"]
AudienceName = Literal["responder", "broadcast", "facility", "helper", "household"]
ProgressLevel = Literal["county", "town", "village"]
CalloutState = Literal["pending", "notified", "acknowledged", "escalated", "closed"]
CalloutFilterState = Literal[CalloutState, "open"]  # open: any of OPEN_CALLOUT_STATES
ResponderLevel = Literal["city", "county", "town", "village"]

WARNING_STATES: tuple[str, ...] = get_args(WarningState)
DELIVERY_STATES: tuple[str, ...] = get_args(DeliveryState)
AUDIENCES: tuple[str, ...] = get_args(AudienceName)
PROGRESS_LEVELS = {"county": 6, "town": 9, "village": 12}  # the code prefix of each level
OPEN_CALLOUT_STATES = ("pending", "notified", "escalated")
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
DELIVERY_CSV_COLUMNS = (
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
    speakers_offline: int = Field(
        description="of them, villages whose loudspeaker is offline now: they get gong tasks"
    )


class TextOut(BaseModel):
    """One text a warning sends."""

    audience: str = Field(
        description="responder, broadcast, facility, helper, household; notice:cancelled, "
        "notice:withdrawn, or a correction's audience"
    )
    channel_kind: str
    notice: str = Field(description="correction, withdrawn or cancelled; empty for the warning")
    body: str


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
    texts: list[TextOut] = Field(
        description="every text the warning sends (field-task texts aside, which list each "
        "village's people): what a second officer approves"
    )
    texts_sha256: str = Field(
        description="the digest of ``texts``; an approval names it, so that what was read is "
        "what goes out"
    )
    night: bool = Field(
        description="now is inside the policy's night window: the channels above are the night "
        "ones (a call before the SMS where the policy says so)"
    )
    night_window: str = Field(description="the policy's night window, local time: 22:00–06:00")
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
    speakers: int = Field(description="loudspeakers known in its covered villages")
    speakers_offline: int = Field(description="of them, offline now")


class BoardWarning(BaseModel):
    """One warning on the duty officer's board: what it is and how far it got."""

    id: int
    source: str
    status: str = Field(description="Actual, Exercise (演练) …")
    msg_type: str
    hazard: str
    level: str
    event: str
    headline: str
    area_desc: str
    state: str
    plan_state: str
    author: str | None
    approver: str | None
    received_at: datetime
    expires: datetime | None
    deliveries: int = Field(description="deliveries planned so far, in every state")
    by_state: dict[str, int] = Field(description="delivery state → count (none: left out)")
    callouts: CalloutSummary
    field_tasks: FieldTaskProgress


class ProgressReport(BaseModel):
    """A warning rolled up per division of one level; people above it are in no row."""

    warning_id: int
    level: str
    within: str | None = Field(
        default=None, description="the division the roll-up stays within; null: everywhere"
    )
    within_name: str | None = None
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


class SpeakerOut(BaseModel):
    """A loudspeaker as its broadcast channel last reported it."""

    channel: str
    id: str = Field(description="the speaker's id on its broker: its village's code")
    division_code: str | None = Field(description="its village; null when the id is no village")
    village: str | None
    town: str | None
    county: str | None
    online: bool = Field(description="false: offline, its Last Will, or no heartbeat for long")
    state_at: datetime = Field(description="when the speaker (or its channel) said so")
    heartbeat_at: datetime | None
    power: str | None
    battery: int | None = Field(description="percent")
    volume: int | None = Field(description="percent")
    detail: str
    played_at: datetime | None = Field(description="its last play confirmation")
    played: bool | None
    played_detail: str | None


class SpeakerList(BaseModel):
    online: int = Field(description="speakers of the division (every page) online")
    offline: int = Field(description="and offline")
    speakers: list[SpeakerOut]
    next_after: str | None = Field(description="pass as after for the next page; null: the last")


class SilentFeed(BaseModel):
    feed: str
    since: datetime = Field(description="when its heartbeat was found missing")


class BoardFigures(BaseModel):
    """The board's live figures (值班台), recomputed for every live update: the console's board
    page and its live updates render exactly these."""

    as_of: datetime = Field(description="the time overdue is reckoned at")
    warnings: list[BoardWarning] = Field(
        description="awaiting approval, then active, each newest first; past the limit the "
        "oldest active ones are left out, never one awaiting approval"
    )
    more_warnings: bool = Field(description="more are under way than the board lists (the oldest)")
    pending_approval: int = Field(description="warnings waiting for a second officer, all of them")
    silent_feeds: list[SilentFeed] = Field(description="longest silent first")
    speakers_online: int
    speakers_offline: int
    offline_speakers: list[SpeakerOut] = Field(description="the first offline ones, by id")
    rejected: list[RejectedOut] = Field(
        description="the newest refused feed messages, newest first, bodies cut to a preview"
    )
    simulated: bool


class FieldTaskOut(BaseModel):
    """One field task (敲门入户 door-knocking, 鸣锣吹哨 gongs) and how far it got."""

    id: int
    kind: Literal["door_knock", "gong"]
    village_code: str
    village: str
    town: str | None
    county: str | None
    assignee: str
    phone: str = Field(description="the assignee's number; progress is replied from it")
    targets: int = Field(description="people to visit (1 for a gong)")
    done: int = Field(description="reported done so far")
    state: Literal["open", "escalated", "done", "closed"]
    opened_at: datetime
    deadline: datetime
    reported_at: datetime | None
    completed_at: datetime | None
    closed_at: datetime | None
    why: Literal["blind_spot", "remote", "loudspeaker_failed"] | None = Field(
        description="for a gong: a blind spot, a remote village, or its loudspeaker failed"
    )


class FieldTaskPage(BaseModel):
    warning_id: int
    tasks: list[FieldTaskOut]
    next_after: int | None
    simulated: bool


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
        default=None,
        description="per link: bound, in flight, window and rate (SMPP); registered, workers up "
        "and calls waiting (SIP); no addresses or errors. Only from the process holding the "
        "channel",
    )
    held: bool | None = Field(
        default=None,
        description="this process holds the channel (bound, sending): one process at a time "
        "does; null in a process without the dispatch role",
    )
    holder: str | None = Field(
        default=None,
        description="the process holding the channel (host and process id), as last seen; "
        "null when none does",
    )


class Ready(BaseModel):
    status: str = Field(description="ready, or unavailable")
    database: str = Field(description="ok or unreachable (the reason is in warnd's log)")
    mode: str = Field(description="live, or simulated when a channel reaches nobody real")
    channels: list[ChannelOut]


# --- earthquake early warning ------------------------------------------------------------------


class EewLevelCounts(BaseModel):
    """Alerted villages per level."""

    red: int
    orange: int
    yellow: int


class CountdownRange(BaseModel):
    """Seconds until the S-wave arrives, over the alerted villages (≤ 0: the blind zone)."""

    min_s: float
    max_s: float


class EewSummary(BaseModel):
    """What one report means for the city's villages, by the policy in force."""

    public_alert: bool = Field(
        description="false below the policy's min_magnitude, or for a cancel: nobody is alerted"
    )
    villages: EewLevelCounts = Field(description="alerted villages per level")
    alerted_villages: int
    blind_zone: int = Field(
        description="alerted villages the S-wave has reached already (told 地震已发生，立即避险)"
    )
    countdown: CountdownRange | None = Field(description="null when no village is alerted")
    expires_at: datetime | None = Field(
        description="the last alerted village's S-wave arrival plus the policy's grace"
    )


class EewAccepted(BaseModel):
    """A report received (202) or received before (200)."""

    event_id: str
    report_no: int
    created: bool = Field(description="false: this (event_id, report_no) was received before")
    detail: str = Field(description="accepted, or already received")
    state: str = Field(
        description="handed (to the fast path), recorded (no fast path here, or a Test), "
        "received (being handed by another request), failed"
    )
    summary: EewSummary | None = Field(
        description="null for a duplicate whose first copy is still being handled"
    )
    simulated: bool


class EewCountyOut(BaseModel):
    """An alerted county's share of an event: villages, people and loudspeakers."""

    county_code: str
    county_name: str
    villages: int = Field(description="alerted villages in the county")
    red: int
    orange: int
    yellow: int
    blind_zone: int
    households: int = Field(description="households of the alerted villages")
    responders: int = Field(
        description="responders of the alerted villages and of their towns and county"
    )
    people: int = Field(description="households + responders")
    speaker_villages: int = Field(description="alerted villages with a loudspeaker (no blind spot)")
    speakers: int = Field(description="loudspeakers reported by broadcast channels in them")
    speakers_offline: int


class EewVillageOut(BaseModel):
    code: str
    name: str
    county_code: str
    level: str
    degree: int = Field(description="the intensity degree people are told (I rounded half up)")
    intensity: float
    distance_km: float = Field(description="hypocentral distance")
    countdown_s: float
    blind: bool


class EewPreview(BaseModel):
    """A drill's look at an earthquake that has not happened: who would be warned, how soon.
    Nothing is sent."""

    lat: float
    lon: float
    depth_km: float
    magnitude: float
    elapsed_s: float = Field(description="seconds after origin the countdowns are taken at")
    min_magnitude: float
    summary: EewSummary
    counties: list[EewCountyOut] = Field(description="alerted counties, most villages first")
    villages_without_coordinates: int = Field(
        description="villages of the roster that have no lat/lon: never alerted"
    )
    texts: list[str] = Field(
        description="the SMS of the most and the least shaken alerted village (and the blind "
        "zone's, when there is one)"
    )
    alerted: list[EewVillageOut] = Field(
        description="alerted villages, highest intensity first, then nearest"
    )


# --- the CSV forms -----------------------------------------------------------------------------


def csv_time(value: datetime | None, zone: tzinfo) -> str:
    """Local time with its offset: people read the CSV in a spreadsheet, in the city's time."""
    return value.astimezone(zone).isoformat() if value is not None else ""


def delivery_cells(d: DeliveryOut, zone: tzinfo) -> tuple[object, ...]:
    """A delivery as a row of ``DELIVERY_CSV_COLUMNS``."""
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
        csv_time(d.queued_at, zone),
        csv_time(d.sent_at, zone),
        csv_time(d.delivered_at, zone),
        csv_time(d.failed_at, zone),
        csv_time(d.cancelled_at, zone),
    )


def callout_cells(c: CalloutOut, zone: tzinfo) -> tuple[object, ...]:
    """A call-out as a row of ``CALLOUT_CSV_COLUMNS``."""
    return (
        c.id,
        c.name,
        c.phone,
        c.division_code,
        c.division_name,
        c.level,
        c.state,
        csv_time(c.deadline, zone),
        csv_time(c.acknowledged_at, zone),
        "" if c.ack_late is None else str(c.ack_late).lower(),
        c.ack_via or "",
        c.ack_by or "",
        c.cursor,
        c.escalation_steps,
        c.last_event or "",
        csv_time(c.last_event_at, zone),
        c.last_step or "",
        c.last_step_target or "",
    )


def audit_cells(e: AuditEntry, zone: tzinfo) -> tuple[object, ...]:
    """An audit entry as a row of ``AUDIT_CSV_COLUMNS``."""
    return (
        csv_time(e.at, zone),
        e.source,
        e.id,
        e.actor,
        e.action,
        e.subject,
        json.dumps(e.detail, ensure_ascii=False, sort_keys=True),
    )
