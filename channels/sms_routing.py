"""Which operator's SMS link carries a Chinese mobile number: routing by number prefix.

China's three operators own fixed number blocks (the first three digits of an 11-digit mobile
number). An SMPP link per operator delivers fastest and cheapest to that operator's subscribers,
so the channel picks the link by prefix, and sends what matches no prefix (or what a down link
cannot carry) over a fallback link. The defaults below are the blocks as allocated in 2024; an
operator config may replace any of them (``routes`` in the channel's table).

Pure functions over plain data: no I/O, no knowledge of SMPP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_NOT_DIGITS = re.compile(r"[^0-9]")


def _blocks(prefixes: str) -> tuple[str, ...]:
    """Prefixes written as one line of space-separated numbers, the way operators list them."""
    return tuple(prefixes.split())


DEFAULT_ROUTES: dict[str, tuple[str, ...]] = {
    "mobile": _blocks(
        "134 135 136 137 138 139 147 150 151 152 157 158 159 178 182 183 184 187 188 198"
    ),
    "unicom": _blocks("130 131 132 155 156 166 175 176 185 186"),
    "telecom": _blocks("133 153 173 177 180 181 189 191 199"),
}


def national_number(address: str) -> str:
    """The digits of a Chinese mobile number without country code: ``+86 138-0000-0001`` ->
    ``13800000001``. Anything else is returned as its bare digits."""
    digits = address if address.isdigit() else _NOT_DIGITS.sub("", address)
    if len(digits) <= 11:  # nothing to strip: the common case, once per message sent
        return digits
    for country in ("0086", "86"):
        if digits.startswith(country) and len(digits) == len(country) + 11:
            return digits[len(country) :]
    return digits


class PrefixRoutes:
    """A routing table: the link of the longest configured prefix a national number starts with."""

    def __init__(self, routes: Mapping[str, Iterable[str]]) -> None:
        self._by_prefix: dict[str, str] = {}
        for link, prefixes in routes.items():
            for prefix in prefixes:
                clean = national_number(prefix)
                if not clean:
                    raise ValueError(f"route prefix {prefix!r} of link {link!r} has no digits")
                known = self._by_prefix.get(clean)
                if known is not None and known != link:
                    raise ValueError(f"prefix {clean} is routed to both {known!r} and {link!r}")
                self._by_prefix[clean] = link
        self._lengths = sorted({len(p) for p in self._by_prefix}, reverse=True)

    def route(self, address: str) -> str | None:
        """The link for ``address``, or None when no prefix matches."""
        number = national_number(address)
        for length in self._lengths:
            link = self._by_prefix.get(number[:length])
            if link is not None:
                return link
        return None

    def links(self) -> set[str]:
        """Every link some prefix routes to."""
        return set(self._by_prefix.values())
