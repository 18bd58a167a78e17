"""Officers' operations on call-outs (叫应): the list and the 未叫应名单, and recording an answer
obtained another way."""

from __future__ import annotations

from aiohttp import web

from warnd.app import callouts as use_cases
from warnd.app import reads
from warnd.app.views import CALLOUT_CSV_COLUMNS, OPEN_CALLOUT_STATES, callout_cells
from warnd.web.api.queries import CalloutsQuery
from warnd.web.http import SERVICES, USER, json_payload, json_response, path_id, query, stream_csv


async def list_callouts(request: web.Request) -> web.StreamResponse:
    """A warning's call-outs, filtered: one page as JSON, or every match streamed as CSV.
    ``?overdue=true`` is the list of those not yet answered in time (未叫应名单)."""
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    q = query(request, CalloutsQuery)
    where = reads.CalloutFilter(
        states=list(OPEN_CALLOUT_STATES) if q.state == "open" else [q.state] if q.state else None,
        level=q.level,
        division=q.division,
        overdue_at=services.clock.now() if q.overdue else None,
    )
    if q.format == "csv":
        await reads.require_warning(services.pool, warning_id)
        return await stream_csv(
            request,
            f"warning-{warning_id}-callouts.csv",
            CALLOUT_CSV_COLUMNS,
            reads.all_callouts(services, warning_id, where, after=q.after),
            callout_cells,
        )
    page = await reads.callouts_page(services, warning_id, where, after=q.after, limit=q.limit)
    return json_response(page)


async def acknowledge_callout(request: web.Request) -> web.Response:
    """An officer records an answer obtained another way, with the reason; audited."""
    services = request.app[SERVICES]
    callout_id = path_id(request, "callout_id")
    # No body at all is a missing reason (422), not a malformed request.
    ack = use_cases.parse_ack(await json_payload(request, empty={}))
    callout = await use_cases.acknowledge(services, request[USER].name, callout_id, ack)
    return json_response(callout)
