"""Hostile or odd input answered cleanly (issue 15): a clear 4xx, nothing lost, nothing leaked."""

from __future__ import annotations

import pytest

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
