"""Errors on the command line: one readable line and an exit status, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from rich.console import Console

from warnd.core.errors import WarndError

P = ParamSpec("P")
T = TypeVar("T")

err_console = Console(stderr=True)


def friendly_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn warnd's own errors into one readable line and exit status 2."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except WarndError as exc:
            err_console.print(f"[bold red]warnd:[/] {exc}")
            sys.exit(2)

    return wrapper
