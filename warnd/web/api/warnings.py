"""Officers' operations on warnings: issue, approve, cancel, correct; read one, list them, preview,
progress, deliveries and the audit trail. Each handler reads the request, calls the use case or
read query of ``warnd.app`` and writes its answer; the rules live there."""

from __future__ import annotations

import asyncio

from aiohttp import web

from warnd.app import reads
from warnd.app import warnings as use_cases
from warnd.app.report import evaluation_report
from warnd.app.report_files import MEDIA_TYPES, CjkFontMissingError, file_name, render
from warnd.app.views import (
    AUDIT_CSV_COLUMNS,
    DELIVERY_CSV_COLUMNS,
    WarningAccepted,
    audit_cells,
    delivery_cells,
)
from warnd.ingest.amend import CancelRequest, CorrectRequest, parse_request
from warnd.web.api.feeds import accepted
from warnd.web.api.queries import (
    AuditQuery,
    DeliveriesQuery,
    ProgressQuery,
    ReportQuery,
    WarningsQuery,
)
from warnd.web.http import (
    SERVICES,
    USER,
    ApiError,
    json_payload,
    json_response,
    path_id,
    query,
    stream_csv,
)


async def post_warning(request: web.Request) -> web.Response:
    """Issue a manual warning; orange and red wait for a second officer."""
    services = request.app[SERVICES]
    payload = await json_payload(request)
    return accepted(services, await use_cases.issue(services, request[USER].name, payload))


async def approve_warning(request: web.Request) -> web.Response:
    """A second officer releases a warning waiting for approval, naming the texts they read."""
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    body = parse_request(use_cases.ApproveRequest, await json_payload(request))
    stored = await use_cases.approve(services, request[USER].name, warning_id, body)
    return accepted(services, stored)


async def reject_warning(request: web.Request) -> web.Response:
    """An approver refuses a warning waiting for approval."""
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    body = parse_request(use_cases.RejectRequest, await json_payload(request))
    await use_cases.reject(services, request[USER].name, warning_id, body)
    return json_response(
        WarningAccepted(
            warning_id=warning_id, status="rejected", created=False, simulated=services.simulated
        )
    )


async def cancel_warning(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    payload = parse_request(CancelRequest, await json_payload(request))
    stored = await use_cases.cancel(services, request[USER].name, warning_id, payload)
    return accepted(services, stored)


async def correct_warning(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    payload = parse_request(CorrectRequest, await json_payload(request))
    stored = await use_cases.correct(services, request[USER].name, warning_id, payload)
    return accepted(services, stored)


async def list_warnings(request: web.Request) -> web.Response:
    q = query(request, WarningsQuery)
    page = await reads.warning_list(
        request.app[SERVICES], state=q.state, before=q.before, limit=q.limit
    )
    return json_response(page)


async def get_warning(request: web.Request) -> web.Response:
    warning_id = path_id(request, "warning_id")
    return json_response(await reads.warning_detail(request.app[SERVICES], warning_id))


async def preview_warning(request: web.Request) -> web.Response:
    warning_id = path_id(request, "warning_id")
    return json_response(await reads.preview(request.app[SERVICES], warning_id))


async def warning_progress(request: web.Request) -> web.Response:
    warning_id = path_id(request, "warning_id")
    q = query(request, ProgressQuery)
    return json_response(await reads.progress(request.app[SERVICES], warning_id, q.level, q.within))


async def list_deliveries(request: web.Request) -> web.StreamResponse:
    """One page of deliveries as JSON, or every matching delivery streamed as CSV."""
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    q = query(request, DeliveriesQuery)
    where = reads.DeliveryFilter(state=q.state, audience=q.audience)
    if q.format == "csv":
        await reads.require_warning(services.pool, warning_id)
        return await stream_csv(
            request,
            f"warning-{warning_id}-deliveries.csv",
            DELIVERY_CSV_COLUMNS,
            reads.all_deliveries(services, warning_id, where, after=q.after),
            delivery_cells,
        )
    page = await reads.deliveries_page(services, warning_id, where, after=q.after, limit=q.limit)
    return json_response(page)


async def warning_audit(request: web.Request) -> web.StreamResponse:
    """Everything recorded about a warning in time order: one page as JSON, or all as CSV."""
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    q = query(request, AuditQuery)
    if q.format == "csv":
        await reads.require_warning(services.pool, warning_id)
        return await stream_csv(
            request,
            f"warning-{warning_id}-audit.csv",
            AUDIT_CSV_COLUMNS,
            reads.all_audit(services, warning_id, after=q.cursor),
            audit_cells,
        )
    page = await reads.audit_page(services, warning_id, after=q.cursor, limit=q.limit)
    return json_response(page)


async def warning_report(request: web.Request) -> web.Response:
    """The evaluation report of a warning or drill as JSON, XLSX or PDF."""
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    q = query(request, ReportQuery)
    report = await evaluation_report(services, warning_id)
    if q.format == "json":
        return json_response(report)
    try:
        # Laying out a city-wide report takes a while: off the event loop, so dispatch and
        # answers go on meanwhile.
        body = await asyncio.to_thread(render, report, q.format)
    except CjkFontMissingError as exc:
        raise ApiError(503, "font_missing", str(exc)) from None
    return web.Response(
        body=body,
        content_type=MEDIA_TYPES[q.format],
        headers={"Content-Disposition": f'attachment; filename="{file_name(report, q.format)}"'},
    )
