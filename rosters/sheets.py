"""Reading roster files: CSV files and the worksheets of XLSX workbooks, as rows of cell text."""

from __future__ import annotations

import codecs
import csv
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from rosters.columns import normalise_word
from rosters.problems import Problem
from warnd.core.spreadsheet import restore

SKIPPED_SHEETS = ("说明", "填表说明", "readme", "instructions")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
CSV_SUFFIXES = (".csv", ".txt", ".tsv")


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
        for row in csv.reader(f, delimiter=delimiter):
            yield [restore(cell) for cell in row]  # a cell an export marked reads back as it was


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


def labels(paths: Sequence[Path]) -> list[str]:
    """How problems name each file: its name, or more of its path where two names are alike."""
    names = [p.name for p in paths]
    return [p.name if names.count(p.name) == 1 else "/".join(p.parts[-2:]) for p in paths]


def sheets_of(path: Path, name: str) -> tuple[list[Sheet], list[Problem]]:
    """The tables of one file (problems name it ``name``), or why it cannot be read."""
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
