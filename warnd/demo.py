"""``warnd demo``: the whole path on a fresh machine, with simulated phones and speakers.

Starts (or reuses) the embedded PostgreSQL, generates a one-county roster in a fresh ``warnd_demo``
database, starts the daemon with simulated channels, posts a red rainstorm CAP warning for the
county through the real HTTP endpoint as a feed would, shows the fan-out live and ends with a
summary. Everything it sends is simulated and says so.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import click
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rosters.generate import generate
from warnd.clock import SystemClock
from warnd.config import load_config_data
from warnd.daemon import Daemon, make_channels
from warnd.db.pool import database_url, open_pool, recreate_database
from warnd.settings import Settings

DEMO_DB = "warnd_demo"
DEMO_COUNTY = "370831"  # 泗水县: eastern mountains, flash floods, blind spots
DEMO_FEED = "demo-feed"

AUDIENCE_ZH = {
    "responder": "责任人",
    "broadcast": "大喇叭",
    "facility": "重点场所",
    "helper": "包保人",
    "household": "住户",
}


def demo_cap(now_iso: str, expires_iso: str, identifier: str) -> bytes:
    """A red rainstorm warning for the demo county, as the meteorological service would send it."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>jnqxt@sd.cma.cn</sender>
  <sent>{now_iso}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨红色预警</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <expires>{expires_iso}</expires>
    <senderName>济宁市气象台</senderName>
    <headline>泗水县气象台发布暴雨红色预警信号</headline>
    <description>预计未来3小时内泗水县大部地区降雨量将达100毫米以上，山区有发生山洪的风险。</description>
    <instruction>请立即组织山洪危险区群众转移，停止户外作业，远离河道和低洼地带。</instruction>
    <area>
      <areaDesc>泗水县</areaDesc>
      <geocode><valueName>行政区划代码</valueName><value>{DEMO_COUNTY}</value></geocode>
    </area>
  </info>
