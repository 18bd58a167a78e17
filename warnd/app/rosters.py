"""Roster files through the console: uploaded files imported, the roster exported as a zip.

Both run what ``warnd roster import`` and ``export`` run (``rosters.importer``,
``rosters.export``), in a worker thread with an event loop and a connection of its own: reading
and checking tens of thousands of rows is Python work that would otherwise hold up the daemon's
event loop, which dispatch and the earthquake fast path share. One such job at a time, in a
thread of their own (not the default executor, which parses incoming CAP). An import is one
transaction with its audit entry (all files or nothing); its problems are the importer's own
(file, row, column, reason). An export, every phone of the city, is audited too.
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Final, Literal, TypeVar

from rosters.columns import RECORD_TYPES
from rosters.export import export
from rosters.importer import ImportSummary, import_files
from rosters.problems import RosterImportError
from warnd.app.services import Services
from warnd.core.errors import DatabaseError
from warnd.db import Conn
from warnd.db.pool import open_pool
from warnd.db.queries import sql

T = TypeVar("T")

# What the console shows of the roster package: its record types' names and its refusal.
KINDS: Final = {rt.key: rt.zh for rt in RECORD_TYPES}
__all__ = [
    "KINDS",
    "ImportSummary",
    "RosterImportError",
    "export_zip",
    "import_uploaded",
]

_JOBS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warnd-roster")


def _on_own_connection(services: Services, work: Callable[[Conn], Awaitable[T]]) -> T:
    """Run ``work`` on a connection of its own in a new event loop (call in a worker thread)."""
    url = services.database_url
    if url is None:
        raise DatabaseError("this process was started without its database URL")

    async def run() -> T:
        async with (
            open_pool(
                url, min_size=1, max_size=1, run_migrations=False, role=services.database_role
            ) as pool,
            pool.acquire() as conn,
        ):
            return await work(conn)

    return asyncio.run(run())


async def import_uploaded(
    services: Services, user: str, paths: Sequence[Path], *, now: datetime
) -> ImportSummary:
    """Import roster files an officer uploaded; ``RosterImportError`` lists every problem and
    nothing is written."""

    async def work(conn: Conn) -> ImportSummary:
        async with conn.transaction():
            summary = await import_files(conn, list(paths))
            await conn.execute(
                sql("audit"),
                user,
                "roster_imported",
                "roster",
                {"files": [p.name for p in paths], "rows": summary.counts()},
                now,
            )
        return summary

    return await asyncio.get_running_loop().run_in_executor(
        _JOBS, _on_own_connection, services, work
    )


async def export_zip(
    services: Services, user: str, folder: Path, fmt: Literal["csv", "xlsx"], *, name: str
) -> Path:
    """The whole roster, one file per record type, zipped into ``folder/name``."""

    async def work(conn: Conn) -> list[Path]:
        async with conn.transaction(isolation="repeatable_read"):
            files = await export(conn, folder / "files", fmt=fmt)
            await conn.execute(
                sql("audit"),
                user,
                "roster_exported",
                "roster",
                {"format": fmt, "files": [p.name for p in files]},
                now,
            )
        return files

    def zipped() -> Path:
        files = _on_own_connection(services, work)
        archive = folder / name
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
            for path in files:
                out.write(path, path.name)
        return archive

    now = services.clock.now()
    return await asyncio.get_running_loop().run_in_executor(_JOBS, zipped)
