"""Log masking: no phone number reaches a log line whole, however deep or wherever it hides."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog

from warnd.runtime.logs import _mask_processor, configure, mask_phones, mask_value


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("+8613912345678", "+86139****5678"),
        ("13912345678", "139****5678"),
        ("8613912345678", "86139****5678"),
        ("+865372345678", "+8653****5678"),  # a Jining fixed line
        ("+12025550123", "+120****0123"),  # short numbers keep less, hide at least four
        ("+4930123456789", "+4930*****6789"),
        ("+12345678", "+****5678"),  # shortest E.164: still four digits hidden
        ("电话13912345678，座机+865372345678。", "电话139****5678，座机+8653****5678。"),
    ],
)
def test_phone_numbers_of_every_kind_are_masked(text: str, masked: str) -> None:
    assert mask_phones(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "warning 1234",
        "37080041600000_20260729013000",  # a CAP identifier
        "370811001201",  # a village code
        "37081119800101123X",  # an ID-card number
        "139123456789",  # twelve digits: not a mobile
        "+1234567",  # seven digits: not E.164
        "2026-07-29T02:00:00+08:00",
    ],
)
def test_what_is_not_a_phone_number_is_left_alone(text: str) -> None:
    assert mask_phones(text) == text


def test_masked_numbers_can_still_be_told_apart() -> None:
    assert mask_phones("+8613912345678") != mask_phones("+8613912340000")
    assert mask_phones("+865372345678") != mask_phones("+865372341111")


def test_nested_values_are_masked_as_copies() -> None:
    caller = {
        "phones": ["+8613912345678", ("13812345678", 3)],
        "by_number": {"+865372345678": {"state": "failed", "tries": 2}},
        "set": {"+8613700000001"},
        "n": 13912345678,  # an int stays an int
    }
    snapshot = repr(caller)
    masked = mask_value(caller)
    assert masked == {
        "phones": ["+86139****5678", ("138****5678", 3)],
        "by_number": {"+8653****5678": {"state": "failed", "tries": 2}},
        "set": {"+86137****0001"},
        "n": 13912345678,
    }
    assert repr(caller) == snapshot  # the caller's data is untouched


def test_other_objects_are_masked_through_their_repr() -> None:
    class Recipient:
        def __repr__(self) -> str:
            return "Recipient(phone='+8613912345678')"

    class Plain:
        pass

    assert mask_value(Recipient()) == "Recipient(phone='+86139****5678')"
    plain = Plain()
    assert mask_value(plain) is plain  # nothing to mask: the renderer sees the object itself


def test_the_processor_masks_every_value() -> None:
    event: dict[str, Any] = {
        "event": "reply_unmatched from +8613912345678",
        "to": ["+8613912345678"],
        "detail": {"from": "13912345678"},
    }
    result = _mask_processor(None, "info", event)
    assert result == {
        "event": "reply_unmatched from +86139****5678",
        "to": ["+86139****5678"],
        "detail": {"from": "139****5678"},
    }


def _log_lines(emit: Any, *, json_output: bool = True) -> str:
    stream = io.StringIO()
    configure("info", json=json_output, stream=stream)
    try:
        emit(structlog.get_logger("test"))
    finally:
        structlog.reset_defaults()
    return stream.getvalue()


def test_logged_nested_values_are_masked() -> None:
    phones = ["+8613912345678", "+865372345678"]
    out = _log_lines(
        lambda log: log.info(
            "delivery_failed", addresses=phones, household={"phones": phones}, warning_id=3
        )
    )
    line = json.loads(out)
    assert line["addresses"] == ["+86139****5678", "+8653****5678"]
    assert line["household"] == {"phones": ["+86139****5678", "+8653****5678"]}
    assert line["warning_id"] == 3
    assert phones == ["+8613912345678", "+865372345678"]


def _send() -> None:
    raise ValueError("no route to +8613912345678 or +865372345678")


def test_exception_text_is_masked() -> None:
    def emit(log: Any) -> None:
        try:
            _send()
        except ValueError:
            log.exception("delivery_crashed", warning_id=3)

    for json_output in (True, False):
        out = _log_lines(emit, json_output=json_output)
        assert "ValueError: no route to +86139****5678 or +8653****5678" in out
        assert "13912345678" not in out
        assert "5372345678" not in out
    line = json.loads(_log_lines(emit))
    assert "Traceback" in line["exception"]
    assert "exc_info" not in line


def test_masking_runs_after_exceptions_are_formatted() -> None:
    configure("info", json=True, stream=io.StringIO())
    try:
        processors = structlog.get_config()["processors"]
    finally:
        structlog.reset_defaults()
    formatted = processors.index(structlog.processors.format_exc_info)
    masked = processors.index(_mask_processor)
    assert formatted < masked == len(processors) - 2  # after formatting, just before rendering
