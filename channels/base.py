"""The channel plugin contract: what every SMS, voice or broadcast channel offers warnd.

A channel only knows how to send a batch of texts to addresses and how to report what came back.
It knows nothing of warnings, rosters or policy. Failures are classified once, here, by the
channel (transient or permanent, with a reason); dispatch alone retries and fails over.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Final, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class ChannelKind(StrEnum):
    SMS = "sms"
    VOICE = "voice"
    BROADCAST = "broadcast"
    OTHER = "other"


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the gateway took it; a receipt may follow
    TRANSIENT = "transient"  # try again later
    PERMANENT = "permanent"  # this channel will never deliver it; fail over


class Reason(StrEnum):
    """Why a send failed; feeds metrics and the delivery's error column."""

    CLIENT = "client"  # the request was wrong (bad address, text too long)
    SERVER = "server"  # the gateway failed
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # the gateway or device could not be reached
    EXPIRED = "expired"  # too late to be of use (an earthquake alert after the shaking): dropped


@dataclass(frozen=True)
class Limits:
    rate_per_s: float  # messages per second this channel may be given
    window: int  # messages in flight at once
    max_text: int  # characters one message may carry (a voice script, an SMS of several parts)
    # The channel keeps its window itself and holds what is beyond it in order (SMPP's lanes):
    # dispatch then hands it shares of a window as soon as earlier ones are recorded, from
    # batches claimed ahead, so the window never waits for a claim. False: one batch of at most
    # ``window`` at a time.
    queues: bool = False


@dataclass(frozen=True)
class WarningContext:
    """What a channel may need to know of the warning a message is about: a loudspeaker cuts
    into what it plays for red and earthquake, drops a command past the warning's expiry, and
    marks an exercise as one. Shared by every message of the warning in a batch."""

    warning_id: int
    hazard: str  # warnd's hazard name: rainstorm, earthquake, flood …
    level: str  # blue | yellow | orange | red
    exercise: bool  # a drill (CAP status Exercise): never to be taken for a real warning
    expires_at: datetime | None = None
    # Alert, Update or Cancel: a Cancel's notices lift a warning, they never cut in as one.
    msg_type: str = "Alert"


@dataclass(frozen=True)
class OutboundMessage:
    """One text to one address; ``key`` is the delivery id warnd tracks it by. ``priority`` is
    dispatch's order (lower goes first); ``warning`` is set for messages warnd dispatches."""

    key: int
    address: str
    text: str
    priority: int = 0
    warning: WarningContext | None = None
    # Past this time the message is of no use (an earthquake alert after the shaking): a channel
    # that holds messages drops it as EXPIRED instead of sending it late.
    expires_at: datetime | None = None


@dataclass(frozen=True)
class SendResult:
    key: int
    outcome: Outcome
    external_id: str | None = None
    reason: Reason | None = None
    detail: str = ""
    parts: int | None = None  # the SMS segments an accepted text took, when the channel counts them


def expiry(message: OutboundMessage, now: datetime) -> SendResult | None:
    """PERMANENT ``expired`` for a message whose time has passed, or None: checked by a channel
    just before a message goes on the wire."""
    if message.expires_at is None or now < message.expires_at:
        return None
    late = (now - message.expires_at).total_seconds()
    return SendResult(
        message.key,
        Outcome.PERMANENT,
        reason=Reason.EXPIRED,
        detail=f"expired {late:.1f} s before it could be sent; not sent late",
    )


def refusal(message: OutboundMessage, max_text: int) -> SendResult | None:
    """A permanent refusal for a message no gateway could carry (no address, a text longer than
    the channel carries), or None: checked before sending, so it costs the gateway nothing."""
    if not message.address.strip():
        return SendResult(
            message.key, Outcome.PERMANENT, reason=Reason.CLIENT, detail="empty address"
        )
    if len(message.text) > max_text:
        return SendResult(
            message.key,
            Outcome.PERMANENT,
            reason=Reason.CLIENT,
            detail=f"text of {len(message.text)} characters; "
            f"this channel carries at most {max_text}",
        )
    return None


class ReceiptStatus(StrEnum):
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DeliveryReceipt:
    """The network says what became of a message it accepted."""

    external_id: str
    status: ReceiptStatus
    at: datetime = field(default_factory=_now)
    detail: str = ""


