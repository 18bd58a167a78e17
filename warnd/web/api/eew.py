"""Earthquake early warning: a seismic feed's reports (``POST /api/v1/eew``) and the officers'
drill preview (``GET /api/v1/eew/preview``)."""

from __future__ import annotations

from aiohttp import web

from warnd.app import eew
from warnd.app.warnings import record_rejection
from warnd.ingest.eew import EewError
from warnd.web.api.feeds import XML_TYPES
from warnd.web.api.queries import EewPreviewQuery
from warnd.web.http import (
    FEED,
    SERVICES,
    ApiError,
    BodyError,
    json_response,
    query,
    read_body,
)

JSON_TYPE = "application/json"


async def post_eew(request: web.Request) -> web.Response:
    """Receive one early-warning report from an authenticated seismic feed."""
    services = request.app[SERVICES]
    feed = request[FEED]
    if request.content_type != JSON_TYPE:
        unsupported = ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {request.content_type!r}: send the report as {JSON_TYPE}",
        )
        await record_rejection(services, feed, unsupported.code, unsupported.detail, b"")
        raise unsupported
    try:
        body = await read_body(request, services.max_body_bytes)
    except BodyError as exc:
        await record_rejection(services, feed, exc.code, exc.detail, exc.head)
        raise
    try:
        received = await eew.receive_eew(services, feed, body)
    except EewError as exc:
        raise ApiError(exc.http_status, exc.code, exc.detail) from None
    except eew.EewHandOffError as exc:
        raise ApiError(503, exc.code, str(exc), {"Retry-After": "0"}) from None
    return json_response(received, 202 if received.created else 200)


async def post_eew_cap(request: web.Request) -> web.Response:
    """Receive one early-warning report as the seismic feed's CAP 1.2."""
    services = request.app[SERVICES]
    feed = request[FEED]
    if request.content_type not in XML_TYPES:
        unsupported = ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {request.content_type!r} is not CAP XML; "
            f"send one of {', '.join(sorted(XML_TYPES))}",
        )
        await record_rejection(services, feed, unsupported.code, unsupported.detail, b"")
        raise unsupported
    try:
        body = await read_body(request, services.max_body_bytes)
    except BodyError as exc:
        await record_rejection(services, feed, exc.code, exc.detail, exc.head)
        raise
    try:
        received = await eew.receive_eew_cap(services, feed, body)
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
