"""structlog set-up: JSON events when not on a terminal, phone numbers masked everywhere."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_PHONE = re.compile(r"(\+?86)?(1[3-9]\d)(\d{4})(\d{4})")


def mask_phones(text: str) -> str:
    """``+8613912345678`` → ``+86139****5678``: enough to tell numbers apart, not to call them."""
    return _PHONE.sub(lambda m: f"{m[1] or ''}{m[2]}****{m[4]}", text)


def _mask_processor(
    _logger: object, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask_phones(value)
    return event


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog once per process; ``json`` defaults to "stderr is not a terminal"."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
