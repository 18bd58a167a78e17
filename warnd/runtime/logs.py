"""structlog set-up: JSON events when not on a terminal, phone numbers masked everywhere."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog

# A Chinese mobile, with or without its country code (+86, 0086, 86), written whole or in 3-4-4
# groups with spaces or dashes, in ASCII or full-width digits; then any other international
# number (+ or 00 and 8 to 15 digits: fixed lines such as +865372345678, foreign numbers). None
# may sit inside a longer run of digits, so ids, timestamps and ID-card numbers are left alone.
_DIGIT: Final = "[0-9\uff10-\uff19]"
_SEP: Final = "[ \\-\u2010-\u2015\u3000\uff0d]?"
_PHONE: Final = re.compile(
    rf"(?<![0-9\uff10-\uff19+\uff0b])"
    rf"(?P<cc>(?:[+\uff0b]|00|\uff10\uff10)?[8\uff18][6\uff16]{_SEP})?"
    rf"(?P<head>[1\uff11][3-9\uff13-\uff19]{_DIGIT}){_SEP}{_DIGIT}{{4}}{_SEP}"
    rf"(?P<tail>{_DIGIT}{{4}})(?!{_DIGIT})"
    rf"|(?<![0-9\uff10-\uff19+\uff0b])(?P<e164>(?:[+\uff0b]|00){_DIGIT}{{8,15}})(?!{_DIGIT})"
)
_E164_HEAD: Final = 5  # characters kept at the start of a number that is not a Chinese mobile
_TAIL: Final = 4  # digits kept at the end of every number
_MIN_HIDDEN: Final = 4  # digits hidden at least, however short the number
_MAX_DEPTH: Final = 32  # nesting deeper than this is masked through its repr


def _mask_match(match: re.Match[str]) -> str:
    number = match["e164"]
    if number is None:
        return f"{match['cc'] or ''}{match['head']}****{match['tail']}"
    hidden = max(len(number) - _E164_HEAD - _TAIL, _MIN_HIDDEN)
    head = len(number) - _TAIL - hidden
    return f"{number[:head]}{'*' * hidden}{number[-_TAIL:]}"


def mask_phones(text: str) -> str:
    """``+8613912345678`` → ``+86139****5678``, ``+865372345678`` → ``+8653****5678``: enough
    to tell numbers apart, not to call them."""
    return _PHONE.sub(_mask_match, text)


def mask_value(value: object, depth: int = 0) -> object:
    """``value`` with every phone number in it masked, as a copy; the original when there is
    none. Strings, containers at any depth (dict keys included) and, for other objects, the
    ``repr`` that a renderer would print."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        masked = mask_phones(value)
        return value if masked == value else masked
    if depth < _MAX_DEPTH:
        if isinstance(value, dict):
            return {mask_value(k, depth + 1): mask_value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            items = [mask_value(v, depth + 1) for v in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, set | frozenset):
            members = {mask_value(v, depth + 1) for v in value}
            return members if isinstance(value, set) else frozenset(members)
    text = repr(value)
    masked_text = mask_phones(text)
    return value if masked_text == text else masked_text


def _mask_processor(
    _logger: object, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # The event dict is structlog's own per call, so it is updated in place; the values in it
    # may belong to the caller and are replaced by masked copies, never changed.
    for key, value in event.items():
        event[key] = mask_value(value)
    return event


def configure(
    level: str = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog once per process; ``json`` defaults to "the stream is not a
    terminal", ``stream`` to stderr."""
    output = stream if stream is not None else sys.stderr
    if json is None:
        json = not output.isatty()
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
            # Tracebacks become the `exception` text here, before masking: an exception's
            # message and its locals' reprs may carry phone numbers.
            structlog.processors.format_exc_info,
            _mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )
