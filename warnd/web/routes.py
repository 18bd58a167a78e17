"""The route table: every operation of warnd's HTTP API, once."""

from __future__ import annotations

from typing import Final

from channels.http_sms.webhook import MAX_EVENTS, InboundReceipt, InboundReply
from channels.http_voice.webhook import MAX_EVENTS as MAX_CALL_RESULTS
from channels.http_voice.webhook import InboundCallResult
from warnd.app.callouts import OfficerAck
from warnd.app.drills import DrillList, DrillOut, ScheduleRequest
from warnd.app.report import EvaluationReport
from warnd.app.report_files import MEDIA_TYPES
from warnd.app.views import (
    AUDIT_CSV_COLUMNS,
    CALLOUT_CSV_COLUMNS,
    DELIVERY_CSV_COLUMNS,
    AuditPage,
    BoardFigures,
    CalloutOut,
    CalloutPage,
    DeliveryPage,
    EewAccepted,
    EewPreview,
    FieldTaskPage,
    Health,
    Preview,
    ProgressReport,
    Ready,
    RejectedList,
    RejectedOut,
    SpeakerList,
    WarningAccepted,
    WarningDetail,
    WarningList,
)
from warnd.app.warnings import ApproveRequest, RejectRequest
from warnd.ingest.amend import CancelRequest, CorrectRequest
from warnd.ingest.eew import EewMessage
from warnd.ingest.manual import ManualWarning
from warnd.web import media
from warnd.web.api import (
    board,
    callouts,
    drills,
    eew,
    feeds,
    probes,
    rejected,
    speakers,
    tasks,
    warnings,
)
from warnd.web.api.queries import (
    AuditQuery,
    CalloutsQuery,
    DeliveriesQuery,
    EewPreviewQuery,
    ProgressQuery,
    RejectedQuery,
    ReportQuery,
    SpeakersQuery,
    TasksQuery,
    WarningsQuery,
)
from warnd.web.routing import API, FEED_ROLE, GATEWAY_ROLE, Answer, Route
from warnd.web.webhooks import sms, voice

