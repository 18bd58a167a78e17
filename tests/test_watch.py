"""``warnd warning watch`` and ``warnd warning audit`` against the real API application: the
command line runs in a thread while the test's event loop serves the API on a local port."""

from __future__ import annotations

import asyncio
import csv
import io
import socket

import aiohttp
from click.testing import CliRunner, Result
from rich.console import Console

from tests.fixtures import (
    ADMIN_TOKEN,
    APPROVER_TOKEN,
    CALLOUTS,
    OFFICER_TOKEN,
    TASKS,
    Api,
    cap_alert,
    insert_callouts,
    insert_deliveries,
    insert_tasks,
)
from warnd.cli.main import main
from warnd.cli.watch import fetch, render


async def warned(app: Api) -> int:
    _, created = await app.cap(cap_alert())
    warning_id = int(created["warning_id"])
    await insert_deliveries(app.pool, warning_id)
    await insert_callouts(app.pool, warning_id, CALLOUTS)
    await insert_tasks(app.pool, warning_id, TASKS)
    return warning_id


def server(app: Api) -> str:
    return str(app.client.make_url("")).rstrip("/")


async def run(args: list[str], token: str | None = OFFICER_TOKEN) -> Result:
    """The CLI in a thread (it runs its own event loop), wide enough for the tables."""
    env = {"COLUMNS": "200", "WARND_TOKEN": token or ""}
    return await asyncio.to_thread(CliRunner().invoke, main, args, env=env, catch_exceptions=False)


async def test_one_frame_shows_the_rollup_and_who_has_not_answered(app: Api) -> None:
    warning_id = await warned(app)
    result = await run(["warning", "watch", str(warning_id), "--once", "--server", server(app)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"预警 #{warning_id}" in out and "红色" in out
    assert "叫应 6：按时 1 · 迟到 1 · 未应 3 · 超时 2 · 已升级 3 · 已关闭 1" in out
    lines = out.splitlines()

    def row(name: str) -> list[str]:
        """The cells of the table row whose first cell is ``name``."""
        for line in lines:
            cells = [c.strip() for c in line.split("│")]
            if len(cells) > 2 and cells[1].removeprefix("└ ") == name:
                return cells
        raise AssertionError(f"no row for {name} in:\n{out}")

    # sent+delivered, delivered, failed, call-outs, on time, late, overdue, escalated, tasks, people
    assert row("任城区")[2:12] == ["2", "1", "0", "5", "1", "1", "2", "3", "1/3", "7/9"]
    assert row("许庄街道")[5:12] == ["3", "0", "1", "1", "2", "1/3", "7/9"]
    assert "泗水县" in out
    # the overdue list: both people past their deadline, with phones, minutes and last step
    assert row("任地质")[2:6] == ["任城区", "+8613900000002", "1", "重拨本人 本人"]
    assert row("李书记")[2:6] == ["李庄村", "+8613900000005", "3", "呼叫B角 王备岗"]
    assert "张书记" not in out  # pending, still in time


async def test_the_overdue_list_says_how_many_more_there_are(app: Api) -> None:
    warning_id = await warned(app)
    args = ["warning", "watch", str(warning_id), "--once", "--rows", "1", "--server", server(app)]
    result = await run(args)
    assert result.exit_code == 0, result.output
    assert "未叫应名单 overdue (2)" in result.output
    assert "另有 1 人" in result.output


async def test_errors_are_one_line_without_a_traceback(app: Api) -> None:
    warning_id = await warned(app)
    url = server(app)
    unknown = await run(["warning", "watch", "98765", "--once", "--server", url])
    assert unknown.exit_code == 2
    assert "404 not_found: warning 98765 does not exist" in unknown.output

    bad = await run(["warning", "watch", str(warning_id), "--once", "--server", url], "nope")
    assert bad.exit_code == 2
    assert "401 unauthorized" in bad.output

    forbidden = await run(
        ["warning", "watch", str(warning_id), "--once", "--server", url], APPROVER_TOKEN
    )
    assert forbidden.exit_code == 0  # approvers may read: the same roles as the API

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    down = await run(["warning", "watch", str(warning_id), "--once", "--server", closed])
    assert down.exit_code == 2
    assert "cannot reach warnd" in down.output

    missing = await run(["warning", "watch", str(warning_id), "--once", "--server", url], None)
    assert missing.exit_code == 2
    assert "no officer token" in missing.output
    for result in (unknown, bad, down, missing):
        assert "Traceback" not in result.output
        # (the API runs in this process: its JSON log lines land in the same stream)
        said = [line for line in result.stderr.splitlines() if not line.startswith("{")]
        assert len(said) == 1 and said[0].startswith("warnd: "), result.stderr


async def test_the_audit_command_prints_the_trail_and_its_csv(app: Api) -> None:
    warning_id = await warned(app)
    url = server(app)
    result = await run(["warning", "audit", str(warning_id), "--server", url], ADMIN_TOKEN)
    assert result.exit_code == 0, result.output
    entries = await app.pool.fetchval(
        "SELECT (SELECT count(*) FROM callout_events e JOIN callouts c ON c.id = e.callout_id "
        "        WHERE c.warning_id = $1)"
        " + (SELECT count(*) FROM field_task_events e JOIN field_tasks t ON t.id = e.task_id "
        "    WHERE t.warning_id = $1)"
        " + (SELECT count(*) FROM audit_log WHERE subject = 'warning:' || $1)",
        warning_id,
    )
    assert f"审计记录 audit trail ({entries})" in result.output
    assert "step_fired" in result.output and "warning_received" in result.output

    exported = await run(["warning", "audit", str(warning_id), "--csv", "--server", url])
    assert exported.exit_code == 0
    text = exported.stdout_bytes.decode("utf-8").removeprefix("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == entries
    assert {r["source"] for r in rows} == {"audit", "callout", "task"}

    unknown = await run(["warning", "audit", "98765", "--csv", "--server", url])
    assert unknown.exit_code == 2
    assert "404 not_found" in unknown.output


async def test_a_failed_refresh_keeps_the_last_frame_and_says_why(app: Api) -> None:
    warning_id = await warned(app)
    async with aiohttp.ClientSession() as http:
        frame = await fetch(http, server(app), OFFICER_TOKEN, warning_id, 30)
    out = io.StringIO()
    Console(file=out, width=200).print(render(frame, "cannot reach warnd at http://127.0.0.1:9"))
    text = out.getvalue()
    assert text.startswith("刷新失败，显示上一次的数据: cannot reach warnd")
    assert "任地质" in text and "许庄街道" in text
