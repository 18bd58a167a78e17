"""Settings of an ``smpp`` channel: one link or a table of them, and how a number is routed
(see the package docstring for each setting's meaning)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from channels.base import ChannelConfig
from channels.sms_routing import DEFAULT_ROUTES, PrefixRoutes


class SmppLinkConfig(BaseModel):
    """One bind to one SMSC (``[channels.<name>.links.<link>]``)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(default=2775, ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    password: SecretStr = Field(default=SecretStr(""))
    system_type: str = Field(default="", max_length=12)
    source_addr: str | None = Field(default=None, min_length=1, max_length=20)
    window: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, gt=0)


SINGLE_LINK = "default"


class SmppConfig(ChannelConfig):
    """Settings of an ``smpp`` channel (see the package docstring)."""

    host: str | None = None
    port: int = Field(default=2775, ge=1, le=65535)
    system_id: str = Field(default="", max_length=15)
    password: SecretStr = Field(default=SecretStr(""))
    system_type: str = Field(default="", max_length=12)
    source_addr: str = Field(min_length=1, max_length=20)
    window: int = Field(default=10, ge=1)
    links: dict[str, SmppLinkConfig] = Field(default_factory=dict)
    routes: dict[str, list[str]] | None = None
    fallback: str | None = None
    destination_format: Literal["international", "national"] = "international"
    max_text: int = Field(default=670, ge=70)
    response_timeout_s: float = Field(default=10.0, gt=0)
    # A message that waited this long for a lane (a slow or throttled link) goes back unsent,
    # well inside dispatch's lease, so that the lease never hands out a row still queued here.
    max_queue_wait_s: float = Field(default=30.0, gt=0)
    bind_timeout_s: float = Field(default=10.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    throttle_cooldown_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _rate_alias(cls, data: Any) -> Any:
        """``rate`` is the SMPP-flavoured name of ``rate_per_s`` (per link)."""
        if isinstance(data, dict) and "rate" in data:
            if "rate_per_s" in data:
                raise ValueError("give rate or rate_per_s, not both")
            data = dict(data)
            data["rate_per_s"] = data.pop("rate")
        return data

    @model_validator(mode="after")
    def _one_shape(self) -> SmppConfig:
        if self.host is not None and self.links:
            raise ValueError("give host/port/system_id for one link or a links table, not both")
        if self.host is None and not self.links:
            raise ValueError("no SMSC: give host, port, system_id and password, or a links table")
        if self.host is not None and not self.system_id:
            raise ValueError("system_id is required with host")
        names = set(self.resolved_links())
        if self.fallback is not None and self.fallback not in names:
            raise ValueError(f"fallback {self.fallback!r} is not a link ({', '.join(names)})")
        for link in self.routes or {}:
            if link not in names:
                raise ValueError(f"routes name {link!r}, which is not a link")
        PrefixRoutes(self.resolved_routes())  # rejects a prefix routed to two links
        return self

    def resolved_links(self) -> dict[str, SmppLinkConfig]:
        """Every link with the channel-wide defaults filled in."""
        if self.host is not None:
            links = {
                SINGLE_LINK: SmppLinkConfig(
                    host=self.host,
                    port=self.port,
                    system_id=self.system_id,
                    password=self.password,
                    system_type=self.system_type,
                )
            }
        else:
            links = self.links
        return {
            name: link.model_copy(
                update={
                    "source_addr": link.source_addr or self.source_addr,
                    "window": link.window or self.window,
                    "rate": link.rate or self.rate_per_s,
                }
            )
            for name, link in links.items()
        }

    def resolved_routes(self) -> dict[str, list[str]]:
        """The routing table in force: the configured one, or the operators' defaults."""
        if self.routes is not None:
            return self.routes
        return {name: list(DEFAULT_ROUTES[name]) for name in self.links if name in DEFAULT_ROUTES}
