"""Import roster files (CSV or XLSX) into the database: all of them, or nothing.

Each file or worksheet is recognised by its header row (``rosters.columns``). Every row is
validated in Python and every problem is collected: file, row, column and reason, all of them,
not just the first. Rows stream with ``COPY`` into temporary tables, where references
(B角, 包保联系人, 户编号) and duplicates are checked as sets against both the files and the
database (invalid rows too, with their bad cells empty, so their other problems still show).
If anything is wrong, :class:`RosterImportError` carries the whole list and the transaction is
rolled back; otherwise each record type is upserted by ``ref`` (villages by code) with one
``INSERT … SELECT … ON CONFLICT … DO UPDATE``.

A column left out of a file keeps the stored value of rows that already exist (and the default
for new ones); a column that is present but empty in a row sets the empty value.
"""

from __future__ import annotations

import codecs
import csv
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import TypeVar

from rosters.columns import (
    DIVISIONS,
    FACILITIES,
    FALSE_WORDS,
    HOUSEHOLDS,
    IGNORED_HEADERS,
    LAT_RANGE,
    LIST_SEPARATORS,
    LON_RANGE,
    RECORD_TYPES,
    RESPONDERS,
    SPECIAL_PERSONS,
    TRUE_WORDS,
    VOCABULARIES,
    Column,
    Kind,
    RecordType,
    lookup,
    normalise_header,
    normalise_word,
)
from rosters.divisions import level_of, load_divisions, pad
from warnd.core.errors import InputError
from warnd.core.phones import PhoneError, normalise_phone
from warnd.db import Conn

Progress = Callable[[str, int, int], None]
"""Called as ``progress(file label, rows read, 0)``; the total of a file is not known ahead."""

T = TypeVar("T")

BATCH_ROWS = 20_000
MAX_TEXT = 200
MAX_REF = 64
HEADER_SEARCH_ROWS = 10  # a title row or two above the header is common in Chinese spreadsheets
SKIPPED_SHEETS = ("说明", "填表说明", "readme", "instructions")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
CSV_SUFFIXES = (".csv", ".txt", ".tsv")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one place of one file."""

    file: str
    row: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.reason}"


class RosterImportError(InputError):
    """Roster files have errors: every problem is listed, and nothing at all was imported."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "\n".join(str(p) for p in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n… and {more} more" if more > 0 else ""
        super().__init__(
            f"{len(self.problems)} problem(s) in the roster files; nothing was imported:\n"
            f"{shown}{tail}",
            code="roster_invalid",
        )


@dataclass(frozen=True)
class TypeSummary:
    """What one record type's files brought."""

    files: int = 0
    rows: int = 0
    inserted: int = 0
    updated: int = 0  # existing rows that changed (a changed B角 alone is not counted)

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


@dataclass(frozen=True)
class ImportSummary:
    """What ``import_files`` wrote, per record type (keys of ``rosters.columns.RECORD_TYPES``)."""

    types: dict[str, TypeSummary]

    def counts(self) -> dict[str, int]:
        return {key: summary.rows for key, summary in self.types.items()}


# ---- reading files -----------------------------------------------------------------------------


@dataclass
class Sheet:
    """A table to read: a CSV file or one worksheet of a workbook."""

    label: str
    rows: Callable[[], Iterator[list[str]]]


def _csv_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) when the whole file decodes as UTF-8, else GB18030."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8-sig"


def _csv_rows(path: Path) -> Iterator[list[str]]:
    encoding = _csv_encoding(path)
    with path.open(newline="", encoding=encoding) as f:
        first = f.readline()
        f.seek(0)  # the codec resets too, and skips a BOM again
        delimiter = "\t" if "\t" in first and "," not in first else ","
        yield from csv.reader(f, delimiter=delimiter)


def _cell_text(value: object) -> str:
    """A spreadsheet cell as the text a person typed (codes and phones as digits, not floats)."""
    text: str
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        # Excel keeps 13912345678 and 370811002201 typed into a number cell as floats.
        text = str(int(value)) if abs(value) < 1e16 else repr(value)
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    else:
        text = str(value)
    return text


def _labels(paths: Sequence[Path]) -> list[str]:
    """How problems name each file: its name, or more of its path where two names are alike."""
    names = [p.name for p in paths]
    return [p.name if names.count(p.name) == 1 else "/".join(p.parts[-2:]) for p in paths]


def _sheets(path: Path, name: str) -> tuple[list[Sheet], list[Problem]]:
    suffix = path.suffix.lower()
    if not path.is_file():
        return [], [Problem(name, None, None, "file not found")]
    if suffix in CSV_SUFFIXES:
        return [Sheet(name, lambda: _csv_rows(path))], []
    if suffix == ".xls":
        return [], [Problem(name, None, None, "old .xls workbooks are not read; save as .xlsx")]
    if suffix not in XLSX_SUFFIXES:
        return [], [Problem(name, None, None, "not a .csv or .xlsx file")]
    import zipfile

    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        return [], [Problem(name, None, None, f"cannot be read as an .xlsx workbook: {exc}")]
    titles = [ws.title for ws in book.worksheets]
    book.close()
    kept = [t for t in titles if normalise_word(t) not in SKIPPED_SHEETS]
    sheets = []
    for title in kept:

        def rows(title: str = title) -> Iterator[list[str]]:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                for values in book[title].iter_rows(values_only=True):
                    yield [_cell_text(v) for v in values]
            finally:
                book.close()

        sheets.append(Sheet(name if len(kept) == 1 else f"{name}[{title}]", rows))
    return sheets, []


# ---- recognising the header --------------------------------------------------------------------


@dataclass
class Layout:
    """A recognised header: the record type and which column key each position holds."""

    record_type: RecordType
    header_row: int
    positions: list[tuple[int, str]]  # (cell index, column key)
    headers: dict[str, str]  # column key -> header as written (first one)

    def present(self, key: str) -> bool:
        return key in self.headers


def _header_index(record_type: RecordType) -> dict[str, Column]:
    return {normalise_header(h): c for c in record_type.columns for h in c.headers()}


_HEADER_INDEX = {rt.key: _header_index(rt) for rt in RECORD_TYPES}
_IGNORED = frozenset(normalise_header(h) for h in IGNORED_HEADERS)


