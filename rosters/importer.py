"""Import roster files (CSV or XLSX) into the database: all of them, or nothing.

The stages, each in its own module: ``rosters.sheets`` reads files into rows of text,
``rosters.headers`` recognises each sheet's record type by its header row, ``rosters.validation``
turns rows into records and collects every problem (file, row, column and reason, all of them),
``rosters.staging`` streams the records with ``COPY`` into temporary tables and checks keys and
references as sets, and ``rosters.merge`` upserts them. If anything is wrong,
:class:`~rosters.problems.RosterImportError` carries the whole list and the transaction is rolled
back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rosters.columns import RECORD_TYPES
from rosters.divisions import division_levels, load_divisions
from rosters.headers import Source, find_header, header_problems
from rosters.merge import merge
from rosters.problems import Problem, RosterImportError
from rosters.sheets import labels, sheets_of
from rosters.staging import analyze_staging, create_staging, set_problems, stage
from rosters.validation import Validator
from warnd.db import Conn
from warnd.db.notify import ROSTER_CHANNEL

Progress = Callable[[str, int, int], None]
"""Called as ``progress(file label, rows read, 0)``; the total of a file is not known ahead."""

BATCH_ROWS = 20_000


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


@dataclass
class _Plan:
    """Everything read so far: sources (indexed by ``src``) and counts per type."""

    sources: list[Source] = field(default_factory=list)
    files: dict[str, set[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


async def _stage_source(
    conn: Conn, source: Source, *, validator: Validator, src: int, progress: Progress | None
) -> int:
    """Validate and stage the rows of one source; return how many there were."""
    record_type = source.layout.record_type.key
    batch: list[tuple[object, ...]] = []
    count = 0
    number = source.layout.header_row
    for cells in source.rows:
        number += 1
        if not any(c.strip() for c in cells):
            continue
        count += 1
        # Invalid rows are staged too (their bad cells empty), so that the set-based checks
        # still see their keys and references: every problem is reported, and a valid row that
        # names an invalid one is not reported as dangling.
        record = validator.record(source.label, number, source.layout, cells)
        batch.append((src, number, *record))
        if len(batch) >= BATCH_ROWS:
            await stage(conn, record_type, batch)
            batch = []
        if progress and count % 10_000 == 0:
            progress(source.label, count, 0)
    if batch:
        await stage(conn, record_type, batch)
    if progress:
        progress(source.label, count, 0)
    return count


async def import_files(
    conn: Conn, paths: Sequence[Path], *, progress: Progress | None = None
) -> ImportSummary:
    """Validate and import roster files; raise :class:`RosterImportError` listing every problem.

    Files may come in any order and may refer to each other (a special person's helper may be a
    responder in another file). One transaction: on any problem nothing is written.
    """
    problems: list[Problem] = []
    found: list[Source] = []
    paths = [Path(p) for p in paths]
    for path, label in zip(paths, labels(paths), strict=True):
        sheets, trouble = sheets_of(path, label)
        problems += trouble
        for sheet in sheets:
            source = find_header(sheet, problems)
            if source is not None:
                found.append(source)
    order = {rt.key: i for i, rt in enumerate(RECORD_TYPES)}
    found.sort(key=lambda source: order[source.layout.record_type.key])

    plan = _Plan()
    async with conn.transaction():
        # The shipped towns must exist before villages can name them as parents.
        await load_divisions(conn)
        validator = Validator(await division_levels(conn))
        await create_staging(conn)
        for src, source in enumerate(found):
            problems += header_problems(source)
            plan.sources.append(source)
            key = source.layout.record_type.key
            plan.files.setdefault(key, set()).add(source.label.split("[")[0])
            read = await _stage_source(
                conn, source, validator=validator, src=src, progress=progress
            )
            plan.rows[key] = plan.rows.get(key, 0) + read
        problems += validator.problems
        await analyze_staging(conn)
        problems += await set_problems(conn, plan.sources)
        if problems:
            raise RosterImportError(_ordered(problems, plan.sources))
        written = await merge(conn, [key for key, rows in plan.rows.items() if rows])
        await conn.execute("SELECT pg_notify($1, '')", ROSTER_CHANNEL)  # at commit
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


def _ordered(problems: list[Problem], sources: list[Source]) -> list[Problem]:
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
