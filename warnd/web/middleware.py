"""The two middlewares every request passes: errors become ``{"error", "detail"}`` answers, and
no handler runs before its caller is authenticated and holds a role the route table names."""

from __future__ import annotations

import uuid
from typing import Final

import structlog
from aiohttp import web

from warnd.core.config import Role, User
from warnd.core.errors import ConflictError, ForbiddenError, InputError, NotFoundError, RefusedError
from warnd.ingest.cap import CapError
from warnd.web.http import (
    FEED,
    SERVICES,
    USER,
    ApiError,
    StreamAbortedError,
    bearer,
    error_response,
)
from warnd.web.routing import FEED_ROLE, GATEWAY_ROLE, Handler

log = structlog.get_logger(__name__)

ROLES: Final = web.AppKey("roles", dict[tuple[str, str], tuple[str, ...] | None])

_HTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def _refusal_status(exc: RefusedError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ForbiddenError):
        return 403
    assert isinstance(exc, ConflictError)  # the third and last kind of refusal
    return 409


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as ``{"error", "detail"}``; unexpected ones logged, never shown."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.detail, exc.headers)
    except RefusedError as exc:
        return error_response(_refusal_status(exc), exc.code, exc.detail)
    except InputError as exc:
        status = exc.http_status if isinstance(exc, CapError) else 422
        return error_response(status, exc.code, exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        detail = f"{request.method} {request.path}: {exc.reason}"
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow",)}
        return error_response(exc.status, code, detail, headers)
    except StreamAbortedError:
        raise
    # The one place a request's unforeseen failure is caught: it is logged with its traceback
    # and the caller gets a 500 naming the request, so a feed can never crash or hang warnd.
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("request_failed", method=request.method, path=request.path, incident=incident)
        return error_response(
            500,
            "internal",
            f"warnd failed while handling {request.method} {request.path}; "
            f"the operators can find incident {incident} in the log",
        )


def has_role(user: User, role: str) -> bool:
    """Admin holds every role."""
    return any(r.value in (role, Role.ADMIN.value) for r in user.roles)


def unauthorised(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": 'Bearer realm="warnd"'})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and authorise by the route's roles before its handler runs."""
    resource = request.match_info.route.resource
    if resource is None:  # no route matched: the handler raises 404 or 405
        return await handler(request)
    method = "GET" if request.method == "HEAD" else request.method
    table = request.app[ROLES]
    key = (method, resource.canonical)
    if key not in table:
        # A route without declared roles is a programming error; refuse rather than serve it open.
        raise RuntimeError(f"route {method} {resource.canonical} has no roles in the route table")
    roles = table[key]
    if roles is None or roles == GATEWAY_ROLE:  # a gateway's token names its channel: the handler
        return await handler(request)
    services = request.app[SERVICES]
    token = bearer(request)
    if roles == FEED_ROLE:
        feed = services.config.feed_for_token(token) if token else None
        if feed is None:
            services.metrics.ingest.labels(
                source="unauthenticated", result="rejected", reason="unauthorized"
            ).inc()
            log.warning("feed_unauthorized", path=request.path, remote=request.remote)
            raise unauthorised(
                "send 'Authorization: Bearer <token>' with the token of a configured feed"
                if token is None
                else "the bearer token is not the token of any configured feed"
            )
        request[FEED] = feed
        return await handler(request)
    user = services.config.user_for_token(token) if token else None
    if user is None:
        log.warning("user_unauthorized", path=request.path, remote=request.remote)
        raise unauthorised(
            "send 'Authorization: Bearer <token>' with an officer's token"
            if token is None
            else "the bearer token is not the token of any configured user"
        )
    if not any(has_role(user, role) for role in roles):
        log.warning("user_forbidden", user=user.name, path=request.path, needs=list(roles))
        raise ApiError(
            403,
            "forbidden",
            f"user {user.name!r} lacks the role for {method} {resource.canonical}: "
            f"needs {' or '.join(roles)}",
        )
    request[USER] = user
    return await handler(request)
