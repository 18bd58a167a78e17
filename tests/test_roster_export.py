"""Export writes the import format: export → import gives back the same roster, row for row."""

from __future__ import annotations

import csv
from pathlib import Path

import asyncpg
import openpyxl
import pytest

from rosters.columns import RECORD_TYPES
from rosters.export import export
from rosters.generate import generate
from rosters.importer import import_files
from tests.roster.digest import clear_roster, roster_digest


@pytest.mark.parametrize(
    ("fmt", "county", "households"), [("csv", "370881", 1_500), ("xlsx", "370871", 300)]
)
async def test_export_import_round_trip(
    pool: asyncpg.Pool, tmp_path: Path, fmt: str, county: str, households: int
) -> None:
    async with pool.acquire() as conn:
        await generate(conn, households=households, counties=[county], seed=4)
        before = await roster_digest(conn)
        paths = await export(conn, tmp_path, fmt="csv" if fmt == "csv" else "xlsx")
        assert [p.name for p in paths] == [f"{rt.key}.{fmt}" for rt in RECORD_TYPES]
        await clear_roster(conn)
        assert await roster_digest(conn) != before
        summary = await import_files(conn, paths)
        assert summary.types["households"].inserted == households
        assert await roster_digest(conn) == before


async def test_export_writes_chinese_headers_and_values(pool: asyncpg.Pool, tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        await generate(conn, households=50, counties=["370831"], seed=2)
        paths = await export(conn, tmp_path)
        english = await export(conn, tmp_path / "en", fmt="xlsx", language="en")
    responders = tmp_path / "responders.csv"
    assert responders in paths
    assert responders.read_bytes().startswith(b"\xef\xbb\xbf")  # a BOM, for Excel
    with responders.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [
        "编号",
        "姓名",
        "电话",
        "行政区划代码",
        "级别",
        "职务",
        "专业",
        "B角",
        "演练",
    ]
    levels = {row[4] for row in rows[1:]}
    assert levels == {"市级", "县级", "乡镇级", "村级"}
    assert all(row[2].isdigit() and len(row[2]) == 11 for row in rows[1:])
    assert {row[8] for row in rows[1:]} <= {"是", "否"}
    book = openpyxl.load_workbook(english[2], read_only=True)
    sheet = book.worksheets[0]
    header, first = list(sheet.iter_rows(min_row=1, max_row=2, values_only=True))
    book.close()
    assert header == ("ref", "village_code", "address", "head_name", "phones", "exercise")
    assert isinstance(first[1], str) and len(first[1]) == 12  # codes stay text


async def test_a_cell_a_spreadsheet_would_run_is_exported_as_text_and_read_back(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A household address written as a formula would run on the officer's machine that opens
    the export: it is written with a leading apostrophe, and read back as it was."""
    async with pool.acquire() as conn:
        await generate(conn, households=20, counties=["370831"], seed=3)
        formula = '=HYPERLINK("http://evil.example","点击")'
        ref = await conn.fetchval(
            "UPDATE households SET address = $1 WHERE id = (SELECT min(id) FROM households) "
            "RETURNING ref",
            formula,
        )
        before = await roster_digest(conn)
        paths = await export(conn, tmp_path)
        text = next(p for p in paths if p.name == "households.csv").read_text("utf-8-sig")
        assert "'" + formula.replace('"', '""') in text
        assert "\n=" not in text and ",=" not in text
        await clear_roster(conn)
        await import_files(conn, paths)
        address = await conn.fetchval("SELECT address FROM households WHERE ref = $1", ref)
        assert address == formula
        assert await roster_digest(conn) == before
