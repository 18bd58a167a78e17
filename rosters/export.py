"""Export the roster in the import format (``rosters.columns``), so export → import round-trips.

One file per record type, Chinese headers and Chinese values by default (English with
``language="en"``). Values are turned into text in SQL, so a CSV file is written by PostgreSQL
itself (``COPY … TO STDOUT``) and an XLSX workbook from a server-side cursor: exporting a whole
city holds none of it in memory. CSV files are UTF-8 with a BOM, which Excel needs to show
Chinese; XLSX workbooks continue on a new worksheet when one is full (Excel's limit is 1,048,576
rows).
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from rosters.columns import (
    DIVISIONS,
    FACILITIES,
    HOUSEHOLDS,
    RECORD_TYPES,
    RESPONDERS,
    SPECIAL_PERSONS,
    VOCABULARIES,
    Column,
    Kind,
    RecordType,
    zh_value,
)
from rosters.queries import sql
from warnd.core.spreadsheet import FORMULA_START, MARK
from warnd.db import Conn

Language = Literal["zh", "en"]
Progress = Callable[[str, int, int], None]

XLSX_MAX_ROWS = 1_048_575  # data rows per worksheet, below the header
FETCH_ROWS = 5_000

# Blocks of rosters/sql/export.sql, one per record type.
_STORED_ROWS: dict[str, str] = {
    DIVISIONS.key: "export_villages",
    RESPONDERS.key: "export_responders",
    HOUSEHOLDS.key: "export_households",
    SPECIAL_PERSONS.key: "export_special_persons",
    FACILITIES.key: "export_facilities",
}

# Chinese mobiles as the 11 digits people know; anything else stays E.164.
_PHONE_TEXT = r"regexp_replace({x}, '^\+86(1[0-9]{{10}})$', '\1')"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _words(expression: str, kind: Kind) -> str:
    """SQL mapping a canonical value to its Chinese word (from our own vocabulary)."""
    whens = " ".join(
        f"WHEN {_literal(value)} THEN {_literal(zh_value(kind, value))}"
        for value in VOCABULARIES[kind]
    )
    return f"CASE {expression} {whens} ELSE {expression} END"


def _expression(column: Column, language: Language) -> str:
    """SQL turning the stored value of ``column`` into the text import reads back."""
    x = f"t.{column.key}"
    zh = language == "zh"
    expression = x
    if column.kind is Kind.BOOL:
        yes, no = ("是", "否") if zh else ("true", "false")
        expression = f"CASE WHEN {x} THEN '{yes}' ELSE '{no}' END"
    elif column.kind in (Kind.LEVEL, Kind.CATEGORY, Kind.FACILITY_KIND) and zh:
        expression = _words(x, column.kind)
    elif column.kind is Kind.SPECIALITIES:
        word = _words("s.v", column.kind) if zh else "s.v"
        expression = (
            f"array_to_string(ARRAY(SELECT {word} FROM unnest({x}) WITH ORDINALITY AS s(v, n)"
            f" ORDER BY s.n), '{'、' if zh else ';'}')"
        )
    elif column.kind in (Kind.MOBILE, Kind.PHONE):
        expression = _PHONE_TEXT.format(x=x)
    elif column.kind is Kind.PHONES:
        phone = _PHONE_TEXT.format(x="s.p")
        expression = (
            f"array_to_string(ARRAY(SELECT {phone} FROM unnest({x}) WITH ORDINALITY AS s(p, n)"
            " ORDER BY s.n), ';')"
        )
    # float8 prints the shortest text that reads back to the same value (PostgreSQL 12+).
    # Empty text as NULL, so that COPY writes an empty cell rather than "".
    return f"NULLIF(({expression})::text, '')"


def _as_text(expression: str) -> str:
    """``expression`` as ``warnd.core.spreadsheet.neutralise`` writes it, in SQL: a value a
    spreadsheet would run as a formula gets a leading apostrophe (the import drops it)."""
    starts = ", ".join(_literal(c) for c in FORMULA_START)
    return (
        f"CASE WHEN left({expression}, 1) IN ({starts}) "
        f"THEN {_literal(MARK)} || {expression} ELSE {expression} END"
    )


def formatted_query(record_type: RecordType, language: Language, *, csv: bool = False) -> str:
    """The export query of a record type: one text column per file column, named by header."""
    # Built here rather than written in rosters/sql/: the projection follows ``rosters.columns``
    # (headers, vocabularies, languages), so a column or word added there is exported without a
    # second copy of it in SQL that could drift from what import reads.
    # A CSV cell has no type: one a spreadsheet would run as a formula is marked as text. XLSX
    # cells are written as strings, which no spreadsheet runs.
    safe = _as_text if csv else str
    columns = ", ".join(
        f'{safe(_expression(c, language))} AS "{c.zh if language == "zh" else c.key}"'
        for c in record_type.columns
    )
    key = record_type.columns[0].key  # ref, or a village's code
    rows = sql(_STORED_ROWS[record_type.key]).removesuffix(";")
    return f"SELECT {columns} FROM ({rows}) t ORDER BY t.{key}"


async def _write_csv(
    conn: Conn, record_type: RecordType, path: Path, language: Language, progress: Progress | None
) -> int:
    del progress  # one COPY: PostgreSQL writes the CSV, there is nothing to count on the way
    query = formatted_query(record_type, language, csv=True)
    with path.open("wb") as f:
        f.write(codecs.BOM_UTF8)  # Excel needs it to read UTF-8 Chinese
        status = await conn.copy_from_query(query, output=f, format="csv", header=True)
    return int(status.split()[-1])


def _text_cell(sheet: Any, text: str) -> Any:
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=text)
    cell.data_type = "s"
    return cell


async def _write_xlsx(
    conn: Conn, record_type: RecordType, path: Path, language: Language, progress: Progress | None
) -> int:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    title = record_type.zh if language == "zh" else record_type.key
    header = [c.zh if language == "zh" else c.key for c in record_type.columns]
    sheet = book.create_sheet(title)
    sheet.append(header)
    count = in_sheet = 0
    query = formatted_query(record_type, language)
    async for record in conn.cursor(query, prefetch=FETCH_ROWS):
        row: list[str] = [value or "" for value in record.values()]
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
