"""The ``http_voice`` channel: call requests to a carrier's voice-notification API, and its answers
turned into one result per call (see the package docstring for the wire format and the table of
outcomes)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aiohttp
from pydantic import AnyHttpUrl, Field, SecretStr, TypeAdapter, ValidationError, field_validator

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
    MAX_ANSWER_BYTES,
    gateway_reason,
    message_id,
    read_capped,
    retry_after_seconds,
)
from channels.pacing import Pacer

CONFIRM_KEY: Final = "1"  # what warnd's acknowledgement reads (warnd.pipeline.answers)
AUDIO_FIELDS: Final = frozenset({"ref", "text_sha256"})

DETAIL_CHARS = 200  # of a gateway's error: enough to read the reason, never a whole page
_DEFAULT_PAUSE_S = 1.0  # after a 429 that names no Retry-After
_HTTP_URL: Final = TypeAdapter(AnyHttpUrl)


class HttpVoiceConfig(ChannelConfig):
    """Settings of an ``http_voice`` channel (see the package docstring for their meaning)."""

    url: AnyHttpUrl
    token: SecretStr
    caller: str = Field(default="", max_length=32, pattern=r"^(\+?[0-9]+)?$")
    audio_url: str = Field(default="", max_length=2000)
    # warnd's voice scripts end with the key prompt already (确认收到请按1，重听请按2); a gateway
    # that says a menu prompt of its own after the script would say it twice.
    menu_prompt: str = Field(default="", max_length=200)
    replay_key: str = Field(default="2", pattern=r"^[02-9*#]?$")
    ring_timeout: int = Field(default=45, ge=5, le=180)
    repeats: int = Field(default=2, ge=1, le=5)
    batch_size: int = Field(default=1, ge=1, le=1000)
    timeout: float = Field(default=10.0, gt=0)
    # Carriers sell notification calls by the call and cap their APIs far below SMS rates;
    # a few hundred responders still ring within a minute.
    rate_per_s: float = Field(default=10.0, gt=0)
    window: int = Field(default=20, ge=1)
    max_text: int = Field(default=500, ge=70)
    max_pause: float = Field(default=60.0, ge=0)
    # A short token could be guessed, and the webhook acknowledges call-outs with what it gets.
    inbound_token: SecretStr | None = Field(default=None, min_length=16)

    @field_validator("audio_url")
    @classmethod
    def _audio_template(cls, value: str) -> str:
        """A template naming only the fields the channel fills, that makes an http(s) URL.

        The messages never quote the value: config errors end up in logs.
        """
        if not value:
            return value
        try:
            fields = list(string.Formatter().parse(value))
        except ValueError:
            raise ValueError("unbalanced braces; write {{ and }} for literal ones") from None
        for _, name, spec, conversion in fields:
            if name is not None and (name not in AUDIO_FIELDS or spec or conversion):
                raise ValueError("may name only {ref} and {text_sha256}, without a format")
        try:
            _HTTP_URL.validate_python(value.format(ref="1", text_sha256="0" * 64))
        except ValidationError:
            raise ValueError("does not make an http or https URL") from None
        return value


class HttpVoiceChannel(Channel):
    """Places notification calls through a carrier's HTTP API; results come by webhook."""

    kind = ChannelKind.VOICE
    config_model = HttpVoiceConfig
    config: HttpVoiceConfig

    def __init__(
        self, name: str, config: HttpVoiceConfig, *, clock: ChannelClock | None = None
    ) -> None:
        """``clock`` paces requests and Retry-After pauses; tests pass one that does not wait."""
        super().__init__(name, config)
        self._clock: ChannelClock = clock if clock is not None else WallClock()
        self._session: aiohttp.ClientSession | None = None
        self._pacer = Pacer(config.rate_per_s, self._clock)
        self._requests_in_flight = max(1, config.window // config.batch_size)
        self._shared = self._shared_fields(config)

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
        """Ask for the calls in requests of ``batch_size``, at most ``window // batch_size`` at
        once; each accepted call's result comes later, by webhook.

        Raises RuntimeError when the channel is not started.
        """
        session = self._session
        if session is None:
            raise RuntimeError(f"http_voice channel {self.name!r} is not started")
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

    @staticmethod
    def _shared_fields(config: HttpVoiceConfig) -> dict[str, Any]:
        """What every call of the channel says alike: caller, key menu, ringing and repeats."""
        menu: dict[str, str] = {"confirm": CONFIRM_KEY}
        if config.menu_prompt:
            menu["prompt"] = config.menu_prompt
        if config.replay_key:
            menu["replay"] = config.replay_key
        shared: dict[str, Any] = {"caller": config.caller} if config.caller else {}
        shared |= {"menu": menu, "ring_timeout": config.ring_timeout, "repeats": config.repeats}
        return shared

    def _call(self, message: OutboundMessage) -> dict[str, str]:
        """The fields of one call: who, warnd's reference, and what to say."""
        call = {"to": message.address, "ref": str(message.key), "text": message.text}
        if self.config.audio_url:
            call["audio_url"] = self.config.audio_url.format(
                ref=message.key,
                text_sha256=hashlib.sha256(message.text.encode("utf-8")).hexdigest(),
            )
        return call

    def _payload(self, chunk: Sequence[OutboundMessage]) -> dict[str, Any]:
        if self.config.batch_size == 1:
            (message,) = chunk
            return {**self._call(message), **self._shared}
        return {"calls": [self._call(m) for m in chunk], **self._shared}

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
        """Results from a 2xx answer: a call id per call, or a permanent server failure."""
        try:
            data: object = json.loads(body)
        except ValueError:
            return _all(chunk, Outcome.PERMANENT, Reason.SERVER, "2xx answer is not JSON")
        if self.config.batch_size == 1:
            found = message_id(data.get("call_id")) if isinstance(data, dict) else None
            if found is None:
                return _all(chunk, Outcome.PERMANENT, Reason.SERVER, "2xx answer has no call_id")
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
    found = message_id(item.get("call_id"))
    if found is not None:
        return SendResult(message.key, Outcome.ACCEPTED, external_id=found)
    error = item.get("error")
    if isinstance(error, str) and error.strip():
        temporary = item.get("temporary") is True
        return SendResult(
            message.key,
            Outcome.TRANSIENT if temporary else Outcome.PERMANENT,
            reason=Reason.SERVER if temporary else Reason.CLIENT,
            detail=error.strip()[:DETAIL_CHARS],
        )
    return SendResult(
        message.key,
        Outcome.PERMANENT,
        reason=Reason.SERVER,
        detail="2xx result has neither call_id nor error",
    )


def _all(
    chunk: Sequence[OutboundMessage], outcome: Outcome, reason: Reason, detail: str
) -> list[SendResult]:
    return [SendResult(m.key, outcome, reason=reason, detail=detail) for m in chunk]
