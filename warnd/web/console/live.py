"""Live figures for the console over Server-Sent Events: the board's and a warning's live part,
rendered on the server and sent again whenever it changed, so the page never needs a refresh.

Each open page holds one stream; the figures are read every ``INTERVAL_S`` on the wall clock
(the cadence of a screen, not a time in the warning's life, so it is not warnd's clock). A
stream ends when the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import web

from warnd.web.console.guard import SECURITY_HEADERS

INTERVAL_S: Final = 2.0
KEEPALIVE_S: Final = 20.0  # a comment line keeps proxies from closing an idle stream

STOPPING: Final = web.AppKey("console_stopping", asyncio.Event)

Render = Callable[[web.Request], Awaitable[str]]


async def stopping_ctx(app: web.Application) -> AsyncIterator[None]:
    app[STOPPING] = asyncio.Event()
    yield


async def on_shutdown(app: web.Application) -> None:
    """Open streams end before the server waits for its handlers."""
    app[STOPPING].set()


def event(name: str, html: str) -> bytes:
    """One SSE event carrying ``html``; each of its lines is a ``data:`` line."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n".encode()


def stream(render: Render) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler that streams what ``render`` returns each time it differs from the last."""

    async def handler(request: web.Request) -> web.StreamResponse:
        html = await render(request)  # a missing warning is a 404 before the stream opens
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        response.headers.update(SECURITY_HEADERS)  # sent before the middleware sees it
        await response.prepare(request)
        stopping = request.app[STOPPING]
        last = None
        quiet = 0.0
        with contextlib.suppress(ConnectionResetError):
            while not stopping.is_set():
                if html != last:
                    await response.write(event("update", html))
                    last, quiet = html, 0.0
                elif quiet >= KEEPALIVE_S:
                    await response.write(b": keepalive\n\n")
                    quiet = 0.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), INTERVAL_S)
                quiet += INTERVAL_S
                if not stopping.is_set():
                    html = await render(request)
        return response

    return handler
