"""FORMAT.md, for the people who fill the spreadsheets in, says what ``rosters.columns`` says."""

from __future__ import annotations

from pathlib import Path

from rosters.columns import RECORD_TYPES, VOCABULARIES

FORMAT = (Path(__file__).parent.parent / "rosters" / "FORMAT.md").read_text("utf-8")


def _section(key: str) -> list[str]:
    """The lines of the FORMAT.md section whose heading names record type ``key``."""
    for section in FORMAT.split("\n### ")[1:]:
        heading, *lines = section.splitlines()
        if f"`{key}`" in heading:
            return lines
    raise AssertionError(f"FORMAT.md has no section for {key}")


def test_every_column_and_header_is_documented() -> None:
    for record_type in RECORD_TYPES:
        lines = _section(record_type.key)
        for column in record_type.columns:
            start = f"| {column.zh} | `{column.key}` |"
            row = next((line for line in lines if line.startswith(start)), None)
            assert row is not None, (record_type.key, column.key)
            assert ("| 是 |" in row) == column.required, (record_type.key, column.key)
            for alias in column.aliases:
                assert alias in row, (record_type.key, column.key, alias)


def test_every_value_is_documented() -> None:
    for words in VOCABULARIES.values():
        for spelled in words.values():
            for word in spelled:
                assert word in FORMAT, word
