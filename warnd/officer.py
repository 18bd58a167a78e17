"""``warnd warning …``: the duty officer's terminal, a client of the running daemon's API.

It goes through the same HTTP endpoints as every other officer tool, so the same authentication,
approval rule (a second officer for orange and red) and audit log apply; nothing here writes to
the database directly.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp
import click
from rich.console import Console
from rich.table import Table

from warnd.errors import WarndError
from warnd.model import HAZARDS, Level
from warnd.settings import Settings

console = Console()


class ApiCallError(WarndError):
    """The daemon refused the request or could not be reached; the message says why."""


def _server(server: str | None) -> str:
    if server:
        return server.rstrip("/")
    settings = Settings()
    return f"http://{settings.http_host}:{settings.http_port}"


async def _call(
    method: str, server: str, path: str, token: str, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.request(
                method,
                f"{server}{path}",
                json=payload,
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            body = await response.json(content_type=None)
    except aiohttp.ClientError as exc:
        raise ApiCallError(f"cannot reach warnd at {server}: {exc}") from None
    except json.JSONDecodeError:
        raise ApiCallError(f"{server}{path} did not answer with JSON") from None
    if response.status >= 400:
        detail = body.get("detail", body) if isinstance(body, dict) else body
        raise ApiCallError(f"{response.status} {body.get('error', '')}: {detail}")
    if not isinstance(body, dict):
        raise ApiCallError(f"{server}{path} answered with an unexpected body")
    return body


def _token(token: str | None) -> str:
    token = token or os.environ.get("WARND_TOKEN")
    if not token:
        raise ApiCallError("no officer token: set WARND_TOKEN or pass --token")
    return token


server_option = click.option(
    "--server", default=None, help="warnd's URL (default from WARND_HTTP_*)"
)
token_option = click.option("--token", default=None, help="officer token (default $WARND_TOKEN)")


@click.group()
def warning() -> None:
    """Issue, approve and inspect warnings as a duty officer."""


@warning.command("issue")
@click.option("--hazard", required=True, type=click.Choice(sorted(HAZARDS)), help="hazard code")
@click.option("--level", required=True, type=click.Choice([lv.value for lv in Level]))
@click.option("--area", "codes", required=True, help="division codes, comma-separated (6/9/12)")
@click.option("--area-desc", required=True, help="the place in words, e.g. 任城区")
@click.option("--headline", required=True)
@click.option("--description", default="")
@click.option("--instruction", default="", help="what people must do")
@click.option("--exercise", is_flag=True, help="an exercise (演练): reaches only exercise people")
@server_option
@token_option
def issue(
    *,
    hazard: str,
    level: str,
    codes: str,
    area_desc: str,
    headline: str,
    description: str,
    instruction: str,
    exercise: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Issue a manual warning. Orange and red wait for a second officer's approval."""
    from warnd.cli import friendly_errors

    payload = {
        "hazard": hazard,
        "level": level,
        "area": {"codes": [c.strip() for c in codes.split(",") if c.strip()]},
        "area_desc": area_desc,
        "headline": headline,
        "description": description,
        "instruction": instruction,
        "status": "Exercise" if exercise else "Actual",
    }

    def go() -> dict[str, Any]:
        return asyncio.run(
            _call("POST", _server(server), "/api/v1/warnings", _token(token), payload)
        )

    body = friendly_errors(go)()
    warning_id = body["warning_id"]
    if body["status"] == "pending_approval":
        console.print(
            f"warning {warning_id} [bold yellow]waits for a second officer[/]: "
            f"warnd warning approve {warning_id}"
        )
    else:
        console.print(f"warning {warning_id}: [bold green]{body['status']}[/]")
    _preview(server, token, warning_id)


@warning.command("approve")
@click.argument("warning_id", type=int)
@server_option
@token_option
def approve(warning_id: int, server: str | None, token: str | None) -> None:
    """Approve (release) a warning another officer issued."""
    from warnd.cli import friendly_errors

    path = f"/api/v1/warnings/{warning_id}/approve"
    body = friendly_errors(
        lambda: asyncio.run(_call("POST", _server(server), path, _token(token)))
    )()
    console.print(f"warning {warning_id}: [bold green]{body.get('status', 'approved')}[/]")


@warning.command("preview")
@click.argument("warning_id", type=int)
@server_option
@token_option
def preview(warning_id: int, server: str | None, token: str | None) -> None:
    """How many recipients per audience, and which divisions the area resolves to."""
    _preview(server, token, warning_id)


def _preview(server: str | None, token: str | None, warning_id: int) -> None:
    from warnd.cli import friendly_errors

    path = f"/api/v1/warnings/{warning_id}/preview"
    body = friendly_errors(
        lambda: asyncio.run(_call("GET", _server(server), path, _token(token)))
    )()
    table = Table(title=f"warning {warning_id}: who it reaches")
    table.add_column("audience")
    table.add_column("recipients", justify="right")
    for audience, count in (body.get("recipients") or {}).items():
        table.add_row(str(audience), f"{count:,}" if isinstance(count, int) else str(count))
    table.add_row("[bold]total", f"[bold]{body.get('total_recipients', 0):,}")
    console.print(table)
    console.print(f"villages: {body.get('villages', 0):,}")
    divisions = body.get("divisions") or []
    if divisions:
        names = "、".join(str(d.get("name", d.get("code"))) for d in divisions[:12])
        more = f" (+{len(divisions) - 12})" if len(divisions) > 12 else ""
        console.print(f"divisions: {names}{more}")
    if body.get("unknown_codes"):
        console.print(f"[red]codes not in the roster: {', '.join(body['unknown_codes'])}[/]")
