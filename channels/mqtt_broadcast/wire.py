"""The topics and JSON payloads of the ``warnd-broadcast/1`` contract (channels/BROADCAST.md).

Pure: bytes in, a value or a named reason for refusing them out. Everything that arrives on the
broker is treated as hostile: a size limit before parsing, strict types, bounded strings, no
control characters, and a refusal never raises past this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

PROTOCOL: Final = "warnd-broadcast/1"
MAX_PAYLOAD: Final = 4096  # bytes of an ack or status; far more than either needs
MAX_COMMAND: Final = 64 * 1024
SPEAKER_ID: Final = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
MESSAGE_ID: Final = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
FAILURES: Final = ("offline_amplifier", "busy", "bad_audio", "expired", "other")

# Printable text of bounded length: no control characters a log line or a console could trip on.
# (pydantic's patterns are Rust regexes: ``$`` there is the very end, as ``\Z`` is in Python.)
_Text = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
_Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def command_topic(prefix: str, speaker: str) -> str:
    return f"{prefix}/{speaker}/cmd"


def ack_filter(prefix: str) -> str:
    return f"{prefix}/+/ack"


def status_filter(prefix: str) -> str:
    return f"{prefix}/+/status"


def status_topic(prefix: str, speaker: str) -> str:
    return f"{prefix}/{speaker}/status"


def ack_topic(prefix: str, speaker: str) -> str:
    return f"{prefix}/{speaker}/ack"


def speaker_of(topic: str, prefix: str, kind: str) -> str | None:
    """The speaker id of ``{prefix}/{speaker}/{kind}``, or None for any other topic."""
    head, tail = f"{prefix}/", f"/{kind}"
    if not (topic.startswith(head) and topic.endswith(tail)):
        return None
    speaker = topic[len(head) : len(topic) - len(tail)]
    return speaker if SPEAKER_ID.match(speaker) else None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Command:
    """What warnd tells one speaker to play."""

    id: str
    speaker: str
    text: str
    audio_url: str
    audio_sha256: str
    repeat: int
    expires_at: datetime
    sent_at: datetime
    priority: int = 0
    interrupt: bool = False
    exercise: bool = False
    warning_id: int | None = None
    hazard: str | None = None
    level: str | None = None

    def payload(self) -> bytes:
        body = {
            "v": PROTOCOL,
            "id": self.id,
            "speaker": self.speaker,
            "warning_id": self.warning_id,
            "hazard": self.hazard,
            "level": self.level,
            "priority": self.priority,
            "interrupt": self.interrupt,
            "exercise": self.exercise,
            "text": self.text,
            "audio_url": self.audio_url,
            "audio_sha256": self.audio_sha256,
            "repeat": self.repeat,
            "expires_at": _iso(self.expires_at),
            "sent_at": _iso(self.sent_at),
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Strict(BaseModel):
    # Unknown fields are ignored (a vendor's additions must not break the contract); the known
    # ones must have exactly their type: no "true" for true, no 1 for "1".
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class AckBody(_Strict):
    v: Literal["warnd-broadcast/1"]
    id: _Id
    result: Literal["played", "failed"]
    reason: Literal["offline_amplifier", "busy", "bad_audio", "expired", "other"] | None = None
    detail: _Text = ""


class StatusBody(_Strict):
    v: Literal["warnd-broadcast/1"]
    online: bool
    heartbeat: bool = False
    power: Annotated[str, StringConstraints(max_length=20, pattern=r"^[a-z_]*$")] | None = None
    battery: Annotated[int, Field(ge=0, le=100)] | None = None
    volume: Annotated[int, Field(ge=0, le=100)] | None = None
    detail: _Text = ""
    at: datetime | None = None  # the speaker's own clock: trusted only to make it staler

    model_config = ConfigDict(strict=False, extra="ignore", frozen=True)


@dataclass(frozen=True)
class Refused:
    """A payload that was not taken, and why (a metric label)."""

    reason: str  # too_large | empty | not_json | not_object | invalid


def _decode(payload: bytes, limit: int = MAX_PAYLOAD) -> dict[str, object] | Refused:
    if not payload:
        return Refused("empty")
    if len(payload) > limit:
        return Refused("too_large")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Refused("not_json")
    if not isinstance(data, dict):
        return Refused("not_object")
    return data


def parse_ack(payload: bytes) -> AckBody | Refused:
    data = _decode(payload)
    if isinstance(data, Refused):
        return data
    try:
        return AckBody.model_validate(data)
    except ValidationError:
        return Refused("invalid")


def _typed(data: dict[str, object]) -> bool:
    """Strict types for a status's flags and readings (true, not "true"; 80, not "80" or
    80.0); ``at`` is left to the model, which parses the string as a timestamp."""
    flags = all(isinstance(data.get(name, False), bool) for name in ("online", "heartbeat"))
    readings = all(
        data.get(name) is None or (type(data.get(name)) is int) for name in ("battery", "volume")
    )
    texts = all(
        data.get(name) is None or isinstance(data.get(name), str)
        for name in ("v", "power", "detail", "at")
    )
    return flags and readings and texts


def parse_status(payload: bytes) -> StatusBody | Refused:
    data = _decode(payload)
    if isinstance(data, Refused):
        return data
    try:
        body = StatusBody.model_validate(data) if _typed(data) else None
    except ValidationError:
        body = None
    if body is None or (body.at is not None and body.at.tzinfo is None):
        return Refused("invalid")
    return body


def status_payload(
    online: bool,
    *,
    heartbeat: bool = False,
    power: str | None = None,
    battery: int | None = None,
    volume: int | None = None,
    detail: str = "",
    at: datetime | None = None,
) -> bytes:
    """A status as a speaker publishes it (the simulator and the tests speak as speakers)."""
    body: dict[str, object] = {"v": PROTOCOL, "online": online, "heartbeat": heartbeat}
    readings = {"power": power, "battery": battery, "volume": volume}
    body.update({name: value for name, value in readings.items() if value is not None})
    if detail:
        body["detail"] = detail
    if at is not None:
        body["at"] = _iso(at)
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def ack_payload(
    message_id: str, played: bool, reason: str | None = None, detail: str = ""
) -> bytes:
    """An acknowledgement as a speaker publishes it."""
    body: dict[str, object] = {
        "v": PROTOCOL,
        "id": message_id,
        "result": "played" if played else "failed",
    }
    if reason is not None:
        body["reason"] = reason
    if detail:
        body["detail"] = detail
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class CommandBody(_Strict):
    """A command as a speaker reads it (the simulator checks what warnd sends, as a vendor's
    firmware should)."""

    v: Literal["warnd-broadcast/1"]
    id: _Id
    speaker: str
    interrupt: bool
    exercise: bool
    text: str
    audio_url: str
    audio_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    repeat: Annotated[int, Field(ge=1, le=10)]
    expires_at: str
    priority: int = 0
    level: str | None = None


def parse_command(payload: bytes) -> CommandBody | Refused:
    data = _decode(payload, MAX_COMMAND)
    if isinstance(data, Refused):
        return data
    try:
        return CommandBody.model_validate(data)
    except ValidationError:
        return Refused("invalid")


def parse_time(value: str) -> datetime | None:
    """An ISO 8601 time with its zone, or None."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None
