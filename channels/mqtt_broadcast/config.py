"""Settings of an ``mqtt_broadcast`` channel (see the package docstring for their meaning)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator

from channels.base import ChannelConfig
from channels.media import MIN_KEY_CHARS
from channels.tts import EspeakTts, TtsConfig

# A topic level warnd writes into: no MQTT wildcards, no separators, nothing invisible.
_TOPIC_PREFIX: Final = re.compile(r"\A[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\Z")
_HOST: Final = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z|\A\[[0-9A-Fa-f:.]+\]\Z")
_CLIENT_ID: Final = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")


class MqttBroadcastConfig(ChannelConfig):
    """Settings of an ``mqtt_broadcast`` channel."""

    broker: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # 1883, or 8883 with TLS
    tls: bool = False
    tls_ca_file: str = ""
    username: str = ""
    password: SecretStr | None = None
    client_id: str = ""  # "" : warnd-<channel name>
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    keepalive: int = Field(default=30, ge=5, le=600)
    topic_prefix: str = "warnd/speakers"
    stale_after: float = Field(default=600.0, ge=1)
    start_wait: float = Field(default=3.0, ge=0, le=60)
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    publish_timeout: float = Field(default=10.0, gt=0, le=120)
    ack_timeout: float = Field(default=900.0, ge=1)
    resend_after: float = Field(default=120.0, ge=1)
    repeat: int = Field(default=2, ge=1, le=10)
    reconnect_max: float = Field(default=30.0, ge=0.1)
    max_text: int = Field(default=1000, ge=70)
    rate_per_s: float = Field(default=500.0, gt=0)
    window: int = Field(default=500, ge=1)
    media_url: AnyHttpUrl
    media_key: SecretStr
    media_ttl: float = Field(default=3600.0, ge=60, le=7 * 86400)
    media_dir: Path | None = None  # default: beside the speech cache, …/warnd/media
    tone: bool = True  # an alert tone before the speech of red and earthquake warnings
    tts: TtsConfig = Field(default_factory=EspeakTts)

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError("broker is a host name or address, e.g. 10.0.0.7 (no port, no URL)")
        return value

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_file(cls, value: str) -> str:
        if value and not Path(value).is_absolute():
            raise ValueError("tls_ca_file: give an absolute path")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if value and not _CLIENT_ID.match(value):
            raise ValueError("client_id is 1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError(
                "topic_prefix is levels of letters, digits, '_' and '-' joined by '/', "
                "e.g. jining/speakers (no wildcards, no leading or trailing '/')"
            )
        return value

    @field_validator("media_key")
    @classmethod
    def _media_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_KEY_CHARS:
            raise ValueError(f"media_key must have at least {MIN_KEY_CHARS} characters")
        return value

    @field_validator("media_dir")
    @classmethod
    def _media_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("media_dir: give an absolute path")
        return value

    @model_validator(mode="before")
    @classmethod
    def _tls_ca_only_with_tls(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("tls_ca_file") and not data.get("tls"):
            raise ValueError("tls_ca_file is given but tls is false; set tls = true")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> MqttBroadcastConfig:
        if self.password is not None and not self.username:
            raise ValueError("password is given without username")
        return self

    def broker_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls else 1883

    def client_identifier(self, channel: str) -> str:
        return self.client_id or f"warnd-{channel}"[:64]

    def media_folder(self) -> Path:
        """Where the channel keeps the audio it serves."""
        if self.media_dir is not None:
            return self.media_dir
        return self.tts.cache_path().parent / "media"
