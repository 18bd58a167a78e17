"""Export the roster in the import format (``rosters.columns``), so export → import round-trips.

One file per record type, Chinese headers and Chinese values by default (English with
``language="en"``). Rows stream from a server-side cursor, so exporting a whole city does not hold
it in memory. CSV files are UTF-8 with a BOM, which Excel needs to show Chinese; XLSX workbooks
continue on a new worksheet when one is full (Excel's limit is 1,048,576 rows).
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from rosters.columns import (
    DIVISIONS,
    FACILITIES,
    HOUSEHOLDS,
    RECORD_TYPES,
    RESPONDERS,
    SPECIAL_PERSONS,
    Kind,
    RecordType,
    zh_value,
)
from warnd.db import Conn

Language = Literal["zh", "en"]
Progress = Callable[[str, int, int], None]

XLSX_MAX_ROWS = 1_048_575  # data rows per worksheet, below the header
FETCH_ROWS = 5_000

# Each query returns the record type's columns, by key, in the type's column order.
_QUERIES: dict[str, str] = {
    DIVISIONS.key: """
SELECT code, name, 'village' AS level, lat, lon, blind_spot, remote, mountain, flood_storage,
       low_lying, geo_hazard
  FROM divisions WHERE level = 'village' ORDER BY code""",
    RESPONDERS.key: """
SELECT r.ref, r.name, r.phone, r.division_code, r.level, r.role, r.specialities,
       b.ref AS backup_ref, r.exercise
  FROM responders r LEFT JOIN responders b ON b.id = r.backup_id ORDER BY r.ref""",
    HOUSEHOLDS.key: """
SELECT ref, village_code, address, head_name, phones, exercise FROM households ORDER BY ref""",
    SPECIAL_PERSONS.key: """
SELECT s.ref, s.name, s.category, s.village_code, h.ref AS household_ref, s.address, s.phone,
       r.ref AS helper_ref, s.exercise
  FROM special_persons s
  JOIN responders r ON r.id = s.helper_id
  LEFT JOIN households h ON h.id = s.household_id
 ORDER BY s.ref""",
    FACILITIES.key: """
SELECT ref, name, kind, village_code, address, contact_name, contact_phone, exercise
  FROM facilities ORDER BY ref""",
}


def _phone_text(e164: str) -> str:
    """Chinese mobiles as the 11 digits people know; anything else stays E.164."""
    if e164.startswith("+861") and len(e164) == 14:
        return e164[3:]
    return e164


def format_value(kind: Kind, value: Any, language: Language) -> str:
    """A stored value as the text import reads back."""
    zh = language == "zh"
    text: str
    if value is None:
        text = ""
    elif kind is Kind.BOOL:
        text = ("是" if value else "否") if zh else ("true" if value else "false")
    elif kind in (Kind.LEVEL, Kind.CATEGORY, Kind.FACILITY_KIND):
        text = zh_value(kind, value) if zh else str(value)
    elif kind is Kind.SPECIALITIES:
        text = ("、" if zh else ";").join(zh_value(kind, v) if zh else v for v in value)
    elif kind in (Kind.MOBILE, Kind.PHONE):
        text = _phone_text(value)
    elif kind is Kind.PHONES:
        text = ";".join(_phone_text(v) for v in value)
    elif kind in (Kind.LAT, Kind.LON):
        text = repr(float(value))  # the shortest text that reads back to the same float
    else:
        text = str(value)
    return text


async def _rows(
    conn: Conn, record_type: RecordType, language: Language
) -> AsyncIterator[list[str]]:
    kinds = [c.kind for c in record_type.columns]
    keys = [c.key for c in record_type.columns]
    async for record in conn.cursor(_QUERIES[record_type.key], prefetch=FETCH_ROWS):
        yield [
            format_value(kind, record[key], language) for kind, key in zip(kinds, keys, strict=True)
        ]


def _text_cell(sheet: Any, text: str) -> Any:
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=text)
    cell.data_type = "s"
    return cell


def _header(record_type: RecordType, language: Language) -> list[str]:
    return [c.zh if language == "zh" else c.key for c in record_type.columns]


async def _write_csv(
    conn: Conn, record_type: RecordType, path: Path, language: Language, progress: Progress | None
) -> int:
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(_header(record_type, language))
        async for row in _rows(conn, record_type, language):
            writer.writerow(row)
            count += 1
            if progress and count % 50_000 == 0:
                progress(record_type.key, count, 0)
    return count


async def _write_xlsx(
    conn: Conn, record_type: RecordType, path: Path, language: Language, progress: Progress | None
) -> int:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    title = record_type.zh if language == "zh" else record_type.key
    header = _header(record_type, language)
    sheet = book.create_sheet(title)
    sheet.append(header)
    count = in_sheet = 0
    async for row in _rows(conn, record_type, language):
        if in_sheet == XLSX_MAX_ROWS:
            sheet = book.create_sheet(f"{title}{count // XLSX_MAX_ROWS + 1}")
            sheet.append(header)
            in_sheet = 0
        # Values are written as text cells (codes and phones stay digits); text that starts
        # with "=" is forced to text too, so a name can never become a formula.
        sheet.append([_text_cell(sheet, text) if text.startswith("=") else text for text in row])
        count += 1
        in_sheet += 1
        if progress and count % 50_000 == 0:
            progress(record_type.key, count, 0)
    book.save(path)
    return count


async def export(
    conn: Conn,
    folder: Path,
    *,
    fmt: Literal["csv", "xlsx"] = "csv",
    language: Language = "zh",
    record_types: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Write one file per record type into ``folder`` (created if missing); return the paths.

    Villages and communities are exported with their flags; the city, counties and towns are
    reference data shipped with warnd and are not exported.
    """
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    wanted = set(record_types) if record_types else {rt.key for rt in RECORD_TYPES}
    paths: list[Path] = []
    # One snapshot for all files, so references between them agree (a caller's transaction
    # already is one).
    nested = conn.is_in_transaction()
    snapshot = (
        conn.transaction()
        if nested
        else conn.transaction(isolation="repeatable_read", readonly=True)
    )
    async with snapshot:
        for record_type in RECORD_TYPES:
            if record_type.key not in wanted:
                continue
            path = folder / f"{record_type.key}.{fmt}"
            writer = _write_csv if fmt == "csv" else _write_xlsx
            count = await writer(conn, record_type, path, language, progress)
            if progress:
                progress(record_type.key, count, count)
            paths.append(path)
    return paths
