"""Alarm integrity (issue 15): the rules that keep a tired click, a drill or a hostile feed from
alarming people falsely, or from silencing a real warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from warnd.core.errors import ConfigError
from warnd.runtime.daemon import Daemon, make_channels
from warnd.runtime.settings import Settings


def test_simulate_refuses_a_real_channel_in_the_config(tmp_path: Path) -> None:
    """--simulate with a real channel configured used to send for real, and with
    WARND_TIME_SCALE escalate 60 times faster against real phones."""
    tables = {
        "trail": {"type": "log", "kind": "sms", "path": str(tmp_path / "sms.jsonl")},
        "sim": {"type": "simulator", "kind": "voice"},
    }
    with pytest.raises(ConfigError, match=r"--simulate.*real channels: trail"):
        make_channels(tables, simulate=True)


def test_a_simulated_daemon_refuses_real_channels_handed_to_it(tmp_path: Path) -> None:
    real = make_channels(
        {"trail": {"type": "log", "kind": "sms", "path": str(tmp_path / "sms.jsonl")}},
        simulate=False,
    )
    with pytest.raises(ConfigError, match="real channels: trail"):
        Daemon(Settings(http_port=0, time_scale=60), simulate=True, channels=real)
