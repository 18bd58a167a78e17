"""The ``simulator`` channel: simulated phones and loudspeakers for the demo, drills and tests.

It accepts messages like a gateway, then plays back what a population of phones (SMS), callees
(voice) or village loudspeakers (broadcast) would report: delivery receipts, replies such as
"1" or "收到", calls answered with a key press, devices that did or did not play. Nothing leaves
the process. Every external id starts with ``sim-``, every receipt and device confirmation says
``detail="simulated"``, every call result's cause starts with ``simulated``, and every reply is
addressed ``to="simulator"``, so simulated traffic can never be mistaken for a real answer.

Configuration (``[channels.<name>]``, ``type = "simulator"``) and defaults::

    kind = "sms"                       # "sms" | "voice" | "broadcast"
    rate_per_s = 100.0
    window = 100
    max_text = 0                       # 0: by kind (sms 670 = 10 parts, voice 500, broadcast 1000)
    seed = 0                           # same seed, same sends -> same outcomes and events
    time_scale = 1.0                   # multiplies every delay; 0.01 runs a drill 100x faster
    send_delay_s = [0.0, 0.0]          # simulated gateway round trip per batch
    permanent_failure_prefixes = []    # e.g. ["+8617000"]: permanent failure, reason client
    transient_failure_rate = 0.0       # share of sends failing transiently, reason server
    deliver_probability = 0.97         # sms: receipt DELIVERED, otherwise UNDELIVERABLE
    receipt_delay_s = [1.0, 5.0]       # sms receipt; broadcast device confirmation
    reply_probability = 0.8            # sms: a delivered message is answered
    reply_delay_s = [10.0, 120.0]      # sms: after delivery
    reply_texts = ["1", "收到", "确认", "收到，马上转移群众"]
    answer_probability = 0.8           # voice: the call is answered
    answer_delay_s = [5.0, 40.0]       # voice: until the call ends (unanswered: the maximum)
    press_one_probability = 0.9        # voice: an answered callee presses 1
    play_probability = 0.95            # broadcast: the speaker confirms it played
    late_delay_s = [600.0, 900.0]      # "late" responders answer after this
    behaviours = {}                    # address -> "normal" | "fast" | "late" | "never" | "fail"

Behaviours script single addresses for tests and the demo: ``fast`` is delivered as early as
``receipt_delay_s`` allows and answers at once; ``late`` is delivered and answers after
``late_delay_s``;
``never`` is delivered but never replies (voice: rings out unanswered; broadcast: the speaker stays
silent and sends no confirmation at all); ``fail`` fails permanently like a failure prefix.
Scripted addresses never fail transiently.

Every decision about a message comes from a keyed hash of (seed, key, address, attempt), not
from one shared random stream, so outcomes do not depend on how dispatch batches or interleaves
sends; the attempt count (kept only for keys whose last send failed transiently) makes a retry a
fresh draw.

Delays run on the clock given to the constructor (real time by default; warnd's clocks fit) and
are multiplied by ``time_scale``; ``time_scale = 0`` plays every event back at once.

Pending events live in one time-ordered heap released by one owned task, not one task per
message, because a city-wide drill can leave hundreds of thousands of replies pending. ``stop()``
drops them: the simulated phones fall silent with the daemon.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, NonNegativeFloat

from channels.base import (
    CallResult,
    Channel,
    ChannelClock,
    ChannelConfig,
    ChannelKind,
    DeliveryReceipt,
    DeviceConfirmation,
    InboundEvent,
    Limits,
    OutboundMessage,
    Outcome,
    Reason,
    ReceiptStatus,
    Reply,
    SendResult,
    WallClock,
    expiry,
)

SIMULATED = "simulated"

Behaviour = Literal["normal", "fast", "late", "never", "fail"]


def _ordered(bounds: tuple[float, float]) -> tuple[float, float]:
    if bounds[0] > bounds[1]:
        raise ValueError("the first value (minimum) must not exceed the second (maximum)")
    return bounds


# A (minimum, maximum) delay in simulated seconds; TOML writes it as a two-element array.
DelayRange = Annotated[tuple[NonNegativeFloat, NonNegativeFloat], AfterValidator(_ordered)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]

_DEFAULT_MAX_TEXT = {
    ChannelKind.SMS: 670,  # 10 concatenated UCS-2 parts of 67 characters
    ChannelKind.VOICE: 500,  # about two minutes of synthesised speech
    ChannelKind.BROADCAST: 1000,
}

# Yield to the event loop this often while deciding a large batch, so that sending ten thousand
# simulated messages never holds the loop for more than a few milliseconds.
_YIELD_EVERY = 256

_UNIT = 2.0**-53  # turns a 53-bit integer into a float in [0, 1), as random.random() does


class SimulatorConfig(ChannelConfig):
    """Settings of a ``simulator`` channel (see the module docstring for their meaning)."""

    kind: Literal["sms", "voice", "broadcast"] = "sms"
    max_text: int = Field(default=0, ge=0)
    seed: int = 0
    time_scale: float = Field(default=1.0, ge=0.0)
    send_delay_s: DelayRange = (0.0, 0.0)
    permanent_failure_prefixes: tuple[str, ...] = ()
    transient_failure_rate: Probability = 0.0
    deliver_probability: Probability = 0.97
    receipt_delay_s: DelayRange = (1.0, 5.0)
    reply_probability: Probability = 0.8
    reply_delay_s: DelayRange = (10.0, 120.0)
    reply_texts: tuple[str, ...] = Field(
        default=("1", "收到", "确认", "收到，马上转移群众"), min_length=1
    )
    answer_probability: Probability = 0.8
    answer_delay_s: DelayRange = (5.0, 40.0)
    press_one_probability: Probability = 0.9
    play_probability: Probability = 0.95
    late_delay_s: DelayRange = (600.0, 900.0)
    behaviours: dict[str, Behaviour] = Field(default_factory=dict)


@dataclass(frozen=True)
class _Fate:
    """Every random draw one message needs, taken up front in a fixed order.

    Drawing all of them whatever the kind keeps one setting from shifting another's outcomes:
    raising ``reply_probability`` does not change which messages are delivered.
    """

    transient: float
    delivered: float
    receipt_delay: float
    responds: float
    response_delay: float
    presses_one: float
    reply_text: float

    @classmethod
    def draw(cls, identity: str) -> _Fate:
        """The fate of the message ``identity`` names; the same identity always draws the same.

        A keyed hash rather than a seeded ``random.Random`` per message: seeding a Mersenne
        Twister costs more than everything else a simulated send does.
        """
        digest = hashlib.blake2b(identity.encode(), digest_size=56).digest()
        return cls(*((word >> 11) * _UNIT for word in struct.unpack(">7Q", digest)))


def _within(bounds: tuple[float, float], draw: float) -> float:
    low, high = bounds
    return low + (high - low) * draw


class SimulatorChannel(Channel):
    """Accepts messages and plays back simulated receipts, replies, calls and confirmations."""

    kind = ChannelKind.SMS
    config_model = SimulatorConfig
    simulated = True
    config: SimulatorConfig

    def __init__(
        self, name: str, config: SimulatorConfig, *, clock: ChannelClock | None = None
    ) -> None:
        """``clock`` drives every delay and timestamp; tests pass one whose sleep does not wait."""
        super().__init__(name, config)
        self.kind = ChannelKind(config.kind)
        self._clock: ChannelClock = clock if clock is not None else WallClock()
        self._max_text = config.max_text or _DEFAULT_MAX_TEXT[self.kind]
        # Simulation, not security: a seeded, reproducible generator is the point (S311).
        self._latency = random.Random(f"{config.seed}:latency")  # noqa: S311 - timing only
        self._attempts: dict[int, int] = {}  # only keys whose last send failed transiently
        # (due, sequence, event): a heap ordered by due time, ties in scheduling order. The
        # event's ``at`` is its due time, the moment the simulated phone "acts".
        self._timeline: list[tuple[datetime, int, InboundEvent]] = []
        self._seq = 0
        self._releaser: asyncio.Task[None] | None = None
        self._nap: asyncio.Future[None] | None = None

    @property
    def limits(self) -> Limits:
        return Limits(
            rate_per_s=self.config.rate_per_s, window=self.config.window, max_text=self._max_text
        )

    @property
    def pending_events(self) -> int:
        """How many simulated events are scheduled and not yet emitted."""
        return len(self._timeline)

    async def start(self) -> None:
        """Start releasing scheduled events; a second call does nothing."""
        if self._releaser is None:
            self._releaser = asyncio.create_task(
                self._release(), name=f"warnd-simulator-{self.name}"
            )

    async def stop(self) -> None:
        """Stop and drop every pending event; the releasing task is cancelled and awaited."""
        releaser, self._releaser = self._releaser, None
        self._timeline.clear()
        self._attempts.clear()
        if releaser is None:
            return
        releaser.cancel()
        await asyncio.wait((releaser,))
        nap, self._nap = self._nap, None
        if nap is not None:
            nap.cancel()
            await asyncio.wait((nap,))
        if not releaser.cancelled() and releaser.exception() is not None:
            raise RuntimeError(f"simulator {self.name!r} failed") from releaser.exception()

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """Decide each message's fate; ACCEPTED ones get an id ``sim-<channel>-<key>-<attempt>``.

        Raises RuntimeError when the channel is not started or its event task has failed.
        """
        self._check_running()
        low, high = self.config.send_delay_s
        if high > 0:
            delay = _within((low, high), self._latency.random()) * self.config.time_scale
            await self._clock.sleep(delay)
            self._check_running()  # stop() may have come while the batch was "on the wire"
        results: list[SendResult] = []
        now = self._clock.now()
        for index, message in enumerate(batch):
            if index and index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
                self._check_running()  # a stop() meanwhile must not leave stale events behind
                now = self._clock.now()
            results.append(self._decide(message, now))
        return results

    def _check_running(self) -> None:
        releaser = self._releaser
        if releaser is None:
            raise RuntimeError(f"simulator {self.name!r} is not started")
        if releaser.done():
            # The releasing loop only ends early on a bug or a broken injected clock.
            raise RuntimeError(f"simulator {self.name!r} stopped releasing events; see stop()")

    def _behaviour(self, address: str) -> Behaviour:
        behaviour = self.config.behaviours.get(address, "normal")
        if behaviour == "normal" and address.startswith(self.config.permanent_failure_prefixes):
            return "fail"
        return behaviour

    def _decide(self, message: OutboundMessage, now: datetime) -> SendResult:
        key = message.key
        if not message.address.strip():
            return SendResult(key, Outcome.PERMANENT, reason=Reason.CLIENT, detail="empty address")
        if len(message.text) > self._max_text:
            return SendResult(
                key,
                Outcome.PERMANENT,
                reason=Reason.CLIENT,
                detail=f"text of {len(message.text)} characters; "
                f"this channel carries at most {self._max_text}",
            )
        late = expiry(message, now)
        if late is not None:
            return late
        behaviour = self._behaviour(message.address)
        if behaviour == "fail":
            self._attempts.pop(key, None)
            return SendResult(
                key, Outcome.PERMANENT, reason=Reason.CLIENT, detail="simulated permanent failure"
            )
        attempt = self._attempts.get(key, 0)
        fate = _Fate.draw(f"{self.config.seed}:{key}:{message.address}:{attempt}")
        if behaviour == "normal" and fate.transient < self.config.transient_failure_rate:
            self._attempts[key] = attempt + 1
            return SendResult(
                key, Outcome.TRANSIENT, reason=Reason.SERVER, detail="simulated gateway error"
            )
        self._attempts.pop(key, None)
        external_id = f"sim-{self.name}-{key}-{attempt}"
        self._schedule_outcome(message.address, external_id, behaviour, fate, now)
        return SendResult(key, Outcome.ACCEPTED, external_id=external_id, detail=SIMULATED)

    def _schedule_outcome(
        self, address: str, external_id: str, behaviour: Behaviour, fate: _Fate, now: datetime
    ) -> None:
        """Put what the simulated phone or speaker will report on the timeline."""
        config = self.config
        scale = config.time_scale

        def after(delay_s: float) -> datetime:
            return now + timedelta(seconds=delay_s * scale)

        scripted = behaviour != "normal"
        if behaviour == "fast":
            response_bounds = (0.0, 0.0)  # answers the moment it can
        elif behaviour == "late":
            response_bounds = config.late_delay_s
        else:
            response_bounds = {
                ChannelKind.SMS: config.reply_delay_s,
                ChannelKind.VOICE: config.answer_delay_s,
                ChannelKind.BROADCAST: config.receipt_delay_s,
            }[self.kind]
        response_delay = _within(response_bounds, fate.response_delay)
        if self.kind is ChannelKind.SMS:
            delivered = scripted or fate.delivered < config.deliver_probability
            earliest_receipt = config.receipt_delay_s[0]
            receipt_delay = (
                earliest_receipt
                if behaviour == "fast"
                else _within(config.receipt_delay_s, fate.receipt_delay)
            )
            status = ReceiptStatus.DELIVERED if delivered else ReceiptStatus.UNDELIVERABLE
            self._schedule(
                DeliveryReceipt(external_id, status, at=after(receipt_delay), detail=SIMULATED)
            )
            replies = behaviour in ("fast", "late") or (
                not scripted and delivered and fate.responds < config.reply_probability
            )
            if replies:
                texts = config.reply_texts
                text = texts[min(int(fate.reply_text * len(texts)), len(texts) - 1)]
                reply_at = after(receipt_delay + response_delay)
                self._schedule(Reply(address, text, to="simulator", at=reply_at))
        elif self.kind is ChannelKind.VOICE:
            answered = behaviour in ("fast", "late") or (
                not scripted and fate.responds < config.answer_probability
            )
            if answered:
                pressed = scripted or fate.presses_one < config.press_one_probability
                result = CallResult(
                    external_id,
                    answered=True,
                    keys="1" if pressed else "",
                    cause=f"{SIMULATED}: normal clearing",
                    at=after(response_delay),
                )
            else:  # rings out for the longest a callee could take to answer
                result = CallResult(
                    external_id,
                    answered=False,
                    cause=f"{SIMULATED}: no answer",
                    at=after(config.answer_delay_s[1]),
                )
            self._schedule(result)
        elif behaviour != "never":  # broadcast; a "never" speaker stays silent
            played = scripted or fate.responds < config.play_probability
            confirmation = DeviceConfirmation(
                external_id, played=played, detail=SIMULATED, at=after(response_delay)
            )
            self._schedule(confirmation)

    def _schedule(self, event: InboundEvent) -> None:
        """Emit ``event`` once the clock reaches its ``at``."""
        self._seq += 1
        heapq.heappush(self._timeline, (event.at, self._seq, event))
        if self._timeline[0][2] is event and self._nap is not None:
            self._nap.cancel()  # the releaser sleeps towards a later event: wake it to re-aim

    async def _release(self) -> None:
        """Emit events as they fall due: the one task that owns every pending simulated event."""
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock.now()
            while self._timeline and self._timeline[0][0] <= now:
                self.emit(heapq.heappop(self._timeline)[2])
            if self._timeline:
                wait = (self._timeline[0][0] - now).total_seconds()
                self._nap = asyncio.ensure_future(self._clock.sleep(wait))
            else:
                self._nap = loop.create_future()  # only a new event wakes an empty timeline
            try:
                # asyncio.wait returns when the nap ends or is cancelled by _schedule, and it
                # raises CancelledError only when this task itself is cancelled (by stop()).
                await asyncio.wait((self._nap,))
            finally:
                self._nap.cancel()
