"""The ``sip`` channel: a call per message, its outcome as a CallResult (see the package
docstring for the behaviour, the causes and the configuration)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from typing import Final

import structlog

from channels.base import (
    Channel,
    ChannelClock,
    ChannelKind,
    Limits,
    OutboundMessage,
    Outcome,
    Reason,
    SendResult,
    WallClock,
    expiry,
    refusal,
)
from channels.pacing import Pacer
from channels.sip.config import SipConfig
from channels.sip.engine import Engine, EngineStartError, NotPlaced
from channels.sip.protocol import CallRequest, WorkerSettings
from channels.tts import Speech, SpeechError

log = structlog.get_logger(__name__)

# How often "2" may start the prompt again in one call: enough for a callee who missed it, not
# an endless loop for a child playing with the keypad.
REPLAYS: Final = 5

_COUNTERS: Final = (
    "placed",
    "refused",
    "answered",
    "acknowledged",
    "no_key",
    "hung_up",
    "no_answer",
    "busy",
    "declined",
    "unreachable",
    "rejected",
    "failed",
    "lost",
    "stopped",
)


class SipChannel(Channel):
    """Calls people over a SIP trunk, says the text, and reports who pressed 1."""

    kind = ChannelKind.VOICE
    config_model = SipConfig
    config: SipConfig

    def __init__(self, name: str, config: SipConfig, *, clock: ChannelClock | None = None) -> None:
        """``clock`` paces calls and stamps results; the calls themselves run in real time."""
        super().__init__(name, config)
        self._clock: ChannelClock = clock if clock is not None else WallClock()
        self._pacer = Pacer(config.calls_per_s, self._clock)
        self.speech = Speech(config.tts, key=f"channels.{name}.tts")
        self._engine: Engine | None = None
        self._last: Engine | None = None  # kept after stop() for health()

    @property
    def limits(self) -> Limits:
        # Dispatch hands over one call at a time: ``send`` returns once the INVITE is on its
        # way, so max_calls calls still ring at once, and each call is recorded as soon as it is
        # placed. In batches, a call answered with "1" before the last of its batch was placed
        # would wait for that to be acknowledged (measured: key to acknowledgement p99 1.2 s
        # with batches of 40, 28 ms one at a time; benchmarks/README.md, Voice).
        return Limits(rate_per_s=self.config.calls_per_s, window=1, max_text=self.config.max_text)

    async def start(self) -> None:
        """Check the speech programs, start the engine workers (and register, if configured).

        Raises SpeechError or EngineStartError (both ChannelConfigError) naming what to fix.
        """
        if self._engine is not None:
            return
        if importlib.util.find_spec("pjsua2") is None:
            raise EngineStartError(
                "the SIP engine needs PJSIP's Python binding: pip install pjsua2-python"
            )
        self.speech.check()
        engine = Engine(
            self._worker_settings,
            self.config.capacities(),
            self.emit,
            self._clock,
            registering=bool(self.config.registrar),
        )
        await engine.start()
        self._pacer = Pacer(self.config.calls_per_s, self._clock)
        self._engine = self._last = engine
        log.info("sip_channel_started", channel=self.name, workers=len(engine.workers))

    async def stop(self) -> None:
        """Hang up every call in progress (each reported with the cause ``stopped``), end the
        workers, and stop speech renderings in progress."""
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.stop()
        await self.speech.close()

    async def prepare(self, texts: Sequence[str]) -> None:
        """Render the audio of ``texts`` now (when a warning is planned), so that no call waits
        for speech. Raises SpeechError."""
        await self.speech.prepare(texts)

    def _worker_settings(self, index: int, capacity: int) -> WorkerSettings:
        config = self.config
        rtp_port, rtp_range = config.rtp_slice(index)
        return WorkerSettings(
            index=index,
            max_calls=capacity,
            transport=config.transport,
            local_address=config.local_address,
            public_address=config.public_address,
            rtp_port=rtp_port,
            rtp_port_range=rtp_range,
            from_uri=config.from_uri(),
            proxy_uri=config.proxy_uri(),
            registrar_uri=config.registrar_uri(),
            username=config.username,
            password=config.password.get_secret_value() if config.password else "",
            register_expires=config.register_expires,
            dtmf_payload_type=config.dtmf_payload_type,
            dtmf_methods=config.dtmf_methods(),
            codecs=config.codecs,
            tls_ca_file=config.tls_ca_file,
            tls_verify=config.tls_verify,
            log_level=config.engine_log_level,
        )

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """Place a call per message, in order: ACCEPTED with the SIP Call-ID once the INVITE is
        on its way; the outcome follows as a CallResult. The batch waits up to
        ``max_queue_wait_s`` in all for free lines; what finds none by then goes back TRANSIENT
        unsent.

        Raises RuntimeError when the channel is not started.
        """
        if self._engine is None:
            raise RuntimeError(f"sip channel {self.name!r} is not started")
        # One budget for the whole batch, so that a batch never outlasts dispatch's lease.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.max_queue_wait_s
        return [await self._call(message, max(deadline - loop.time(), 0.0)) for message in batch]

    async def _call(self, message: OutboundMessage, wait: float) -> SendResult:
        # An earthquake alert past its use is not rung late.
        refused = refusal(message, self.config.max_text) or expiry(message, self._clock.now())
        if refused is not None:
            return refused
        dial = self.config.dial_string(message.address)
        if dial is None:
            return _failure(message, Outcome.PERMANENT, Reason.CLIENT, "not a phone number")
        try:
            audio = await self.speech.audio(message.text)
        except SpeechError as exc:
            return _failure(message, Outcome.TRANSIENT, Reason.SERVER, f"speech: {exc}")
        engine = self._engine
        if engine is None:  # stopped while the audio was being rendered
            return _failure(message, Outcome.TRANSIENT, Reason.UNREACHABLE, "channel stopped")
        await self._pacer.acquire()
        config = self.config
        placed = await engine.place(
            lambda ref: CallRequest(
                ref=ref,
                uri=config.target_uri(dial),
                wav=str(audio),
                ring_timeout=config.ring_timeout,
                plays=config.repeat_prompt,
                pause=config.repeat_pause,
                key_wait=config.key_wait,
                replays=REPLAYS,
            ),
            wait,
        )
        if isinstance(placed, NotPlaced):
            if placed.busy:
                reason = Reason.RATE_LIMITED
            elif placed.lost or placed.detail.startswith("no SIP engine"):
                reason = Reason.UNREACHABLE
            else:
                reason = Reason.SERVER
            return _failure(message, Outcome.TRANSIENT, reason, placed.detail)
        return SendResult(message.key, Outcome.ACCEPTED, external_id=placed.call_id)

    def health(self) -> dict[str, object]:
        """Trunk state and call counters for /readyz and /metrics.

        ``{"ready", "links": {"trunk": {"bound" (a worker is up and, with a registrar,
        registered), "in_flight" (calls in progress), "window", "rate_per_s",
        "configured_rate_per_s", "registered" (None without a registrar), "registration"
        (the last answer, "200 OK"), "workers", "workers_up", "restarts", "waiting" (calls
        waiting for a line), "placed", "refused", "answered", "acknowledged", "no_key",
        "hung_up", "no_answer", "busy", "declined", "unreachable", "rejected", "failed",
        "lost", "stopped", "last_error"}}}``; the counters count since start.
        """
        engine = self._engine if self._engine is not None else self._last
        running = self._engine is not None
        registered = engine.registered() if engine is not None else None
        bound = (
            running and engine is not None and engine.workers_up() > 0 and registered is not False
        )
        trunk: dict[str, object] = {
            "bound": bound,
            "in_flight": engine.in_progress if engine is not None else 0,
            "window": self.config.max_calls,
            "rate_per_s": round(self._pacer.rate, 3),
            "configured_rate_per_s": self.config.calls_per_s,
            "registered": registered,
            "registration": engine.registration_status() if engine is not None else "",
            "workers": len(self.config.capacities()),
            "workers_up": engine.workers_up() if running and engine is not None else 0,
            "restarts": engine.restarts() if engine is not None else 0,
            "waiting": engine.waiting if engine is not None else 0,
            "last_error": engine.last_error() if engine is not None else "",
        }
        for name in _COUNTERS:
            trunk[name] = engine.counts[name] if engine is not None else 0
        return {"ready": bound, "links": {"trunk": trunk}}

    def engine_pids(self) -> list[int]:
        """The process ids of the engine's workers (operations; the crash tests kill one)."""
        return self._engine.pids() if self._engine is not None else []


def _failure(message: OutboundMessage, outcome: Outcome, reason: Reason, detail: str) -> SendResult:
    return SendResult(message.key, outcome, reason=reason, detail=detail)
