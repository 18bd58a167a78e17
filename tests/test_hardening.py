"""Hostile or odd input answered cleanly (issue 15): a clear 4xx, nothing lost, nothing leaked."""

from __future__ import annotations

import pytest

from tests.fixtures import cap_alert
from warnd.ingest.cap import CapError, parse_cap
from warnd.runtime.logs import mask_phones


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("008613912345678", "0086139****5678"),
        ("139 1234 5678", "139****5678"),
        ("139-1234-5678", "139****5678"),
        ("+86 139 1234 5678", "+86 139****5678"),
        ("１３９１２３４５６７８", "１３９****５６７８"),
        ("＋８６１３９１２３４５６７８", "＋８６１３９****５６７８"),
        ("00442079460000", "00442*****0000"),
    ],
)
def test_phone_numbers_in_every_written_form_are_masked(text: str, masked: str) -> None:
    assert mask_phones(f"reply from {text}: 1") == f"reply from {masked}: 1"


@pytest.mark.parametrize("text", ["2026120212345678901", "371321199001011234", "1391234567"])
def test_longer_and_shorter_digit_runs_are_left_alone(text: str) -> None:
    assert mask_phones(text) == text


def test_attributes_on_cap_elements_are_refused_before_the_schema() -> None:
    """20,000 unknown attributes used to cost the schema validator 40 s of CPU."""
    attributes = " ".join(f'a{i}="x"' for i in range(20_000))
    body = cap_alert().replace("<headline>", f"<headline {attributes}>").encode()
    with pytest.raises(CapError) as refused:
        parse_cap(body)
    assert refused.value.code == "schema_invalid"
    assert refused.value.detail.startswith(
        "info[1]/headline: CAP elements carry no attributes; this one has 20000 ('a0', 'a1'"
    )
