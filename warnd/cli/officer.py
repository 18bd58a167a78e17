"""``warnd warning …``: the duty officer's terminal, a client of the running daemon's API.

It goes through the same HTTP endpoints as every other officer tool, so the same authentication,
approval rule (a second officer for orange and red) and audit log apply; nothing here writes to
the database directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import datetime
from typing import Any

import aiohttp
import click
from rich.console import Console
from rich.table import Table

from warnd.cli.client import (
    call_api,
    download,
    officer_token,
    server_option,
    server_url,
    token_option,
)
from warnd.cli.errors import friendly_errors
from warnd.core.vocabulary import HAZARDS, Level

console = Console()


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
            call_api("POST", server_url(server), "/api/v1/warnings", officer_token(token), payload)
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
@click.option("--yes", is_flag=True, help="approve without asking (the texts are still shown)")
@server_option
@token_option
def approve(warning_id: int, yes: bool, server: str | None, token: str | None) -> None:
    """Approve (release) a warning another officer issued, after reading its texts."""
    preview = _preview(server, token, warning_id, texts=True)
    if not yes and not click.confirm(f"发布预警 #{warning_id}？ Release these texts?"):
        console.print("not approved")
        return
    path = f"/api/v1/warnings/{warning_id}/approve"
    body = friendly_errors(
        lambda: asyncio.run(
            call_api(
                "POST",
                server_url(server),
                path,
                officer_token(token),
                {"texts_sha256": preview["texts_sha256"]},
            )
        )
    )()
    console.print(f"warning {warning_id}: [bold green]{body.get('status', 'approved')}[/]")


@warning.command("reject")
@click.argument("warning_id", type=int)
@click.option("--reason", required=True, help="why it must not go out (audited)")
@server_option
@token_option
def reject(warning_id: int, reason: str, server: str | None, token: str | None) -> None:
    """Refuse a warning waiting for a second officer: it never goes out."""
    path = f"/api/v1/warnings/{warning_id}/reject"
    body = friendly_errors(
        lambda: asyncio.run(
            call_api("POST", server_url(server), path, officer_token(token), {"reason": reason})
        )
    )()
    console.print(f"warning {warning_id}: [bold red]{body.get('status', 'rejected')}[/]")


@warning.command("preview")
@click.argument("warning_id", type=int)
@server_option
@token_option
def preview(warning_id: int, server: str | None, token: str | None) -> None:
    """How many recipients per audience, and which divisions the area resolves to."""
    _preview(server, token, warning_id)


def _preview(
    server: str | None, token: str | None, warning_id: int, *, texts: bool = False
) -> dict[str, Any]:

    path = f"/api/v1/warnings/{warning_id}/preview"
    body = friendly_errors(
        lambda: asyncio.run(call_api("GET", server_url(server), path, officer_token(token)))
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
    if texts:
        shown = Table(title=f"warning {warning_id}: the texts that will go out")
        for column in ("audience", "kind", "text"):
            shown.add_column(column, overflow="fold")
        for text in body.get("texts") or []:
            shown.add_row(str(text["audience"]), str(text["channel_kind"]), str(text["body"]))
        console.print(shown)
    return body


@warning.command("watch")
@click.argument("warning_id", type=int)
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.2),
    help="seconds between refreshes",
)
@click.option("--once", is_flag=True, help="print one frame and exit (for scripts)")
@click.option(
    "--rows", default=30, show_default=True, type=click.IntRange(1, 1000), help="overdue rows"
)
@server_option
@token_option
def watch_command(
    *,
    warning_id: int,
    interval: float,
    once: bool,
    rows: int,
    server: str | None,
    token: str | None,
) -> None:
    """Live roll-up per county and town with the 未叫应名单 (overdue call-outs)."""
    from warnd.cli.watch import watch

    def go() -> None:
        asyncio.run(
            watch(
                server_url(server),
                officer_token(token),
                warning_id,
                console=console,
                interval=interval,
                once=once,
                rows=rows,
            )
        )

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
        friendly_errors(go)()


AUDIT_SOURCE_ZH = {"audit": "操作", "callout": "叫应", "task": "任务"}


@warning.command("audit")
@click.argument("warning_id", type=int)
@click.option("--csv", "as_csv", is_flag=True, help="write the CSV export to stdout")
@server_option
@token_option
def audit(warning_id: int, as_csv: bool, server: str | None, token: str | None) -> None:
    """Everything recorded about a warning, in time order (audit log, call-out and task events)."""

    path = f"/api/v1/warnings/{warning_id}/audit"
    if as_csv:
        data = friendly_errors(
            lambda: asyncio.run(
                download(server_url(server), f"{path}?format=csv", officer_token(token))
            )
        )()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return

    async def everything() -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        after = ""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            while True:
                page = await call_api(
                    "GET",
                    server_url(server),
                    f"{path}?limit=10000&after={after}",
                    officer_token(token),
                    http=http,
                )
                entries += page.get("entries") or []
                if not page.get("next_after"):
                    return entries
                after = str(page["next_after"])

    entries = friendly_errors(lambda: asyncio.run(everything()))()
    table = Table(title=f"预警 #{warning_id} 审计记录 audit trail ({len(entries):,})")
    for column in ("时间 at", "来源 source", "操作人 actor", "动作 action", "对象 subject"):
        table.add_column(column, no_wrap=True)
    table.add_column("详情 detail")
    for e in entries:
        at = datetime.fromisoformat(str(e["at"])).astimezone()
        detail = e.get("detail") or {}
        table.add_row(
            at.strftime("%Y-%m-%d %H:%M:%S"),
            AUDIT_SOURCE_ZH.get(str(e["source"]), str(e["source"])),
            str(e["actor"]),
            str(e["action"]),
            str(e["subject"]),
            json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else "",
        )
    console.print(table)
