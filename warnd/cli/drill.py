"""``warnd drill``: blind drills (双盲演练) through the running warnd, as an officer.

``schedule`` reads the scenarios from a TOML file (``[[scenario]]`` tables: hazard, level,
counties, and optionally headline, description, instruction) and the window as two local times
(Asia/Shanghai unless an offset is given) separated by a slash; warnd draws the moment and the
scenario and shows them to the scheduling officer alone.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from warnd.cli.client import call_api, officer_token, server_option, server_url, token_option
from warnd.cli.errors import friendly_errors

CITY_ZONE = ZoneInfo("Asia/Shanghai")


def parse_window(value: str) -> tuple[datetime, datetime]:
    """``"2026-12-10 08:00/2026-12-12 20:00"``: local times unless they carry an offset."""
    parts = value.split("/")
    if len(parts) != 2:
        raise click.BadParameter('give START/END, e.g. "2026-12-10 08:00/2026-12-12 20:00"')
    times = []
    for part in parts:
        try:
            at = datetime.fromisoformat(part.strip())
        except ValueError:
            raise click.BadParameter(f"{part.strip()!r} is not a date and time") from None
        times.append(at if at.tzinfo is not None else at.replace(tzinfo=CITY_ZONE))
    return times[0], times[1]


def read_scenarios(path: Path) -> list[dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}") from None
    scenarios = data.get("scenario")
    if not isinstance(scenarios, list) or not scenarios:
        raise click.BadParameter(f"{path}: no [[scenario]] tables")
    return scenarios


@click.group()
def drill() -> None:
    """Blind drills (双盲演练): schedule, approve, list, cancel."""


@drill.command("schedule")
@click.option("--window", required=True, help='"START/END", local times: when it may fire')
@click.option(
    "--scenarios",
    "scenarios_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file of [[scenario]] tables (hazard, level, counties, texts)",
)
@click.option("--counties", default=None, help="only these counties (comma-separated codes)")
@server_option
@token_option
def schedule(
    window: str,
    scenarios_file: Path,
    counties: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Schedule a blind drill; warnd picks the moment and the scenario, shown to you alone."""
    start, end = parse_window(window)
    payload: dict[str, Any] = {
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "scenarios": read_scenarios(scenarios_file),
    }
    if counties:
        payload["counties"] = [c.strip() for c in counties.split(",") if c.strip()]
    body = friendly_errors(
        lambda: asyncio.run(
            call_api("POST", server_url(server), "/api/v1/drills", officer_token(token), payload)
        )
    )()
    fire_at = datetime.fromisoformat(str(body["fire_at"])).astimezone(CITY_ZONE)
    scenario = body["scenario"]
    click.echo(f"drill #{body['id']} scheduled (keep this to yourself):")
    click.echo(f"  fires at {fire_at:%Y-%m-%d %H:%M:%S} (Asia/Shanghai)")
    click.echo(
        f"  {scenario.get('county_name') or scenario['county']} "
        f"{scenario['hazard']} {scenario['level']}"
    )
    if body["state"] == "pending_approval":
        click.echo(
            f"  waits for a second officer: warnd drill approve {body['id']} "
            "(they see the scenarios, not which one or when)"
        )


@drill.command("approve")
@click.argument("drill_id", type=click.IntRange(min=1))
@server_option
@token_option
def approve(drill_id: int, server: str | None, token: str | None) -> None:
    """Release an orange or red drill another officer scheduled (you never learn which or when)."""
    path = f"/api/v1/drills/{drill_id}/approve"
    friendly_errors(
        lambda: asyncio.run(call_api("POST", server_url(server), path, officer_token(token)))
    )()
    click.echo(f"drill #{drill_id} approved: it will fire at its secret moment")


@drill.command("list")
@server_option
@token_option
def list_drills(server: str | None, token: str | None) -> None:
    """The drills, newest first: the moment and scenario only for those you scheduled."""
    body = friendly_errors(
        lambda: asyncio.run(
            call_api("GET", server_url(server), "/api/v1/drills", officer_token(token))
        )
    )()
    click.echo(json.dumps(body["drills"], ensure_ascii=False, indent=2))


@drill.command("cancel")
@click.argument("drill_id", type=click.IntRange(min=1))
@server_option
@token_option
def cancel(drill_id: int, server: str | None, token: str | None) -> None:
    """Cancel a drill before it fires."""
    path = f"/api/v1/drills/{drill_id}/cancel"
    friendly_errors(
        lambda: asyncio.run(call_api("POST", server_url(server), path, officer_token(token)))
    )()
    click.echo(f"drill #{drill_id} cancelled")