</alert>""".encode()


def _demo_channels() -> dict[str, dict[str, object]]:
    """Fast simulated channels: some phones answer late, some never, a few numbers fail."""
    common: dict[str, object] = {
        "type": "simulator",
        "rate_per_s": 2000,
        "window": 200,
        "receipt_delay_s": [0.1, 2.0],
    }
    return {
        "simulated-sms": {**common, "kind": "sms", "seed": 1, "reply_delay_s": [1.0, 6.0]},
        "simulated-voice": {
            **common,
            "kind": "voice",
            "seed": 2,
            "rate_per_s": 500,
            "answer_delay_s": [0.5, 4.0],
        },
        "simulated-broadcast": {**common, "kind": "broadcast", "seed": 3},
    }


async def _counts(pool: object, warning_id: int) -> dict[str, dict[str, int]]:
    from asyncpg import Pool

    assert isinstance(pool, Pool)
    rows = await pool.fetch(
        """SELECT audience, state, count(*) AS n FROM deliveries WHERE warning_id = $1
            GROUP BY audience, state""",
        warning_id,
    )
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["audience"], {})[r["state"]] = r["n"]
    return counts


async def run_demo(households: int, console: Console) -> int:
    settings = Settings(http_port=0)
    console.print(
        Panel.fit(
            "[bold]warnd demo[/] — 济宁市应急管理局 预警发布与叫应\n"
            "[yellow]SIMULATED: no real phone or loudspeaker is reached (模拟演示)[/]",
            border_style="cyan",
        )
    )
    with console.status("Starting PostgreSQL…"):
        server = database_url(settings)
        url = await recreate_database(server, DEMO_DB)
    async with open_pool(url, min_size=1, max_size=2) as pool:
        with Progress(
            TextColumn("[cyan]Generating roster for 泗水县"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("roster", total=None)

            def tick(_what: str, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            async with pool.acquire() as conn:
                summary = await generate(
                    conn, households=households, counties=[DEMO_COUNTY], seed=7, progress=tick
                )
        console.print(f"[green]✓[/] roster: {summary}")

    token = secrets.token_urlsafe(24)
    config = load_config_data({"feeds": {DEMO_FEED: {"token": token}}}, source=Path("<demo>"))
    daemon = Daemon(
        settings,
        simulate=True,
        config=config,
        channels=make_channels(_demo_channels(), simulate=True),
        clock=SystemClock(),
    )
    async with daemon.running(url) as services:
        now = services.clock.now().astimezone()
        cap = demo_cap(
            now.isoformat(timespec="seconds"),
            (now + timedelta(hours=6)).isoformat(timespec="seconds"),
            f"37083141600000_{now:%Y%m%d%H%M%S}",
        )
        started = time.perf_counter()
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                f"http://127.0.0.1:{daemon.port}/api/v1/cap",
                data=cap,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
            )
            body = await response.json()
        if response.status != 201:
            console.print(f"[red]the warning was refused: {response.status} {body}[/]")
            return 1
        warning_id, status = int(body["warning_id"]), body["status"]
        console.print(f"[green]✓[/] CAP red rainstorm warning accepted: #{warning_id}, {status}")
        await _watch(services.pool, warning_id, console)
        elapsed = time.perf_counter() - started
        await _summary(services.pool, warning_id, console, elapsed)
    return 0


async def _watch(pool: object, warning_id: int, console: Console, limit_s: float = 300) -> None:
    """A live bar of deliveries handed to channels, until none is queued or sending."""
    from asyncpg import Pool

    assert isinstance(pool, Pool)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("sending (simulated)", total=None)
        deadline = time.monotonic() + limit_s
        settled = 0
        while time.monotonic() < deadline:
            counts = await _counts(pool, warning_id)
            total = sum(sum(c.values()) for c in counts.values())
            waiting = sum(c.get("queued", 0) + c.get("sending", 0) for c in counts.values())
            planned = await pool.fetchval(
                "SELECT plan_state FROM warnings WHERE id = $1", warning_id
            )
            progress.update(task, total=total or None, completed=total - waiting)
            unconfirmed = sum(c.get("sent", 0) for c in counts.values())
            if planned == "done" and total and not waiting:
                # Sending is over; give receipts and call results a few seconds to come back.
                settled += 1
                if not unconfirmed or settled >= 24:
                    break
            await asyncio.sleep(0.25)


async def _summary(pool: object, warning_id: int, console: Console, elapsed: float) -> None:
    from asyncpg import Pool

    assert isinstance(pool, Pool)
    rows = await pool.fetch(
        """SELECT audience,
                  count(DISTINCT (recipient_id, address)) AS recipients,
                  count(*) AS deliveries,
                  count(*) FILTER (WHERE state IN ('sent', 'delivered')) AS sent,
                  count(*) FILTER (WHERE state = 'delivered') AS delivered,
                  count(*) FILTER (WHERE state = 'failed') AS failed,
                  min(sent_at) AS first, max(sent_at) AS last
             FROM deliveries WHERE warning_id = $1
            GROUP BY audience ORDER BY min(priority)""",
        warning_id,
    )
    received = await pool.fetchval("SELECT received_at FROM warnings WHERE id = $1", warning_id)
    table = Table(title=f"Warning {warning_id}: 泗水县 暴雨红色预警 — SIMULATED")
    for column in (
        "audience",
        "people",
        "messages",
        "sent",
        "delivered",
        "failed",
        "first",
        "last",
    ):
        table.add_column(column, justify="left" if column == "audience" else "right")

    def after(at: datetime | None) -> str:
        if at is None or received is None:
            return "—"
        return f"{(at - received).total_seconds():.2f} s"

    for r in rows:
        table.add_row(
            f"{AUDIENCE_ZH.get(r['audience'], '')} {r['audience']}",
            f"{r['recipients']:,}",
            f"{r['deliveries']:,}",
            f"{r['sent']:,}",
            f"{r['delivered']:,}",
            f"{r['failed']:,}",
            after(r["first"]),
            after(r["last"]),
        )
    console.print(table)
    callouts = await pool.fetchrow(
        """SELECT count(*) AS opened,
                  count(*) FILTER (WHERE state = 'acknowledged' AND NOT ack_late) AS on_time,
                  count(*) FILTER (WHERE state = 'acknowledged' AND ack_late) AS late,
                  count(*) FILTER (WHERE state <> 'acknowledged') AS waiting,
                  percentile_cont(0.5) WITHIN GROUP (
                      ORDER BY extract(epoch FROM acknowledged_at - opened_at)) AS p50
             FROM callouts WHERE warning_id = $1""",
        warning_id,
    )
    if callouts is not None and callouts["opened"]:
        p50 = callouts["p50"]
        console.print(
            f"叫应 call-outs: {callouts['opened']:,} opened, "
            f"[green]{callouts['on_time']:,} answered on time[/], {callouts['late']:,} late, "
            f"[yellow]{callouts['waiting']:,} not yet answered[/] (escalation starts after the "
            "policy's first step)"
            + (f"; median time to answer {p50:.1f} s" if p50 is not None else "")
        )
    console.print(
        "first/last: when the first and last message of each audience was handed to its channel, "
        "counted from the warning's arrival; failed: undeliverable or unanswered (simulated).\n"
        f"Whole run {elapsed:.1f} s. [yellow]All deliveries were simulated.[/]"
    )


@click.command()
@click.option("--households", default=20_000, show_default=True, help="Households in the county.")
def demo(households: int) -> None:
    """Generate a county, send it a red rainstorm warning through simulated channels."""
    from warnd.cli import friendly_errors
    from warnd.logs import configure

    configure("warning")  # the demo's own output tells the story; logs only when things go wrong
    console = Console()
    code = friendly_errors(lambda: asyncio.run(run_demo(households, console)))()
    raise SystemExit(code)
