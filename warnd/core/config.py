"""The daemon's TOML config file (``WARND_CONFIG``): feeds, users, channels and HTTP overrides.

Also home of what every warnd TOML file shares: reading TOML with errors that name the file,
line and column; durations written as ``"90s"``, ``"3m"``, ``"1h"``; and turning a pydantic
validation error into one ``ConfigError`` line per problem, ``file: key.path: reason``, without
ever echoing a value (a value may be a secret).
"""

from __future__ import annotations

import difflib
import hmac
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from warnd.core.errors import ConfigError, location

# --- durations -------------------------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(value: object) -> timedelta:
    """A positive duration from its TOML spelling: ``"90s"``, ``"3m"``, ``"1h"``, ``"1h30m"``."""
    if isinstance(value, timedelta):
        return value
    # A bare number is refused: "5" could be seconds or minutes, and at 3 a.m. nobody checks which.
    if not isinstance(value, str):
        # ValueError, not TypeError: pydantic turns only ValueError into a validation error.
        raise ValueError("write a duration as a string such as '90s', '3m' or '1h'")  # noqa: TRY004
    match = _DURATION.fullmatch(value.strip())
    if not value.strip() or match is None:
        raise ValueError(f"{value!r} is not a duration (write e.g. '90s', '3m', '1h', '1h30m')")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0):
        raise ValueError(f"{value!r} is not longer than zero")
    return duration


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A positive ``timedelta`` written in TOML as ``"90s"``, ``"3m"``, ``"1h"``."""


# --- reading TOML and reporting errors -------------------------------------------------------


def parse_toml(raw: bytes, path: Path) -> dict[str, Any]:
    """``raw`` parsed as TOML; errors name ``path`` and, for syntax, the line and column."""
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line L, column C)".
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that the value at ``loc`` is validated by, if it is a model."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
            continue
        # Inside a container (dict value, list item, optional): step to the element type.
        current = _element_type(current)
        if current is None:
            return None
    while not (isinstance(current, type) and issubclass(current, BaseModel)):
        current = _element_type(current)
        if current is None:
            return None
    return current


def _element_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is Annotated:
        return args[0] if args else None
    if origin in (typing.Union, types.UnionType):
        return args[0] if len(args) == 1 else None
    if origin in (dict, Mapping):
        return args[1] if len(args) == 2 else None
    if origin in (list, tuple, frozenset, set):
        return args[0] if args else None
    return None


def _reason(error: ErrorDetails, model: type[BaseModel]) -> str:
    """One error's reason in words; never the input value, which may be a secret."""
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        allowed = list(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{hint}{listed}"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    # Our own validators raise ValueError with a complete sentence; pydantic prefixes it.
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def config_error(path: Path, error: ValidationError, model: type[BaseModel]) -> ConfigError:
    """A ``ConfigError`` listing each problem as ``file: key.path: reason``."""
    lines = []
    for detail in error.errors(include_url=False, include_input=False):
        where = location(detail["loc"])
        reason = _reason(detail, model)
        lines.append(f"{path}: {where}: {reason}" if where else f"{path}: {reason}")
    return ConfigError("\n".join(lines))


# --- the daemon config -----------------------------------------------------------------------

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MIN_TOKEN_LENGTH = 16  # a guessable token is no authentication; 16 random characters is cheap


class Role(StrEnum):
    """What an officer may do in the console and API."""

    OFFICER = "officer"  # issue, update, cancel, watch progress, record a confirmation
    APPROVER = "approver"  # the second officer who releases orange and red manual warnings
    ADMIN = "admin"  # rosters, policy reloads, users


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid {what} name (lower-case letters, digits, '-', '_')"
        )
    return value


class _Principal(_Strict):
    """A token holder: the token inline or read from ``token_file`` (relative to the config)."""

    name: str = ""  # the table's name, filled in by AppConfig
    token: SecretStr
    token_file: Path | None = None  # where the token was read from, resolved

    @model_validator(mode="before")
    @classmethod
    def _read_token_file(cls, data: object, info: ValidationInfo) -> object:
        if not isinstance(data, dict):
            return data
        if ("token" in data) == ("token_file" in data):
            raise ValueError("give exactly one of 'token' and 'token_file'")
        if "token_file" not in data:
            return data
        named = data["token_file"]
        if not isinstance(named, str) or not named:
            raise ValueError("token_file must be a path, as a string")
        base = Path()
        if isinstance(info.context, dict):
            base = info.context.get("base", base)
        file = Path(named) if Path(named).is_absolute() else base / named
        try:
            text = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"token_file {str(file)!r} cannot be read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"token_file {str(file)!r} is not UTF-8 text") from None
        return {**data, "token": text, "token_file": file}

    @model_validator(mode="after")
    def _long_enough(self) -> _Principal:
        if len(self.secret) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the token is too short (at least {MIN_TOKEN_LENGTH} characters)")
        return self

    @property
    def secret(self) -> bytes:
        return self.token.get_secret_value().encode("utf-8")


