"""The dissemination policy: the default file's shape, precise errors, safe reloads, night, gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from warnd.core.errors import ConfigError
from warnd.core.vocabulary import Audience, Level
from warnd.policy.loader import PolicyHolder, load_policy
from warnd.policy.model import Policy
from warnd.runtime.settings import REPO_CONFIG_DIR

DEFAULT = REPO_CONFIG_DIR / "policy.toml"
TEMPLATES = REPO_CONFIG_DIR / "templates"
CST = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEFAULT)


def write_policy(tmp_path: Path, *replacements: tuple[str, str], extra: str = "") -> Path:
    """A copy of the default policy with text replaced, using the repository's templates."""
    text = DEFAULT.read_text(encoding="utf-8")
    text = text.replace('folder = "templates"', f'folder = "{TEMPLATES}"')
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "policy.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    return str(caught.value)


# --- the default policy -------------------------------------------------------------------------


def test_default_policy_blue_and_yellow(policy: Policy) -> None:
    blue = policy.rule("rainstorm", Level.BLUE)
    assert list(blue.audiences) == [Audience.RESPONDER]
    assert blue.audiences[Audience.RESPONDER].channels == ["sms"]
    assert not blue.ack.required
    assert blue.escalation == []

    yellow = policy.rule("rainstorm", Level.YELLOW)
    assert set(yellow.audiences) == {Audience.RESPONDER, Audience.FACILITY}
    assert yellow.audiences[Audience.FACILITY].channels == ["sms"]
    assert not yellow.ack.required


def test_default_policy_orange(policy: Policy) -> None:
    orange = policy.rule("rainstorm", Level.ORANGE)
    assert set(orange.audiences) == set(Audience)
    assert orange.audiences[Audience.RESPONDER].channels == ["sms", "voice"]
    assert orange.audiences[Audience.FACILITY].channels == ["sms", "voice"]
    assert orange.audiences[Audience.HELPER].channels == ["sms"]
    assert orange.audiences[Audience.HOUSEHOLD].channels == ["sms"]
    assert orange.audiences[Audience.BROADCAST].channels == ["broadcast"]
    assert orange.ack.required
    assert orange.ack.within == {
        "county": timedelta(minutes=5),
        "town": timedelta(minutes=10),
        "village": timedelta(minutes=10),
    }
    assert [s.action for s in orange.escalation] == ["repeat", "backup", "superior", "duty_officer"]
    afters = [s.after for s in orange.escalation]
    assert afters == sorted(afters)
    assert afters[0] == timedelta(minutes=3)


def test_default_policy_red_rings_at_night(policy: Policy) -> None:
    red = policy.rule("flash_flood", Level.RED)
    assert set(red.audiences) == set(Audience)
    responders = red.audiences[Audience.RESPONDER]
    assert responders.channels_at(night=False) == ["sms", "voice"]
    assert responders.channels_at(night=True) == ["voice", "sms"]
    households = red.audiences[Audience.HOUSEHOLD]
    assert households.channels == ["sms"]
    assert households.fallback_at(night=True) == ["voice"]
    assert red.ack.required
    assert red.escalation[0].after == timedelta(minutes=2)


def test_default_policy_earthquake_is_red_like_with_broadcast_first(policy: Policy) -> None:
    for level in Level:
        rule = policy.rule("earthquake", level)
        assert set(rule.audiences) == set(Audience)
        assert rule.ack.required
        assert rule.rank(Audience.BROADCAST) == 0
        assert rule.rank(Audience.RESPONDER) == 1
        assert "voice" in rule.audiences[Audience.RESPONDER].channels_at(night=True)
    # Other hazards keep the usual order: responders first.
    assert policy.rule("rainstorm", Level.RED).rank(Audience.RESPONDER) == 0
    assert policy.rule("rainstorm", Level.RED).rank(Audience.HOUSEHOLD) == 4


def test_default_policy_other_sections(policy: Policy) -> None:
    assert policy.signature == "【济宁市应急管理局】"
    assert policy.night.timezone == "Asia/Shanghai"
    assert policy.templates.name(Audience.HOUSEHOLD, "sms") == "household_sms.j2"
    assert policy.templates.name(Audience.RESPONDER, "voice", cancel=True) == "cancel_voice.j2"
    assert policy.fingerprint
    door, gong = policy.field_tasks.door_knock, policy.field_tasks.gong
    assert door.applies(Level.ORANGE, night=False)
    assert not door.applies(Level.BLUE, night=False)
    assert door.applies(Level.BLUE, night=True)
    assert gong.applies(Level.RED, night=False)
    assert not gong.applies(Level.YELLOW, night=True)


def test_unknown_hazard_falls_back_to_the_level_rule(policy: Policy) -> None:
    assert policy.rule("no_such_hazard", Level.RED) is policy.levels[Level.RED]


