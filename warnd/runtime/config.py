"""Reading the daemon's config file (``WARND_CONFIG``); its shape is ``warnd.core.config``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from warnd.core.config import AppConfig, load_config_data, parse_toml
from warnd.core.errors import ConfigError


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file; a missing file or a syntax error is a ``ConfigError`` naming it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_toml(raw, path)


def load_config(path: Path | None) -> AppConfig:
    """The config file at ``path`` (``WARND_CONFIG``); no path gives an empty config.

    Token files are read relative to the config file's folder. Errors are a ``ConfigError``
    naming the file and key, never the secret.
    """
    if path is None:
        return AppConfig()
    return load_config_data(read_toml(path), source=path)
