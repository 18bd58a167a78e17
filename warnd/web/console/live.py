"""Live figures for the console over Server-Sent Events: the board's and a warning's live part,
rendered on the server and sent again whenever it changed, so the page never needs a refresh.

Each open page holds one stream; the figures are read every ``INTERVAL_S`` on the wall clock
(the cadence of a screen, not a time in the warning's life, so it is not warnd's clock). Pages
showing the same thing share one read per interval, however many officers have it open. A
stream ends when the server shuts down, or when its session has ended (signed out elsewhere,
or idle: an open stream does not count as the officer's activity), telling the page so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from warnd.app import users
from warnd.web.console.guard import SECURITY_HEADERS, TOKEN
from warnd.web.http import SERVICES

INTERVAL_S: Final = 2.0
KEEPALIVE_S: Final = 20.0  # a comment line keeps proxies from closing an idle stream
SESSION_CHECK_S: Final = 30.0

Render = Callable[[web.Request], Awaitable[str]]


@dataclass
class _Shared:
    """The latest rendering of each live part (by path and query), and one lock per part so
    that streams due at the same time wait for one read instead of each making their own. A
    part nobody watches any more is forgotten (every warning, level and division scope is a
    part of its own)."""

    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    latest: dict[str, tuple[float, str]] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    watching: Counter[str] = field(default_factory=Counter)

    def watch(self, key: str) -> None:
        self.watching[key] += 1

    def unwatch(self, key: str) -> None:
        self.watching[key] -= 1
        if self.watching[key] <= 0:
            del self.watching[key]
            self.latest.pop(key, None)
            self.locks.pop(key, None)

    async def render(self, key: str, request: web.Request, render: Render) -> str:
        async with self.locks.setdefault(key, asyncio.Lock()):
            found = self.latest.get(key)
            if found is not None and time.monotonic() - found[0] < INTERVAL_S / 2:
                return found[1]
            html = await render(request)
            self.latest[key] = (time.monotonic(), html)
            return html


SHARED: Final = web.AppKey("console_live", _Shared)


async def shared_ctx(app: web.Application) -> AsyncIterator[None]:
    app[SHARED] = _Shared()
    yield


async def on_shutdown(app: web.Application) -> None:
    """Open streams end before the server waits for its handlers."""
    app[SHARED].stopping.set()


def event(name: str, html: str) -> bytes:
    """One SSE event carrying ``html``; each of its lines is a ``data:`` line."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n".encode()


def stream(render: Render) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler that streams what ``render`` returns each time it differs from the last."""

    async def handler(request: web.Request) -> web.StreamResponse:
        shared = request.app[SHARED]
        key = request.path_qs
        html = await render(request)  # a missing warning is a 404 before the stream opens
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        response.headers.update(SECURITY_HEADERS)  # sent before the middleware sees it
        await response.prepare(request)
        last = None
        quiet = checked = 0.0
        shared.watch(key)
        try:
            with contextlib.suppress(ConnectionResetError):
                while not shared.stopping.is_set():
                    if html != last:
                        await response.write(event("update", html))
                        last, quiet = html, 0.0
                    elif quiet >= KEEPALIVE_S:
                        await response.write(b": keepalive\n\n")
                        quiet = 0.0
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(shared.stopping.wait(), INTERVAL_S)
                    quiet += INTERVAL_S
                    checked += INTERVAL_S
                    if checked >= SESSION_CHECK_S:
                        checked = 0.0
                        if not await users.still_live(request.app[SERVICES], request[TOKEN]):
                            await response.write(event("signed-out", ""))
                            break
                    if not shared.stopping.is_set():
                        html = await shared.render(key, request, render)
        finally:
            shared.unwatch(key)
        return response

    return handler
