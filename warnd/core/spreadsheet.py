"""Cells that spreadsheet programs would run as formulas (CSV injection), neutralised on export
and restored on import.

Excel, LibreOffice and WPS read a cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or
carriage return before one) as a formula: a name in a roster or a reply text could then run
one on an officer's machine, and a phone number ``+86139…`` would become a number. Such a cell
is written with a leading apostrophe, which makes it text; a roster file read back drops it.
"""

from __future__ import annotations

from typing import Final

FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
MARK: Final = "'"


def neutralise(text: str) -> str:
    """``text`` as a spreadsheet shows it as text, never as a formula or a number."""
    return MARK + text if text.startswith(FORMULA_START) else text


def restore(text: str) -> str:
    """The text ``neutralise`` was given (a cell an export marked), else ``text`` itself."""
    if text.startswith(MARK) and text[1:].startswith(FORMULA_START):
        return text[1:]
    return text
