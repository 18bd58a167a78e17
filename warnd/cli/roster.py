"""The ``roster`` command group: import, export and generate rosters (``warnd roster …``).

Bad input never ends in a traceback: problems are printed as a table of file, row, column and
reason, and the exit code is 1.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Literal, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from rosters.columns import RECORD_TYPES
from warnd.core.errors import WarndError
from warnd.db import Conn

T = TypeVar("T")

console = Console()
SHOWN_PROBLEMS = 1_000

STAGE_NAMES = {
    "divisions": "行政区划 divisions",
    "villages": "村（社区） villages",
    "responders": "责任人 responders",
    "households": "住户 households",
    "special_persons": "重点人员 special persons",
    "facilities": "重点场所 facilities",
}
TYPE_NAMES = {rt.key: f"{rt.zh} {rt.key}" for rt in RECORD_TYPES}


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display and the ``progress(stage, done, total)`` callback feeding it."""
    tasks: dict[str, TaskID] = {}
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                name = STAGE_NAMES.get(stage, stage)
                tasks[stage] = bar.add_task(name, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield update


@asynccontextmanager
async def _connection() -> AsyncIterator[Conn]:
    from warnd.db.pool import open_pool
    from warnd.runtime.settings import Settings, database_url

    async with (
        open_pool(database_url(Settings()), min_size=1, max_size=2) as pool,
        pool.acquire() as conn,
    ):
        yield conn


def _run(work: Callable[[Conn], Awaitable[T]]) -> T:
    """Run ``work`` on a database connection; bad input ends with a message and exit code 1."""
    from rosters.problems import RosterImportError

    async def main() -> T:
        async with _connection() as conn:
            return await work(conn)

    try:
        return asyncio.run(main())
    except RosterImportError as exc:
        _print_problems(exc)
        raise SystemExit(1) from None
    except WarndError as exc:
        console.print(f"[bold red]错误[/] {exc}")
        raise SystemExit(1) from None


def _print_problems(exc: object) -> None:
    from rosters.problems import RosterImportError

    assert isinstance(exc, RosterImportError)
    table = Table(title=f"名册有 {len(exc.problems)} 个问题，未导入任何数据 (nothing was imported)")
    for header in ("文件 file", "行 row", "列 column", "问题 reason"):
        table.add_column(header, overflow="fold")
    for p in exc.problems[:SHOWN_PROBLEMS]:
        table.add_row(p.file, "" if p.row is None else str(p.row), p.column or "", p.reason)
    console.print(table)
    if len(exc.problems) > SHOWN_PROBLEMS:
        console.print(
            f"另有 {len(exc.problems) - SHOWN_PROBLEMS} 个问题未显示；"
            "用 --problems FILE 把全部问题写入 CSV。"
        )


@click.group(name="roster")
def roster() -> None:
    """名册：导入、导出、生成 (rosters: import, export, generate)."""


@roster.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--problems",
    "problems_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write every problem found to this CSV file (UTF-8 with BOM)",
)
def import_command(files: tuple[Path, ...], problems_file: Path | None) -> None:
    """Import roster files (CSV or XLSX): all of them, or nothing if any has an error."""
    from rosters.importer import ImportSummary, import_files
    from rosters.problems import RosterImportError

    async def work(conn: Conn) -> ImportSummary:
        with _progress() as progress:
            try:
                return await import_files(conn, list(files), progress=progress)
            except RosterImportError as exc:
                if problems_file:
                    _write_problems(problems_file, exc)
                raise

    summary = _run(work)
    table = Table(title="导入完成 (imported)")
    table.add_column("类型 type")
    for header in ("文件 files", "行 rows", "新增 inserted", "更新 updated", "未变 unchanged"):
        table.add_column(header, justify="right")
    for key, t in summary.types.items():
        if t.files:
            counts = (t.files, t.rows, t.inserted, t.updated, t.unchanged)
            table.add_row(TYPE_NAMES[key], *(f"{n:,}" for n in counts))
    console.print(table)


def _write_problems(path: Path, exc: object) -> None:
    from rosters.problems import RosterImportError

    assert isinstance(exc, RosterImportError)
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["文件", "行", "列", "问题"])
        for p in exc.problems:
            writer.writerow([p.file, "" if p.row is None else p.row, p.column or "", p.reason])


@roster.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    default="csv",
    show_default=True,
    help="file format",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("roster-export"),
    show_default=True,
    help="folder to write into",
)
@click.option(
    "--language",
    type=click.Choice(["zh", "en"]),
    default="zh",
    show_default=True,
    help="headers and values in Chinese or English",
)
def export_command(fmt: Literal["csv", "xlsx"], out: Path, language: Literal["zh", "en"]) -> None:
    """Export the roster in the import format, one file per record type."""
    from rosters.export import export

    async def work(conn: Conn) -> list[Path]:
        with _progress() as progress:
            return await export(conn, out, fmt=fmt, language=language, progress=progress)

    paths = _run(work)
    table = Table(title="导出完成 (exported)")
    table.add_column("文件 file")
    for path in paths:
        table.add_row(str(path))
    console.print(table)


def _counties(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [code.strip() for code in value.split(",") if code.strip()]


@roster.command("generate")
@click.option(
    "--households",
    type=click.IntRange(min=0),
    help="total households  [default: 2.9 million for the city, pro rata for fewer counties]",
)
@click.option(
    "--counties",
    help="comma-separated 6-digit county codes, e.g. 370831,370883  [default: all 12]",
)
@click.option("--seed", type=int, default=1, show_default=True, help="same seed, same roster")
@click.option("--replace", is_flag=True, help="empty the existing roster first")
def generate_command(
    households: int | None, counties: str | None, seed: int, replace: bool
) -> None:
    """Generate a synthetic roster on the real county and town codes (demo and load tests)."""
    from rosters.generate import GenerateSummary, generate

    async def work(conn: Conn) -> GenerateSummary:
        with _progress() as progress:
            return await generate(
                conn,
                households=households,
                counties=_counties(counties),
                seed=seed,
                replace=replace,
                progress=progress,
            )

    summary = _run(work)
    table = Table(title=f"已生成名册 (generated, seed {summary.seed}, {summary.seconds:.1f} s)")
    table.add_column("类型 type")
    table.add_column("条数 rows", justify="right")
    for key, count in summary.counts().items():
        table.add_row(STAGE_NAMES[key], f"{count:,}")
    table.add_row("演练村 exercise villages", str(summary.exercise_villages))
    console.print(table)
