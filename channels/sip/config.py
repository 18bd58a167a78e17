"""Settings of a ``sip`` channel (see the package docstring for their meaning), and the SIP
addresses they make."""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from channels.base import ChannelConfig
from channels.sms_routing import national_number
from channels.tts import EspeakTts, TtsConfig

# PJSIP as packaged (pjsua2-python) is compiled for at most this many calls per process.
CALLS_PER_WORKER: Final = 4

_HOST_PORT: Final = re.compile(
    r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?$"
)
_NUMBER: Final = re.compile(r"^\+?[0-9]{3,20}$")
_ADDRESS_JUNK: Final = re.compile(r"[\s().-]")


def _host_port(value: str, key: str) -> str:
    match = _HOST_PORT.match(value)
    if match is None:
        raise ValueError(f"{key} is host or host:port, e.g. 10.1.2.3:5060 (got a malformed value)")
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"{key}: the port must be 1-65535")
    return value


def _ip(value: str) -> str:
    if value:
        ipaddress.ip_address(value)  # ValueError names the problem
    return value


class SipConfig(ChannelConfig):
    """Settings of a ``sip`` channel."""

    proxy: str = Field(min_length=1)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    from_number: str = Field(min_length=1)
    domain: str = ""
    registrar: str = ""
    username: str = ""
    password: SecretStr | None = None
    register_expires: int = Field(default=300, ge=60, le=86400)
    max_calls: int = Field(default=8, ge=1, le=256)
    calls_per_s: float = Field(default=5.0, gt=0)
    ring_timeout: float = Field(default=40.0, ge=5, le=300)
    repeat_prompt: int = Field(default=3, ge=1, le=10)
    repeat_pause: float = Field(default=1.0, ge=0, le=30)
    key_wait: float = Field(default=5.0, ge=0, le=60)
    dtmf: Literal["rfc2833", "sip_info", "both"] = "rfc2833"
    dtmf_payload_type: int = Field(default=101, ge=96, le=127)
    codecs: tuple[Literal["PCMA", "PCMU"], ...] = Field(default=("PCMA", "PCMU"), min_length=1)
    number_format: Literal["international", "national"] = "international"
    dial_prefix: str = Field(default="", pattern=r"^[0-9*#]*$", max_length=10)
    local_address: str = ""
    public_address: str = ""
    rtp_ports: tuple[int, int] | None = None
    tls_ca_file: str = ""
    tls_verify: bool = True
    max_text: int = Field(default=500, ge=70)
    # A call that waited this long for a free line goes back unsent, well inside dispatch's lease.
    max_queue_wait_s: float = Field(default=30.0, gt=0)
    engine_log_level: int = Field(default=1, ge=0, le=6)
    tts: TtsConfig = Field(default_factory=EspeakTts)

    @model_validator(mode="before")
    @classmethod
    def _own_names(cls, data: Any) -> Any:
        """The generic ``window`` and ``rate_per_s`` have telephony names here."""
        if isinstance(data, dict):
            for generic, own in (("window", "max_calls"), ("rate_per_s", "calls_per_s")):
                if generic in data:
                    raise ValueError(f"a sip channel takes {own}, not {generic}")
        return data

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str) -> str:
        return _host_port(value, "proxy")

    @field_validator("domain", "registrar")
    @classmethod
    def _optional_host(cls, value: str) -> str:
        return _host_port(value, "the value") if value else value

    @field_validator("from_number")
    @classmethod
    def _from_number(cls, value: str) -> str:
        if not re.fullmatch(r"\+?[0-9A-Za-z._-]{1,64}", value):
            raise ValueError("from_number is the number (or SIP user) calls come from: digits")
        return value

    @field_validator("local_address", "public_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _ip(value)

    @field_validator("rtp_ports")
    @classmethod
    def _ports(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None:
            low, high = value
            if not 1024 <= low < high <= 65535:
                raise ValueError("rtp_ports is [first, last], 1024 <= first < last <= 65535")
        return value

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_file(cls, value: str) -> str:
        if value and not Path(value).is_absolute():
            raise ValueError("tls_ca_file: give an absolute path")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SipConfig:
        if self.password is not None and not self.username:
            raise ValueError("password is given without username")
        if self.rtp_ports is not None:
            low, high = self.rtp_ports
            # Each call takes an RTP and an RTCP port, and PJSIP moves on to fresh ones.
            if high - low + 1 < 4 * self.max_calls:
                raise ValueError(f"rtp_ports must span at least {4 * self.max_calls} ports")
        # The generic limits follow the telephony ones (dispatch reads them through limits).
        self.rate_per_s = self.calls_per_s
        self.window = self.max_calls
        return self

    # what the settings make

    def capacities(self) -> list[int]:
        """Calls per worker process: as few workers as hold ``max_calls``, loaded evenly."""
        workers = math.ceil(self.max_calls / CALLS_PER_WORKER)
        base, extra = divmod(self.max_calls, workers)
        return [base + (1 if index < extra else 0) for index in range(workers)]

    def rtp_slice(self, index: int) -> tuple[int, int]:
        """(first port, count) of worker ``index``'s share of ``rtp_ports``; (0, 0): any."""
        if self.rtp_ports is None:
            return 0, 0
        low, high = self.rtp_ports
        workers = len(self.capacities())
        size = (high - low + 1) // workers
        return low + index * size, size - 1

    def _transport_parameter(self) -> str:
        return "" if self.transport == "udp" else f";transport={self.transport}"

    def target_uri(self, dial: str) -> str:
        """The request URI that calls ``dial``."""
        return f"sip:{dial}@{self.domain or self.proxy}{self._transport_parameter()}"

    def proxy_uri(self) -> str:
        """The outbound proxy route; "" when calls go straight to the proxy as their domain."""
        return f"sip:{self.proxy}{self._transport_parameter()};lr" if self.domain else ""

    def registrar_uri(self) -> str:
        return f"sip:{self.registrar}{self._transport_parameter()}" if self.registrar else ""

    def from_uri(self) -> str:
        host = self.domain or self.registrar or self.proxy
        host = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        return f"sip:{self.from_number}@{host}"

    def dtmf_methods(self) -> tuple[str, ...]:
        return {"rfc2833": ("rfc2833",), "sip_info": ("sip_info",)}.get(
            self.dtmf, ("rfc2833", "sip_info")
        )

    def dial_string(self, address: str) -> str | None:
        """What to dial for ``address`` (an E.164 number as warnd keeps them), or None when it
        is not a phone number."""
        cleaned = _ADDRESS_JUNK.sub("", address)
        if not _NUMBER.match(cleaned):
            return None
        number = national_number(cleaned) if self.number_format == "national" else cleaned
        return f"{self.dial_prefix}{number}"
