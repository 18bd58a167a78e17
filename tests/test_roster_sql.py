"""The rosters' SQL blocks: documented as warnd's are, and each one used by the code."""

from __future__ import annotations

import re
from pathlib import Path

import rosters
from warnd.db.queries import parse_blocks

ROSTERS = Path(rosters.__file__).parent
BLOCKS = {
    name: body
    for path in sorted((ROSTERS / "sql").glob("*.sql"))
    for name, body in parse_blocks(path.read_text("utf-8")).items()
}


def test_every_block_says_its_purpose_and_parameters() -> None:
    for name, body in BLOCKS.items():
        comments = [line for line in body.splitlines() if line.startswith("--")]
        statement = "\n".join(line for line in body.splitlines() if not line.startswith("--"))
        assert body.startswith("-- "), f"{name} has no purpose comment"
        parameters = set(re.findall(r"\$\d+", statement))
        documented = set(re.findall(r"\$\d+", "\n".join(comments)))
        assert parameters == documented, f"{name}: parameters {parameters}, listed {documented}"


def test_every_block_is_used() -> None:
    assert BLOCKS
    code = "\n".join(p.read_text("utf-8") for p in ROSTERS.glob("*.py"))
    unused = [name for name in BLOCKS if f'"{name}"' not in code]
    assert not unused
