"""The daemon config file: feeds, users, channels; token files; errors that never leak secrets."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from warnd.core.config import AppConfig, Role, load_config_data, parse_duration
from warnd.core.errors import ConfigError
from warnd.runtime.config import load_config
from warnd.runtime.settings import REPO_CONFIG_DIR

FEED_TOKEN = "feed-token-0123456789abcdef"
USER_TOKEN = "user-token-fedcba9876543210"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "warnd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def test_no_path_is_an_empty_config() -> None:
    config = load_config(None)
    assert config.feeds == {}
    assert config.users == {}
    assert config.channels == {}
    assert config.http.host is None
    assert config.feed_for_token(FEED_TOKEN) is None
    assert config.user_for_token(USER_TOKEN) is None


def test_example_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "warnd.toml"
    shutil.copy(REPO_CONFIG_DIR / "warnd.example.toml", path)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    names = ["meteorological", "flood", "seismic", "duty-zhang", "chief-li", "admin"]
    for name in names:
        (secrets / f"{name}.token").write_text(f"{name}-token-0123456789abcdef\n")
    config = load_config(path)
    assert set(config.feeds) == {"meteorological", "flood", "seismic"}
    assert config.feeds["seismic"].expected_heartbeat == timedelta(minutes=5)
    assert config.users["chief-li"].roles == {Role.OFFICER, Role.APPROVER}
    assert config.channels["speaker-sim"] == {"type": "simulator", "kind": "broadcast"}
    assert config.http.port == 8379
    assert config.feed_for_token("flood-token-0123456789abcdef") == "flood"
    user = config.user_for_token("admin-token-0123456789abcdef")
    assert user is not None
    assert user.name == "admin"
    assert user.has(Role.ADMIN)
    assert not user.has(Role.APPROVER)


def test_token_file_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "cma.token").write_text(f"  {FEED_TOKEN}\n", encoding="utf-8")
    path = write(tmp_path, '[feeds.cma]\ntoken_file = "secrets/cma.token"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.feeds["cma"].token.get_secret_value() == FEED_TOKEN
    assert config.feeds["cma"].token_file == tmp_path / "secrets" / "cma.token"
    assert config.feed_for_token(FEED_TOKEN) == "cma"


def test_missing_token_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[feeds.cma]\ntoken_file = "secrets/none.token"\n')
    message = load_error(path)
    assert message.startswith(f"{path}: feeds.cma: token_file ")
    assert "cannot be read" in message


def test_token_and_token_file_together_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f'[feeds.cma]\ntoken = "{FEED_TOKEN}"\ntoken_file = "x.token"\n')
    message = load_error(path)
    assert message == f"{path}: feeds.cma: give exactly one of 'token' and 'token_file'"
    assert FEED_TOKEN not in message


def test_neither_token_nor_token_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[users.zhang]\nroles = ["officer"]\n')
    assert load_error(path) == f"{path}: users.zhang: give exactly one of 'token' and 'token_file'"


def test_unknown_role(tmp_path: Path) -> None:
    path = write(tmp_path, f'[users.zhang]\ntoken = "{USER_TOKEN}"\nroles = ["officer", "root"]\n')
    message = load_error(path)
    assert (
        message == f"{path}: users.zhang.roles[1]: 'root' is not a role (officer, approver, admin)"
    )


def test_user_needs_a_role(tmp_path: Path) -> None:
    path = write(tmp_path, f'[users.zhang]\ntoken = "{USER_TOKEN}"\nroles = []\n')
    assert "users.zhang.roles: a user needs at least one role" in load_error(path)


def test_secrets_never_in_repr_or_str(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[feeds.cma]\ntoken = "{FEED_TOKEN}"\n'
        f'[users.zhang]\ntoken = "{USER_TOKEN}"\nroles = ["officer"]\n'
        '[channels.sms]\ntype = "smpp"\npassword = "gateway-password-xyz"\n',
    )
    config = load_config(path)
    for shown in (repr(config), str(config), repr(config.feeds), repr(config.users["zhang"])):
        assert FEED_TOKEN not in shown
        assert USER_TOKEN not in shown
        assert "gateway-password-xyz" not in shown


def test_secrets_never_in_error_messages(tmp_path: Path) -> None:
    short = write(tmp_path, '[feeds.cma]\ntoken = "hunter2"\n')
    message = load_error(short)
    assert "feeds.cma: the token is too short (at least 16 characters)" in message
    assert "hunter2" not in message

    wrong_type = write(tmp_path, "[feeds.cma]\ntoken = 987654321987654321\n")
    message = load_error(wrong_type)
    assert "feeds.cma.token:" in message
    assert "987654321987654321" not in message

    twice = write(
        tmp_path,
        f'[feeds.cma]\ntoken = "{FEED_TOKEN}"\n'
        f'[users.zhang]\ntoken = "{FEED_TOKEN}"\nroles = ["admin"]\n',
    )
    message = load_error(twice)
    assert "feeds.cma and users.zhang have the same token" in message
    assert FEED_TOKEN not in message


def test_token_lookup(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[feeds.cma]\ntoken = "{FEED_TOKEN}"\n'
        f'[users.zhang]\ntoken = "{USER_TOKEN}"\nroles = ["officer", "approver"]\n',
    )
    config = load_config(path)
    assert config.feed_for_token(FEED_TOKEN) == "cma"
    assert config.feed_for_token(USER_TOKEN) is None  # a user's token is not a feed's
    assert config.feed_for_token(FEED_TOKEN[:-1]) is None
    assert config.feed_for_token("") is None
    assert config.feed_for_token("令牌-非ASCII也不会出错") is None
    user = config.user_for_token(USER_TOKEN)
    assert user is not None
    assert user.name == "zhang"
    assert user.roles == {Role.OFFICER, Role.APPROVER}
    assert config.user_for_token(FEED_TOKEN) is None


def test_channel_needs_a_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[channels.sms]\nhost = "10.0.0.1"\n')
    assert (
        load_error(path) == f"{path}: channels.sms: needs a 'type' naming its plugin, as a string"
    )


def test_bad_names_and_unknown_keys(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, f'[feeds."CMA Feed"]\ntoken = "{FEED_TOKEN}"\n'))
    assert "feeds: 'CMA Feed' is not a valid feed name" in message
    message = load_error(write(tmp_path, '[user.zhang]\nroles = ["officer"]\n'))
    assert "user: unknown key (did you mean 'users'?)" in message
    message = load_error(write(tmp_path, f'[feeds.cma]\ntokn = "{FEED_TOKEN}"\n'))
    assert "feeds.cma" in message
    assert FEED_TOKEN not in message


def test_bad_heartbeat_and_http(tmp_path: Path) -> None:
    path = write(tmp_path, f'[feeds.cma]\ntoken = "{FEED_TOKEN}"\nexpected_heartbeat = "often"\n')
    assert "feeds.cma.expected_heartbeat: 'often' is not a duration" in load_error(path)
    path = write(tmp_path, "[http]\nport = 70000\n")
    assert "http.port:" in load_error(path)


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "[feeds.cma\n"))
    assert "TOML syntax error" in message
    assert "line 1" in message
    assert "cannot read" in load_error(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("3m", timedelta(minutes=3)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0s", "3 min", "m", "5", "-3m", "3m90"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|zero"):
        parse_duration(text)


def test_config_is_immutable() -> None:
    config = AppConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.http = config.http  # type: ignore[misc]


def test_config_from_data() -> None:
    config = load_config_data({"feeds": {"demo": {"token": FEED_TOKEN}}}, source=Path("<demo>"))
    assert config.feed_for_token(FEED_TOKEN) == "demo"
    with pytest.raises(ConfigError, match=r"^<demo>: feeds\.demo: the token is too short"):
        load_config_data({"feeds": {"demo": {"token": "short"}}}, source=Path("<demo>"))
