"""What is wrong with roster files, said where it is: file, row, column and reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from warnd.core.errors import InputError


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one place of one file."""

    file: str
    row: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.reason}"


class RosterImportError(InputError):
    """Roster files have errors: every problem is listed, and nothing at all was imported."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "\n".join(str(p) for p in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n… and {more} more" if more > 0 else ""
        super().__init__(
            f"{len(self.problems)} problem(s) in the roster files; nothing was imported:\n"
            f"{shown}{tail}",
            code="roster_invalid",
        )