class Feed(_Principal):
    """An automatic source (meteorological, flood, seismic…) allowed to post warnings."""

    expected_heartbeat: Duration | None = Field(
        default=None, description="a feed silent for longer raises an alarm to the duty officer"
    )
    senders: list[str] = Field(
        default_factory=list,
        description="the CAP senders this feed may post as; empty: any that no other feed lists",
    )


def _role(value: object) -> object:
    if isinstance(value, str) and value not in {r.value for r in Role}:
        allowed = ", ".join(r.value for r in Role)
        raise ValueError(f"{value!r} is not a role ({allowed})")
    return value


class User(_Principal):
    """An officer who signs in to the console or API with a token."""

    roles: frozenset[Annotated[Role, BeforeValidator(_role)]]

    @field_validator("roles")
    @classmethod
    def _some_role(cls, roles: frozenset[Role]) -> frozenset[Role]:
        if not roles:
            raise ValueError("a user needs at least one role (officer, approver, admin)")
        return roles

    def has(self, role: Role) -> bool:
        return role in self.roles


def _has_type(table: dict[str, object]) -> dict[str, object]:
    kind = table.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError("needs a 'type' naming its plugin, as a string")
    return table


ChannelTable = Annotated[dict[str, object], AfterValidator(_has_type)]
"""A channel's raw table; the channel registry validates it against the plugin's model."""


class HttpConfig(_Strict):
    """The HTTP listener: overrides of ``WARND_HTTP_HOST`` / ``WARND_HTTP_PORT``, and TLS."""

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate chain; with tls_key, warnd serves HTTPS"
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")

    @model_validator(mode="after")
    def _both_or_neither(self) -> HttpConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        return self

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _beside_the_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _beside_the_config(value, info)


def _beside_the_config(value: Path | None, info: ValidationInfo) -> Path | None:
    # Relative to the config file's folder, as token files are.
    if value is None or value.is_absolute():
        return value
    base = Path()
    if isinstance(info.context, dict):
        base = info.context.get("base", base)
    return base / value


class SpeakersConfig(_Strict):
    """The watch on the loudspeakers' states (the broadcast channels report them)."""

    offline_alarm_share: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="a county with more than this share of its speakers offline raises an alarm",
    )
    offline_alarm_min: int = Field(
        default=3,
        ge=1,
        description="and with at least this many offline (one dead speaker of two is no alarm)",
    )


_BROKER = re.compile(r"(?P<scheme>mqtts?)://(?P<host>[^:/\s]+)(?::(?P<port>\d{1,5}))?/?")


class EewSubscription(_Strict):
    """``[eew]``: the seismic service's early-warning reports over MQTT (the national feed's
    way), each message the JSON of ``POST /api/v1/eew`` (or its CAP 1.2)."""

    broker: str = Field(description="mqtt://host[:port] or mqtts://host[:port] (TLS)")
    topic: str = Field(min_length=1, description="the topic filter to subscribe to")
    feed: str = Field(
        default="eew-mqtt", description="the name its reports and refusals are recorded under"
    )
    username: str = ""
    password: SecretStr | None = None
    tls_ca_file: Path | None = Field(
        default=None, description="PEM certificates to trust for mqtts; the system's otherwise"
    )
    client_id: str = Field(default="", description="empty: warnd-eew-<host>-<process id>")

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        found = _BROKER.fullmatch(value)
        if found is None or not 0 < int(found["port"] or 1883) < 65536:
            raise ValueError(f"{value!r} is not mqtt://host[:port] or mqtts://host[:port]")
        return value

    @field_validator("feed")
    @classmethod
    def _feed_name(cls, value: str) -> str:
        _check_name(value, "feed")
        return value

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_beside_the_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _beside_the_config(value, info)

    @property
    def tls(self) -> bool:
        return self.broker.startswith("mqtts:")

    @property
    def host(self) -> str:
        found = _BROKER.fullmatch(self.broker)
        assert found is not None  # validated
        return found["host"]

    @property
    def port(self) -> int:
        found = _BROKER.fullmatch(self.broker)
        assert found is not None  # validated
        return int(found["port"] or (8883 if self.tls else 1883))


