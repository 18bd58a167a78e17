"""Link state of channels that hold connections, as operations see it: /metrics and /readyz."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import generate_latest

from channels.base import (
    Channel,
    ChannelConfig,
    ChannelKind,
    Limits,
    OutboundMessage,
    SendResult,
)
from warnd.app.metrics import ChannelHealth, Metrics
from warnd.app.reads import _channel_out


class TwoLinks(Channel):
    """A channel reporting two links, one of them down."""

    kind = ChannelKind.SMS

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=1, window=1, max_text=70)

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        return []

    def health(self) -> dict[str, object]:
        return {
            "ready": True,
            "links": {
                "mobile": {
                    "bound": True,
                    "in_flight": 12,
                    "window": 50,
                    "rate_per_s": 100.0,
                    "submitted": 340,
                    "throttled": 2,
                    "receipts": {"delivered": 300, "undeliverable": 4},
                    "bad_input": {"unknown_receipt": 1},
                    "last_error": "",
                },
                "unicom": {"bound": False, "in_flight": 0, "submitted": 0, "last_error": "refused"},
                "trunk": {  # the sip channel's shape
                    "bound": True,
                    "in_flight": 3,
                    "registered": None,
                    "registration": "",
                    "workers": 2,
                    "workers_up": 1,
                    "waiting": 4,
                    "placed": 10,
                },
            },
        }


def test_links_are_exported_per_channel_and_link() -> None:
    metrics = Metrics()
    channel = TwoLinks("smsc", ChannelConfig(type="two"))
    metrics.registry.register(ChannelHealth({"smsc": channel}))
    text = generate_latest(metrics.registry).decode()
    assert 'warnd_channel_link_up{channel="smsc",link="mobile"} 1.0' in text
    assert 'warnd_channel_link_up{channel="smsc",link="unicom"} 0.0' in text
    assert 'warnd_channel_link_in_flight{channel="smsc",link="mobile"} 12.0' in text
    for event, value in (
        ("submitted", "340.0"),
        ("throttled", "2.0"),
        ("receipts_delivered", "300.0"),
        ("receipts_undeliverable", "4.0"),
        ("bad_input_unknown_receipt", "1.0"),
    ):
        line = f'warnd_channel_link_events_total{{channel="smsc",event="{event}",link="mobile"}}'
        assert f"{line} {value}" in text, event
    assert "last_error" not in text and "rate_per_s" not in text
    for link, level, value in (
        ("mobile", "window", "50.0"),
        ("trunk", "workers", "2.0"),
        ("trunk", "workers_up", "1.0"),
        ("trunk", "waiting", "4.0"),
    ):
        line = f'warnd_channel_link_level{{channel="smsc",level="{level}",link="{link}"}}'
        assert f"{line} {value}" in text, level
    assert 'event="placed",link="trunk"} 10.0' in text
    assert 'event="workers' not in text and 'event="waiting' not in text  # levels, not counts


def test_readiness_shows_each_links_state_but_not_its_errors() -> None:
    """/readyz needs no token: it tells whether links are up, not where they go or why not."""
    out = _channel_out("smsc", TwoLinks("smsc", ChannelConfig(type="two")))
    assert out.ready is True and out.links is not None
    assert out.links["unicom"] == {"bound": False, "in_flight": 0}
    assert out.links["trunk"] == {
        "bound": True,
        "in_flight": 3,
        "registered": None,
        "workers": 2,
        "workers_up": 1,
        "waiting": 4,
    }
    assert "last_error" not in out.links["mobile"] and "where" not in out.links["mobile"]
    plain = _channel_out("log", _Plain("log", ChannelConfig(type="log")))
    assert (plain.ready, plain.links) == (None, None)


class _Plain(TwoLinks):
    def health(self) -> None:  # type: ignore[override]
        return None
