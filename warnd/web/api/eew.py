"""Earthquake early warning: a seismic feed's reports (``POST /api/v1/eew``) and the officers'
drill preview (``GET /api/v1/eew/preview``)."""

from __future__ import annotations

from collections.abc import Awaitable

from aiohttp import web

from warnd.app import eew
from warnd.app.views import EewAccepted
from warnd.ingest.eew import EewError
from warnd.web.api.feeds import XML_TYPES, cap_wanted, feed_body
from warnd.web.api.queries import EewPreviewQuery
from warnd.web.http import SERVICES, ApiError, json_response, query

JSON_TYPE = "application/json"


async def post_eew(request: web.Request) -> web.Response:
    """Receive one early-warning report from an authenticated seismic feed."""
    wanted = f"Content-Type {request.content_type!r}: send the report as {JSON_TYPE}"
    services, feed, body = await feed_body(request, frozenset({JSON_TYPE}), wanted)
    return await _received(eew.receive_eew(services, feed, body))


async def post_eew_cap(request: web.Request) -> web.Response:
    """Receive one early-warning report as the seismic feed's CAP 1.2."""
    services, feed, body = await feed_body(request, XML_TYPES, cap_wanted(request))
    return await _received(eew.receive_eew_cap(services, feed, body))


async def _received(receiving: Awaitable[EewAccepted]) -> web.Response:
    """202 for a new report, 200 for one received before; refusals as API errors."""
    try:
        received = await receiving
    except EewError as exc:
        raise ApiError(exc.http_status, exc.code, exc.detail) from None
    except eew.EewHandOffError as exc:
        raise ApiError(503, exc.code, str(exc), {"Retry-After": "0"}) from None
    return json_response(received, 202 if received.created else 200)


async def preview_eew(request: web.Request) -> web.Response:
    """Who an earthquake at a given place and magnitude would warn: nothing is sent."""
    services = request.app[SERVICES]
    q = query(request, EewPreviewQuery)
    policy = services.current_policy()
    found = await eew.preview(
        services.pool,
        policy.earthquake_early_warning.parameters,
        lat=q.lat,
        lon=q.lon,
        depth_km=q.depth,
        magnitude=q.mag,
        elapsed_s=q.elapsed,
        exercise=q.exercise,
        place=q.place,
        now=services.clock.now(),
        signature=policy.signature,
    )
    return json_response(found)
