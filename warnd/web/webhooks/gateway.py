"""What every gateway webhook does alike: learn the channel from the gateway's token, and apply
its events, stored before the answer and bounded.

A gateway authenticates with ``Authorization: Bearer <inbound_token>``, the ``inbound_token`` of
one configured channel; the token says which channel the events belong to, so that receipts and
call results are matched to that channel's deliveries only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import structlog
from aiohttp import web

from channels.base import Channel, ChannelKind, InboundEvent
from channels.http_gateway import channels_for_token
from warnd.web.http import SERVICES, ApiError, bearer
from warnd.web.middleware import unauthorised

log = structlog.get_logger(__name__)

RETRY_AFTER_S: Final = 1  # what a gateway waits before sending a batch again when warnd is busy


def gateway_channel(request: web.Request, kind: ChannelKind | None = None) -> Channel:
    """The channel whose ``inbound_token`` the request bears; 401 when there is none (or, with
    ``kind``, when it is of another kind), 500 when several channels share the token.

    Raises ApiError.
    """
    services = request.app[SERVICES]
    token = bearer(request)
    matches = channels_for_token(services.channels, token) if token else []
    if len(matches) > 1:
        # Reports could be matched against the wrong channel's deliveries: refuse, loudly, at
        # every webhook, even where only one of them is of the kind it takes.
        log.error("inbound_token_shared", channels=sorted(c.name for c in matches))
        raise ApiError(
            500,
            "misconfigured",
            "this inbound_token is configured for more than one channel; "
            "the operators must give each gateway its own token",
        )
    if not matches or (kind is not None and matches[0].kind != kind):
        log.warning("gateway_unauthorized", path=request.path, remote=request.remote)
        which = f"configured {kind.value} channel" if kind else "configured channel"
        raise unauthorised(
            f"send 'Authorization: Bearer <token>' with the inbound_token of a {which}"
            if token is None
            else f"the bearer token is not the inbound_token of any {which}"
        )
    return matches[0]


async def apply_events(
    request: web.Request, channel: Channel, events: Sequence[InboundEvent], what: str
) -> None:
    """Apply a webhook's events through the inbound stage and store them before returning, so
    that what a gateway is told was accepted survives any crash after it; or, in a process
    without that stage, hand them to the channel's listener.

    While warnd applies as many batches as it allows at once, the request is refused with 429
    and Retry-After (``what`` names the events in the detail) and nothing of it is kept: a flood
    is asked to come back later rather than queued in memory.

    Raises ApiError.
    """
    services = request.app[SERVICES]
    if services.inbound is None:
        for event in events:
            channel.emit(event)
        return
    if services.inbound_slots.locked():
        log.warning("inbound_busy", path=request.path, channel=channel.name, events=len(events))
        raise ApiError(
            429,
            "busy",
            f"warnd is applying other batches of {what}; send this one again",
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    async with services.inbound_slots:
        await services.inbound(channel.name, events)
