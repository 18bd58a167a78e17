"""The SMS webhook: replies and delivery receipts that HTTP SMS gateways POST back to warnd.

``POST /api/v1/inbound/sms`` with ``Authorization: Bearer <inbound_token>``. The token is the
``inbound_token`` of one configured channel (an ``http_sms`` channel, or any channel whose config
declares one) and says which channel the events belong to: receipts are matched to that channel's
deliveries by the gateway's message id. The body is one JSON object or a list of them (at most
``channels.http_sms.webhook.MAX_EVENTS``)::

    {"from": "+8613900000004", "to": "12379", "text": "1"}                a reply (SMS MO)
    {"message_id": "gw-123", "status": "delivered", "detail": "…"}        a delivery receipt

``to`` and ``detail`` are optional. A receipt's status is delivered, undeliverable, expired or
rejected, or a common synonym of one (SMPP's DELIVRD, UNDELIV, REJECTD, DELETED; failed;
case does not matter). Unknown keys are refused, so a misspelt field is an error, not silently
lost.

The whole body is validated before anything is applied: one bad event refuses the request with
400 naming the index and field (``[2].status: …``), and nothing of it is kept, so the gateway can
fix and resend it whole. Valid events are applied by the inbound stage like events of any channel
(receipts mark deliveries, replies acknowledge call-outs) and stored before the answer, 202 with
the count: a gateway told 202 never has to send them again. While warnd applies a few batches
already, a further one is answered 429 with Retry-After, and nothing of it is kept.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from channels.base import ChannelKind
from channels.http_sms.webhook import InboundBodyError, parse_inbound
from warnd.web.http import SERVICES, ApiError, json_payload
from warnd.web.webhooks.gateway import apply_events, gateway_channel

log = structlog.get_logger(__name__)


async def post_inbound_sms(request: web.Request) -> web.Response:
    """Receive replies and receipts from an HTTP SMS gateway (see the module docstring)."""
    channel = gateway_channel(request, ChannelKind.SMS)
    payload = await json_payload(request)
    try:
        events = parse_inbound(payload, request.app[SERVICES].clock.now())
    except InboundBodyError as exc:
        log.info("inbound_sms_rejected", channel=channel.name, detail=str(exc))
        raise ApiError(400, "invalid_inbound", str(exc)) from None
    await apply_events(request, channel, events, "replies and receipts")
    log.info("inbound_sms_received", channel=channel.name, events=len(events))
    return web.json_response({"accepted": len(events), "channel": channel.name}, status=202)