def test_policy_without_files_has_the_documented_defaults() -> None:
    minimal = Policy.model_validate(
        {
            "levels": {
                lv.value: {
                    "audiences": {"responder": {"channels": ["sms", "voice"]}},
                }
                for lv in Level
            }
        }
    )
    assert minimal.night.start.hour == 22
    assert minimal.night.end.hour == 6
    assert minimal.publish.manual_approval_levels == [Level.ORANGE, Level.RED]
    assert minimal.templates.name(Audience.BROADCAST, "broadcast") == "broadcast.j2"
    with pytest.raises(ConfigError, match="without templates"):
        _ = minimal.compiled_templates


# --- errors name the file, the key and the reason ---------------------------------------------


def test_bad_channel_kind(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path,
        (
            '[levels.red.audiences.household]\nchannels = ["sms"]',
            '[levels.red.audiences.household]\nchannels = ["fax"]',
        ),
    )
    assert load_error(path) == (
        f"{path}: levels.red.audiences.household.channels[0]: "
        "'fax' is not a channel kind (sms, voice, broadcast)"
    )


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path,
        ("[levels.red.audiences.household]\nchannels", "[levels.red.audiences.household]\nchanels"),
    )
    message = load_error(path)
    assert f"{path}: levels.red.audiences.household.chanels: unknown key" in message
    assert "did you mean 'channels'?" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = load_error(write_policy(tmp_path, extra='\n[nigth]\nstart = "23:00"\n'))
    assert "nigth: unknown key (did you mean 'night'?)" in message


def test_bad_duration(tmp_path: Path) -> None:
    path = write_policy(tmp_path, ('after = "3m"', 'after = "3 min"'))
    assert load_error(path) == (
        f"{path}: levels.orange.escalation[0].after: "
        "'3 min' is not a duration (write e.g. '90s', '3m', '1h', '1h30m')"
    )


def test_bare_number_is_not_a_duration(tmp_path: Path) -> None:
    path = write_policy(tmp_path, ('county = "5m", town', "county = 5, town"))
    message = load_error(path)
    assert "levels.orange.ack.within.county: write a duration as a string" in message


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path, ('signature = "【济宁市应急管理局】"', "signature = 【济宁市应急管理局】")
    )
    message = load_error(path)
    assert message.startswith(f"{path}: TOML syntax error:")
    assert "line" in message
    assert "column" in message


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.toml: cannot read"):
        load_policy(Path("/nonexistent/nowhere.toml"))


def test_unknown_level_and_hazard(tmp_path: Path) -> None:
    message = load_error(
        write_policy(tmp_path, extra='\n[levels.purple.audiences.responder]\nchannels = ["sms"]\n')
    )
    assert "levels.purple:" in message
    message = load_error(
        write_policy(
            tmp_path, ("[hazards.earthquake.all_levels]\n", "[hazards.earthqake.all_levels]\n")
        )
    )
    assert "'earthqake' is not a hazard (did you mean 'earthquake'?)" in message


def test_every_level_needs_a_rule() -> None:
    with pytest.raises(ValueError, match="missing: blue"):
        Policy.model_validate(
            {
                "levels": {
                    lv.value: {"audiences": {"responder": {"channels": ["sms", "voice"]}}}
                    for lv in Level
                    if lv is not Level.BLUE
                }
            }
        )


def test_red_must_ring_responders_at_night(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path,
        (
            'channels = ["sms", "voice"]\nnight_channels = ["voice", "sms"]  # the call',
            'channels = ["sms", "voice"]\nnight_channels = ["sms"]  # the call',
        ),
    )
    message = load_error(path)
    assert "levels.red.audiences.responder: a red warning must call responders by voice" in message


def test_escalation_steps_count_from_the_call_out(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path, ('action = "backup"\nafter = "6m"', 'action = "backup"\nafter = "3m"')
    )
    message = load_error(path)
    assert "levels.orange: escalation[1]: after must be later than the previous step" in message


def test_broadcast_is_only_for_loudspeakers(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path,
        (
            '[levels.orange.audiences.household]\nchannels = ["sms"]',
            '[levels.orange.audiences.household]\nchannels = ["sms", "broadcast"]',
        ),
    )
    assert "household audience cannot be reached by 'broadcast'" in load_error(path)


def test_fallback_must_differ_from_channels(tmp_path: Path) -> None:
    path = write_policy(tmp_path, ('fallback = ["voice"]', 'fallback = ["sms"]'))
    assert "levels.red.audiences.household: fallback 'sms' is already sent" in load_error(path)


def test_manual_orange_and_red_always_need_approval(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path, ('manual_approval_levels = ["orange", "red"]', 'manual_approval_levels = ["red"]')
    )
    assert "publish.manual_approval_levels: must include orange" in load_error(path)


def test_night_window_cannot_be_empty(tmp_path: Path) -> None:
    path = write_policy(tmp_path, ('end = "06:00"', 'end = "22:00"'))
    assert "the window would be empty" in load_error(path)


