"""A warning's field tasks (敲门入户, 鸣锣吹哨)."""

from __future__ import annotations

from aiohttp import web

from warnd.app import reads
from warnd.web.api.queries import TasksQuery
from warnd.web.http import SERVICES, json_response, path_id, query


async def list_tasks(request: web.Request) -> web.Response:
    warning_id = path_id(request, "warning_id")
    q = query(request, TasksQuery)
    page = await reads.field_tasks_page(
        request.app[SERVICES], warning_id, kind=q.kind, state=q.state, after=q.after, limit=q.limit
    )
    return json_response(page)
