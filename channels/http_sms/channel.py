"""The ``http_sms`` channel: requests to the gateway, and its answers turned into one result per
message (see the package docstring for the wire format and the table of outcomes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from pydantic import AnyHttpUrl, Field, SecretStr

from channels.base import (
    Channel,
    ChannelClock,
    ChannelConfig,
    ChannelKind,
    Limits,
    OutboundMessage,
    Outcome,
    Reason,
    SendResult,
    WallClock,
    refusal,
)
from channels.http_gateway import (
    DETAIL_CHARS,
    MAX_ANSWER_BYTES,
    gateway_reason,
    message_id,
    read_capped,
    retry_after_seconds,
)
from channels.pacing import Pacer

# The pause after a 429 that names no Retry-After.
_DEFAULT_PAUSE_S = 1.0


class HttpSmsConfig(ChannelConfig):
    """Settings of an ``http_sms`` channel (see the package docstring for their meaning)."""

    url: AnyHttpUrl
    token: SecretStr
    sender_id: str = ""
    batch_size: int = Field(default=1, ge=1, le=1000)
    timeout: float = Field(default=10.0, gt=0)
    max_text: int = Field(default=670, ge=70)
    max_pause: float = Field(default=60.0, ge=0)
    # A short token could be guessed, and the webhook acknowledges call-outs with what it gets.
    inbound_token: SecretStr | None = Field(default=None, min_length=16)


class HttpSmsChannel(Channel):
    """Sends SMS through a generic HTTP gateway; receipts and replies come by webhook."""

    kind = ChannelKind.SMS
    config_model = HttpSmsConfig
    config: HttpSmsConfig

    def __init__(
        self, name: str, config: HttpSmsConfig, *, clock: ChannelClock | None = None
    ) -> None:
        """``clock`` paces requests and Retry-After pauses; tests pass one that does not wait."""
        super().__init__(name, config)
        self._clock: ChannelClock = clock if clock is not None else WallClock()
        self._session: aiohttp.ClientSession | None = None
        self._pacer = Pacer(config.rate_per_s, self._clock)
        self._requests_in_flight = max(1, config.window // config.batch_size)

    @property
    def limits(self) -> Limits:
        return Limits(
            rate_per_s=self.config.rate_per_s,
            window=self.config.window,
            max_text=self.config.max_text,
        )

    async def start(self) -> None:
        """Open the HTTP session; a second call does nothing."""
        if self._session is not None:
            return
        self._pacer = Pacer(self.config.rate_per_s, self._clock)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._requests_in_flight),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            headers={
                "Authorization": f"Bearer {self.config.token.get_secret_value()}",
                "Accept": "application/json",
            },
            raise_for_status=False,
        )

    async def stop(self) -> None:
        """Close the session; requests still in flight are abandoned (dispatch re-queues them)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send the batch in requests of ``batch_size``, at most ``window // batch_size`` at once.

        Raises RuntimeError when the channel is not started.
        """
        session = self._session
        if session is None:
            raise RuntimeError(f"http_sms channel {self.name!r} is not started")
        results: list[SendResult] = []
        sendable: list[OutboundMessage] = []
        for message in batch:
            refused = refusal(message, self.config.max_text)
            if refused is None:
                sendable.append(message)
            else:
                results.append(refused)
        size = self.config.batch_size
        chunks = [sendable[i : i + size] for i in range(0, len(sendable), size)]
        if not chunks:
            return results
        slots = asyncio.Semaphore(self._requests_in_flight)

        async def one(chunk: list[OutboundMessage]) -> list[SendResult]:
            async with slots:
                await self._pacer.acquire(len(chunk))
                return await self._request(session, chunk)

        # A TaskGroup so that cancelling send() cancels every request it started.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(chunk)) for chunk in chunks]
        for task in tasks:
            results.extend(task.result())
        return results

    def _payload(self, chunk: Sequence[OutboundMessage]) -> dict[str, Any]:
        source = {"from": self.config.sender_id} if self.config.sender_id else {}
        if self.config.batch_size == 1:
            (message,) = chunk
            return {"to": message.address, "text": message.text, "ref": str(message.key), **source}
        messages = [{"to": m.address, "text": m.text, "ref": str(m.key)} for m in chunk]
        return {"messages": messages, **source}

    async def _request(
        self, session: aiohttp.ClientSession, chunk: Sequence[OutboundMessage]
    ) -> list[SendResult]:
        """One HTTP request for ``chunk``; every failure becomes a result, never an exception."""
        try:
            # Redirects are not followed: the token must go to the configured URL and nowhere else.
            async with session.post(
                str(self.config.url), json=self._payload(chunk), allow_redirects=False
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body, whole = await read_capped(response)
        except TimeoutError:
            return _all(chunk, Outcome.TRANSIENT, Reason.TIMEOUT, "no answer within timeout")
        except aiohttp.ClientConnectionError as exc:
            # Includes refused and reset connections and DNS failures; the URL is config, not a
            # secret, but the exception's words suffice to tell which.
            return _all(chunk, Outcome.TRANSIENT, Reason.UNREACHABLE, type(exc).__name__)
        except aiohttp.ClientError as exc:
            return _all(chunk, Outcome.TRANSIENT, Reason.SERVER, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            if not whole:
                detail = f"2xx answer is larger than {MAX_ANSWER_BYTES} bytes"
                return _all(chunk, Outcome.PERMANENT, Reason.SERVER, detail)
            return self._accepted(chunk, body)
        return self._refused(chunk, status, body, retry_after)

    def _refused(
        self, chunk: Sequence[OutboundMessage], status: int, body: bytes, retry_after: str | None
    ) -> list[SendResult]:
        reason = gateway_reason(body)
        said = f"HTTP {status}" + (f": {reason}" if reason else "")
        pause = retry_after_seconds(retry_after, self._clock.now())
        if status == 429 or (status == 503 and pause is not None):
            seconds = min(pause if pause is not None else _DEFAULT_PAUSE_S, self.config.max_pause)
            self._pacer.hold(seconds)
            kind = Reason.RATE_LIMITED if status == 429 else Reason.SERVER
            return _all(chunk, Outcome.TRANSIENT, kind, f"{said}; pausing {seconds:g} s")
        if status >= 500:
            return _all(chunk, Outcome.TRANSIENT, Reason.SERVER, said)
        if status == 408:
            return _all(chunk, Outcome.TRANSIENT, Reason.TIMEOUT, said)
        if status in (401, 403):
            return _all(chunk, Outcome.PERMANENT, Reason.AUTH, said)
        if 400 <= status < 500:
            return _all(chunk, Outcome.PERMANENT, Reason.CLIENT, said)
        # 1xx or 3xx as a final answer: the gateway is not behaving as documented.
        return _all(chunk, Outcome.PERMANENT, Reason.SERVER, f"unexpected {said}")

    def _accepted(self, chunk: Sequence[OutboundMessage], body: bytes) -> list[SendResult]:
        """Results from a 2xx answer: an id per message, or a permanent server failure."""
        try:
            data: object = json.loads(body)
        except ValueError:
            return _all(chunk, Outcome.PERMANENT, Reason.SERVER, "2xx answer is not JSON")
        if self.config.batch_size == 1:
            found = message_id(data.get("message_id")) if isinstance(data, dict) else None
            if found is None:
                return _all(chunk, Outcome.PERMANENT, Reason.SERVER, "2xx answer has no message_id")
            return [SendResult(chunk[0].key, Outcome.ACCEPTED, external_id=found)]
        items = data.get("results") if isinstance(data, dict) else None
        by_ref: dict[str, Mapping[str, object]] = {}
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("ref"), str | int):
                    by_ref.setdefault(str(item["ref"]), item)
        return [_batch_result(message, by_ref.get(str(message.key))) for message in chunk]


def _batch_result(message: OutboundMessage, item: Mapping[str, object] | None) -> SendResult:
    if item is None:
        return SendResult(
            message.key, Outcome.PERMANENT, reason=Reason.SERVER, detail="2xx answer has no result"
        )
    found = message_id(item.get("message_id"))
    if found is not None:
        return SendResult(message.key, Outcome.ACCEPTED, external_id=found)
    error = item.get("error")
    if isinstance(error, str) and error.strip():
        if item.get("temporary") is True:
            return SendResult(
                message.key, Outcome.TRANSIENT, reason=Reason.SERVER, detail=error[:DETAIL_CHARS]
            )
        return SendResult(
            message.key, Outcome.PERMANENT, reason=Reason.CLIENT, detail=error[:DETAIL_CHARS]
        )
    return SendResult(
        message.key,
        Outcome.PERMANENT,
        reason=Reason.SERVER,
        detail="2xx result has neither message_id nor error",
    )


def _all(
    chunk: Sequence[OutboundMessage], outcome: Outcome, reason: Reason, detail: str
) -> list[SendResult]:
    return [SendResult(m.key, outcome, reason=reason, detail=detail) for m in chunk]
