"""Phone numbers normalised to E.164, and refused with a reason a clerk can act on."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from rosters.generate import PHONE_PREFIXES, phone_for
from warnd.core.phones import PhoneError, is_mobile_national, normalise_phone


@pytest.mark.parametrize(
    "text",
    [
        "13912345678",
        "+86 139-1234-5678",
        "+86 13912345678",
        "0086 139 1234 5678",
        "8613912345678",
        "１３９１２３４５６７８",
        "＋８６ １３９－１２３４－５６７８",
        " 139 1234 5678 ",
        "13912345678.0",
        "(139) 1234-5678",
    ],
)
def test_mobile_spellings_normalise_to_e164(text: str) -> None:
    assert normalise_phone(text) == "+8613912345678"


def test_fixed_line_only_where_allowed() -> None:
    assert normalise_phone("0537-2345678", allow_fixed_line=True) == "+865372345678"
    assert normalise_phone("(0537)2345678", allow_fixed_line=True) == "+865372345678"
    with pytest.raises(PhoneError, match="fixed-line number; a mobile number is needed"):
        normalise_phone("0537-2345678")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1391234", "'1391234' is not a valid mobile number (a mobile number has 11 digits"),
        ("139123456789", "has 11 digits, this has 12"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("139-abcd-5678", "contains characters that are not digits"),
        ("+1 415 555 2671", "is not a Chinese (+86) number"),
        ("14012345678", "is not a valid mobile number"),
        ("12345678901", "is not a valid mobile number"),
    ],
)
def test_invalid_numbers_say_why(text: str, reason: str) -> None:
    with pytest.raises(PhoneError) as caught:
        normalise_phone(text)
    assert reason in str(caught.value)
    assert caught.value.code == "invalid_phone"


def test_fast_path_agrees_with_phonenumbers() -> None:
    rng = random.Random(11)
    for _ in range(3_000):
        national = "1" + "".join(rng.choice("0123456789") for _ in range(10))
        try:
            parsed = phonenumbers.parse(national, "CN")
        except phonenumbers.NumberParseException:
            expected = False
        else:
            expected = phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(
                parsed
            ) in (
                phonenumbers.PhoneNumberType.MOBILE,
                phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
            )
        try:
            normalise_phone(national)
        except PhoneError:
            assert not expected, national
        else:
            assert expected, national


def test_generator_prefixes_are_valid_for_every_continuation() -> None:
    for prefix in PHONE_PREFIXES:
        for fourth in "0123456789":
            for rest in ("0000000", "9999999", "5038162"):
                assert is_mobile_national(prefix + fourth + rest), prefix + fourth


def test_generated_numbers_are_distinct_and_valid() -> None:
    indexes = [*range(5_000), *range(100_000_000, 100_001_000), *range(300_000_000, 300_001_000)]
    numbers = [phone_for(i, seed=3) for i in indexes]
    assert len(set(numbers)) == len(numbers)
    assert all(normalise_phone(n) == n for n in numbers)
