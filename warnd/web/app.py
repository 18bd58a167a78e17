"""The aiohttp application: the route table's operations behind the error and auth middlewares,
and the officers' console under /console behind its own guard.

Bad input of any kind becomes ``{"error": code, "detail": sentence}`` with a 4xx status; anything
unexpected becomes a 500 with the same shape, logged with its traceback (the client never sees
one). Phone numbers are returned in full to officers, who need to call people, and are masked in
logs by ``warnd.runtime.logs``.
"""

from __future__ import annotations

from aiohttp import web

from warnd.app.services import Services
from warnd.web.api.probes import OPENAPI
from warnd.web.console import add_console
from warnd.web.console.guard import console_middleware
from warnd.web.http import SERVICES
from warnd.web.middleware import ROLES, auth_middleware, errors_middleware
from warnd.web.openapi import document
from warnd.web.routes import ROUTES


def build_app(services: Services) -> web.Application:
    """The aiohttp application serving the API from ``services``."""
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware, console_middleware],
        client_max_size=services.max_body_bytes,
    )
    app[SERVICES] = services
    app[OPENAPI] = document(ROUTES)
    roles: dict[tuple[str, str], tuple[str, ...] | None] = {}
    for route in ROUTES:
        added = app.router.add_route(route.method, route.router_path, route.handler)
        assert added.resource is not None
        roles[(route.method, added.resource.canonical)] = route.roles
    # The console signs officers in with a session, not a bearer token: its routes pass the
    # token check and its own guard (the last middleware) takes over.
    for method, canonical in add_console(app):
        roles[(method, canonical)] = None
    app[ROLES] = roles
    return app
