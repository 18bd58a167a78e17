"""Message texts: every template for a red rainstorm on 任城区, exercises, length limits, safety."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from warnd.core.errors import ConfigError
from warnd.core.model import Area, NormalisedWarning
from warnd.core.texts import text_length
from warnd.core.vocabulary import EXERCISE_MARK, Audience, Level
from warnd.policy.loader import load_policy
from warnd.policy.model import Policy
from warnd.policy.render import ELLIPSIS, render
from warnd.policy.templates import load_templates
from warnd.runtime.settings import REPO_CONFIG_DIR

SIGNATURE = "【济宁市应急管理局】"
PLACE = "任城区"
DESCRIPTION = (
    "预计未来3小时任城区大部分地区降雨量将达100毫米以上，局部伴有雷电和短时大风，"
    "城区低洼地带可能出现严重内涝。"
)
INSTRUCTION = "请立即停止户外活动，远离河道、低洼地带和危房，地下车库车辆及时转移。"

# Every (audience, channel kind) the default templates cover.
PAIRS = [
    (Audience.RESPONDER, "sms"),
    (Audience.RESPONDER, "voice"),
    (Audience.BROADCAST, "broadcast"),
    (Audience.FACILITY, "sms"),
    (Audience.FACILITY, "voice"),
    (Audience.HELPER, "sms"),
    (Audience.HELPER, "voice"),
    (Audience.HOUSEHOLD, "sms"),
    (Audience.HOUSEHOLD, "voice"),
]
SMS_PAIRS = [p for p in PAIRS if p[1] == "sms"]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO_CONFIG_DIR / "policy.toml")


def red_rainstorm(**changes: object) -> NormalisedWarning:
    warning = NormalisedWarning(
        sender="jnqxt@cma",
        identifier="37080041600000_20240701050000",
        sent=datetime(2024, 7, 1, 5, 0, tzinfo=UTC),
        status="Actual",
        msg_type="Alert",
        hazard="rainstorm",
        level=Level.RED,
        area=Area(codes=("370811000000",)),
        description=DESCRIPTION,
        instruction=INSTRUCTION,
    )
    return replace(warning, **changes)  # type: ignore[arg-type]


def assert_essentials(text: str, audience: Audience, kind: str) -> None:
    assert PLACE in text
    assert "暴雨" in text
    assert "红色" in text
    if kind == "sms":
        assert text.startswith(SIGNATURE)
    if audience is Audience.RESPONDER:
        assert text.endswith("收到请回复1" if kind == "sms" else "确认收到请按1，重听请按2")


@pytest.mark.parametrize(("audience", "kind"), PAIRS)
def test_every_template_names_place_hazard_level(
    policy: Policy, audience: Audience, kind: str
) -> None:
    text = render(policy, red_rainstorm(), audience, kind, place=PLACE)
    assert_essentials(text, audience, kind)
    assert "演练" not in text
    assert "\n" not in text
    # Uncut, the whole description and instruction are there.
    assert DESCRIPTION in text
    assert INSTRUCTION in text


@pytest.mark.parametrize(("audience", "kind"), PAIRS)
def test_exercise_texts_say_so_at_the_front(policy: Policy, audience: Audience, kind: str) -> None:
    text = render(policy, red_rainstorm(status="Exercise"), audience, kind, place=PLACE)
    assert_essentials(text, audience, kind)
    front = SIGNATURE + EXERCISE_MARK if kind == "sms" else EXERCISE_MARK
    assert text.startswith(front)


@pytest.mark.parametrize(("audience", "kind"), SMS_PAIRS)
@pytest.mark.parametrize("status", ["Actual", "Exercise"])
def test_seventy_characters_keep_the_essentials(
    policy: Policy, audience: Audience, kind: str, status: str
) -> None:
    text = render(policy, red_rainstorm(status=status), audience, kind, place=PLACE, max_chars=70)
    assert text_length(text) <= 70
    assert_essentials(text, audience, kind)
    assert DESCRIPTION not in text  # cut (ending "…") or, if too little would be left, dropped
    if status == "Exercise":
        assert text.startswith(SIGNATURE + EXERCISE_MARK)


def test_description_is_cut_before_the_instruction(policy: Policy) -> None:
    text = render(policy, red_rainstorm(), Audience.HOUSEHOLD, "sms", place=PLACE, max_chars=70)
    assert INSTRUCTION in text
    assert text.count(ELLIPSIS) == 1
    cut_description = text.split("：", 1)[1].split(ELLIPSIS)[0]
    assert DESCRIPTION.startswith(cut_description)


def test_without_an_instruction_the_hazard_advice_is_given(policy: Policy) -> None:
    text = render(
        policy,
        red_rainstorm(description="", instruction=""),
        Audience.HOUSEHOLD,
        "sms",
        place=PLACE,
    )
    assert text == f"{SIGNATURE}任城区暴雨红色预警：请远离河道、低洼地带和危房，非必要不外出。"


def test_earthquake_advice(policy: Policy) -> None:
    text = render(
        policy,
        red_rainstorm(hazard="earthquake", level=Level.BLUE, description="", instruction=""),
        Audience.BROADCAST,
        "broadcast",
        place="微山县",
    )
    assert "微山县地震蓝色预警" in text
    assert "就近避险" in text


def test_minimum_that_does_not_fit_names_the_template(policy: Policy) -> None:
    with pytest.raises(ConfigError, match=r"responder_sms\.j2: even the shortest text"):
        render(policy, red_rainstorm(), Audience.RESPONDER, "sms", place=PLACE, max_chars=30)


def test_place_is_never_cut(policy: Policy) -> None:
    place = "任城区、兖州区、曲阜市、泗水县、邹城市等地"
    text = render(policy, red_rainstorm(), Audience.HOUSEHOLD, "sms", place=place, max_chars=70)
    assert place in text
    assert text_length(text) <= 70


def test_short_text_is_not_touched(policy: Policy) -> None:
    warning = red_rainstorm(description="", instruction="请远离河道。")
    full = render(policy, warning, Audience.HOUSEHOLD, "sms", place=PLACE)
    assert render(policy, warning, Audience.HOUSEHOLD, "sms", place=PLACE, max_chars=70) == full
    assert ELLIPSIS not in full


def test_per_warning_reply_code(policy: Policy) -> None:
    text = render(policy, red_rainstorm(), Audience.RESPONDER, "sms", place=PLACE, reply_code="23")
    assert text.endswith("收到请回复23")


def test_update_and_cancel(policy: Policy) -> None:
    update = render(
        policy, red_rainstorm(msg_type="Update"), Audience.HOUSEHOLD, "sms", place=PLACE
    )
    assert "（更新）" in update
    cancel = render(
        policy,
        red_rainstorm(msg_type="Cancel", description="", instruction=""),
        Audience.RESPONDER,
        "sms",
        place=PLACE,
    )
    assert cancel == f"{SIGNATURE}此前发布的任城区暴雨红色预警已解除。请留意后续信息。"
    spoken = render(
        policy,
        red_rainstorm(msg_type="Cancel", status="Exercise"),
        Audience.BROADCAST,
        "broadcast",
        place=PLACE,
    )
    assert spoken.startswith(EXERCISE_MARK)
    assert "已解除" in spoken


def test_newlines_and_spaces_in_fields_are_flattened(policy: Policy) -> None:
    text = render(
        policy,
        red_rainstorm(description="预计未来3小时\n  降雨量将达100毫米以上", instruction=""),
        Audience.HOUSEHOLD,
        "sms",
        place=PLACE,
    )
    assert "预计未来3小时降雨量将达100毫米以上。" in text


def test_text_length_counts_utf16_units() -> None:
    assert text_length("暴雨") == 2
    assert text_length("😀") == 2  # outside the BMP: two UCS-2 units


# --- templates that break the rules are refused at load ---------------------------------------


def copy_policy(tmp_path: Path, template: str, text: str) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(REPO_CONFIG_DIR / "templates", folder)
    (folder / template).write_text(text, encoding="utf-8")
    path = tmp_path / "policy.toml"
    shutil.copy(REPO_CONFIG_DIR / "policy.toml", path)
    return path


def test_template_without_place_is_refused(tmp_path: Path) -> None:
    path = copy_policy(
        tmp_path, "household_sms.j2", "{{ hazard }}{{ level }}预警：{{ instruction }}"
    )
    with pytest.raises(ConfigError, match=r"household_sms\.j2: the text does not name the place"):
        load_policy(path)


def test_responder_template_must_end_with_the_reply(tmp_path: Path) -> None:
    path = copy_policy(tmp_path, "responder_sms.j2", "{{ place }}{{ hazard }}{{ level }}预警。")
    with pytest.raises(ConfigError, match=r"responder_sms\.j2: a responder's text must end"):
        load_policy(path)


def test_undefined_variable_is_refused(tmp_path: Path) -> None:
    path = copy_policy(tmp_path, "household_sms.j2", "{{ plase }}{{ hazard }}{{ level }}")
    with pytest.raises(ConfigError, match=r"household_sms\.j2: 'plase' is undefined"):
        load_policy(path)


def test_templates_are_sandboxed(tmp_path: Path) -> None:
    escape = "{{ place }}{{ hazard }}{{ level }}{{ place.__class__.__mro__[1].__subclasses__() }}"
    path = copy_policy(tmp_path, "household_sms.j2", escape)
    with pytest.raises(ConfigError, match=r"household_sms\.j2: .*unsafe"):
        load_policy(path)


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "broken.j2").write_text("第一行\n{% if %}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.j2:2: "):
        load_templates(folder)


def test_missing_template_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="template folder not found"):
        load_templates(tmp_path / "nothing")
