"""Process settings from the environment (WARND_*): where the database, data and config live."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from warnd.db.embedded import embedded_url

REPO_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


class Settings(BaseSettings):
    """Environment settings; the TOML file named by ``config`` holds feeds, users and channels."""

    model_config = SettingsConfigDict(env_prefix="WARND_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL of the schema's owner (migrations, rosters); without it an "
        "embedded server is started",
    )
    runtime_database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL the daemon serves with: a login that is a member of "
        "warnd_app and owns nothing; without it the daemon serves on database_url as warnd_app",
    )
    data_dir: Path = Field(default=Path.home() / ".local" / "share" / "warnd")
    http_host: str = "127.0.0.1"
    http_port: int = 8379
    config: Path | None = Field(default=None, description="path of the TOML config file")
    policy: Path = Field(default=REPO_CONFIG_DIR / "policy.toml")
    log_level: str = "info"
    lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="how long a claimed delivery may stay unsent before "
        "another worker takes it back (a crashed worker's rows return after this)",
    )
    stop_grace: float = Field(
        default=20.0,
        ge=0,
        description="on SIGTERM, how long the messages already handed to channels may take to "
        "finish and be recorded; what is still unsent then goes back to the queue",
    )
    takeover_seconds: float = Field(
        default=5.0,
        ge=0.5,
        description="with several processes: how soon a channel whose holder died (or lost "
        "its database connection) is held and bound by another",
    )
    time_scale: float = Field(
        default=1.0,
        gt=0,
        description="drills with --simulate only: warnd's clock runs this many times faster",
    )
    time_epoch: datetime | None = Field(
        default=None,
        description="where a scaled clock starts (ISO 8601 with offset); processes sharing it "
        "share one timeline",
    )


def database_url(settings: Settings) -> str:
    """The configured server, or the embedded one started in the data directory."""
    return settings.database_url or embedded_url(settings.data_dir)
