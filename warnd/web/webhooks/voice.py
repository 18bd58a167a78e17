"""The voice webhook: how the calls a voice-notification gateway placed ended, and the keys
pressed, POSTed back to warnd.

``POST /api/v1/inbound/voice`` with ``Authorization: Bearer <inbound_token>``. The token is the
``inbound_token`` of one configured voice channel (an ``http_voice`` channel, or any voice channel
whose config declares one) and says which channel the results belong to: they are matched to that
channel's deliveries by the gateway's call id. The body is one JSON object or a list of them (at
most ``channels.http_voice.webhook.MAX_EVENTS``)::

    {"call_id": "vc-123", "status": "answered", "keys": "1", "detail": "…"}

``status`` is answered, no_answer, busy, declined, failed or unreachable, or a common synonym of
one; ``keys`` and ``detail`` are optional, and only an answered call has keys. Unknown keys are
refused, so a misspelt field is an error, not silently lost.

The whole body is validated before anything is applied: one bad result refuses the request with
400 naming the index and field (``[2].status: …``), and nothing of it is kept, so the gateway can
fix and resend it whole. Valid results are applied by the inbound stage like those of any voice
channel — "1" acknowledges the call-out the call was made for (via voice), a call not answered
marks its delivery failed with the cause and leaves the call-out to escalation — and stored before
the answer, 202 with the count. While warnd applies a few batches already, a further one is
answered 429 with Retry-After, and nothing of it is kept.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from channels.base import ChannelKind
from channels.http_voice.webhook import InboundBodyError, parse_call_results
from warnd.web.http import SERVICES, ApiError, json_payload
from warnd.web.webhooks.gateway import apply_events, gateway_channel

log = structlog.get_logger(__name__)


async def post_inbound_voice(request: web.Request) -> web.Response:
    """Receive call results from a voice-notification gateway (see the module docstring)."""
    # Only a voice channel's token: a call id means nothing among another channel's deliveries.
    channel = gateway_channel(request, ChannelKind.VOICE)
    payload = await json_payload(request)
    try:
        results = parse_call_results(payload, request.app[SERVICES].clock.now())
    except InboundBodyError as exc:
        log.info("inbound_voice_rejected", channel=channel.name, detail=str(exc))
        raise ApiError(400, "invalid_inbound", str(exc)) from None
    await apply_events(request, channel, results, "call results")
    log.info("inbound_voice_received", channel=channel.name, events=len(results))
    return web.json_response({"accepted": len(results), "channel": channel.name}, status=202)
