"""The policy's [earthquake_early_warning] table: its defaults, and precise errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from warnd.core.eew import EewParameters
from warnd.core.errors import ConfigError
from warnd.policy.loader import load_policy
from warnd.policy.model import EarthquakeEarlyWarning
from warnd.runtime.settings import REPO_CONFIG_DIR

DEFAULT = REPO_CONFIG_DIR / "policy.toml"
TEMPLATES = REPO_CONFIG_DIR / "templates"


def write_policy(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = DEFAULT.read_text(encoding="utf-8")
    text = text.replace('folder = "templates"', f'folder = "{TEMPLATES}"')
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    return str(caught.value)


def test_the_default_file_states_the_defaults() -> None:
    policy = load_policy(DEFAULT)
    assert policy.earthquake_early_warning == EarthquakeEarlyWarning()
    assert policy.earthquake_early_warning.parameters == EewParameters()
    assert EewParameters().grace_s == 30.0


def test_without_the_table_the_defaults_apply(tmp_path: Path) -> None:
    text = DEFAULT.read_text(encoding="utf-8")
    start = text.index("[earthquake_early_warning]")
    end = text.index("# --- Field tasks")
    path = write_policy(tmp_path, (text[start:end], ""))
    assert load_policy(path).earthquake_early_warning.parameters == EewParameters()


def test_values_are_read(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path,
        ("min_magnitude = 4.0", "min_magnitude = 4.5"),
        ("s_wave_km_s = 3.5", "s_wave_km_s = 4"),
        ('grace = "30s"', 'grace = "1m"'),
        ("c = 3.49", "c = 3.6"),
        ("red = 7\n", "red = 8\n"),
    )
    rule = load_policy(path).earthquake_early_warning
    p = rule.parameters
    assert (p.min_magnitude, p.s_wave_km_s, p.grace_s, p.c, p.red) == (4.5, 4.0, 60.0, 3.6, 8.0)
    assert rule.grace == timedelta(minutes=1)


def test_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = write_policy(tmp_path, ("min_magnitude = 4.0", "min_magnitud = 4.0"))
    assert "earthquake_early_warning.min_magnitud" in load_error(path)
    path = write_policy(tmp_path, ("b = 1.63", "b = 1.63\nd = 1"))
    assert "earthquake_early_warning.intensity.d" in load_error(path)


def test_levels_must_rise(tmp_path: Path) -> None:
    path = write_policy(tmp_path, ("orange = 5", "orange = 8"))
    error = load_error(path)
    assert "earthquake_early_warning.levels" in error and "must rise" in error


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("s_wave_km_s = 3.5", "s_wave_km_s = 35", "earthquake_early_warning.s_wave_km_s"),
        ("min_magnitude = 4.0", "min_magnitude = 11", "earthquake_early_warning.min_magnitude"),
        ('grace = "30s"', 'grace = "1h"', "earthquake_early_warning.grace"),
        ("c = 3.49", "c = -1", "earthquake_early_warning.intensity.c"),
        ("yellow = 3", "yellow = 0", "earthquake_early_warning.levels.yellow"),
    ],
)
def test_values_out_of_range_are_named(tmp_path: Path, old: str, new: str, where: str) -> None:
    assert where in load_error(write_policy(tmp_path, (old, new)))
