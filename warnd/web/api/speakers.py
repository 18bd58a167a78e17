"""The loudspeakers as their broadcast channels last reported them."""

from __future__ import annotations

from aiohttp import web

from warnd.app import reads
from warnd.web.api.queries import SpeakersQuery
from warnd.web.http import SERVICES, json_response, query


async def list_speakers(request: web.Request) -> web.Response:
    q = query(request, SpeakersQuery)
    online = None if q.state is None else q.state == "online"
    page = await reads.speakers_list(
        request.app[SERVICES], online=online, division=q.division, after=q.after, limit=q.limit
    )
    return json_response(page)
