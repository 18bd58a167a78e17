"""``warnd warning watch``: the duty officer's live terminal view of one warning.

It polls the daemon's HTTP API (the same endpoints as every other officer tool, so the same token
and roles apply) and redraws one frame: the warning, its roll-up per county with the towns under
each (deliveries, call-outs, field tasks), and the 未叫应名单 — open call-outs past their deadline,
with phone numbers, to call by hand. Overdue minutes are reckoned at the daemon's clock (the
roll-up's ``as_of``), not the terminal's, so every view of the warning agrees.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from warnd.cli.client import ApiCallError, call_api

STEP_ZH = {
    "repeat": "重拨本人",
    "backup": "呼叫B角",
    "superior": "呼叫上级",
    "duty_officer": "转值班员",
}
LEVEL_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
LEVEL_STYLE = {"blue": "blue", "yellow": "yellow", "orange": "dark_orange", "red": "red"}


@dataclass(frozen=True)
class Frame:
    """What one refresh read from the API."""

    warning: dict[str, Any]
    counties: dict[str, Any]
    towns: dict[str, Any]
    overdue: dict[str, Any]


async def fetch(
    http: aiohttp.ClientSession, server: str, token: str, warning_id: int, rows: int
) -> Frame:
    """One frame's data: the warning, both roll-ups and the first ``rows`` overdue call-outs."""
    base = f"/api/v1/warnings/{warning_id}"
    # The warning first: an unknown id or a bad token is one refusal, not four.
    warning = await call_api("GET", server, base, token, http=http)
    counties, towns, overdue = await asyncio.gather(
        call_api("GET", server, f"{base}/progress?level=county", token, http=http),
        call_api("GET", server, f"{base}/progress?level=town", token, http=http),
        call_api("GET", server, f"{base}/callouts?overdue=true&limit={rows}", token, http=http),
    )
    return Frame(warning, counties, towns, overdue)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _header(frame: Frame) -> RenderableType:
    w = frame.warning
    n = w.get("warning") or {}
    level = str(n.get("level", ""))
    as_of = _time(frame.counties.get("as_of"))
    title = Text()
    if n.get("status") == "Exercise":
        title.append("【演练】", style="bold magenta")
    title.append(f"预警 #{w['id']} ", style="bold")
    title.append(f"{n.get('event', '')} ", style=f"bold {LEVEL_STYLE.get(level, '')}")
    title.append(f"{LEVEL_ZH.get(level, level)} · {n.get('area_desc', '')} · 状态 {w['state']}")
    c = w.get("callouts") or {}
    lines = [
        title,
        Text(
            f"叫应 {c.get('total', 0)}：按时 {c.get('acknowledged_on_time', 0)} · "
            f"迟到 {c.get('acknowledged_late', 0)} · 未应 {c.get('open', 0)} · "
            f"超时 {c.get('overdue', 0)} · 已升级 {c.get('escalated', 0)} · "
            f"已关闭 {c.get('closed', 0)}"
        ),
    ]
    if as_of is not None:
        lines.append(Text(f"截至 {as_of.astimezone():%Y-%m-%d %H:%M:%S}", style="dim"))
    if w.get("simulated"):
        lines.append(
            Text("模拟 SIMULATED: no real phone or loudspeaker is reached", style="yellow")
        )
    return Panel(Group(*lines), border_style=LEVEL_STYLE.get(level, "cyan"))


def _division_row(table: Table, d: dict[str, Any], *, indent: bool) -> None:
    c = d["callouts"]
    t = d["field_tasks"]
    overdue = c["overdue"]
    table.add_row(
        ("  └ " if indent else "") + (d["name"] or d["code"]),
        f"{d['sent'] + d['delivered']:,}",
        f"{d['delivered']:,}",
        Text(f"{d['failed']:,}", style="red" if d["failed"] else ""),
        f"{c['total']:,}",
        f"{c['acknowledged_on_time']:,}",
        f"{c['acknowledged_late']:,}",
        Text(f"{overdue:,}", style="bold red" if overdue else ""),
        f"{c['escalated']:,}",
        f"{t['done']:,}/{t['total']:,}",
        f"{t['reached']:,}/{t['persons']:,}",
        style="bold" if not indent else "",
    )