@dataclass
class _Match:
    record_type: RecordType
    positions: list[tuple[int, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)

    def missing(self) -> list[Column]:
        return [c for c in self.record_type.required() if c.key not in self.headers]


def _match(record_type: RecordType, cells: list[str]) -> _Match:
    index = _HEADER_INDEX[record_type.key]
    match = _Match(record_type)
    for i, cell in enumerate(cells):
        header = normalise_header(cell)
        if not header or header in _IGNORED:
            continue
        column = index.get(header)
        if column is None and header[-1:].isdigit():
            # 电话1, 电话2: several phone columns of one household
            candidate = index.get(header.rstrip("0123456789"))
            if candidate is not None and candidate.kind is Kind.PHONES:
                column = candidate
        if column is None:
            match.unknown.append(cell.strip())
        elif column.key in match.headers and column.kind is not Kind.PHONES:
            match.repeated.append(cell.strip())
        else:
            match.headers.setdefault(column.key, cell.strip())
            match.positions.append((i, column.key))
    return match


def _describe(record_type: RecordType) -> str:
    return f"{record_type.zh} ({record_type.key})"


def recognise(cells: list[str], header_row: int) -> Layout | str:
    """The layout a header row declares, or the reason it declares none."""
    matches = [_match(rt, cells) for rt in RECORD_TYPES]
    complete = [m for m in matches if not m.missing()]
    if not complete:
        closest = max(matches, key=lambda m: len(m.headers))
        missing = "、".join(f"{c.zh} ({c.key})" for c in closest.missing())
        return (
            "header row not recognised as any roster type; the closest, "
            f"{_describe(closest.record_type)}, lacks {missing}"
        )
    complete.sort(key=lambda m: (len(m.unknown), -len(m.headers)))
    best = complete[0]
    if len(complete) > 1:
        second = complete[1]
        if (len(second.unknown), len(second.headers)) == (len(best.unknown), len(best.headers)):
            return (
                f"header row fits both {_describe(best.record_type)} and "
                f"{_describe(second.record_type)}; add the columns that tell them apart"
            )
    return Layout(best.record_type, header_row, best.positions, best.headers)


# ---- validating rows ---------------------------------------------------------------------------


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


class _Validator:
    """Validation context: the divisions known so far and the problems found."""

    def __init__(self, divisions: dict[str, str]) -> None:
        self.divisions = divisions  # 12-digit code -> level, from the database and the files
        self.problems: list[Problem] = []

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

    def __init__(self, sheet: str, number: int, layout: Layout, cells: list[str], v: _Validator):
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
class _Target:
    """Where one record type's valid rows go: its temporary table and row parser."""

    staging: str
    columns: tuple[str, ...]
    ddl: str
    parse: Callable[[_Row], tuple[object, ...]]


_TARGETS: dict[str, _Target] = {
    DIVISIONS.key: _Target(
        "roster_in_divisions",
        ("code", "name", "lat", "lon", "coords_given", "blind_spot", "remote", "mountain",
         "flood_storage", "low_lying", "geo_hazard"),
        "code text, name text, lat double precision, lon double precision, coords_given boolean,"
        " blind_spot boolean, remote boolean, mountain boolean, flood_storage boolean,"
        " low_lying boolean, geo_hazard boolean",
        _divisions_row,
    ),
    RESPONDERS.key: _Target(
        "roster_in_responders",
        ("ref", "name", "phone", "division_code", "level", "role", "specialities", "backup_ref",
         "exercise"),
        "ref text, name text, phone text, division_code text, level text, role text,"
        " specialities text[], backup_ref text, exercise boolean",
        _responders_row,
    ),
    HOUSEHOLDS.key: _Target(
        "roster_in_households",
        ("ref", "village_code", "address", "head_name", "phones", "exercise"),
        "ref text, village_code text, address text, head_name text, phones text[],"
        " exercise boolean",
        _households_row,
    ),
    SPECIAL_PERSONS.key: _Target(
        "roster_in_special_persons",
        ("ref", "household_ref", "village_code", "name", "category", "address", "phone",
         "helper_ref", "exercise"),
        "ref text, household_ref text, village_code text, name text, category text,"
        " address text, phone text, helper_ref text, exercise boolean",
        _special_row,
    ),
    FACILITIES.key: _Target(
        "roster_in_facilities",
        ("ref", "village_code", "name", "kind", "address", "contact_name", "contact_phone",
         "exercise"),
        "ref text, village_code text, name text, kind text, address text, contact_name text,"
        " contact_phone text, exercise boolean",
        _facilities_row,
    ),
}  # fmt: skip


# ---- set-based checks and writes ---------------------------------------------------------------

# Each check returns (src, row, value) of rows whose reference resolves to nothing.
_MISSING_REFERENCES = (
    (
        RESPONDERS.key,
        "backup_ref",
        "is not the 编号 of any responder, in these files or in the database",
        """SELECT t.src, t.row, t.backup_ref AS value FROM roster_in_responders t
            WHERE t.backup_ref <> ''
              AND NOT EXISTS (SELECT 1 FROM roster_in_responders u WHERE u.ref = t.backup_ref)
              AND NOT EXISTS (SELECT 1 FROM responders r WHERE r.ref = t.backup_ref)""",
    ),
    (
        SPECIAL_PERSONS.key,
        "helper_ref",
        "is not the 编号 of any responder, in these files or in the database",
        """SELECT t.src, t.row, t.helper_ref AS value FROM roster_in_special_persons t
            WHERE t.helper_ref <> ''
              AND NOT EXISTS (SELECT 1 FROM roster_in_responders u WHERE u.ref = t.helper_ref)
              AND NOT EXISTS (SELECT 1 FROM responders r WHERE r.ref = t.helper_ref)""",
    ),
    (
        SPECIAL_PERSONS.key,
        "household_ref",
        "is not the 编号 of any household, in these files or in the database",
        """SELECT t.src, t.row, t.household_ref AS value FROM roster_in_special_persons t
            WHERE t.household_ref <> ''
              AND NOT EXISTS (SELECT 1 FROM roster_in_households u WHERE u.ref = t.household_ref)
              AND NOT EXISTS (SELECT 1 FROM households h WHERE h.ref = t.household_ref)""",
    ),
)

# Later rows with a key an earlier row already has: (src, row, key, first src, first row).
_DUPLICATES = """
SELECT src, row, key, first_src, first_row FROM (
    SELECT src, row, {key} AS key,
           first_value(src) OVER w AS first_src, first_value(row) OVER w AS first_row,
           row_number() OVER w AS n
      FROM {staging} WHERE {key} IS NOT NULL
    WINDOW w AS (PARTITION BY {key} ORDER BY src, row)) ranked
 WHERE n > 1 ORDER BY src, row
"""

# Counting inserts against updates: a freshly inserted row version has xmax = 0.
_COUNTED = """
WITH written AS ({upsert} RETURNING (xmax = 0) AS inserted)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
  FROM written
"""


def _upsert(table: str, key: str, columns: tuple[str, ...], select: str) -> str:
    """INSERT … SELECT … ON CONFLICT DO UPDATE, touching only rows that actually change.

    Re-importing a county's unchanged roster then writes nothing: no dead tuples, no index churn.
    """
    changed = [c for c in columns if c != key]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in changed)
    old = ", ".join(f"{table}.{c}" for c in changed)
    new = ", ".join(f"EXCLUDED.{c}" for c in changed)
    return (
        f"INSERT INTO {table} ({', '.join(columns)})\n{select}\n"
        f"ON CONFLICT ({key}) DO UPDATE SET {sets}\n WHERE ({old}) IS DISTINCT FROM ({new})"
    )