class AppConfig(_Strict):
    """The daemon's config file: who may post warnings, who may sign in, which channels exist."""

    feeds: dict[str, Feed] = Field(default_factory=dict)
    users: dict[str, User] = Field(default_factory=dict)
    # Raw tables: the channel registry validates each against its plugin's model. Kept out of
    # repr because a table holds gateway passwords until the plugin wraps them in SecretStr.
    channels: dict[str, ChannelTable] = Field(default_factory=dict, repr=False)
    http: HttpConfig = Field(default_factory=HttpConfig)
    speakers: SpeakersConfig = Field(default_factory=SpeakersConfig)
    eew: EewSubscription | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: object) -> object:
        # The table name is the principal's name; copy it in so a Feed or User knows who it is.
        if isinstance(data, dict):
            data = dict(data)
            for section in ("feeds", "users"):
                table = data.get(section)
                if isinstance(table, dict):
                    data[section] = {
                        k: {**v, "name": k} if isinstance(v, dict) else v for k, v in table.items()
                    }
        return data

    @field_validator("feeds", "users", "channels")
    @classmethod
    def _valid_names(cls, table: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        what = {"feeds": "feed", "users": "user", "channels": "channel"}[str(info.field_name)]
        for name in table:
            _check_name(name, what)
        return table

    @model_validator(mode="after")
    def _unique_tokens(self) -> AppConfig:
        # One token, one principal: otherwise a feed's token could sign in as an officer.
        seen: list[tuple[str, bytes]] = []
        principals: list[tuple[str, _Principal]] = [
            *((f"feeds.{n}", f) for n, f in self.feeds.items()),
            *((f"users.{n}", u) for n, u in self.users.items()),
        ]
        for where, principal in principals:
            for other, secret in seen:
                if hmac.compare_digest(secret, principal.secret):
                    raise ValueError(f"{other} and {where} have the same token")
            seen.append((where, principal.secret))
        return self

    @model_validator(mode="after")
    def _senders_owned_once(self) -> AppConfig:
        # A sender two feeds may use would let either post the other's messages.
        owner: dict[str, str] = {}
        for name, feed in self.feeds.items():
            for sender in feed.senders:
                if sender in owner:
                    raise ValueError(
                        f"feeds.{owner[sender]} and feeds.{name} both list sender {sender!r}"
                    )
                owner[sender] = name
        return self

    def sender_refusal(self, feed: str, sender: str) -> str | None:
        """Why ``feed`` may not post a message as ``sender``, or None when it may."""
        own = self.feeds[feed].senders
        if own:
            if sender in own:
                return None
            return (
                f"sender {sender!r} is not one of feed {feed!r}'s senders ({', '.join(own)}); "
                "ask the operators to add it to [feeds.<name>] senders"
            )
        for other, entry in self.feeds.items():
            if sender in entry.senders:
                return f"sender {sender!r} belongs to feed {other!r}, not to feed {feed!r}"
        return None

    def feed_for_token(self, token: str) -> str | None:
        """The name of the feed this bearer token belongs to, or None."""
        found = _match(self.feeds, token)
        return found.name if found is not None else None

    def user_for_token(self, token: str) -> User | None:
        """The user this bearer token belongs to, or None."""
        return _match(self.users, token)


_P = TypeVar("_P", bound=_Principal)


def _match(principals: Mapping[str, _P], token: str) -> _P | None:
    # Every candidate is compared, and each comparison is constant-time, so the time taken says
    # nothing about how much of a token was right or which entry matched.
    # A header with bytes that are not UTF-8 arrives with them escaped: compare the raw bytes.
    offered = token.encode("utf-8", "surrogateescape")
    found = None
    for principal in principals.values():
        if hmac.compare_digest(principal.secret, offered):
            found = principal
    return found if offered else None


def load_config_data(data: Mapping[str, object], *, source: Path) -> AppConfig:
    """A config from already-parsed data (tests, ``warnd demo``); ``source`` names it in errors.

    Token files are read relative to ``source``'s folder.
    """
    try:
        return AppConfig.model_validate(dict(data), context={"base": source.parent})
    except ValidationError as exc:
        raise config_error(source, exc, AppConfig) from None
