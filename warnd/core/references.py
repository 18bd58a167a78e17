"""How warnings name each other: CAP references, and the short codes responders reply with."""

from __future__ import annotations

from datetime import datetime


def next_short_code(used: set[str]) -> str:
    """The first code (A1 … A999, B1 …) not held by an open warning: short, so easy to type."""
    for letter in "ABCDEFGHJKLMNPQRSTUVWXYZ":  # no I or O: they read as 1 and 0
        for number in range(1, 1000):
            code = f"{letter}{number}"
            if code not in used:
                return code
    raise RuntimeError("more than 23,976 open warnings: no short code left")


def parse_reference(ref: str) -> tuple[str, str, datetime] | None:
    """A CAP reference ``sender,identifier,sent`` as a key, or None if it is not one."""
    parts = ref.split(",")
    if len(parts) != 3:
        return None
    try:
        sent = datetime.fromisoformat(parts[2])
    except ValueError:
        return None
    return parts[0], parts[1], sent
