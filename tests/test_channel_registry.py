"""The channel registry: explicit and entry-point plugins, duplicates, and config errors."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from pydantic import SecretStr

from channels import registry as registry_module
from channels.base import Channel, ChannelConfig, ChannelKind, Limits, OutboundMessage, SendResult
from channels.http_sms.channel import HttpSmsConfig
from channels.log import LogChannel
from channels.registry import (
    ChannelConfigError,
    ChannelRegistry,
    DuplicateChannelTypeError,
    build_channels,
    default_registry,
)
from channels.simulator import SimulatorChannel
from tests.channel_contract import assert_no_secret_leaks

PASSWORD = "hunter2-Jining-370800"
TOKEN = "tok-9f8e7d6c5b4a"


class VaultConfig(ChannelConfig):
    """A config with secrets, as a real SMS gateway's would have."""

    host: str
    password: SecretStr
    token: SecretStr | None = None


class VaultChannel(Channel):
    """A do-nothing channel whose only purpose is to carry secrets through the registry."""

    kind = ChannelKind.SMS
    config_model = VaultConfig

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=1.0, window=1, max_text=70)

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        raise NotImplementedError


class OtherVaultChannel(VaultChannel):
    """Another class, to collide with VaultChannel's type name."""


def fresh_registry() -> ChannelRegistry:
    registry = ChannelRegistry()
    registry.register("log", LogChannel)
    registry.register("simulator", SimulatorChannel)
    return registry


def problems_of(tables: dict[str, object], registry: ChannelRegistry) -> tuple[str, ...]:
    with pytest.raises(ChannelConfigError) as caught:
        registry.build(tables)  # type: ignore[arg-type]  # deliberately malformed tables
    return caught.value.problems


def test_installed_plugins_are_found_through_entry_points() -> None:
    registry = ChannelRegistry()
    registry.discover()
    assert {"log", "simulator"} <= set(registry.types())
    assert registry.plugin("log") is LogChannel
    assert registry.plugin("simulator") is SimulatorChannel
    assert default_registry() is default_registry()  # discovered once per process


def test_the_same_class_twice_is_no_conflict() -> None:
    registry = ChannelRegistry()
    registry.discover()
    registry.register("log", LogChannel)  # already known through its entry point
    registry.register("vault", VaultChannel)
    registry.register("vault", VaultChannel)
    assert registry.plugin("vault") is VaultChannel


def test_a_duplicate_type_name_is_refused() -> None:
    registry = fresh_registry()
    registry.register("vault", VaultChannel)
    with pytest.raises(DuplicateChannelTypeError) as caught:
        registry.register("vault", OtherVaultChannel)
    message = str(caught.value)
    assert "'vault' is claimed twice" in message
    assert "test_channel_registry:VaultChannel" in message
    assert "test_channel_registry:OtherVaultChannel" in message
    with pytest.raises(DuplicateChannelTypeError, match="'log' is claimed twice"):
        registry.register("log", VaultChannel)
    assert isinstance(caught.value, ChannelConfigError), "the daemon translates one error type"


def test_two_packages_claiming_one_name_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    claims = [
        EntryPoint("sms", "gateway_a.sms:SmsChannel", "warnd.channels"),
        EntryPoint("sms", "gateway_b.sms:SmsChannel", "warnd.channels"),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: claims)
    with pytest.raises(DuplicateChannelTypeError) as caught:
        ChannelRegistry().discover()
    assert "gateway_a.sms:SmsChannel" in str(caught.value)
    assert "gateway_b.sms:SmsChannel" in str(caught.value)


def test_a_broken_plugin_fails_only_when_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    claims = [
        EntryPoint("log", "channels.log:LogChannel", "warnd.channels"),
        EntryPoint("ghost", "no_such_package.ghost:GhostChannel", "warnd.channels"),
        EntryPoint("path", "pathlib:Path", "warnd.channels"),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: claims)
    registry = ChannelRegistry()
    registry.discover()  # importing nothing yet
    built = registry.build({"trail": {"type": "log", "path": str(tmp_path / "t.jsonl")}})
    assert isinstance(built["trail"], LogChannel)
    problems = problems_of({"a": {"type": "ghost"}, "b": {"type": "path"}}, registry)
    assert problems[0].startswith(
        "channels.a.type: channel type 'ghost' (no_such_package.ghost:GhostChannel "
        "(unknown package)) cannot be loaded: ModuleNotFoundError("
    )
    assert problems[1] == (
        "channels.b.type: channel type 'path' (pathlib:Path (unknown package)) "
        "is not a Channel subclass"
    )


def test_only_concrete_channel_classes_register() -> None:
    registry = ChannelRegistry()
    with pytest.raises(TypeError, match="not a Channel subclass"):
        registry.register("path", Path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="abstract"):
        registry.register("abstract", Channel)  # type: ignore[type-abstract]
    with pytest.raises(ChannelConfigError, match="must be lower-case"):
        registry.register("SMS-1", VaultChannel)


def test_register_adds_to_the_process_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = fresh_registry()
    monkeypatch.setattr(registry_module, "default_registry", lambda: registry)
    registry_module.register("vault", VaultChannel)
    assert registry.plugin("vault") is VaultChannel
    built = build_channels({"v": {"type": "vault", "host": "smsc", "password": PASSWORD}})
    assert isinstance(built["v"], VaultChannel)


