"""CAP 1.2 from feeds: ``POST /api/v1/cap`` (an earthquake early warning in it goes the early
warning's way)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from aiohttp import web

from warnd.app import eew, warnings
from warnd.app.services import Services
from warnd.app.views import EewAccepted, WarningAccepted
from warnd.ingest.eew import EewError
from warnd.ingest.store import Stored
from warnd.web.http import FEED, SERVICES, ApiError, BodyError, json_response, read_body

XML_TYPES: Final = frozenset({"application/xml", "text/xml", "application/cap+xml"})


async def post_cap(request: web.Request) -> web.Response:
    """Receive one CAP 1.2 message from an authenticated feed; an earthquake early warning
    in it is answered as ``POST /api/v1/eew/cap`` answers."""
    services, feed, body = await feed_body(request, XML_TYPES, cap_wanted(request))
    with eew_refusals():
        received = await eew.receive_any_cap(services, feed, body)
    if isinstance(received, EewAccepted):
        return eew_response(received)
    return accepted(services, received)


def cap_wanted(request: web.Request) -> str:
    """What a 415 says to a feed that did not send CAP XML."""
    return (
        f"Content-Type {request.content_type!r} is not CAP XML; "
        f"send one of {', '.join(sorted(XML_TYPES))}"
    )


async def feed_body(
    request: web.Request, types: frozenset[str], wanted: str
) -> tuple[Services, str, bytes]:
    """The services, the feed and the body of a feed's message; a body of another content type
    (415, ``wanted`` says what to send) or too large is refused and kept for the duty officer."""
    services = request.app[SERVICES]
    feed = request[FEED]
    if request.content_type not in types:
        unsupported = ApiError(415, "unsupported_media_type", wanted)
        await warnings.record_rejection(services, feed, unsupported.code, unsupported.detail, b"")
        raise unsupported
    try:
        body = await read_body(request, services.max_body_bytes)
    except BodyError as exc:
        await warnings.record_rejection(services, feed, exc.code, exc.detail, exc.head)
        raise
    return services, feed, body


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


@contextmanager
def eew_refusals() -> Iterator[None]:
    """An early-warning report's refusals as API errors; a failed hand-off is 503, so that the
    feed sends the report again."""
    try:
        yield
    except EewError as exc:
        raise ApiError(exc.http_status, exc.code, exc.detail) from None
    except eew.EewHandOffError as exc:
        raise ApiError(503, exc.code, str(exc), {"Retry-After": "0"}) from None


def eew_response(received: EewAccepted) -> web.Response:
    """202 for a new early-warning report, 200 for one received before."""
    return json_response(received, 202 if received.created else 200)
