"""What HTTP gateways (SMS, voice notification) answer and how they are told apart: Retry-After,
the gateway's own reason for a refusal, the id it gave a message, a body read with a cap, and
the channel an inbound webhook's token belongs to. Shared by ``http_sms`` and ``http_voice``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import aiohttp
from pydantic import SecretStr

from channels.base import Channel

# How much of a gateway's error body a detail keeps: enough to read the reason, never a whole page.
DETAIL_CHARS: Final = 200
# The most of an answer read: a thousand batch results fit many times over, and a gateway gone
# wrong cannot make warnd buffer an endless body.
MAX_ANSWER_BYTES: Final = 1024 * 1024
_READ_CHUNK: Final = 64 * 1024


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), if readable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def gateway_reason(body: bytes) -> str:
    """The gateway's own words for a refusal: an ``error``/``detail``/``message`` field, or the
    start of the body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "detail", "message", "reason"):
            if isinstance(data.get(key), str | int) and str(data[key]).strip():
                text = str(data[key]).strip()
                break
    return text[:DETAIL_CHARS]


def message_id(value: object) -> str | None:
    """A gateway's message id as text, or None when it is missing or not an id at all."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip()):
        return str(value).strip()
    return None


async def read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The answer's body up to ``MAX_ANSWER_BYTES``, and whether that was all of it."""
    parts: list[bytes] = []
    size = 0
    async for part in response.content.iter_chunked(_READ_CHUNK):
        parts.append(part)
        size += len(part)
        if size > MAX_ANSWER_BYTES:
            return b"".join(parts)[:MAX_ANSWER_BYTES], False
    return b"".join(parts), True


def channels_for_token(channels: Mapping[str, Channel], token: str) -> list[Channel]:
    """The channels whose ``inbound_token`` is ``token`` (normally one; none when it is wrong).

    Every configured token is compared, each in constant time, so the answer's timing says
    nothing about how close a guess came.
    """
    found: list[Channel] = []
    # A header with bytes that are not UTF-8 arrives with them escaped: compare the raw bytes.
    offered = token.encode("utf-8", "surrogateescape")
    for channel in channels.values():
        expected = getattr(channel.config, "inbound_token", None)
        if not isinstance(expected, SecretStr) or not expected.get_secret_value():
            continue
        if hmac.compare_digest(offered, expected.get_secret_value().encode()):
            found.append(channel)
    return found
