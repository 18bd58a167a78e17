"""The officer commands' HTTP client: requests to a running warnd with the officer's token."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import aiohttp
import click

from warnd.core.errors import WarndError
from warnd.runtime.settings import Settings


class ApiCallError(WarndError):
    """The daemon refused the request or could not be reached; the message says why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status of a refusal; None when warnd could not be reached at all."""


def server_url(server: str | None) -> str:
    if server:
        return server.rstrip("/")
    settings = Settings()
    return f"http://{settings.http_host}:{settings.http_port}"


async def call_api(
    method: str,
    server: str,
    path: str,
    token: str,
    payload: dict[str, Any] | None = None,
    *,
    http: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """One request with the officer's token; ``http`` reuses a session across polls."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            if http is None:
                http = await stack.enter_async_context(
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
                )
            response = await stack.enter_async_context(
                http.request(
                    method,
                    f"{server}{path}",
                    json=payload,
                    headers={"Authorization": f"Bearer {token}"},
                )
            )
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiCallError(f"cannot reach warnd at {server}: {exc or 'timed out'}") from None
    except json.JSONDecodeError:
        raise ApiCallError(f"{server}{path} did not answer with JSON", response.status) from None
    if response.status >= 400:
        if not isinstance(body, dict):
            raise ApiCallError(f"{response.status}: {body}", response.status)
        detail = body.get("detail", body)
        raise ApiCallError(f"{response.status} {body.get('error', '')}: {detail}", response.status)
    if not isinstance(body, dict):
        raise ApiCallError(f"{server}{path} answered with an unexpected body", response.status)
    return body


async def download(server: str, path: str, token: str) -> bytes:
    """A non-JSON answer (a CSV export) as bytes; refusals raise as in ``call_api``."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http,
            http.get(f"{server}{path}", headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            data = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiCallError(f"cannot reach warnd at {server}: {exc or 'timed out'}") from None
    if response.status >= 400:
        try:
            body = json.loads(data)
            message = f"{response.status} {body['error']}: {body['detail']}"
        except (ValueError, KeyError, TypeError):
            message = f"{response.status}: {data[:200].decode('utf-8', 'replace')}"
        raise ApiCallError(message, response.status)
    return data


def officer_token(token: str | None) -> str:
    token = token or os.environ.get("WARND_TOKEN")
    if not token:
        raise ApiCallError("no officer token: set WARND_TOKEN or pass --token")
    return token


server_option = click.option(
    "--server", default=None, help="warnd's URL (default from WARND_HTTP_*)"
)


token_option = click.option("--token", default=None, help="officer token (default $WARND_TOKEN)")
