"""What the channel and its engine workers say to each other: one JSON object per line.

The channel writes to a worker's stdin; the worker writes to its stdout (the real one, kept aside
before PJSIP can print to it). Both sides import this module and nothing else of each other.

Channel -> worker::

    {"op": "init", "settings": {…WorkerSettings…}}       first line, once (holds the password:
                                                         a pipe, never argv or the environment)
    {"op": "call", "ref": 7, "uri": "sip:…", "wav": "/…/x.wav", "ring_timeout": 40.0,
     "plays": 3, "pause": 1.0, "key_wait": 5.0, "replays": 5}
    {"op": "quit"}                                       hang up every call, report, exit

Worker -> channel::

    {"ev": "ready", "address": "127.0.0.1:50560"}        after init; {"ev": "init_failed",
                                                         "error": "…"} instead, then it exits
    {"ev": "placed", "ref": 7, "call_id": "…"}           the INVITE is on its way
    {"ev": "refused", "ref": 7, "error": "…", "status": 0}   the call could not be placed
    {"ev": "answered", "ref": 7}
    {"ev": "key", "ref": 7, "keys": "21", "plays": 2}    a key press (keys: all so far)
    {"ev": "ended", "ref": 7, …CallEnded…}               the call is over, with its facts
    {"ev": "registration", "code": 200, "reason": "OK", "expires": 300}
    {"ev": "alive", "calls": 2}                          every second: the worker is not stuck
    {"ev": "log", "level": "warning", "message": "…"}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

# How often a worker says it is alive, and how long the channel waits for any line from it before
# taking it for stuck and killing it (its calls are then reported lost).
ALIVE_EVERY_S: Final = 1.0
STUCK_AFTER_S: Final = 10.0

# Why the worker itself ended a call ("" when the far end or the network did).
WHY_KEY: Final = "key"  # "1" was pressed
WHY_NO_KEY: Final = "no key"  # every play said, the wait for a key ran out
WHY_RING_TIMEOUT: Final = "ring timeout"
WHY_NO_MEDIA: Final = "no media"  # answered, but no audio path came up
WHY_STOPPED: Final = "stopped"  # the channel is stopping

# Where an answered call was when it ended.
PHASE_RINGING: Final = "ringing"
PHASE_PLAYING: Final = "playing"
PHASE_PAUSE: Final = "pause"  # between two plays
PHASE_WAITING: Final = "waiting"  # after the last play, for a key


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs to set up its SIP user agent."""

    index: int
    max_calls: int
    transport: str  # udp | tcp | tls
    local_address: str  # "" for every interface
    public_address: str  # "" to advertise the address the system picks
    rtp_port: int  # first RTP port; 0: any
    rtp_port_range: int
    from_uri: str
    proxy_uri: str  # outbound proxy route, "" for none
    registrar_uri: str  # "" for no registration
    username: str
    password: str = field(repr=False)
    register_expires: int
    dtmf_payload_type: int
    dtmf_methods: tuple[str, ...]  # rfc2833, sip_info
    codecs: tuple[str, ...]  # PCMA, PCMU
    tls_ca_file: str
    tls_verify: bool
    log_level: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerSettings:
        names = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        values["dtmf_methods"] = tuple(values["dtmf_methods"])
        values["codecs"] = tuple(values["codecs"])
        return cls(**values)


@dataclass(frozen=True)
class CallRequest:
    """One call to place: whom, what to say, and how patiently."""

    ref: int
    uri: str
    wav: str
    ring_timeout: float
    plays: int  # times the prompt is said when no key comes
    pause: float  # silence between two plays
    key_wait: float  # after the last play
    replays: int  # times "2" may start the prompt again


@dataclass(frozen=True)
class CallEnded:
    """The facts of a call that is over, as the worker saw them."""

    ref: int
    answered: bool
    keys: str
    code: int  # the last SIP status of the call (486, 603, 200…); 0 when none came
    reason: str  # its reason phrase, or PJSIP's words for a transport failure
    why: str  # one of the WHY_ values, "" when the far end or the network ended the call
    phase: str  # one of the PHASE_ values
    rang: bool  # a provisional answer (180/183) came: the phone was reached
    plays: int  # times the prompt was started


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A protocol line as a dict; ValueError when it is not JSON, TypeError when it is not an
    object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise TypeError("a protocol line is a JSON object")
    return message


def call_command(request: CallRequest) -> dict[str, Any]:
    return {"op": "call", **asdict(request)}


def init_command(settings: WorkerSettings) -> dict[str, Any]:
    return {"op": "init", "settings": asdict(settings)}
