"""The OpenAPI 3.1 document, generated from the route table and the pydantic models.

Paths, roles, query parameters, bodies and answers come from each ``Route``; schemas from the
same models the handlers parse with and answer from, so what is documented is what is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from warnd.web.http import ErrorBody
from warnd.web.routing import API, FEED_ROLE, GATEWAY_ROLE, Answer, Route

_ERROR_WORDS: Final = {
    400: "Bad request: a malformed body or query parameter",
    401: "No token, or a token that is not valid here",
    403: "The token's user lacks the role, or may not do this to this warning",
    404: "No such warning, call-out or message",
    408: "The body did not arrive in time",
    409: "The warning or call-out is not in a state that allows this",
    413: "The body is larger than the limit",
    415: "The body is not of a media type this operation accepts",
    422: "The content is well-formed but invalid; detail names the field",
    429: "Busy: send the same request again after Retry-After seconds; nothing of it was kept",
    500: "warnd failed; the detail says where, the log says why",
    503: "Not ready",
}

_SECURITY_SCHEMES: Final = {
    "feedToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "a feed's token from [feeds.<name>] in the config file",
    },
    "userToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "an officer's token from [users.<name>]; roles from there",
    },
    "gatewayToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "an SMS gateway's inbound_token from [channels.<name>]",
    },
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(answer: Answer) -> dict[str, Any]:
    if answer.model is None and answer.schema is None:
        return {answer.media_type: {}}
    schema = _ref(answer.model) if answer.model is not None else answer.schema
    content: dict[str, Any] = {answer.media_type: {"schema": schema}}
    if answer.csv_columns is not None:
        columns = ", ".join(answer.csv_columns)
        content["text/csv"] = {"schema": {"type": "string", "description": f"columns: {columns}"}}
    for media_type in answer.files:
        content[media_type] = {"schema": {"type": "string", "format": "binary"}}
    return content


def _parameters(route: Route) -> list[dict[str, Any]]:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _path_schema(route, name),
            "description": route.path_descriptions.get(
                name, f"the {name.removesuffix('_id')}'s id"
            ),
        }
        for name in route.path_parameters
    ]
    if route.query is None:
        return parameters
    properties = route.query.model_json_schema()["properties"]
    for name, info in route.query.model_fields.items():
        schema = {k: v for k, v in properties[name].items() if k not in ("title", "description")}
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": info.is_required(),
                "schema": schema,
                "description": info.description or "",
            }
        )
    return parameters


def _path_schema(route: Route, name: str) -> dict[str, Any]:
    if name in route.path_patterns:
        return {"type": "string", "pattern": f"^{route.path_patterns[name]}$"}
    return {"type": "integer"}


def _security(roles: tuple[str, ...] | None) -> list[dict[str, list[str]]]:
    if roles is None:
        return []
    if roles == FEED_ROLE:
        return [{"feedToken": []}]
    if roles == GATEWAY_ROLE:
        return [{"gatewayToken": []}]
    return [{"userToken": list(roles)}]


def _roles_text(roles: tuple[str, ...] | None) -> str:
    if roles is None:
        return "No token needed."
    if roles == FEED_ROLE:
        return "Needs a feed token."
    if roles == GATEWAY_ROLE:
        return "Needs a channel's inbound_token."
    return f"Needs a user token with role {' or '.join(roles)} (admin holds all)."


def _operation(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(answer.status): {"description": answer.description, "content": _content(answer)}
        for answer in route.answers
    }
    for status in route.error_statuses():
        responses.setdefault(
            str(status),
            {
                "description": _ERROR_WORDS[status],
                "content": {"application/json": {"schema": _ref(ErrorBody)}},
            },
        )
    operation: dict[str, Any] = {
        "summary": route.summary,
        "description": (route.description + "\n\n" + _roles_text(route.roles)).strip(),
        "operationId": _operation_id(route.method, route.path),
        "security": _security(route.roles),
        "x-roles": list(route.roles) if route.roles is not None else [],
        "responses": responses,
    }
    parameters = _parameters(route)
    if parameters:
        operation["parameters"] = parameters
    if route.has_body:
        schema = _ref(route.body) if route.body is not None else route.body_schema
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media in route.body_types},
        }
    return operation


def _schemas(routes: Sequence[Route]) -> dict[str, Any]:
    """Every model the routes answer with (as serialised) or take as a body (as validated)."""
    answers = {ErrorBody} | {a.model for r in routes for a in r.answers if a.model is not None}
    bodies = {r.body for r in routes if r.body is not None}
    bodies |= {m for r in routes for m in r.body_models}
    _, schemas = models_json_schema(
        [(m, "serialization") for m in sorted(answers - bodies, key=lambda m: m.__name__)]
        + [(m, "validation") for m in sorted(bodies, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    found: dict[str, Any] = schemas.get("$defs", {})
    return found


def document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these routes."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "warnd",
            "version": "1",
            "description": (
                "Warning dissemination and call-and-respond for Jining (济宁市). Every error is "
                '{"error": code, "detail": sentence}. /healthz, /readyz and /metrics take no '
                "token because load balancers, orchestrators and Prometheus probe them; they "
                "reveal no personal data. Everything under /api/v1 needs a bearer token except "
                "this document. No string in a JSON body may hold a NUL (U+0000) character "
                "(422 invalid_text): PostgreSQL's text holds none, and no warning needs one."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": _schemas(routes), "securitySchemes": _SECURITY_SCHEMES},
    }


def _operation_id(method: str, path: str) -> str:
    words = [p.strip("{}") for p in path.removeprefix(API).split("/") if p]
    return "_".join([method.lower(), *words]).replace(".", "_")
