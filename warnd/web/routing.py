"""What an operation is: its method and path, handler, who may call it, and what it takes and
answers. ``warnd.web.routes`` lists them once; the application registers its routes, the auth
middleware its roles and the OpenAPI document its description from that one table.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel

from warnd.web.http import QueryModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API: Final = "/api/v1"

# Who may call: None (no token: probes, scrapers, the document); FEED_ROLE (a feed's token);
# GATEWAY_ROLE (a channel's inbound_token, checked by the handler, which learns the channel from
# it); or user roles, any of which will do ("admin" holds every role).
FEED_ROLE: Final = ("feed",)
GATEWAY_ROLE: Final = ("gateway",)

_PARAMETER: Final = re.compile(r"\{(\w+)\}")
_ID_PATTERN: Final = "[0-9]+"


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status, what it means, and its body."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    schema: dict[str, Any] | None = None  # a body no model describes
    media_type: str = "application/json"
    csv_columns: tuple[str, ...] | None = None  # a JSON page, or every row as CSV
    files: tuple[str, ...] = ()  # media types of the same answer as a file (?format=xlsx, pdf)


@dataclass(frozen=True)
class Route:
    """One operation of the API."""

    method: str
    path: str  # as OpenAPI writes it: /api/v1/warnings/{warning_id}
    handler: Handler
    roles: tuple[str, ...] | None
    summary: str
    answers: tuple[Answer, ...]
    description: str = ""
    query: type[QueryModel] | None = None
    body: type[BaseModel] | None = None
    body_schema: dict[str, Any] | None = None  # a body no model describes (XML, a union)
    body_types: tuple[str, ...] = ("application/json",)
    body_models: tuple[type[BaseModel], ...] = ()  # models ``body_schema`` refers to
    invalid: int = 422  # the status of a body that parses but is not valid
    errors: tuple[int, ...] = ()  # refusals beyond those the route's shape implies (409 …)
    path_descriptions: dict[str, str] = field(default_factory=dict)
    # Path parameters that are not ids (``{name}``): the regular expression a value must match,
    # so that the router answers 404 for anything else before a handler sees it.
    path_patterns: dict[str, str] = field(default_factory=dict)

    def path_pattern(self, name: str) -> str:
        """What a path parameter matches: ``*_id`` digits only, others their declared pattern."""
        if name in self.path_patterns:
            return self.path_patterns[name]
        if name.endswith("_id"):
            return _ID_PATTERN
        raise ValueError(f"{self.path}: path parameter {name!r} has no pattern")

    @property
    def router_path(self) -> str:
        """The path as aiohttp matches it: ids are digits only, other parameters match their
        pattern, anything else is a 404."""
        return _PARAMETER.sub(lambda m: f"{{{m[1]}:{self.path_pattern(m[1])}}}", self.path)

    @property
    def path_parameters(self) -> list[str]:
        return _PARAMETER.findall(self.path)

    @property
    def has_body(self) -> bool:
        return self.body is not None or self.body_schema is not None

    def error_statuses(self) -> list[int]:
        """Every 4xx and 5xx this operation can answer, from its shape and its ``errors``."""
        codes = set(self.errors)
        if self.roles is not None:
            codes |= {401, 500}
            if self.roles not in (FEED_ROLE, GATEWAY_ROLE):
                codes.add(403)
        if self.path_parameters:
            codes.add(404)
        if self.query is not None:
            codes.add(400)
        if self.has_body:
            codes |= {400, 408, 413, 415, self.invalid}
        return sorted(codes)
