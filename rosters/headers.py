"""Recognising a sheet's header row: which record type the sheet holds and where each column is."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from rosters.columns import (
    IGNORED_HEADERS,
    RECORD_TYPES,
    Column,
    Kind,
    RecordType,
    normalise_header,
)
from rosters.problems import Problem
from rosters.sheets import Sheet

HEADER_SEARCH_ROWS = 10  # a title row or two above the header is common in Chinese spreadsheets


@dataclass
class Layout:
    """A recognised header: the record type and which column key each position holds."""

    record_type: RecordType
    header_row: int
    positions: list[tuple[int, str]]  # (cell index, column key)
    headers: dict[str, str]  # column key -> header as written (first one)

    def present(self, key: str) -> bool:
        return key in self.headers


@dataclass
class Source:
    """A sheet whose header was recognised, with the rows below the header still to read."""

    label: str
    layout: Layout
    header: list[str]  # the header row's cells
    rows: Iterator[list[str]]


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


def find_header(sheet: Sheet, problems: list[Problem]) -> Source | None:
    """Find the header row (skipping title rows), or add to ``problems`` why there is none."""
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
            return Source(sheet.label, found, cells, rows)
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


def header_problems(source: Source) -> list[Problem]:
    """Columns of the header row that are not part of the recognised record type."""
    layout = source.layout
    match = _match(layout.record_type, source.header)
    problems = [
        Problem(
            source.label,
            layout.header_row,
            cell,
            f"unknown column for {_describe(layout.record_type)}",
        )
        for cell in match.unknown
    ]
    problems += [
        Problem(source.label, layout.header_row, cell, "repeats a column already given")
        for cell in match.repeated
    ]
    return problems