def test_unknown_time_zone(tmp_path: Path) -> None:
    path = write_policy(tmp_path, ('timezone = "Asia/Shanghai"', 'timezone = "Asia/Jining"'))
    assert "night.timezone: 'Asia/Jining' is not a known time zone" in load_error(path)


def test_template_overrides_merge_with_defaults(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path,
        (
            'household = { sms = "household_sms.j2", voice = "household_voice.j2" }',
            'household = { sms = "facility_sms.j2" }',
        ),
    )
    loaded = load_policy(path)
    assert loaded.templates.name(Audience.HOUSEHOLD, "sms") == "facility_sms.j2"
    assert loaded.templates.name(Audience.HOUSEHOLD, "voice") == "household_voice.j2"


def test_template_name_cannot_leave_the_folder(tmp_path: Path) -> None:
    path = write_policy(tmp_path, ('sms = "household_sms.j2"', 'sms = "../secrets.j2"'))
    assert "templates.household.sms: '../secrets.j2' is not a template file name" in load_error(
        path
    )


def test_missing_template_file(tmp_path: Path) -> None:
    path = write_policy(tmp_path, ('sms = "household_sms.j2"', 'sms = "nothing_here.j2"'))
    message = load_error(path)
    assert message.startswith(f"{path}: ")
    assert "nothing_here.j2: template not found" in message


# --- reload ---------------------------------------------------------------------------------------


def test_reload_keeps_the_previous_policy_on_a_bad_file(tmp_path: Path) -> None:
    path = write_policy(tmp_path)
    holder = PolicyHolder(path)
    before = holder.current
    assert holder() is before

    good_text = path.read_text(encoding="utf-8")
    path.write_text(
        good_text.replace('channels = ["sms"]', 'channels = ["fax"]', 1), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="'fax' is not a channel kind"):
        holder.reload()
    assert holder.current is before

    path.write_text(good_text.replace('after = "3m"', 'after = "4m"'), encoding="utf-8")
    after = holder.reload()
    assert holder.current is after
    assert after.rule("rainstorm", Level.ORANGE).escalation[0].after == timedelta(minutes=4)
    assert after.fingerprint != before.fingerprint


def test_reload_keeps_the_previous_policy_on_a_broken_template(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    for file in TEMPLATES.glob("*.j2"):
        (folder / file.name).write_text(file.read_text(encoding="utf-8"), encoding="utf-8")
    path = write_policy(tmp_path, (f'folder = "{TEMPLATES}"', 'folder = "templates"'))
    holder = PolicyHolder(path)
    before = holder.current
    (folder / "household_sms.j2").write_text("{{ place }}{% if %}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"household_sms\.j2:1:"):
        holder.reload()
    assert holder.current is before


# --- night window ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hour", "minute", "night"),
    [
        (21, 59, False),
        (22, 0, True),
        (23, 59, True),
        (0, 0, True),
        (3, 0, True),
        (5, 59, True),
        (6, 0, False),
        (12, 0, False),
    ],
)
def test_is_night_around_the_wrap(policy: Policy, hour: int, minute: int, night: bool) -> None:
    at = datetime(2024, 7, 1, hour, minute, tzinfo=CST)
    assert policy.night.is_night(at) is night


def test_is_night_converts_to_local_time(policy: Policy) -> None:
    assert policy.night.is_night(datetime(2024, 7, 1, 14, 30, tzinfo=UTC))  # 22:30 in Jining
    assert not policy.night.is_night(datetime(2024, 7, 1, 22, 30, tzinfo=UTC))  # 06:30


def test_is_night_refuses_naive_times(policy: Policy) -> None:
    with pytest.raises(ValueError, match="aware"):
        policy.night.is_night(datetime(2024, 7, 1, 23, 0))  # noqa: DTZ001 - the point of the test


def test_night_window_that_does_not_wrap() -> None:
    from warnd.policy.model import NightWindow

    window = NightWindow.model_validate({"start": "01:00", "end": "05:00"})
    assert window.is_night(datetime(2024, 7, 1, 1, 0, tzinfo=CST))
    assert not window.is_night(datetime(2024, 7, 1, 23, 0, tzinfo=CST))
    assert not window.is_night(datetime(2024, 7, 1, 5, 0, tzinfo=CST))


# --- approval -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "manual", "expected"),
    [
        (Level.BLUE, True, False),
        (Level.YELLOW, True, False),
        (Level.ORANGE, True, True),
        (Level.RED, True, True),
        (Level.ORANGE, False, False),
        (Level.RED, False, False),
    ],
)
def test_needs_approval(policy: Policy, level: Level, manual: bool, expected: bool) -> None:
    assert policy.needs_approval(level, manual) is expected


def test_feeds_can_be_made_to_wait(tmp_path: Path) -> None:
    loaded = load_policy(
        write_policy(tmp_path, ("feed_approval_levels = []", 'feed_approval_levels = ["red"]'))
    )
    assert loaded.needs_approval(Level.RED, manual=False)
    assert not loaded.needs_approval(Level.ORANGE, manual=False)
