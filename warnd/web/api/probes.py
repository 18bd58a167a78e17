"""Probes, metrics and the API's own description; no token (load balancers, orchestrators and
Prometheus reach them, and they reveal no personal data)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from warnd.app import reads
from warnd.app.views import Health
from warnd.web.http import SERVICES, json_response

OPENAPI: Final = web.AppKey("openapi", dict[str, Any])  # built once per application


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answering at all is the answer."""
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers; which channels exist and whether they are simulated."""
    ready = await reads.readiness(request.app[SERVICES])
    return json_response(ready, 200 if ready.status == "ready" else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; the queue-depth gauge is read from the outbox just before rendering."""
    services = request.app[SERVICES]
    depth = await reads.queue_depth(services)
    if depth is not None:
        gauge = services.metrics.queue_depth
        gauge.clear()
        for kind, queued in depth.items():
            gauge.labels(channel_kind=kind).set(queued)
    return web.Response(
        body=generate_latest(services.metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )
