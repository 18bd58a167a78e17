"""Settings of the speech engines, as the ``tts`` sub-table of a channel (see the package
docstring for their meaning)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    model_validator,
)


def default_cache_dir() -> Path:
    """Where rendered audio is kept unless configured: the user's cache, never a shared /tmp
    (another local user could plant a file there that warnd would then play to a callee)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "warnd" / "tts"


class _Engine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache_dir: Path | None = None
    timeout: float = Field(default=60.0, gt=0)

    def cache_path(self) -> Path:
        """The cache folder in force."""
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()


class EspeakTts(_Engine):
    """The offline engine: ``espeak-ng``."""

    engine: Literal["espeak"] = "espeak"
    # Passed to espeak-ng as an argument: a voice name, never anything that reads as an option.
    voice: str = Field(default="cmn", pattern=r"^[A-Za-z0-9][A-Za-z0-9_+-]*$", max_length=64)
    speed: int = Field(default=150, ge=80, le=450)
    pitch: int = Field(default=50, ge=0, le=99)


class HttpTts(_Engine):
    """The bureau's TTS server, reached over HTTP(S) with a bearer token."""

    engine: Literal["http"]
    url: AnyHttpUrl
    token: SecretStr | None = None
    voice: str = Field(default="", max_length=200)
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _token_file(cls, data: object) -> object:
        """``token_file`` for ``token``, as every channel secret may be read from a file (the
        rule of ``ChannelConfig``, which a sub-table does not inherit)."""
        if not isinstance(data, dict) or "token_file" not in data:
            return data
        if "token" in data:
            raise ValueError("give token or token_file, not both")
        path = data["token_file"]
        if not isinstance(path, str) or not Path(path).is_absolute():
            raise ValueError("token_file: give an absolute path, as a string")
        result = {key: value for key, value in data.items() if key != "token_file"}
        try:
            result["token"] = Path(path).read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"token_file: {path!r} cannot be read ({exc})") from None
        return result


def _engine_of(value: Any) -> str:
    """The engine a table names; a table that names none is espeak, the offline default."""
    if isinstance(value, dict):
        engine = value.get("engine", "espeak")
        return engine if isinstance(engine, str) else ""
    return str(getattr(value, "engine", ""))


TtsConfig = Annotated[
    Annotated[EspeakTts, Tag("espeak")] | Annotated[HttpTts, Tag("http")],
    Discriminator(
        _engine_of,
        custom_error_type="tts_engine",
        custom_error_message='engine must be "espeak" or "http"',
    ),
]
