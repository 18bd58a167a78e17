"""What every handler needs from HTTP: the shared keys, reading bodies and query parameters,
and writing JSON and streamed CSV answers.

Query parameters are parsed once, by a pydantic model per operation (the same model the OpenAPI
document describes them from); a body is read in chunks with a size and time limit.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import tzinfo
from typing import Annotated, Final, TypeVar

import asyncpg
import structlog
from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from warnd.app.services import Services
from warnd.core.config import User
from warnd.core.errors import InputError, location
from warnd.core.spreadsheet import neutralise

log = structlog.get_logger(__name__)

SERVICES: Final = web.AppKey("services", Services)
USER: Final = web.RequestKey("user", User)  # set by the auth middleware for user-token routes
FEED: Final = web.RequestKey("feed", str)  # set by the auth middleware for feed-token routes

MAX_ID: Final = 2**63 - 1  # bigint
READ_CHUNK: Final = 64 * 1024
BODY_TIMEOUT_S: Final = 30.0  # a body slower than this is refused (408)


class ApiError(Exception):
    """An answer other than success: status, a stable code and a sentence for the caller."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


class BodyError(ApiError):
    """The body could not be read whole: too large (413) or too slow (408)."""

    def __init__(self, status: int, code: str, detail: str, head: bytes) -> None:
        super().__init__(status, code, detail)
        self.head = head  # what arrived before reading stopped, for the rejection record


class StreamAbortedError(Exception):
    """A streamed response failed after its headers were sent: the connection must be cut so
    the client sees a truncated transfer, never a short file that looks complete."""


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: a stable machine code and a sentence saying what and where."""

    error: str = Field(description="stable code, e.g. unauthorized, malformed_xml, invalid_warning")
    detail: str = Field(description="what is wrong, and where")


# --- requests ----------------------------------------------------------------------------------


def bearer(request: web.Request) -> str | None:
    """The bearer token of the request, if it sent one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def path_id(request: web.Request, name: str) -> int:
    """A numeric id from the path; one too large for the database names nothing (404)."""
    value = int(request.match_info[name])  # the route pattern admits digits only
    if value > MAX_ID:
        raise ApiError(404, "not_found", f"{name} {value} does not exist")
    return value


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, read in chunks, refused as soon as it passes ``limit`` bytes or stalls."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyError(
            413, "too_large", f"body is {declared} bytes; at most {limit} bytes are accepted", b""
        )
    parts: list[bytes] = []
    size = 0
    try:
        # A sender that stalls mid-body holds only its own request, and not for long.
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.content.iter_chunked(READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise BodyError(
                        413,
                        "too_large",
                        f"body is larger than {limit} bytes, the most accepted",
                        b"".join(parts),
                    )
                parts.append(chunk)
    except TimeoutError:
        raise BodyError(
            408,
            "request_timeout",
            f"the body did not arrive within {BODY_TIMEOUT_S:g} s ({size} bytes came)",
            b"".join(parts),
        ) from None
    return b"".join(parts)


async def json_payload(request: web.Request, *, empty: object = None) -> object:
    """The request's JSON body, decoded; 415 or 400 with the reason otherwise.

    ``empty``: what an empty body stands for, when the operation allows none (else it is JSON
    that does not parse).
    """
    unsupported = ApiError(
        415,
        "unsupported_media_type",
        f"Content-Type {request.content_type!r}: send application/json",
    )
    if empty is None and request.content_type != "application/json":
        raise unsupported  # before reading: a body of the wrong kind is not worth waiting for
    body = await read_body(request, request.app[SERVICES].max_body_bytes)
    if empty is not None and not body.strip():
        return empty
    if request.content_type != "application/json":
        raise unsupported
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"body is not JSON: {exc}") from None
    where = _nul_at(payload)
    if where is not None:
        # PostgreSQL's text cannot hold NUL, and no warning, reason or reply needs one.
        raise InputError(f"{where or 'body'}: contains a NUL character", code="invalid_text")
    return payload


def _nul_at(value: object, path: str = "") -> str | None:
    """The location of the first string (or key) holding a NUL character, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return where
            found = _nul_at(item, where)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


class QueryModel(BaseModel):
    """Base of the query-parameter models: unknown parameters are ignored, as HTTP expects."""

    model_config = ConfigDict(extra="ignore", frozen=True)


Q = TypeVar("Q", bound=QueryModel)


def query(request: web.Request, model: type[Q]) -> Q:
    """The request's query parameters as ``model``; 400 naming each bad parameter otherwise.

    An empty value (``?state=``) is the parameter left out; a repeated one counts once (the
    first), as a browser form sends it.
    """
    values = {k: request.query.getone(k) for k in request.query if request.query.getone(k) != ""}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        # The value is named: a query parameter is short, public, and what the caller mistyped.
        detail = "; ".join(
            f"{location(e['loc'], whole='query')}: {e['input']!r} is not valid: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ApiError(400, "invalid_parameter", detail) from None


def _query_bool(value: object) -> object:
    # "true"/"false" only: pydantic would also take yes, on, 1, which nobody documents.
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


QueryBool = Annotated[bool, BeforeValidator(_query_bool)]
"""A boolean query parameter: ``true`` or ``false``."""


# --- answers -----------------------------------------------------------------------------------


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = json_response(ErrorBody(error=code, detail=detail), status)
    response.headers.update(headers or {})
    return response


R = TypeVar("R")


async def stream_csv(
    request: web.Request,
    filename: str,
    columns: tuple[str, ...],
    batches: AsyncIterator[list[R]],
    cells: Callable[[R, tzinfo], tuple[object, ...]],
) -> web.StreamResponse:
    """Every row ``batches`` yields, written as it comes: UTF-8 with a BOM, times in the city's
    time zone, no cell a spreadsheet would run as a formula. A failure mid-way cuts the
    connection (``StreamAbortedError``)."""
    services = request.app[SERVICES]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
    )
    zone = services.current_policy().night.zone
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    # The BOM makes spreadsheet programs read the Chinese names as UTF-8.
    buffer.write("\ufeff")
    writer.writerow(columns)
    try:
        await response.write(buffer.getvalue().encode("utf-8"))
        async for batch in batches:
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(
                [neutralise(c) if isinstance(c, str) else c for c in cells(row, zone)]
                for row in batch
            )
            await response.write(buffer.getvalue().encode("utf-8"))
    except (asyncpg.PostgresError, OSError) as exc:
        log.exception("csv_failed", path=request.path)
        raise StreamAbortedError(f"CSV {filename} cut off: {exc}") from exc
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()
    await response.write_eof()
    return response
