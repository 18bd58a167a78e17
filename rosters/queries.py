"""Named SQL blocks of the rosters, loaded from ``rosters/sql/*.sql``.

The files have the format of ``warnd/db/sql/*.sql`` and are read by the same loader; the blocks
live apart from warnd's because the rosters package ships and loads on its own.
"""

from __future__ import annotations

from warnd.db.queries import Queries

sql = Queries("rosters")
"""The rosters' statements: ``sql("merge_households")``."""