@dataclass(frozen=True)
class Reply:
    """A text a phone sent back (SMS MO)."""

    sender: str
    text: str
    to: str = ""
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class CallResult:
    """How an outbound call ended: answered or not, which keys were pressed."""

    external_id: str
    answered: bool
    keys: str = ""
    cause: str = ""
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class DeviceConfirmation:
    """A loudspeaker or other device says it played (or failed to play) a message."""

    external_id: str
    played: bool
    detail: str = ""
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class DeviceStatus:
    """A device (a loudspeaker) reports its state: online or offline (the broker's Last Will
    says offline for it), or a heartbeat with its readings. ``heartbeat`` is true for a periodic
    report, false for a change of state. Readings a device does not report are None."""

    device_id: str
    online: bool
    heartbeat: bool = False
    power: str | None = None  # "mains" | "battery" | "solar" …, as the device says
    battery: int | None = None  # percent
    volume: int | None = None  # percent
    detail: str = ""
    at: datetime = field(default_factory=_now)


InboundEvent = DeliveryReceipt | Reply | CallResult | DeviceConfirmation | DeviceStatus


class ChannelClock(Protocol):
    """Time as a channel sees it; warnd's clocks (``warnd.core.clock``) fit this shape unchanged.

    Channels take it as a constructor keyword so that tests can stamp events with a fixed time and
    run simulated delays without waiting; channels cannot import ``warnd``, hence this protocol.
    """

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    """The real clock: aware UTC time and real sleeps (the default for every channel)."""

    def now(self) -> datetime:
        return _now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ChannelConfig(BaseModel):
    """Settings every channel has; plugins subclass it (secrets as ``SecretStr``).

    Every secret may instead be read from a file: ``password_file = "/etc/warnd/smsc.secret"``
    for ``password``, so that the config file itself holds no secret (absolute paths only: a
    plugin does not know where the config file lives).
    """

    model_config = ConfigDict(extra="forbid")

    type: str
    rate_per_s: float = Field(default=100.0, gt=0)
    window: int = Field(default=100, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        result = dict(data)
        for name, info in cls.model_fields.items():
            key = f"{name}_file"
            if key not in data or SecretStr not in (info.annotation, *get_args(info.annotation)):
                continue
            if name in data:
                raise ValueError(f"give {name} or {key}, not both")
            path = data[key]
            if not isinstance(path, str) or not Path(path).is_absolute():
                raise ValueError(f"{key}: give an absolute path, as a string")
            try:
                result[name] = Path(path).read_text("utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{key}: {path!r} cannot be read ({exc})") from None
            del result[key]
        return result


LINK_LEVELS: Final = frozenset(
    {
        "in_flight",
        "window",
        "workers",
        "workers_up",
        "waiting",
        "speakers_online",
        "speakers_offline",
        "speakers_stale",
    }
)
"""Keys of a link's health that are current levels (gauges), not counts since start."""


class Channel(ABC):
    """A configured channel instance. Constructed from its config table, started with the daemon."""

    # Per instance, not a ClassVar: some plugins (log, simulator) take their kind from config.
    # Plugins with a fixed kind simply set it at class level (``kind = ChannelKind.SMS``).
    kind: ChannelKind
    config_model: ClassVar[type[ChannelConfig]] = ChannelConfig
    simulated: ClassVar[bool] = False  # True for channels that reach no real phone or speaker

    def __init__(self, name: str, config: ChannelConfig) -> None:
        self.name = name
        self.config = config
        # None ends the stream (``end_events``): nothing is reported after it.
        self._inbound: asyncio.Queue[InboundEvent | None] = asyncio.Queue()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kind={self.kind}>"

    @property
    @abstractmethod
    def limits(self) -> Limits: ...

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections; called once before the first send."""

    def health(self) -> dict[str, object] | None:
        """Link state for /readyz and /metrics, for channels that hold connections:
        ``{"ready": bool, "links": {name: {"bound": bool, "in_flight": int, counters…}}}``,
        counters being cumulative numbers or ``{label: number}`` tables, except the levels named
        in LINK_LEVELS (numbers that go up and down). None: nothing to say."""
        return None

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Close connections; pending sends may be abandoned (dispatch re-queues them)."""

    async def prepare(self, texts: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Get ready to send these texts, ahead of their messages: a voice channel renders their
        speech, so that no call waits for it. Called when a warning is planned; the default
        needs nothing."""

    @abstractmethod
    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send a batch; return exactly one result per message, in any order, keyed by ``key``."""

    def emit(self, event: InboundEvent) -> None:
        """Hand an inbound event to warnd (called by the channel's receiving side)."""
        self._inbound.put_nowait(event)

    async def events(self) -> AsyncIterator[InboundEvent]:
        """The stream of inbound events; runs until the consumer stops iterating, or ends after
        ``end_events``."""
        while (event := await self._inbound.get()) is not None:
            yield event

    def end_events(self) -> None:
        """End the stream of events once what was emitted so far is consumed: warnd calls it
        after ``stop``, so that what a channel reports as it stops (calls hung up) is recorded
        before warnd exits."""
        self._inbound.put_nowait(None)
