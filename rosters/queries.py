"""Named SQL blocks of the rosters, loaded from ``rosters/sql/*.sql``.

The files have the format of ``warnd/db/sql/*.sql`` and are split by the same parser; the blocks
live apart from warnd's because the rosters package ships and loads on its own.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from warnd.db.queries import parse_blocks


@cache
def _all() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for entry in sorted(resources.files("rosters").joinpath("sql").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, body in parse_blocks(entry.read_text("utf-8")).items():
                if name in blocks:
                    raise ValueError(f"SQL block {name!r} is defined in two files")
                blocks[name] = body
    return blocks


def sql(name: str) -> str:
    """The statement of the named block."""
    try:
        return _all()[name]
    except KeyError:
        raise KeyError(f"no SQL block named {name!r} in rosters/sql/") from None
