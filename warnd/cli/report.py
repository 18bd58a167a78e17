"""``warnd report``: a warning's or drill's evaluation report (效果评估) from the running warnd, as
PDF, XLSX or JSON, written to a file. The figures and the rendering are the server's (GET
/api/v1/warnings/{id}/report), so the file is the one an officer downloads from the API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import get_args

import click

from warnd.app.report import ReportFormat
from warnd.cli.client import download, officer_token, server_option, server_url, token_option
from warnd.cli.errors import friendly_errors


@click.command("report")
@click.argument("warning_id", type=click.IntRange(min=1))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(get_args(ReportFormat)),
    default="pdf",
    show_default=True,
    help="pdf to file and print, xlsx for analysis (charts included), json for other systems",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="where to write it (default: warning-ID-report.FORMAT here)",
)
@server_option
@token_option
def report(
    warning_id: int, fmt: str, out: Path | None, server: str | None, token: str | None
) -> None:
    """Write the evaluation report of a warning or drill: reach, call-and-respond, field tasks,
    channels, timeline, scores per town and county, and for a drill the previous drills."""
    path = f"/api/v1/warnings/{warning_id}/report?format={fmt}"
    data = friendly_errors(
        lambda: asyncio.run(download(server_url(server), path, officer_token(token)))
    )()
    target = out or Path(f"warning-{warning_id}-report.{fmt}")
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {target}: {exc.strerror or exc}") from None
    click.echo(f"{target} ({len(data):,} bytes)")
