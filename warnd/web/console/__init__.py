"""The duty officer's console (值班台): server-rendered pages in Chinese on warnd's own server,
signed in with a password and a server-side session, live figures over SSE.

Its routes sit under ``/console`` beside the JSON API, which keeps its bearer tokens; the
console's guard (``guard``) signs officers in, and its handlers (``pages``) call the same
``warnd.app`` use cases and reads as the API.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

import aiohttp_jinja2
import jinja2
from aiohttp import web

from warnd.web.console import guard, live, pages, words
from warnd.web.console.guard import PREFIX
from warnd.web.routing import Handler

STATIC: Final = Path(str(resources.files(__package__).joinpath("static")))

_ID: Final = "{warning_id:[0-9]+}"
ROUTES: Final[tuple[tuple[str, str, Handler], ...]] = (
    ("GET", "/login", pages.login_form),
    ("POST", "/login", pages.login),
    ("POST", "/logout", pages.logout),
    ("GET", "", pages.board_page),
    ("GET", "/", pages.board_page),
    ("GET", "/live/board", live.stream(pages.board_fragment)),
    ("GET", "/compose", pages.compose_page),
    ("GET", "/compose/texts", pages.compose_texts),
    ("GET", "/compose/area", pages.compose_area),
    ("POST", "/compose/preview", pages.compose_preview),
    ("GET", "/divisions", pages.divisions),
    ("GET", "/roster", pages.roster_page),
    ("POST", "/roster/import", pages.roster_import),
    ("GET", "/roster/export", pages.roster_export),
    ("GET", "/roster/{code:[0-9]{6}|[0-9]{9}|[0-9]{12}}", pages.division_page),
    ("POST", "/warnings", pages.issue),
    ("GET", f"/warnings/{_ID}", pages.warning_page),
    ("GET", f"/live/warnings/{_ID}", live.stream(pages.warning_fragment)),
    ("GET", f"/warnings/{_ID}/map", pages.map_page),
    ("GET", f"/warnings/{_ID}/chart", pages.chart_fragment),
    ("POST", f"/warnings/{_ID}/approve", pages.approve),
    ("POST", f"/warnings/{_ID}/reject", pages.reject),
    ("GET", f"/warnings/{_ID}/cancel", pages.cancel_page),
    ("POST", f"/warnings/{_ID}/cancel", pages.cancel),
    ("POST", f"/warnings/{_ID}/correct", pages.correct),
    ("POST", "/callouts/{callout_id:[0-9]+}/ack", pages.acknowledge),
)


def add_console(app: web.Application) -> list[tuple[str, str]]:
    """Add the console's routes, templates and static files to ``app``; returns each route's
    (method, canonical path), which need no bearer token (the console's guard signs in)."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        default_helpers=False,
    )
    words.install(env)
    env.globals["static"] = lambda name: f"{PREFIX}/static/{name}"
    app.cleanup_ctx.append(live.shared_ctx)
    app.on_shutdown.append(live.on_shutdown)
    added: list[tuple[str, str]] = []
    for method, path, handler in ROUTES:
        route = app.router.add_route(method, PREFIX + path, handler)
        assert route.resource is not None
        added.append((method, route.resource.canonical))
    static = app.router.add_static(f"{PREFIX}/static", STATIC)
    added.append(("GET", static.canonical))
    return added


__all__ = ["add_console", "guard"]
