"""Errors as values with reasons: each says what went wrong in words its reader can act on."""

from __future__ import annotations


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