OFFICERS: Final = ("officer", "approver")  # who may read
_CAP_XML: Final = {"type": "string", "description": "a CAP 1.2 <alert> document"}
_INBOUND_EVENT: Final = {
    "oneOf": [
        {"$ref": f"#/components/schemas/{InboundReply.__name__}"},
        {"$ref": f"#/components/schemas/{InboundReceipt.__name__}"},
    ]
}
_CALL_RESULT: Final = {"$ref": f"#/components/schemas/{InboundCallResult.__name__}"}
_STORED = Answer(201, "Stored", WarningAccepted)
_INBOUND_ACCEPTED = Answer(
    202,
    "Accepted: handed to the channel's inbound path",
    schema={
        "type": "object",
        "required": ["accepted", "channel"],
        "properties": {"accepted": {"type": "integer"}, "channel": {"type": "string"}},
    },
)

ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        f"{API}/cap",
        feeds.post_cap,
        FEED_ROLE,
        "Receive a CAP 1.2 warning from a feed",
        (
            _STORED,
            Answer(
                202,
                "An earthquake early warning: recorded and handed to the early-warning path",
                EewAccepted,
            ),
            Answer(
                200,
                "Already stored or received (a duplicate); nothing changed",
                schema={
                    "oneOf": [
                        {"$ref": "#/components/schemas/WarningAccepted"},
                        {"$ref": "#/components/schemas/EewAccepted"},
                    ]
                },
            ),
        ),
        description=(
            "Parsed without external entities or entity expansion, validated against the OASIS "
            "schema and the rules it cannot check. A message is keyed by (sender, identifier, "
            "sent): the same message again answers 200 with the stored state. Refused messages "
            "are kept for the duty officer (GET /api/v1/rejected). An earthquake that names its "
            "seismic event (parameter EventID) is an early-warning report: it goes the way of "
            "POST /api/v1/eew/cap and is answered as there (202, or 200 for a report received "
            "before; 503 when the early-warning path failed to take it: send it again)."
        ),
        body_schema=_CAP_XML,
        body_types=tuple(sorted(feeds.XML_TYPES)),
        errors=(503,),
    ),
    Route(
        "POST",
        f"{API}/eew",
        eew.post_eew,
        FEED_ROLE,
        "Receive an earthquake early-warning report from a seismic feed",
        (
            Answer(202, "Accepted: recorded and handed to the early-warning path", EewAccepted),
            Answer(200, "Already received (a duplicate); nothing changed", EewAccepted),
        ),
        description=(
            "One report of one event: event_id, report_no (1, 2, 3… for the same event), "
            "origin_time, epicentre, depth, magnitude, place, final, cancel, status. Strict: "
            "unknown fields, strings for numbers and numbers for flags are refused (422, the "
            "detail names each field). A report is keyed by (event_id, report_no) across feeds "
            "and processes: the same report again answers 200. The answer summarises what the "
            "report means by the policy in force: villages per level, the blind zone, the "
            "countdown range. 503 when the early-warning path failed to take it: send it again. "
            "Refused messages are kept for the duty officer (GET /api/v1/rejected)."
        ),
        body=EewMessage,
        errors=(503,),
    ),
    Route(
        "POST",
        f"{API}/eew/cap",
        eew.post_eew_cap,
        FEED_ROLE,
        "Receive an earthquake early-warning report as CAP 1.2 from a seismic feed",
        (
            Answer(202, "Accepted: recorded and handed to the early-warning path", EewAccepted),
            Answer(200, "Already received (a duplicate); nothing changed", EewAccepted),
        ),
        description=(
            "The same facts as POST /api/v1/eew in CAP 1.2: an earthquake whose <parameter>s "
            "are EventID, ReportNum, Magnitude, EventDepth (km), OriginTime and optionally "
            "Final, the epicentre the first <circle>, the place its <areaDesc>; msgType Cancel "
            "withdraws the event. Checked as any CAP first (schema, rules), then each parameter "
            "(422 invalid_eew naming it). Keyed by (EventID, ReportNum) with the JSON reports: "
            "a report received in either form before answers 200. JSON is the faster form."
        ),
        body_schema=_CAP_XML,
        body_types=tuple(sorted(feeds.XML_TYPES)),
        errors=(403, 503),
    ),
    Route(
        "GET",
        f"{API}/eew/preview",
        eew.preview_eew,
        OFFICERS,
        "Preview an earthquake for a drill: villages per level, countdowns, people per county",
        (Answer(200, "The preview; nothing is sent or recorded", EewPreview),),
        description=(
            "The villages an earthquake at (lat, lon, depth, mag) would alert by the policy in "
            "force ([earthquake_early_warning]), highest intensity first, with the countdown "
            "range and the blind zone, and per county the villages, people (households and "
            "responders) and loudspeakers. Below min_magnitude nobody is alerted."
        ),
        query=EewPreviewQuery,
    ),
    Route(
        "POST",
        f"{API}/warnings",
        warnings.post_warning,
        ("officer",),
        "Issue a warning by hand",
        (_STORED,),
        description=(
            "Orange and red (and any level the policy names) wait for a second officer: status "
            "pending_approval until POST /api/v1/warnings/{warning_id}/approve."
        ),
        body=ManualWarning,
    ),
    Route(
        "GET",
        f"{API}/board",
        board.get_board,
        OFFICERS,
        "The duty officer's board (值班台): every warning under way at a glance",
        (Answer(200, "The board's figures, as the console's board shows them", BoardFigures),),
        description=(
            "Warnings waiting for approval or active (at most 50: those waiting first, then the "
            "newest active; more_warnings says some were left out), each with its deliveries by "
            "state, call-outs (answered on time and late, open, overdue now, escalated) and field "
            "tasks; how many wait for approval; silent feeds; speakers online and offline with "
            "the first offline ones; the newest refused feed messages. One consistent snapshot, "
            "read from the delivery tallies: its cost grows with divisions and responders, not "
            "with deliveries, so it may be polled every few seconds (the console's board does)."
        ),
    ),
    Route(
        "GET",
        f"{API}/warnings",
        warnings.list_warnings,
        OFFICERS,
        "List warnings, newest first",
        (Answer(200, "A page", WarningList),),
        query=WarningsQuery,
    ),
    Route(
        "GET",
        f"{API}/warnings/{{warning_id}}",
        warnings.get_warning,
        OFFICERS,
        "A warning with its delivery progress",
        (Answer(200, "The warning", WarningDetail),),
    ),
    Route(
        "POST",
        f"{API}/warnings/{{warning_id}}/approve",
        warnings.approve_warning,
        ("approver",),
        "Approve a warning waiting for a second officer, with the texts read",
        (
            Answer(
                200, "Approved: now active (a Cancel: muted, its notices planned)", WarningAccepted
            ),
        ),
        description=(
            "The approver must not be the author, and names the texts_sha256 of the preview "
            "they read: the approval releases exactly those texts (stored with it and in the "
            "audit log), or is refused with 409 texts_changed when they changed since. An "
            "officer's cancel or correction of an orange or red warning waits here too, and "
            "ends the warning it is for only when approved. Planning starts at once."
        ),
        body=ApproveRequest,
        errors=(409,),
    ),
    Route(
        "POST",
        f"{API}/warnings/{{warning_id}}/reject",
        warnings.reject_warning,
        ("approver",),
        "Refuse a warning waiting for a second officer",
        (Answer(200, "Refused: it never goes out", WarningAccepted),),
        description=(
            "A refused cancel or correction leaves the warning it was for as it is. The reason "
            "is audited. 409 when the warning is not waiting."
        ),
        body=RejectRequest,
        errors=(409,),
    ),
    Route(
        "POST",
        f"{API}/warnings/{{warning_id}}/cancel",
        warnings.cancel_warning,
        ("officer",),  # an approver refuses a waiting warning with /reject
        "Cancel a warning (解除), or withdraw one waiting for approval",
        (Answer(201, "The Cancel, stored; its notices are planned", WarningAccepted),),
        description=(
            "Stores a Cancel referencing the warning: its unsent messages stop, its call-outs "
            "and field tasks close, and everyone it reached is told it is lifted, on the channel "
            "that reached them (the new warning's deliveries). The reason is audited, not sent; "
            "`message` is. The cancel of an active orange or red warning waits for a second "
            "officer (status pending_approval; the warning stays in force until approved). 409 "
            "when the warning is no longer active or waiting."
        ),
        body=CancelRequest,
        errors=(409,),
    ),
    Route(
        "POST",
        f"{API}/warnings/{{warning_id}}/correct",
        warnings.correct_warning,
        ("officer",),
        "Correct an active warning (更正): wording, a lower level, the expiry",
        (Answer(201, "The Update, stored and published", WarningAccepted),),
        description=(
            "Stores an Update referencing the warning and publishes it at once: people the "
            "warning reached get the corrected text once, people it had not reached yet get the "
            "whole warning, and open call-outs carry over with their deadlines. A higher level "
            "or another area is a new warning (422), which a second officer approves. Of an "
            "orange or red warning, a correction with new words or a later expiry waits for a "
            "second officer (status pending_approval); an earlier expiry or a lower level alone "
            "goes at once. 409 when the warning is not active."
        ),
        body=CorrectRequest,
        errors=(409,),
    ),
    Route(
        "GET",
        f"{API}/warnings/{{warning_id}}/preview",
        warnings.preview_warning,
        OFFICERS,
        "Who the warning reaches: recipients per audience and covered divisions",
        (Answer(200, "The preview", Preview),),
    ),
    Route(
        "GET",
        f"{API}/warnings/{{warning_id}}/progress",
        warnings.warning_progress,
        OFFICERS,
        "Deliveries, call-outs and field tasks per county, town or village",
        (Answer(200, "The roll-up", ProgressReport),),
        description=(
            "Per division: deliveries by state; call-outs of the responders in it (total, "
            "acknowledged on time and late, open, overdue now, escalated: a step has fired, "
            "closed); field tasks of its villages (done of total, overdue, people reached of "
            "people concerned). Each counts under the division of the level that contains its "
            "person; people above the level (a county head in a town roll-up) are in no row."
        ),
        query=ProgressQuery,
    ),
    Route(
        "GET",
        f"{API}/warnings/{{warning_id}}/deliveries",
        warnings.list_deliveries,
        OFFICERS,
        "A warning's deliveries, one page as JSON or all of them as CSV",
        (
            Answer(
                200,
                "A page (JSON) or every row (CSV)",
                DeliveryPage,
                csv_columns=DELIVERY_CSV_COLUMNS,
            ),
        ),
        query=DeliveriesQuery,
    ),
    Route(
        "GET",
        f"{API}/warnings/{{warning_id}}/callouts",
        callouts.list_callouts,
        OFFICERS,
        "A warning's call-outs (叫应), one page as JSON or all of them as CSV",
        (
            Answer(
                200,
                "A page (JSON) or every row (CSV)",
                CalloutPage,
                csv_columns=CALLOUT_CSV_COLUMNS,
            ),
        ),
        description=(
            "Each call-out with the responder's name and phone in full, division, level, state, "
            "deadline, acknowledgement (time, late or not, route, by whom), the escalation "
            "cursor and the latest event. ?overdue=true is the 未叫应名单: open call-outs past "
            "their deadline now, to call by hand."
        ),
        query=CalloutsQuery,
    ),
    Route(
        "GET",
        f"{API}/warnings/{{warning_id}}/audit",
        warnings.warning_audit,
        OFFICERS,
        "A warning's audit trail: one page as JSON or all of it as CSV",
        (
            Answer(
                200, "A page (JSON) or every row (CSV)", AuditPage, csv_columns=AUDIT_CSV_COLUMNS
            ),
        ),
        description=(
            "In time order: audit-log entries about the warning (issue, approval, cancel, "
            "correction), officers' actions on its call-outs, policy reloads between its arrival "
            "and its expiry, every event of its call-outs (opened, acknowledged, step_fired, "
            "step_skipped, closed, …) and of its field tasks. The tables behind it are "
            "append-only: the database refuses UPDATE and DELETE."
        ),
        query=AuditQuery,
    ),
    Route(
        "POST",
        f"{API}/drills",
        drills.schedule_drill,
        ("officer",),
        "Schedule a blind drill (双盲演练): warnd picks the moment and the scenario",
        (Answer(201, "Scheduled: the moment and scenario, shown to you alone", DrillOut),),
        description=(
            "Inside the window, at a moment drawn at random, one of the scenarios (hazard, "
            "level, one of its counties, drawn at random; only counties listed in `counties` "
            "when given) is issued as an Exercise warning to the people marked for exercises: "
            "【演练】 on every text, the same call-and-respond and escalation as a live warning. "
            "The moment and scenario are shown to the scheduling officer and kept in the audit "
            "log; everyone else sees only that a drill is scheduled, its window and counties. "
            "Orange and red drills wait for a second officer (POST …/approve). A live orange or "
            "red warning in the drill's county postpones it by an hour."
        ),
        body=ScheduleRequest,
    ),
    Route(
        "GET",
        f"{API}/drills",
        drills.list_drills,
        OFFICERS,
        "Blind drills, newest first (the moment and scenario only for their scheduler)",
        (Answer(200, "The drills", DrillList),),
    ),
    Route(
        "GET",
        f"{API}/drills/{{drill_id}}",
        drills.get_drill,
        OFFICERS,
        "One blind drill (the moment and scenario only for its scheduler, or once fired)",
        (Answer(200, "The drill", DrillOut),),
    ),
    Route(
        "POST",
        f"{API}/drills/{{drill_id}}/approve",
        drills.approve_drill,
        ("approver",),
        "Release an orange or red blind drill (a second officer, never its scheduler)",
        (Answer(200, "Released: it will fire at its secret moment", DrillOut),),
        description=(
            "Orange and red drills (the policy's manual_approval_levels) wait for a second "
            "officer, as manual warnings do. The approver reads the scenarios it is drawn from "
            "(GET /api/v1/drills/{drill_id}) and never learns which one or when. 403 for its "
            "scheduler; 409 when it is not waiting or its window is over."
        ),
        errors=(403, 409),
    ),
    Route(
        "POST",
        f"{API}/drills/{{drill_id}}/cancel",
        drills.cancel_drill,
        ("officer",),
        "Cancel a blind drill before it fires (any officer)",
        (Answer(200, "Cancelled", DrillOut),),
        errors=(409,),
    ),
    Route(
        "GET",
        f"{API}/warnings/{{warning_id}}/report",
        warnings.warning_report,
        OFFICERS,
        "The evaluation report (效果评估) of a warning or drill: JSON, XLSX or PDF",
        (
            Answer(
                200,
                "The report's figures (JSON), or the report as a file (XLSX, PDF)",
                EvaluationReport,
                files=(MEDIA_TYPES["xlsx"], MEDIA_TYPES["pdf"]),
            ),
        ),
        description=(
            "As of now, live or drill: reach per audience, county and town (people, messages, "
            "delivered, failed, time from issue to the first and to 90 % delivered), failures "
            "by reason; call-and-respond per level and per county and town (on time, late, "
            "never, time to answer p50/p90), escalation steps, the never-answered list with "
            "phones; field tasks per village (ordered, done, overdue); channels (throughput, "
            "failures, fail-overs); a timeline of deliveries and answers; a drill score per "
            "county and town (weights in the policy's drill_scoring); for a drill, the previous "
            "drills of the same counties. XLSX: one sheet per section with Excel charts. PDF: in "
            "Chinese, a CJK font embedded; 503 when the server lacks one (Debian fonts-noto-cjk)."
        ),
        query=ReportQuery,
        errors=(503,),
    ),
    Route(
        "POST",
        f"{API}/callouts/{{callout_id}}/ack",
        callouts.acknowledge_callout,
        ("officer",),
        "Record an acknowledgement an officer obtained another way",
        (Answer(200, "Acknowledged: the call-out as it now stands", CalloutOut),),
        description=(
            "For a call-out that is still open (pending, notified or escalated): it becomes "
            "acknowledged via officer, late when past its deadline, its escalation stops and its "
            "queued messages on every channel are cancelled. The officer and the reason are kept "
            "in the call-out's events and the audit log. 409 when it was already acknowledged or "
            "closed; the detail says which, when and by whom."
        ),
        body=OfficerAck,
        errors=(409,),
    ),
    Route(
        "POST",
        f"{API}/inbound/sms",
        sms.post_inbound_sms,
        GATEWAY_ROLE,
        "Receive SMS replies and delivery receipts from an HTTP SMS gateway",
        (_INBOUND_ACCEPTED,),
        description=(
            f"One event or a list of at most {MAX_EVENTS}. A reply is {{from, to?, text}}; a "
            "receipt is {message_id, status, detail?} with status delivered, undeliverable, "
            "expired or rejected (or DELIVRD, UNDELIV, REJECTD, DELETED, failed). The bearer "
            "token is the inbound_token of the channel the events belong to; receipts match that "
            "channel's deliveries by message_id, replies acknowledge the sender's open "
            "call-outs. The whole body is validated first: any invalid event refuses it (400, "
            "the detail names index and field) and nothing of it is applied."
        ),
        body_schema={
            "oneOf": [
                _INBOUND_EVENT,
                {"type": "array", "maxItems": MAX_EVENTS, "items": _INBOUND_EVENT},
            ]
        },
        body_models=(InboundReply, InboundReceipt),
        invalid=400,
        errors=(429,),
    ),
    Route(
        "POST",
        f"{API}/inbound/voice",
        voice.post_inbound_voice,
        GATEWAY_ROLE,
        "Receive call results and pressed keys from a voice-notification gateway",
        (_INBOUND_ACCEPTED,),
        description=(
            f"One call result or a list of at most {MAX_CALL_RESULTS}: {{call_id, status, "
            "keys?, detail?}, status answered, no_answer, busy, declined, failed or unreachable "
            "(or completed, no-answer, timeout, rejected, powered_off…), keys the keys the "
            "callee pressed (an answered call only). The bearer token is the inbound_token of "
            "the voice channel that placed the calls; results match that channel's deliveries "
            'by call_id. "1" among the keys acknowledges the call-out the call was made for; '
            "a call not answered marks its delivery failed with the status as the cause. The "
            "whole body is validated first: any invalid result refuses it (400, the detail "
            "names index and field) and nothing of it is applied."
        ),
        body_schema={
            "oneOf": [
                _CALL_RESULT,
                {"type": "array", "maxItems": MAX_CALL_RESULTS, "items": _CALL_RESULT},
            ]
        },
        body_models=(InboundCallResult,),
        invalid=400,
        errors=(429,),
    ),
    Route(
        "GET",
        f"{API}/rejected",
        rejected.list_rejected,
        OFFICERS,
        "Messages refused from feeds, newest first (bodies cut to a preview)",
        (Answer(200, "A page", RejectedList),),
        query=RejectedQuery,
    ),
    Route(
        "GET",
        f"{API}/rejected/{{rejected_id}}",
        rejected.get_rejected,
        OFFICERS,
        "One refused message with its stored body (first 64 KiB)",
        (Answer(200, "The message", RejectedOut),),
        path_descriptions={"rejected_id": "the rejected message's id"},
    ),
    Route(
        "GET",
        f"{API}/warnings/{{warning_id}}/tasks",
        tasks.list_tasks,
        OFFICERS,
        "A warning's field tasks: door-knocking (敲门入户) and gongs (鸣锣吹哨)",
        (Answer(200, "A page, in id order", FieldTaskPage),),
        description=(
            "Each task with its village, assignee and progress (done of targets, reported by "
            "SMS), its deadline and state; for a gong, why it was ordered: a blind spot, a "
            "remote village, or a loudspeaker that failed (offline, silent or refused)."
        ),
        path_descriptions={"warning_id": "the warning's id"},
        query=TasksQuery,
    ),
    Route(
        "GET",
        f"{API}/speakers",
        speakers.list_speakers,
        OFFICERS,
        "Loudspeakers by their last reported state, e.g. the offline ones of a county",
        (Answer(200, "A page, with the division's online and offline counts", SpeakerList),),
        description=(
            "Each speaker's state as its broadcast channel last reported it: online or offline "
            "(its Last Will, or no heartbeat within the channel's stale_after), the last "
            "heartbeat's power, battery and volume, and its last play confirmation. A county "
            "with too many offline raises an alarm ([speakers] in the config); a command to an "
            "offline speaker fails over to a gong task for its village."
        ),
        query=SpeakersQuery,
    ),
    Route(
        "GET",
        f"{API}/openapi.json",
        probes.openapi_json,
        None,
        "This document",
        (Answer(200, "OpenAPI 3.1"),),
    ),
    # No token: loudspeakers have none. The URL's signature, made by the channel that sent the
    # command and good for its media_ttl, is the credential (channels.media).
    Route(
        "GET",
        "/media/{name}",
        media.get_media,
        None,
        "Audio for loudspeakers, behind a signed, expiring URL",
        (
            Answer(
                200,
                "The WAV file",
                schema={"type": "string", "format": "binary"},
                media_type="audio/wav",
            ),
        ),
        description=(
            "name is the SHA-256 of the file's bytes and .wav; expires and sig are what the "
            "broadcast channel put on the URL in the speaker's command (sig: HMAC-SHA256 over "
            "'/media/{name}' and expires, joined by a newline, keyed by the channel's "
            "media_key). 403 for a wrong or expired signature, 404 for a name no channel has."
        ),
        query=media.MediaQuery,
        errors=(403, 404),
        path_descriptions={"name": "<sha256 of the file>.wav"},
        path_patterns={"name": media.NAME_PATTERN},
    ),
    # No token on these three: load balancers, orchestrators and Prometheus must reach them,
    # and they reveal no personal data.
    Route(
        "GET",
        "/healthz",
        probes.healthz,
        None,
        "Liveness: the process answers",
        (Answer(200, "Up", Health),),
    ),
    Route(
        "GET",
        "/readyz",
        probes.readyz,
        None,
        "Readiness: the database answers; channels and live/simulated mode",
        (Answer(200, "Ready", Ready), Answer(503, "Not ready", Ready)),
    ),
    Route(
        "GET",
        "/metrics",
        probes.metrics,
        None,
        "Prometheus metrics",
        (
            Answer(
                200,
                "Prometheus text exposition format",
                schema={"type": "string"},
                media_type="text/plain",
            ),
        ),
    ),
)
