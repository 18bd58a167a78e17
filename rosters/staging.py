"""Staging validated records in temporary tables with ``COPY``, and checking them there as sets.

Duplicated keys and references that resolve to nothing are found in SQL, against both the files
and the database, rather than row by row in Python: a city's roster is millions of rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from rosters.columns import DIVISIONS, FACILITIES, HOUSEHOLDS, RESPONDERS, SPECIAL_PERSONS
from rosters.headers import Source
from rosters.problems import Problem
from rosters.queries import sql
from rosters.validation import RECORDS
from warnd.db import Conn

# The temporary table of each record type, as rosters/sql/staging.sql creates it.
STAGING_TABLES = {
    DIVISIONS.key: "roster_in_divisions",
    RESPONDERS.key: "roster_in_responders",
    HOUSEHOLDS.key: "roster_in_households",
    SPECIAL_PERSONS.key: "roster_in_special_persons",
    FACILITIES.key: "roster_in_facilities",
}

_DANGLING_REASONS = {
    "backup_ref": "is not the 编号 of any responder, in these files or in the database",
    "helper_ref": "is not the 编号 of any responder, in these files or in the database",
    "household_ref": "is not the 编号 of any household, in these files or in the database",
}


async def create_staging(conn: Conn) -> None:
    """Create the empty temporary tables of one import; they go when the transaction ends."""
    await conn.execute(sql("create_staging"))


async def stage(conn: Conn, record_type: str, records: Sequence[tuple[object, ...]]) -> None:
    """Copy records, each ``(src, row, *fields)``, into the record type's temporary table."""
    await conn.copy_records_to_table(
        STAGING_TABLES[record_type],
        records=records,
        columns=("src", "row", *RECORDS[record_type].fields),
    )


async def analyze_staging(conn: Conn) -> None:
    """Gather statistics on the staged rows, for the checks and the merge that join them."""
    await conn.execute(sql("analyze_staging"))


async def set_problems(conn: Conn, sources: Sequence[Source]) -> list[Problem]:
    """Duplicated keys and references that resolve to nothing; ``src`` indexes ``sources``."""
    problems: list[Problem] = []

    def header(src: int, key: str) -> str:
        return sources[src].layout.headers.get(key, key)

    for r in await conn.fetch(sql("duplicate_keys")):
        first = sources[r["first_src"]].label
        where = f"row {r['first_row']}" + ("" if r["first_src"] == r["src"] else f" of {first}")
        problems.append(
            Problem(
                sources[r["src"]].label,
                r["row"],
                header(r["src"], r["key_column"]),
                f"{r['key']!r} is already used on {where}",
            )
        )
    problems.extend(
        Problem(
            sources[r["src"]].label,
            r["row"],
            header(r["src"], r["key_column"]),
            f"{r['value']!r} {_DANGLING_REASONS[r['key_column']]}",
        )
        for r in await conn.fetch(sql("dangling_references"))
    )
    return problems
