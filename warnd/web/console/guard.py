"""What stands in front of every console page: the session cookie, the CSRF token of every POST,
the security headers (a CSP with no inline script), and refusals shown as a page in Chinese.

The session is server-side (``console_sessions``): the cookie holds a random token only, is
HttpOnly and SameSite=Strict, and Secure when warnd serves TLS. A POST carries the session's
CSRF token in a hidden field; the sign-in form, before there is a session, carries a token that
must equal its own cookie's (double submit).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from typing import Any, Final

import aiohttp_jinja2
import structlog
from aiohttp import BodyPartReader, MultipartReader, web

from warnd.app import users
from warnd.core.config import Role
from warnd.core.errors import ForbiddenError, InputError, RefusedError
from warnd.web.console.words import REFUSALS
from warnd.web.http import SERVICES
from warnd.web.routing import Handler

log = structlog.get_logger(__name__)

PREFIX: Final = "/console"
SESSION_COOKIE: Final = "warnd_session"
LOGIN_CSRF_COOKIE: Final = "warnd_login_csrf"
CSRF_FIELD: Final = "csrf_token"
# Pages that need no session: the sign-in form itself and the static files.
OPEN_PATHS: Final = (f"{PREFIX}/login", f"{PREFIX}/static/")
MAX_FORM_BYTES: Final = 64 * 1024

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

SESSION: Final = web.RequestKey("console_session", users.LiveSession)
TOKEN: Final = web.RequestKey("console_token", str)
UPLOAD_PATH: Final = f"{PREFIX}/roster/import"
MAX_TOKEN_BYTES: Final = 256  # a CSRF token is 32 characters
# An upload's parts after its CSRF token, for the upload's handler to stream.
UPLOAD: Final = web.RequestKey("console_upload", MultipartReader)


def is_console(request: web.Request) -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    """A console cookie: HttpOnly, SameSite=Strict, Secure over TLS, for the console's paths
    only, and gone when the browser closes."""
    response.set_cookie(
        name, value, httponly=True, samesite="Strict", secure=request.secure, path=PREFIX
    )


def officer(request: web.Request) -> users.ConsoleUser:
    return request[SESSION].user


def require(request: web.Request, role: Role) -> users.ConsoleUser:
    """The signed-in officer, who must hold ``role`` (admin holds every role)."""
    user = officer(request)
    if not user.has(role):
        raise ForbiddenError(
            "forbidden", f"user {user.name!r} lacks the role {role.value} for {request.path}"
        )
    return user


async def form(request: web.Request) -> dict[str, str]:
    """A POST's fields (the last value of each), its size bounded."""
    return {k: v for k, v in (await form_items(request)) if isinstance(v, str)}


async def form_items(request: web.Request) -> list[tuple[str, object]]:
    """A POST's fields in order, repeated names included (the chosen divisions)."""
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise InputError("the form is too large", code="invalid_request")
    return list((await request.post()).items())


async def _csrf_token(request: web.Request) -> str:
    """The POST's csrf_token: a form's field, or an upload's first part (the upload form puts
    it first); the rest of an upload is left for its handler to stream (``UPLOAD``)."""
    if request.content_type != "multipart/form-data":
        return (await form(request)).get(CSRF_FIELD, "")
    if request.path != UPLOAD_PATH:
        raise InputError(
            "only a roster upload is sent as multipart/form-data", code="invalid_request"
        )
    try:
        reader = await request.multipart()
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != CSRF_FIELD:
            return ""
        token = b""
        while not part.at_eof() and len(token) <= MAX_TOKEN_BYTES:
            token += await part.read_chunk(MAX_TOKEN_BYTES)
    except (ValueError, asyncio.IncompleteReadError) as exc:
        raise InputError(f"the upload is not well-formed: {exc}", code="invalid_request") from None
    request[UPLOAD] = reader
    return token.decode("ascii", "replace")


def _same(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def _context(request: web.Request, context: dict[str, Any]) -> dict[str, Any]:
    """``context`` over what every page shows (the officer, simulated channels, whether it is
    an exercise's)."""
    base = {
        "session": request.get(SESSION),
        "simulated": request.app[SERVICES].simulated,
        "exercise": False,
        "prefix": PREFIX,
    }
    return {**base, **context}


def page(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """A console page."""
    return aiohttp_jinja2.render_template(
        template, request, _context(request, context), status=status
    )


def fragment(request: web.Request, template: str, context: dict[str, Any]) -> str:
    """Part of a page, as a live stream sends it."""
    return aiohttp_jinja2.render_string(template, request, _context(request, context))


def refusal_page(request: web.Request, status: int, code: str, detail: str) -> web.Response:
    context = {"message": REFUSALS.get(code, "操作未完成。"), "detail": detail}
    return page(request, "error.html", context, status)


def _status(exc: RefusedError) -> int:
    if isinstance(exc, ForbiddenError):
        return 403
    return 404 if exc.code == "not_found" else 409


def _wants_fragment(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true" or request.headers.get(
        "Accept", ""
    ).startswith("text/event-stream")


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sign-in, CSRF and headers for the console; every other path passes untouched."""
    if not is_console(request):
        return await handler(request)
    try:
        response = await _guarded(request, handler)
    except RefusedError as exc:
        response = refusal_page(request, _status(exc), exc.code, exc.detail)
    except InputError as exc:
        response = refusal_page(request, 422, exc.code, exc.detail)
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(OPEN_PATHS):
        if request.method == "POST":
            data = await form(request)
            if not _same(data.get(CSRF_FIELD, ""), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
                log.warning("console_csrf_refused", path=request.path, remote=request.remote)
                return refusal_page(request, 403, "csrf", "the sign-in form's token is missing")
        return await handler(request)
    services = request.app[SERVICES]
    token = request.cookies.get(SESSION_COOKIE, "")
    live = await users.session(services, token) if token else None
    if live is None:
        if _wants_fragment(request):
            response = web.Response(status=401, text="请重新登录")
            response.headers["HX-Redirect"] = f"{PREFIX}/login"
            return response
        raise web.HTTPSeeOther(f"{PREFIX}/login")
    request[SESSION] = live
    request[TOKEN] = token
    if request.method == "POST" and not _same(await _csrf_token(request), live.csrf_token):
        log.warning(
            "console_csrf_refused",
            path=request.path,
            user=live.user.name,
            remote=request.remote,
        )
        return refusal_page(request, 403, "csrf", "the form's csrf_token is missing or stale")
    return await handler(request)