def _rollup(frame: Frame) -> RenderableType:
    table = Table(title="分区进度 progress", expand=False)
    table.add_column("区划 division", no_wrap=True)
    for column in (
        "已发 sent",
        "送达 delivered",
        "失败 failed",
        "叫应 call-outs",
        "按时 on time",
        "迟到 late",
        "超时 overdue",
        "升级 escalated",
        "任务 tasks",
        "人员 reached",
    ):
        table.add_column(column, justify="right")
    towns: dict[str, list[dict[str, Any]]] = {}
    for town in frame.towns.get("divisions") or []:
        towns.setdefault(str(town["code"])[:6], []).append(town)
    for county in frame.counties.get("divisions") or []:
        _division_row(table, county, indent=False)
        for town in towns.get(str(county["code"])[:6], []):
            _division_row(table, town, indent=True)
    if not table.rows:
        if frame.warning.get("plan_state") == "done":
            return Text("本预警没有投递、叫应或现场任务 (the plan reached nobody)", style="yellow")
        return Text("正在计划… (not planned yet)", style="dim")
    return table


def _overdue(frame: Frame) -> RenderableType:
    total = int((frame.warning.get("callouts") or {}).get("overdue", 0))
    listed = frame.overdue.get("callouts") or []
    if not listed:
        return Text("未叫应名单：无 (no call-out is overdue)", style="green")
    as_of = _time(frame.counties.get("as_of"))
    table = Table(title=f"未叫应名单 overdue ({total:,})", title_style="bold red")
    for column in ("姓名 name", "区划 division", "电话 phone"):
        table.add_column(column, no_wrap=True)
    table.add_column("超时 min", justify="right")
    table.add_column("最近升级 last step", no_wrap=True)
    for c in listed:
        deadline = _time(c.get("deadline"))
        minutes = (as_of - deadline).total_seconds() / 60 if as_of and deadline else 0.0
        step = c.get("last_step")
        last = "—"
        if step:
            last = f"{STEP_ZH.get(step, step)} {c.get('last_step_target') or ''}".strip()
        table.add_row(
            str(c.get("name", "")),
            str(c.get("division_name") or c.get("division_code", "")),
            str(c.get("phone", "")),
            f"{minutes:.0f}",
            last,
        )
    if total > len(listed):
        more = Text(
            f"… 另有 {total - len(listed):,} 人：warnd warning watch --rows N，或 "
            f"GET /api/v1/warnings/{frame.warning['id']}/callouts?overdue=true&format=csv",
            style="dim",
        )
        return Group(table, more)
    return table


def render(frame: Frame, problem: str | None = None) -> RenderableType:
    """One frame; ``problem`` is shown above it when the latest refresh failed."""
    parts: list[RenderableType] = []
    if problem:
        parts.append(Text(f"刷新失败，显示上一次的数据: {problem}", style="bold yellow"))
    parts += [_header(frame), _rollup(frame), _overdue(frame)]
    return Group(*parts)


async def watch(
    server: str,
    token: str,
    warning_id: int,
    *,
    console: Console,
    interval: float = 2.0,
    once: bool = False,
    rows: int = 30,
) -> None:
    """Draw the warning's view every ``interval`` seconds until interrupted; ``once``: one frame.

    The first read must succeed (a wrong id or token is an error, not a frame). Afterwards a
    daemon that stops answering keeps the last frame on screen with the reason, and the view
    recovers when it answers again; a refusal (the token withdrawn) ends the watch.
    """
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        started = time.monotonic()
        frame = await fetch(http, server, token, warning_id, rows)
        took = time.monotonic() - started
        if once:
            console.print(render(frame))
            return
        with Live(render(frame), console=console, auto_refresh=False) as live:
            while True:
                # A city-wide warning's roll-up costs the database seconds: the pause stretches
                # to twice the last refresh, so a watch left open never keeps it busy.
                await asyncio.sleep(max(interval, 2 * took))
                problem = None
                started = time.monotonic()
                try:
                    frame = await fetch(http, server, token, warning_id, rows)
                except ApiCallError as exc:
                    if exc.status is not None:
                        raise
                    problem = str(exc)
                took = time.monotonic() - started
                live.update(render(frame, problem), refresh=True)
