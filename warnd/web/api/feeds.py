"""CAP 1.2 from feeds: ``POST /api/v1/cap``."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from warnd.app import warnings
from warnd.app.services import Services
from warnd.app.views import WarningAccepted
from warnd.ingest.store import Stored
from warnd.web.http import FEED, SERVICES, ApiError, BodyError, json_response, read_body

XML_TYPES: Final = frozenset({"application/xml", "text/xml", "application/cap+xml"})


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
        await warnings.record_rejection(services, feed, unsupported.code, unsupported.detail, b"")
        raise unsupported
    try:
        body = await read_body(request, services.max_body_bytes)
    except BodyError as exc:
        await warnings.record_rejection(services, feed, exc.code, exc.detail, exc.head)
        raise
    return accepted(services, await warnings.receive_cap(services, feed, body))


def accepted(services: Services, stored: Stored) -> web.Response:
    """201 for a warning stored now, 200 for one found already stored."""
    body = WarningAccepted(
        warning_id=stored.warning_id,
        status=stored.state,
        created=stored.created,
        unknown_codes=list(stored.unknown_codes),
        simulated=services.simulated,
    )
    return json_response(body, 201 if stored.created else 200)
