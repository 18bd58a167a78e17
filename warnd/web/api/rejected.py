"""Messages refused from feeds, kept for the duty officer."""

from __future__ import annotations

from aiohttp import web

from warnd.app import reads
from warnd.web.api.queries import RejectedQuery
from warnd.web.http import SERVICES, json_response, path_id, query


async def list_rejected(request: web.Request) -> web.Response:
    q = query(request, RejectedQuery)
    page = await reads.rejected_list(request.app[SERVICES], before=q.before, limit=q.limit)
    return json_response(page)


async def get_rejected(request: web.Request) -> web.Response:
    rejected_id = path_id(request, "rejected_id")
    return json_response(await reads.rejected_one(request.app[SERVICES], rejected_id))
