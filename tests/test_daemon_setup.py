"""Start-up rules that protect people: no silent simulation, masked logs, policy reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from warnd.app.services import max_chars
from warnd.core.errors import ConfigError
from warnd.runtime.daemon import make_channels
from warnd.runtime.logs import configure, mask_phones


def test_run_refuses_without_a_real_channel() -> None:
    with pytest.raises(ConfigError, match="--simulate"):
        make_channels({}, simulate=False)
    with pytest.raises(ConfigError, match="no real channel"):
        make_channels({"s": {"type": "simulator", "kind": "sms"}}, simulate=False)


def test_simulate_without_channels_gives_one_simulator_per_kind() -> None:
    channels = make_channels({}, simulate=True)
    assert {c.kind.value for c in channels.values()} == {"sms", "voice", "broadcast"}
    assert all(c.simulated for c in channels.values())
    assert set(max_chars(channels)) == {"sms", "voice", "broadcast"}


def test_a_real_channel_needs_no_flag(tmp_path: Path) -> None:
    channels = make_channels(
        {"trail": {"type": "log", "kind": "sms", "path": str(tmp_path / "sms.jsonl")}},
        simulate=False,
    )
    assert [c.simulated for c in channels.values()] == [False]


def test_a_bad_channel_table_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"channels\.x\.type"):
        make_channels({"x": {"type": "smpp2"}}, simulate=True)


def test_phone_numbers_are_masked() -> None:
    assert mask_phones("call +8613912345678 or 13812345678") == (
        "call +86139****5678 or 138****5678"
    )


def test_logs_mask_phone_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", json=True)
    try:
        structlog.get_logger("t").info("delivery_failed", address="+8613912345678", warning_id=3)
    finally:
        structlog.reset_defaults()  # the configured logger writes to this test's captured stderr
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["address"] == "+86139****5678"
    assert line["warning_id"] == 3
