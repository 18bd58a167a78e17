"""Errors as values with reasons: each says what went wrong in words its reader can act on.

The classes say what kind of refusal it is (bad input, no such thing, not in that state, not
allowed); the HTTP layer maps each kind to its status once, so a use case never thinks in HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic_core import ErrorDetails


class WarndError(Exception):
    """Something warnd was asked to do cannot be done; the message says what and where."""

    code = "error"


class ConfigError(WarndError):
    """A configuration or policy file is invalid; the message names the file and key."""

    code = "invalid_config"


class DatabaseError(WarndError):
    """The database cannot be reached or is not in the expected state."""

    code = "database"


class InputError(WarndError):
    """Input from outside (a feed, a file, an officer) is invalid; nothing was changed."""

    code = "invalid_input"

    def __init__(self, detail: str, *, code: str = "invalid_input") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class RefusedError(WarndError):
    """A person asked for something the state of warnd does not allow; nothing was changed.

    ``code`` is stable for machines (``not_pending``, ``self_approval``); ``detail`` says why in
    words. Subclasses say which kind of refusal it is.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NotFoundError(RefusedError):
    """The warning, call-out or record named does not exist."""

    def __init__(self, detail: str) -> None:
        super().__init__("not_found", detail)


class ConflictError(RefusedError):
    """The thing exists but is not in a state that allows this (already approved, ended …)."""


class ForbiddenError(RefusedError):
    """This person may not do this, whatever the state (approving their own warning …)."""


def location(loc: Sequence[int | str], *, whole: str = "") -> str:
    """A validation error's location as a key path: ``("area", "codes", 1)`` → ``area.codes[1]``.

    ``whole`` names the location when the error is about the whole value (an empty path).
    """
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            continue  # pydantic marks a bad dict key this way; the key itself is already named
        else:
            text += f".{part}" if text else part
    return text or whole


def describe_errors(errors: Sequence[ErrorDetails], *, whole: str = "body") -> str:
    """One ``field: problem`` per validation error, joined with ``; ``."""
    return "; ".join(f"{location(e['loc'], whole=whole)}: {e['msg']}" for e in errors)
