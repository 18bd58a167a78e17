"""Validating the rows under a header into records, with a problem for every bad cell.

Every row is checked in Python and every problem is collected (file, row, column as written, and
reason), all of them, not just the first. A record keeps the place of an invalid cell, empty, so
that the set-based checks after staging still see the row's keys and references.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from rosters.columns import (
    DIVISIONS,
    FACILITIES,
    FALSE_WORDS,
    HOUSEHOLDS,
    LAT_RANGE,
    LIST_SEPARATORS,
    LON_RANGE,
    RESPONDERS,
    SPECIAL_PERSONS,
    TRUE_WORDS,
    VOCABULARIES,
    Kind,
    lookup,
    normalise_word,
)
from rosters.divisions import level_of, pad
from rosters.headers import Layout
from rosters.problems import Problem
from warnd.core.phones import PhoneError, normalise_phone

T = TypeVar("T")

MAX_TEXT = 200
MAX_REF = 64


class _RowError(Exception):
    """A cell's value is invalid; raised and caught within one row's validation."""


_LOOKUPS = {kind: lookup(words) for kind, words in VOCABULARIES.items()}
_TRUE = frozenset(normalise_word(w) for w in TRUE_WORDS)
_FALSE = frozenset(normalise_word(w) for w in FALSE_WORDS)
_DIGITS = re.compile(r"\d+")


def _code_text(text: str) -> str:
    cleaned = unicodedata.normalize("NFKC", text).strip()
    return cleaned.removesuffix(".0")


def _word(kind: Kind, text: str) -> str:
    value = _LOOKUPS[kind].get(normalise_word(text))
    if value is None:
        accepted = "、".join(words[0] for words in VOCABULARIES[kind].values())
        raise _RowError(f"{text.strip()!r} is not one of {accepted}")
    return value


def _level(text: str) -> str | None:
    """An optional level: empty means "as the division's code says"."""
    return _word(Kind.LEVEL, text) if text.strip() else None


def _bool(text: str) -> bool:
    folded = normalise_word(text)
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise _RowError(f"{text.strip()!r} is not 是/否 (yes/no)")


def _float(text: str, bounds: tuple[float, float], what: str) -> float | None:
    cleaned = unicodedata.normalize("NFKC", text).strip()
    if not cleaned:
        return None
    try:
        value = float(cleaned)
    except ValueError:
        raise _RowError(f"{cleaned!r} is not a number") from None
    if not bounds[0] <= value <= bounds[1]:
        raise _RowError(
            f"{value} is outside Jining ({what} {bounds[0]}–{bounds[1]}); swapped with the other?"
        )
    return value


def _phone(text: str, *, allow_fixed_line: bool) -> str:
    try:
        return normalise_phone(text, allow_fixed_line=allow_fixed_line)
    except PhoneError as exc:
        raise _RowError(str(exc)) from None


class Validator:
    """Validation context: the divisions known so far and the problems found."""

    def __init__(self, divisions: dict[str, str]) -> None:
        self.divisions = divisions  # 12-digit code -> level, from the database and the files
        self.problems: list[Problem] = []

    def record(
        self, label: str, number: int, layout: Layout, cells: list[str]
    ) -> tuple[object, ...]:
        """The record of row ``number`` of a sheet; its problems go to ``self.problems``."""
        row = _Row(label, number, layout, cells, self)
        return RECORDS[layout.record_type.key].parse(row)

    def village(self, text: str) -> str:
        code = _code_text(text)
        if not _DIGITS.fullmatch(code) or len(code) != 12:
            raise _RowError(f"{text.strip()!r} is not a 12-digit village or community code")
        if code[9:] == "000":
            raise _RowError(f"{code} is a town or county code; a village or community is needed")
        if self.divisions.get(code) != "village":
            raise _RowError(
                f"{code} is not a known village or community (import it in a 村（社区） file)"
            )
        return code

    def division(self, text: str) -> str:
        code = _code_text(text)
        if not _DIGITS.fullmatch(code) or len(code) not in (6, 9, 12):
            raise _RowError(f"{text.strip()!r} is not a 6-, 9- or 12-digit division code")
        code = pad(code)
        if code not in self.divisions:
            raise _RowError(f"{code} is not a known division of Jining")
        return code


class _Row:
    """One row being validated: reads cells by key, records problems with the header as written."""

    def __init__(self, sheet: str, number: int, layout: Layout, cells: list[str], v: Validator):
        self.sheet, self.number, self.layout, self.validator = sheet, number, layout, v
        self.ok = True
        self.values: dict[str, str] = {}
        for i, key in layout.positions:
            text = cells[i] if i < len(cells) else ""
            if key in self.values:  # a second phone column
                self.values[key] = f"{self.values[key]};{text}"
            else:
                self.values[key] = text

    def problem(self, key: str | None, reason: str) -> None:
        column = self.layout.headers.get(key, key) if key else None
        self.validator.problems.append(Problem(self.sheet, self.number, column, reason))
        self.ok = False

    def get(self, key: str, parse: Callable[[str], T]) -> T | None:
        """The parsed value of ``key``; None when the column is absent or the value invalid."""
        if key not in self.values:
            return None
        column = self.layout.record_type.column(key)
        text = self.values[key]
        if column.required and not text.strip():
            self.problem(key, "is empty; it is required")
            return None
        try:
            return parse(text)
        except _RowError as exc:
            self.problem(key, str(exc))
            return None

    def text(self, key: str, limit: int = MAX_TEXT) -> str | None:
        def parse(text: str) -> str:
            cleaned = unicodedata.normalize("NFC", text).strip()
            if len(cleaned) > limit:
                raise _RowError(f"is longer than {limit} characters")
            return cleaned

        return self.get(key, parse)

    def ref(self, key: str) -> str | None:
        def parse(text: str) -> str:
            cleaned = _code_text(text)
            if len(cleaned) > MAX_REF:
                raise _RowError(f"is longer than {MAX_REF} characters")
            # isprintable() is False for every space but the ASCII one, and for control codes
            if " " in cleaned or not cleaned.isprintable():
                raise _RowError(f"{cleaned!r} contains spaces or control characters")
            return cleaned

        return self.get(key, parse)

    def flag(self, key: str) -> bool | None:
        return self.get(key, _bool)


def _divisions_row(row: _Row) -> tuple[object, ...]:
    v = row.validator
    code = row.get("code", _code_text)
    if code is not None:
        if not _DIGITS.fullmatch(code) or len(code) != 12:
            row.problem("code", f"{code!r} is not a 12-digit village or community code")
        elif level_of(code) != "village":
            row.problem(
                "code",
                f"{code} is a {level_of(code)} code: only villages and communities are imported; "
                "counties and towns come from the list shipped with warnd",
            )
        elif not 1 <= int(code[9:]) <= 399:
            row.problem("code", f"{code} ends in {code[9:]}; use 001–199 or 200–399")
        elif v.divisions.get(code[:9] + "000") != "town":
            row.problem("code", f"{code} is not under a known town ({code[:9]})")
        else:
            # Known from here on, so other files can name it even if another cell is wrong.
            v.divisions.setdefault(code, "village")
    level = row.get("level", _level)
    if level is not None and level != "village":
        row.problem("level", "only villages and communities (村级) can be imported")
    name = row.text("name")
    lat = row.get("lat", lambda t: _float(t, LAT_RANGE, "latitude"))
    lon = row.get("lon", lambda t: _float(t, LON_RANGE, "longitude"))
    coords_given = row.layout.present("lat") or row.layout.present("lon")
    if coords_given and row.ok and (lat is None) != (lon is None):
        row.problem("lat" if lat is None else "lon", "latitude and longitude go together")
    flags = [
        row.flag(k)
        for k in ("blind_spot", "remote", "mountain", "flood_storage", "low_lying", "geo_hazard")
    ]
    return (code, name, lat, lon, coords_given, *flags)


def _responders_row(row: _Row) -> tuple[object, ...]:
    v = row.validator
    ref = row.ref("ref")
    name = row.text("name")
    phone = row.get("phone", lambda t: _phone(t, allow_fixed_line=False))
    code = row.get("division_code", v.division)
    level = row.get("level", _level)
    actual = v.divisions.get(code) if code else None
    if level is not None and actual is not None and level != actual:
        row.problem("level", f"{code} is a {actual}, not a {level}")
    role = row.text("role")
    specialities = row.get("specialities", _specialities)
    backup = row.ref("backup_ref")
    if backup and backup == ref:
        row.problem("backup_ref", "a responder cannot be their own backup (B角)")
    exercise = row.flag("exercise")
    return (ref, name, phone, code, actual, role, specialities, backup, exercise)


def _specialities(text: str) -> list[str]:
    words = [w for w in LIST_SEPARATORS.split(text) if w]
    if not words:
        return ["all"]
    values: list[str] = []
    for word in words:
        value = _word(Kind.SPECIALITIES, word)
        if value not in values:
            values.append(value)
    return values


def _phones(text: str) -> list[str]:
    numbers = [n for n in re.split(r"[;；、,，/|]+", text) if n.strip()]
    if not numbers:
        raise _RowError("is empty; at least one number is required")
    values: list[str] = []
    bad: list[str] = []
    for number in numbers:
        try:
            value = normalise_phone(number, allow_fixed_line=True)
        except PhoneError as exc:
            bad.append(str(exc))
            continue
        if value not in values:
            values.append(value)
    if bad:
        raise _RowError("; ".join(bad))
    return values


def _households_row(row: _Row) -> tuple[object, ...]:
    ref = row.ref("ref")
    code = row.get("village_code", row.validator.village)
    address = row.text("address")
    head = row.text("head_name", limit=50)
    phones = row.get("phones", _phones)
    exercise = row.flag("exercise")
    return (ref, code, address, head, phones, exercise)


def _special_row(row: _Row) -> tuple[object, ...]:
    ref = row.ref("ref")
    name = row.text("name", limit=50)
    category = row.get("category", lambda t: _word(Kind.CATEGORY, t))
    code = row.get("village_code", row.validator.village)
    household = row.ref("household_ref")
    address = row.text("address")
    phone = row.get("phone", lambda t: _phone(t, allow_fixed_line=True) if t.strip() else "")
    helper = row.ref("helper_ref")
    exercise = row.flag("exercise")
    return (ref, household, code, name, category, address, phone, helper, exercise)


def _facilities_row(row: _Row) -> tuple[object, ...]:
    ref = row.ref("ref")
    name = row.text("name")
    kind = row.get("kind", lambda t: _word(Kind.FACILITY_KIND, t))
    code = row.get("village_code", row.validator.village)
    address = row.text("address")
    contact = row.text("contact_name", limit=50)
    phone = row.get("contact_phone", lambda t: _phone(t, allow_fixed_line=False))
    exercise = row.flag("exercise")
    return (ref, code, name, kind, address, contact, phone, exercise)


@dataclass(frozen=True)
class RecordShape:
    """The record a row of one type becomes: its fields in order, and the parser that makes it."""

    fields: tuple[str, ...]
    parse: Callable[[_Row], tuple[object, ...]]


RECORDS: dict[str, RecordShape] = {
    DIVISIONS.key: RecordShape(
        ("code", "name", "lat", "lon", "coords_given", "blind_spot", "remote", "mountain",
         "flood_storage", "low_lying", "geo_hazard"),
        _divisions_row,
    ),
    RESPONDERS.key: RecordShape(
        ("ref", "name", "phone", "division_code", "level", "role", "specialities", "backup_ref",
         "exercise"),
        _responders_row,
    ),
    HOUSEHOLDS.key: RecordShape(
        ("ref", "village_code", "address", "head_name", "phones", "exercise"),
        _households_row,
    ),
    SPECIAL_PERSONS.key: RecordShape(
        ("ref", "household_ref", "village_code", "name", "category", "address", "phone",
         "helper_ref", "exercise"),
        _special_row,
    ),
    FACILITIES.key: RecordShape(
        ("ref", "village_code", "name", "kind", "address", "contact_name", "contact_phone",
         "exercise"),
        _facilities_row,
    ),
}  # fmt: skip