def test_tables_become_configured_channels(tmp_path: Path) -> None:
    channels = build_channels(
        {
            "trail": {"type": "log", "path": str(tmp_path / "t.jsonl"), "rate_per_s": 50},
            "sim-voice": {"type": "simulator", "kind": "voice", "window": 8},
        },
        registry=fresh_registry(),
    )
    assert list(channels) == ["trail", "sim-voice"]
    trail, voice = channels["trail"], channels["sim-voice"]
    assert (trail.name, trail.kind, trail.limits.rate_per_s) == ("trail", ChannelKind.SMS, 50.0)
    assert (voice.name, voice.kind, voice.limits.window) == ("sim-voice", ChannelKind.VOICE, 8)
    assert build_channels({}, registry=fresh_registry()) == {}


def test_errors_name_the_key_path() -> None:
    registry = fresh_registry()
    assert problems_of({"sms1": {"type": "simulator", "rate_per_s": 0}}, registry) == (
        "channels.sms1.rate_per_s: Input should be greater than 0",
    )
    assert problems_of({"x": {"type": "smpp2"}}, registry) == (
        "channels.x.type: unknown channel type 'smpp2' (known: log, simulator)",
    )
    assert problems_of({"x": {"kind": "sms"}}, registry) == (
        "channels.x.type: missing (known: log, simulator)",
    )
    assert problems_of({"x": {"type": 3}}, registry) == (
        "channels.x.type: must be a string (known: log, simulator)",
    )
    assert problems_of({"x": "simulator"}, registry) == (
        "channels.x: expected a table ([channels.x])",
    )
    assert problems_of({"bad name": {"type": "log"}}, registry) == (
        "channels.bad name: a channel name is letters, digits, '_' and '-', "
        "starting with a letter or digit",
    )
    assert problems_of({"sim": {"type": "simulator", "colour": "red"}}, registry) == (
        "channels.sim.colour: Extra inputs are not permitted",
    )
    assert problems_of({"sim": {"type": "simulator", "reply_delay_s": [1, -1]}}, registry) == (
        "channels.sim.reply_delay_s[1]: Input should be greater than or equal to 0",
    )
    assert problems_of({"trail": {"type": "log"}}, registry) == (
        "channels.trail.path: Field required",
    )


def test_every_problem_is_reported_at_once_and_nothing_is_built() -> None:
    problems = problems_of(
        {
            "ok": {"type": "simulator"},
            "a": {"type": "simulator", "window": 0, "seed": "x"},
            "b": {"type": "nope"},
        },
        fresh_registry(),
    )
    assert problems == (
        "channels.a.window: Input should be greater than or equal to 1",
        "channels.a.seed: Input should be a valid integer, unable to parse string as an integer",
        "channels.b.type: unknown channel type 'nope' (known: log, simulator)",
    )
    with pytest.raises(ChannelConfigError) as caught:
        fresh_registry().build({"a": {"type": "simulator", "window": 0}})
    assert str(caught.value) == "channels.a.window: Input should be greater than or equal to 1"


def test_secrets_never_appear_in_errors_or_reprs() -> None:
    registry = fresh_registry()
    registry.register("vault", VaultChannel)
    # Secrets in the wrong place or of the wrong type: the errors name keys, never values.
    problems = problems_of(
        {
            "v1": {"type": "vault", "host": "smsc", "password": 370800123},
            "v2": {"type": "vault", "host": "smsc", "password": PASSWORD, "pasword": TOKEN},
            "v3": {"type": "vault", "host": ["smsc"], "password": PASSWORD, "token": [TOKEN]},
        },
        registry,
    )
    text = "\n".join(problems)
    assert "370800123" not in text
    assert PASSWORD not in text
    assert TOKEN not in text
    assert "channels.v1.password: Input should be a valid string" in problems
    assert "channels.v2.pasword: Extra inputs are not permitted" in problems

    built = registry.build(
        {"vault": {"type": "vault", "host": "smsc", "password": PASSWORD, "token": TOKEN}}
    )
    channel = built["vault"]
    assert_no_secret_leaks(channel)
    assert isinstance(channel.config, VaultConfig)
    assert channel.config.password.get_secret_value() == PASSWORD  # still usable by the plugin


def test_a_secret_may_be_read_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "smsc.secret"
    secret.write_text("s3cret-0123456789abcdef\n")
    table = {
        "type": "http_sms",
        "url": "https://gateway.example.net/v1/sms",
        "token_file": str(secret),
        "inbound_token_file": str(secret),
    }
    channel = build_channels({"sms": table})["sms"]
    config = channel.config
    assert isinstance(config, HttpSmsConfig)
    assert config.token.get_secret_value() == "s3cret-0123456789abcdef"
    assert config.inbound_token is not None
    assert "s3cret" not in repr(config)
    for bad, says in (
        ({"token_file": "smsc.secret"}, "token_file: give an absolute path"),
        ({"token_file": str(tmp_path / "missing")}, "cannot be read"),
        ({"token_file": str(secret), "token": "x"}, "give token or token_file, not both"),
        ({"url_file": str(secret)}, "url_file"),  # only secrets come from files
    ):
        with pytest.raises(ChannelConfigError, match=says):
            build_channels({"sms": {**table, **bad}})
