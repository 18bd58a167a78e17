"""Named SQL blocks loaded from ``.sql`` files (``warnd/db/sql``, ``rosters/sql``).

A block starts with ``-- name: block_name`` followed by comment lines that say its purpose and
its ``$n`` parameters; everything up to the next ``-- name:`` is the statement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


class Queries:
    """The named blocks of every ``.sql`` file in one package folder, read on first use."""

    def __init__(self, package: str, folder: str = "sql") -> None:
        self._package = package
        self._folder = folder
        self._blocks: dict[str, str] | None = None

    def _all(self) -> dict[str, str]:
        if self._blocks is None:
            blocks: dict[str, str] = {}
            files = resources.files(self._package).joinpath(self._folder).iterdir()
            for entry in sorted(files, key=lambda e: e.name):
                if entry.name.endswith(".sql"):
                    for name, body in parse_blocks(entry.read_text("utf-8")).items():
                        if name in blocks:
                            raise ValueError(f"SQL block {name!r} is defined in two files")
                        blocks[name] = body
            self._blocks = blocks
        return self._blocks

    def __call__(self, name: str) -> str:
        """The statement of the named block."""
        try:
            return self._all()[name]
        except KeyError:
            where = f"{self._package.replace('.', '/')}/{self._folder}/"
            raise KeyError(f"no SQL block named {name!r} in {where}") from None

    def names(self) -> list[str]:
        return sorted(self._all())


sql = Queries("warnd.db")
"""warnd's statements: ``sql("claim_deliveries")``."""


def columns(rows: Sequence[tuple[object, ...]]) -> list[list[object]]:
    """Rows of equal length as one list per column: the arrays an UNNEST statement takes."""
    return [list(column) for column in zip(*rows, strict=True)]
