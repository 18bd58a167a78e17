"""Earthquake early warning: a seismic feed's reports (``POST /api/v1/eew``) and the officers'
drill preview (``GET /api/v1/eew/preview``)."""

from __future__ import annotations

from aiohttp import web

from warnd.app import eew
from warnd.web.api.feeds import XML_TYPES, cap_wanted, eew_refusals, eew_response, feed_body
from warnd.web.api.queries import EewPreviewQuery
from warnd.web.http import SERVICES, json_response, query

JSON_TYPE = "application/json"


async def post_eew(request: web.Request) -> web.Response:
    """Receive one early-warning report from an authenticated seismic feed."""
    wanted = f"Content-Type {request.content_type!r}: send the report as {JSON_TYPE}"
    services, feed, body = await feed_body(request, frozenset({JSON_TYPE}), wanted)
    with eew_refusals():
        received = await eew.receive_eew(services, feed, body)
    return eew_response(received)


async def post_eew_cap(request: web.Request) -> web.Response:
    """Receive one early-warning report as the seismic feed's CAP 1.2."""
    services, feed, body = await feed_body(request, XML_TYPES, cap_wanted(request))
    with eew_refusals():
        received = await eew.receive_eew_cap(services, feed, body)
    return eew_response(received)


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
