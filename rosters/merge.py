"""Merging staged records, all valid, into the roster tables (rosters/sql/merge.sql)."""

from __future__ import annotations

from collections.abc import Collection

from rosters.columns import (
    DIVISIONS,
    FACILITIES,
    HOUSEHOLDS,
    RECORD_TYPES,
    RESPONDERS,
    SPECIAL_PERSONS,
)
from rosters.queries import sql
from warnd.db import Conn

_MERGES = {
    DIVISIONS.key: "merge_villages",
    RESPONDERS.key: "merge_responders",
    HOUSEHOLDS.key: "merge_households",
    SPECIAL_PERSONS.key: "merge_special_persons",
    FACILITIES.key: "merge_facilities",
}


async def merge(conn: Conn, record_types: Collection[str]) -> dict[str, tuple[int, int]]:
    """Merge the staged rows of ``record_types``; return (inserted, updated) per record type."""
    written: dict[str, tuple[int, int]] = {}
    # In RECORD_TYPES order: villages before the people in them, responders before the special
    # persons they help.
    for record_type in RECORD_TYPES:
        if record_type.key not in record_types:
            continue
        row = await conn.fetchrow(sql(_MERGES[record_type.key]))
        assert row is not None  # an aggregate always returns a row
        written[record_type.key] = (int(row["inserted"]), int(row["updated"]))
        if record_type is RESPONDERS:
            await conn.execute(sql("set_backups"))
    return written
