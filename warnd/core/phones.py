"""Phone numbers as rosters write them, normalised to E.164 (+8613912345678) or refused with why.

Rosters arrive typed by hand in spreadsheets: full-width digits, spaces and dashes, an ``0086``
or ``+86`` prefix, a trailing ``.0`` when Excel stored the number as a float. Everything that can
be read unambiguously is normalised; anything else is refused with a reason a clerk can act on.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import phonenumbers
from phonenumbers import PhoneNumberType

from warnd.core.errors import InputError

# Characters people put between digits; none of them changes the number.
_SEPARATORS = re.compile(r"[\s\-‐-―−.·()（）\[\]/]+")
_INTERNATIONAL = re.compile(r"^(?:\+|00)")
_MOBILE_SHAPE = re.compile(r"(?:\+86|0086|86)?(1\d{10})")

_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_FIXED_TYPES = _MOBILE_TYPES | {PhoneNumberType.FIXED_LINE, PhoneNumberType.VOIP}


class PhoneError(InputError):
    """A phone number in a roster cannot be used; the message says why, quoting the number."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r} {reason}", code="invalid_phone")
        self.text = text
        self.reason = reason


@cache
def _mobile_pattern() -> re.Pattern[str]:
    """The Chinese mobile pattern from phonenumbers' own metadata, for the fast path."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    if metadata is None or metadata.mobile is None or not metadata.mobile.national_number_pattern:
        raise RuntimeError("phonenumbers has no metadata for Chinese mobile numbers")
    return re.compile(metadata.mobile.national_number_pattern)


def _clean(text: str) -> str:
    # NFKC turns full-width digits and plus signs (１３９, ＋８６) into ASCII.
    cleaned = unicodedata.normalize("NFKC", text).strip()
    # Excel stores a number typed into a numeric cell as a float: 13912345678.0
    if cleaned.endswith(".0"):
        cleaned = cleaned[:-2]
    return _SEPARATORS.sub("", cleaned)


def normalise_phone(text: str, *, allow_fixed_line: bool = False) -> str:
    """Return ``text`` as an E.164 Chinese number, or raise :class:`PhoneError` with the reason.

    Mobile numbers are always accepted; fixed-line numbers (with their area code, e.g.
    ``0537-2345678``) only with ``allow_fixed_line``, because a responder must be able to receive
    an SMS and reply to it while a household can be reached by a voice call too.
    """
    raw = text.strip()
    if not raw:
        raise PhoneError(text, "is empty")
    cleaned = _clean(raw)
    # Fast path, exact by construction: the same pattern phonenumbers uses for CN mobiles.
    shape = _MOBILE_SHAPE.fullmatch(cleaned)
    if shape and _mobile_pattern().fullmatch(shape[1]):
        return "+86" + shape[1]
    if not re.fullmatch(r"\+?\d+", cleaned):
        raise PhoneError(raw, "contains characters that are not digits")
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    elif not cleaned.startswith("+") and cleaned.startswith("86") and len(cleaned) == 13:
        cleaned = "+" + cleaned
    try:
        number = phonenumbers.parse(cleaned, "CN")
    except phonenumbers.NumberParseException:
        raise PhoneError(raw, "is not a phone number") from None
    if number.country_code != 86:
        raise PhoneError(raw, "is not a Chinese (+86) number")
    national = str(number.national_number)
    if not phonenumbers.is_valid_number(number):
        if national.startswith("1") and not _INTERNATIONAL.match(raw):
            if len(national) != 11:
                raise PhoneError(
                    raw,
                    "is not a valid mobile number "
                    f"(a mobile number has 11 digits, this has {len(national)})",
                )
            raise PhoneError(raw, "is not a valid mobile number")
        raise PhoneError(raw, "is not a valid mobile or fixed-line number")
    kind = phonenumbers.number_type(number)
    if kind in _MOBILE_TYPES or (allow_fixed_line and kind in _FIXED_TYPES):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind in _FIXED_TYPES:
        raise PhoneError(raw, "is a fixed-line number; a mobile number is needed here")
    raise PhoneError(raw, "is not a number that can receive calls or SMS")


def is_mobile_national(national: str) -> bool:
    """Whether an 11-digit national number is a valid Chinese mobile number (generator check)."""
    return bool(_mobile_pattern().fullmatch(national))