_UPSERTS: dict[str, str] = {
    DIVISIONS.key: _upsert(
        "divisions",
        "code",
        ("code", "name", "level", "parent_code", "lat", "lon", "blind_spot", "remote", "mountain",
         "flood_storage", "low_lying", "geo_hazard"),
        """SELECT t.code, t.name, 'village', substr(t.code, 1, 9) || '000',
       CASE WHEN t.coords_given THEN t.lat ELSE d.lat END,
       CASE WHEN t.coords_given THEN t.lon ELSE d.lon END,
       COALESCE(t.blind_spot, d.blind_spot, false), COALESCE(t.remote, d.remote, false),
       COALESCE(t.mountain, d.mountain, false), COALESCE(t.flood_storage, d.flood_storage, false),
       COALESCE(t.low_lying, d.low_lying, false), COALESCE(t.geo_hazard, d.geo_hazard, false)
  FROM roster_in_divisions t LEFT JOIN divisions d ON d.code = t.code""",
    ),
    RESPONDERS.key: _upsert(
        "responders",
        "ref",
        ("ref", "name", "phone", "division_code", "level", "role", "specialities", "exercise"),
        """SELECT t.ref, t.name, t.phone, t.division_code, t.level, COALESCE(t.role, r.role, ''),
       COALESCE(t.specialities, r.specialities, '{all}'), COALESCE(t.exercise, r.exercise, false)
  FROM roster_in_responders t LEFT JOIN responders r ON r.ref = t.ref""",
    ),
    HOUSEHOLDS.key: _upsert(
        "households",
        "ref",
        ("ref", "village_code", "address", "head_name", "phones", "exercise"),
        """SELECT t.ref, t.village_code, t.address, COALESCE(t.head_name, h.head_name, ''),
       t.phones, COALESCE(t.exercise, h.exercise, false)
  FROM roster_in_households t LEFT JOIN households h ON h.ref = t.ref""",
    ),
    SPECIAL_PERSONS.key: _upsert(
        "special_persons",
        "ref",
        ("ref", "household_id", "village_code", "name", "category", "address", "phone",
         "helper_id", "exercise"),
        """SELECT t.ref,
       CASE WHEN t.household_ref IS NULL THEN s.household_id ELSE h.id END,
       t.village_code, t.name, t.category, COALESCE(t.address, s.address, ''),
       CASE WHEN t.phone IS NULL THEN s.phone ELSE NULLIF(t.phone, '') END,
       helper.id, COALESCE(t.exercise, s.exercise, false)
  FROM roster_in_special_persons t
  JOIN responders helper ON helper.ref = t.helper_ref
  LEFT JOIN households h ON h.ref = t.household_ref
  LEFT JOIN special_persons s ON s.ref = t.ref""",
    ),
    FACILITIES.key: _upsert(
        "facilities",
        "ref",
        ("ref", "village_code", "name", "kind", "address", "contact_name", "contact_phone",
         "exercise"),
        """SELECT t.ref, t.village_code, t.name, t.kind, COALESCE(t.address, f.address, ''),
       t.contact_name, t.contact_phone, COALESCE(t.exercise, f.exercise, false)
  FROM roster_in_facilities t LEFT JOIN facilities f ON f.ref = t.ref""",
    ),
}  # fmt: skip

