"""The README's channel examples are configs warnd accepts: each ``toml`` block that configures a
channel builds, with its secrets (``"…"`` and ``*_file`` paths under /etc) stood in for."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from channels.registry import build_channels
from warnd.core.config import AppConfig

README = Path(__file__).resolve().parent.parent / "README.md"
SECRET = "readme-secret-0123456789abcdef0123456789"  # long enough for every key (media_key: 32)


def channel_blocks() -> list[str]:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text("utf-8"), flags=re.DOTALL)
    return [block for block in blocks if "[channels." in block]


def with_stand_ins(table: dict[str, Any], secrets: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            result[key] = with_stand_ins(value, secrets)
        elif value == "…":
            result[key] = SECRET
        elif key.endswith("_file") and isinstance(value, str) and value.startswith("/etc/"):
            stand_in = secrets / Path(value).name
            stand_in.write_text(SECRET)
            result[key] = str(stand_in)
        else:
            result[key] = value
    return result


def test_the_readme_has_channel_examples_for_sms_voice_and_loudspeakers() -> None:
    types = {
        channel.get("type")
        for block in channel_blocks()
        for channel in tomllib.loads(block)["channels"].values()
    }
    assert {"smpp", "http_sms", "sip", "http_voice", "mqtt_broadcast"} <= types


@pytest.mark.parametrize("block", channel_blocks(), ids=lambda block: block.splitlines()[0])
def test_each_channel_example_in_the_readme_builds(block: str, tmp_path: Path) -> None:
    channels = with_stand_ins(tomllib.loads(block), tmp_path)["channels"]
    built = build_channels(channels)
    assert set(built) == set(channels)


def test_the_readme_early_warning_subscription_example_is_a_valid_config(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text("utf-8"), flags=re.DOTALL)
    (block,) = [b for b in blocks if b.startswith("[eew]")]
    config = AppConfig.model_validate(with_stand_ins(tomllib.loads(block), tmp_path))
    assert config.eew is not None and config.eew.tls and config.eew.port == 8883
