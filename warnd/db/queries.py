"""Named SQL blocks loaded from ``warnd/sql/*.sql``.

A block starts with ``-- name: block_name`` followed by comment lines that say its purpose and
its ``$n`` parameters; everything up to the next ``-- name:`` is the statement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_blocks(text: str) -> dict[str, str]:
    """Split a .sql file into its named blocks."""
    blocks: dict[str, str] = {}
    parts = _NAME.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise ValueError(f"SQL block {name!r} is defined twice")
        blocks[name] = body.strip()
    return blocks


@cache
def _all() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for entry in sorted(
        resources.files("warnd.db").joinpath("sql").iterdir(), key=lambda e: e.name
    ):
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
        raise KeyError(f"no SQL block named {name!r} in warnd/sql/") from None


def columns(rows: Sequence[tuple[object, ...]]) -> list[list[object]]:
    """Rows of equal length as one list per column: the arrays an UNNEST statement takes."""
    return [list(column) for column in zip(*rows, strict=True)]