# B角 after all responders exist: a backup may be a responder of the same files. An empty cell
# clears the backup; a file without the column leaves it as it was.
_SET_BACKUPS = """
UPDATE responders r SET backup_id = b.id
  FROM roster_in_responders t LEFT JOIN responders b ON b.ref = NULLIF(t.backup_ref, '')
 WHERE r.ref = t.ref AND t.backup_ref IS NOT NULL AND r.backup_id IS DISTINCT FROM b.id
"""


@dataclass
class _Source:
    label: str
    layout: Layout


@dataclass
class _Plan:
    """Everything read so far: sources (indexed by ``src``) and counts per type."""

    sources: list[_Source] = field(default_factory=list)
    files: dict[str, set[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


async def _read_sheet(
    conn: Conn,
    *,
    sheet: Sheet,
    layout: Layout,
    rows: Iterator[list[str]],
    validator: _Validator,
    src: int,
    progress: Progress | None,
) -> int:
    target = _TARGETS[layout.record_type.key]
    batch: list[tuple[object, ...]] = []
    count = 0
    number = layout.header_row
    for cells in rows:
        number += 1
        if not any(c.strip() for c in cells):
            continue
        count += 1
        # Invalid rows are staged too (their bad cells empty), so that the set-based checks
        # still see their keys and references: every problem is reported, and a valid row that
        # names an invalid one is not reported as dangling.
        record = target.parse(_Row(sheet.label, number, layout, cells, validator))
        batch.append((src, number, *record))
        if len(batch) >= BATCH_ROWS:
            await _copy(conn, target, batch)
            batch = []
        if progress and count % 10_000 == 0:
            progress(sheet.label, count, 0)
    if batch:
        await _copy(conn, target, batch)
    if progress:
        progress(sheet.label, count, 0)
    return count


async def _copy(conn: Conn, target: _Target, batch: list[tuple[object, ...]]) -> None:
    await conn.copy_records_to_table(
        target.staging, records=batch, columns=("src", "row", *target.columns)
    )


def _layout_problems(label: str, cells: list[str], layout: Layout) -> list[Problem]:
    """Columns of the header row that are not part of the recognised record type."""
    match = _match(layout.record_type, cells)
    problems = [
        Problem(
            label, layout.header_row, cell, f"unknown column for {_describe(layout.record_type)}"
        )
        for cell in match.unknown
    ]
    problems += [
        Problem(label, layout.header_row, cell, "repeats a column already given")
        for cell in match.repeated
    ]
    return problems


async def import_files(
    conn: Conn, paths: Sequence[Path], *, progress: Progress | None = None
) -> ImportSummary:
    """Validate and import roster files; raise :class:`RosterImportError` listing every problem.

    Files may come in any order and may refer to each other (a special person's helper may be a
    responder in another file). One transaction: on any problem nothing is written.
    """
    problems: list[Problem] = []
    found: list[tuple[Sheet, Layout, Iterator[list[str]], list[str]]] = []
    paths = [Path(p) for p in paths]
    for path, label in zip(paths, _labels(paths), strict=True):
        sheets, trouble = _sheets(path, label)
        problems += trouble
        for sheet in sheets:
            header = _find_header(sheet, problems)
            if header is not None:
                found.append((sheet, *header))
    order = {rt.key: i for i, rt in enumerate(RECORD_TYPES)}
    found.sort(key=lambda item: order[item[1].record_type.key])

    plan = _Plan()
    async with conn.transaction():
        # The shipped towns must exist before villages can name them as parents.
        await load_divisions(conn)
        known = {
            r["code"]: r["level"] for r in await conn.fetch("SELECT code, level FROM divisions")
        }
        validator = _Validator(known)
        for target in _TARGETS.values():
            # Dropped first: inside a caller's transaction an earlier import's tables remain.
            await conn.execute(f"DROP TABLE IF EXISTS pg_temp.{target.staging}")
            await conn.execute(
                f"CREATE TEMP TABLE {target.staging} (src integer, row integer, {target.ddl})"
                " ON COMMIT DROP"
            )
        for src, (sheet, layout, rows, header_cells) in enumerate(found):
            problems += _layout_problems(sheet.label, header_cells, layout)
            plan.sources.append(_Source(sheet.label, layout))
            key = layout.record_type.key
            plan.files.setdefault(key, set()).add(sheet.label.split("[")[0])
            read = await _read_sheet(
                conn,
                sheet=sheet,
                layout=layout,
                rows=rows,
                validator=validator,
                src=src,
                progress=progress,
            )
            plan.rows[key] = plan.rows.get(key, 0) + read
        problems += validator.problems
        for target in _TARGETS.values():
            # Temporary tables get no statistics otherwise, and the checks below join them.
            await conn.execute(f"ANALYZE {target.staging}")
        problems += await _set_problems(conn, plan)
        if problems:
            raise RosterImportError(_ordered(problems, plan.sources))
        written = await _write(conn, plan)
    return ImportSummary(
        {
            rt.key: TypeSummary(
                files=len(plan.files.get(rt.key, ())),
                rows=plan.rows.get(rt.key, 0),
                inserted=written.get(rt.key, (0, 0))[0],
                updated=written.get(rt.key, (0, 0))[1],
            )
            for rt in RECORD_TYPES
        }
    )


def _find_header(
    sheet: Sheet, problems: list[Problem]
) -> tuple[Layout, Iterator[list[str]], list[str]] | None:
    """Find the header row (skipping title rows); the layout, the remaining rows, the header."""
    rows = sheet.rows()
    reason = "is empty: no header row"
    number = 0
    for cells in rows:
        number += 1
        filled = [c for c in cells if c.strip()]
        if not filled:
            continue
        found = recognise(cells, number)
        if isinstance(found, Layout):
            return found, rows, cells
        reason = found
        # A lone cell above the header is a title (e.g. 济宁市××镇防汛责任人名单): look further.
        if len(filled) > 1 or number >= HEADER_SEARCH_ROWS:
            problems.append(Problem(sheet.label, number, None, reason))
            _close(rows)
            return None
    problems.append(Problem(sheet.label, None, None, reason))
    return None


def _close(rows: Iterator[list[str]]) -> None:
    close = getattr(rows, "close", None)
    if close is not None:
        close()


def _ordered(problems: list[Problem], sources: list[_Source]) -> list[Problem]:
    """File by file in reading order, row by row, and cells left to right."""
    rank = {source.label: i for i, source in enumerate(sources)}
    columns = {
        source.label: {header: i for i, header in enumerate(source.layout.headers.values())}
        for source in sources
    }

    def key(p: Problem) -> tuple[int, str, int, int]:
        column = columns.get(p.file, {}).get(p.column or "", -1)
        return (rank.get(p.file, -1), p.file, p.row or 0, column)

    return sorted(problems, key=key)


async def _set_problems(conn: Conn, plan: _Plan) -> list[Problem]:
    """Duplicated keys and references that resolve to nothing, found as sets in SQL."""
    problems: list[Problem] = []

    def header(src: int, key: str) -> str:
        return plan.sources[src].layout.headers.get(key, key)

    for record_type in RECORD_TYPES:
        target = _TARGETS[record_type.key]
        key = "code" if record_type is DIVISIONS else "ref"
        query = _DUPLICATES.format(key=key, staging=target.staging)
        for r in await conn.fetch(query):
            first = plan.sources[r["first_src"]].label
            where = f"row {r['first_row']}" + ("" if r["first_src"] == r["src"] else f" of {first}")
            problems.append(
                Problem(
                    plan.sources[r["src"]].label,
                    r["row"],
                    header(r["src"], key),
                    f"{r['key']!r} is already used on {where}",
                )
            )
    for _type_key, column, reason, query in _MISSING_REFERENCES:
        problems.extend(
            Problem(
                plan.sources[r["src"]].label,
                r["row"],
                header(r["src"], column),
                f"{r['value']!r} {reason}",
            )
            for r in await conn.fetch(query)
        )
    return problems


async def _write(conn: Conn, plan: _Plan) -> dict[str, tuple[int, int]]:
    written: dict[str, tuple[int, int]] = {}
    for record_type in RECORD_TYPES:
        if not plan.rows.get(record_type.key):
            continue
        row = await conn.fetchrow(_COUNTED.format(upsert=_UPSERTS[record_type.key]))
        assert row is not None  # an aggregate always returns a row
        written[record_type.key] = (int(row["inserted"]), int(row["updated"]))
        if record_type is RESPONDERS:
            await conn.execute(_SET_BACKUPS)
    return written
