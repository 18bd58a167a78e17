"""The evaluation report (issue 16): a drill on the seed roster with scripted phones, on a manual
clock, gives exactly the figures its script implies; the PDF, XLSX and JSON carry them; the API
answers 200, 404 and 400 as documented.

The script (every person of 任城区 takes part in the drill; minutes from the issue):
- every message of the warning is delivered on time by its kind (responders 20 s, loudspeakers
  40 s, schools and helpers 60 s, households 90 s), except 李庄村1号's phone, unreachable, and
  李庄村2号's SMS, which fails over to a voice call and is delivered;
- the city head answers at 1, 张庄村's deputy at 2, the county head at 3 (all on time);
  张庄村's head at 11, past the 10-minute deadline, reporting the door-knocking done; the town
  head and 李庄村's head never answer, so the gong task of blind-spot 李庄村 is never done;
- the escalation scanner runs through 40 minutes, and the report is read at 40.
A drill a week earlier in which everybody answered at once is the comparison.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner, Result
from openpyxl import Workbook, load_workbook
from openpyxl.chart.bar_chart import BarChart
from openpyxl.chart.line_chart import LineChart
from openpyxl.worksheet.worksheet import Worksheet
from PIL import Image

from channels.base import ChannelKind
from tests import seed
from tests.fixtures import (
    DAYTIME,
    LIMITS,
    OFFICER_TOKEN,
    Api,
    RecordingChannel,
    escalate_until,
    plan,
    rainstorm,
    serve_api,
)
from tests.peers import require, require_cjk_font
from warnd.app import report_files
from warnd.app.metrics import Metrics
from warnd.app.report import EvaluationReport, build_report
from warnd.app.report_files import render_json, render_pdf, render_xlsx
from warnd.cli.main import main
from warnd.core.clock import ManualClock
from warnd.core.vocabulary import Level
from warnd.db.notify import Wakeup
from warnd.ingest.store import store_warning
from warnd.pipeline.answers import Answers
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.escalation import Escalation
from warnd.pipeline.planner import Planner
from warnd.policy.model import Policy
from warnd.web.routing import API

ANSWERS = (  # minute, phone, text
    (1, "+8613900000000", "1"),  # city head
    (2, "+8613900000005", "1"),  # 张庄村's deputy
    (3, "+8613900000001", "收到"),  # county head
    (11, "+8613900000004", "收到，已完成"),  # 张庄村's head: late, door-knocking done
)
DELIVERED_AFTER_S = {"responder": 20, "broadcast": 40, "facility": 60, "helper": 60}
HOUSEHOLD_S = 90
UNREACHABLE = "+8613800000005"
FAILS_OVER = "+8613800000006"
REPORT_AT = DAYTIME + timedelta(minutes=40)


async def _plan(pool: asyncpg.Pool, policy: Policy, identifier: str, at_days: int) -> int:
    warning = replace(
        rainstorm(status="Exercise"), identifier=identifier, sent=DAYTIME + timedelta(days=at_days)
    )
    now = warning.sent
    stored = await store_warning(pool, warning, source="test", now=now)
    planner = Planner(pool, lambda: policy, ManualClock(now), LIMITS, villages_per_chunk=1)
    await planner.plan_pending()
    return stored.warning_id


async def _phones_answer_script(pool: asyncpg.Pool, warning_id: int) -> None:
    """What the simulated phones did with the warning's messages (the call-out machinery's
    own messages, escalations and tasks, stay as escalation left them)."""
    await pool.execute(
        """UPDATE deliveries d
              SET state = CASE WHEN d.address = $3 THEN 'failed' ELSE 'delivered' END,
                  error = CASE WHEN d.address = $3 THEN 'unreachable' END,
                  channel = 'sim-' || CASE WHEN d.address = $4 THEN 'voice'
                                           ELSE d.channel_kind END,
                  channel_kind = CASE WHEN d.address = $4 THEN 'voice' ELSE d.channel_kind END,
                  failed_over_from = CASE WHEN d.address = $4 THEN d.channel_kind END,
                  sent_at = $2::timestamptz + make_interval(secs => 5),
                  delivered_at = CASE WHEN d.address = $3 THEN NULL
                                      ELSE $2::timestamptz + make_interval(secs => CASE d.audience
                                          WHEN 'responder' THEN 20 WHEN 'broadcast' THEN 40
                                          WHEN 'household' THEN 90 ELSE 60 END) END,
                  failed_at = CASE WHEN d.address = $3 THEN $2::timestamptz
                                   + make_interval(secs => 30) END
            WHERE d.warning_id = $1 AND d.audience NOT IN ('escalation', 'field_task')""",
        warning_id,
        DAYTIME,
        UNREACHABLE,
        FAILS_OVER,
    )


async def drill(pool: asyncpg.Pool, policy: Policy) -> int:
    """The two drills of the module docstring; the id of the second."""
    async with pool.acquire() as conn:
        await seed.seed(conn)
        for table in ("responders", "households", "facilities", "special_persons"):
            await conn.execute(f"UPDATE {table} SET exercise = true")  # everybody takes part
    earlier = await _plan(pool, policy, "drill-earlier", -7)
    phones = [
        r["phone"]
        for r in await pool.fetch("SELECT phone FROM callouts WHERE warning_id = $1", earlier)
    ]
    at_once = ManualClock(DAYTIME - timedelta(days=7) + timedelta(seconds=30))
    # Everybody answers at once; 张庄村's head reports the door-knocking done with it, and the
    # gong of 李庄村 is never reported.
    replies = [(p, "收到，已完成" if p == "+8613900000004" else "1") for p in phones]
    await Answers(pool, at_once).answer_replies(replies)
    warning_id = await _plan(pool, policy, "drill-now", 0)
    await _phones_answer_script(pool, warning_id)
    clock = ManualClock(DAYTIME)
    scanner = Escalation(pool, clock)
    answers = Answers(pool, clock)
    minute = 0
    for at, phone, text in ANSWERS:
        await escalate_until(scanner, clock, at - minute)
        minute = at
        await answers.answer_sms(phone, text)
    await escalate_until(scanner, clock, 40 - minute)
    return warning_id


async def report_of(pool: asyncpg.Pool, policy: Policy, warning_id: int) -> EvaluationReport:
    async with pool.acquire() as conn:
        return await build_report(
            conn, warning_id, now=REPORT_AT, scoring=policy.drill_scoring, timezone="Asia/Shanghai"
        )


@pytest.fixture
async def drilled(pool: asyncpg.Pool, policy: Policy) -> EvaluationReport:
    return await report_of(pool, policy, await drill(pool, policy))


def _rows(items: Sequence[object], *fields: str) -> list[tuple[object, ...]]:
    return [tuple(getattr(i, f) for f in fields) for i in items]


REACH = ("key", "people", "messages", "delivered", "failed", "cancelled", "first_s", "p90_s")
OUTCOME = ("level", "total", "on_time", "late", "never", "p50_s", "p90_s")
DIVISION = (
    *("name", "total", "on_time", "late", "never", "answer_rate", "p50_s", "tasks"),
    *("tasks_done", "time_score", "task_rate", "score"),
)


async def test_a_scripted_drill_gives_exactly_the_expected_figures(
    drilled: EvaluationReport, pool: asyncpg.Pool
) -> None:
    report = drilled
    w = report.warning
    assert (w.status, w.level, w.counties, w.villages) == ("Exercise", "red", ["任城区"], 2)
    assert w.issued_at == DAYTIME

    # Reach: six responders by SMS and voice, the school by both, six household phones by SMS
    # (no loudspeaker or helper message in a drill); 李庄村1号 unreachable, so households never
    # reach 90 % (5 of 6).
    warning_rows = [
        r for r in report.reach_by_audience if r.key not in ("escalation", "field_task")
    ]
    assert _rows(warning_rows, *REACH) == [
        ("responder", 6, 12, 12, 0, 0, 20.0, 20.0),
        ("facility", 1, 2, 2, 0, 0, 60.0, 60.0),
        ("household", 6, 6, 5, 1, 0, 90.0, None),
    ]
    # Per county and town the city head is in no row: 5 responders, the school, 6 phones.
    assert _rows(report.reach_by_county, *REACH) == [("370811000000", 12, 18, 17, 1, 0, 20.0, 90.0)]
    assert _rows(report.reach_by_town, *REACH) == [("370811002000", 11, 16, 15, 1, 0, 20.0, 90.0)]
    assert [(t.name, t.county) for t in report.reach_by_town] == [("许庄街道", "任城区")]
    assert _rows(report.failures, "audience", "channel_kind", "reason", "count") == [
        ("household", "sms", "unreachable", 1)
    ]
    assert _rows(report.failovers, "from_kind", "to_kind", "count", "delivered") == [
        ("sms", "voice", 1, 1)
    ]

    # Call-and-respond: answers at 1, 2, 3 (on time) and 11 minutes (late); two never.
    assert _rows(report.callouts_by_level, *OUTCOME) == [
        ("city", 1, 1, 0, 0, 60.0, 60.0),
        ("county", 1, 1, 0, 0, 180.0, 180.0),
        ("town", 1, 0, 0, 1, None, None),
        ("village", 3, 1, 1, 1, 390.0, 606.0),
        ("all", 6, 3, 1, 2, 150.0, pytest.approx(516.0)),
    ]
    # Repeat at 2 min for the four not yet answered (county head included: he answered at 3);
    # backup at 5 for the three left: only 张庄村's head has one; superior at 8 and the duty
    # officer at 12 for the town head and 李庄村's head (张庄村's head answered at 11).
    assert _rows(report.escalation_steps, "action", "fired", "skipped") == [
        ("repeat", 4, 0),
        ("backup", 1, 2),
        ("superior", 3, 0),
        ("duty_officer", 2, 0),
    ]
    assert _rows(report.never_answered, "name", "phone", "level", "town", "steps_fired") == [
        ("许镇长", "+8613900000003", "town", "许庄街道", 3),
        ("李书记", "+8613900000006", "village", "许庄街道", 3),
    ]

    # Scores (policy: 0.5 answer rate, 0.3 time, 0.2 tasks; time 1 at 2 min, 0 at 10 min).
    # 任城区: 3 of 5 answered, median 180 s -> 0.875, 1 of 2 tasks: 100 x 0.6625 = 66.3.
    # 许庄街道: 2 of 4, median 390 s -> 0.4375, 1 of 2 tasks: 100 x 0.48125 = 48.1.
    assert _rows(report.counties, *DIVISION) == [
        ("任城区", 5, 2, 1, 2, 0.6, 180.0, 2, 1, 0.875, 0.5, 66.3)
    ]
    assert _rows(report.towns, *DIVISION) == [
        ("许庄街道", 4, 1, 1, 2, 0.5, 390.0, 2, 1, 0.4375, 0.5, 48.1)
    ]

    # Field tasks: 张庄村's door-knocking reported done at 11 minutes (due at 30); the gong of
    # 李庄村 (due at 15) never.
    assert _rows(
        report.field_tasks, "village", "kinds", "ordered", "done", "overdue", "persons", "reached"
    ) == [("张庄村", "door_knock", 1, 1, 0, 2, 2), ("李庄村", "gong", 1, 0, 1, 1, 0)]

    # Channels: what the simulated phones took, and the household SMS that became a call.
    taken = [c for c in report.channels if c.channel]
    assert _rows(taken, "channel", "messages", "accepted", "delivered", "failed") == [
        ("sim-sms", 12, 11, 11, 1),
        ("sim-voice", 8, 8, 8, 0),
    ]
    assert [c.failed_over_in for c in taken] == [0, 1]

    # Timeline: 12 delivered within the first minute, the households at 90 s, answers at 1, 2,
    # 3 and 11 minutes.
    assert report.timeline_bucket_minutes == 1
    assert [(p.minute, p.delivered, p.answered) for p in report.timeline] == [
        (0, 12, 0),
        (1, 7, 1),
        (2, 0, 1),
        (3, 0, 1),
        *((m, 0, 0) for m in range(4, 11)),
        (11, 0, 1),
    ]

    # The drill a week before, which everybody answered at once, is the comparison.
    assert _rows(report.drills, "total", "answered", "on_time", "answer_rate", "p50_s") == [
        (6, 4, 3, pytest.approx(4 / 6), 150.0),
        (6, 6, 6, 1.0, 30.0),
    ]
    assert report.drills[0].warning_id == w.id
    # 许庄街道 then: 4 of 4 answered in 30 s (time score 1), 1 of 2 tasks: 100 x 0.9 = 90.0.
    assert _rows(report.drill_towns, "warning_id", "name", "answer_rate", "score") == [
        (report.drills[1].warning_id, "许庄街道", 1.0, 90.0),
        (w.id, "许庄街道", 0.5, 48.1),
    ]


async def test_the_json_has_the_same_figures(drilled: EvaluationReport) -> None:
    assert json.loads(render_json(drilled)) == drilled.model_dump(mode="json")


async def test_the_xlsx_has_a_sheet_per_section_and_its_charts_read_the_right_cells(
    drilled: EvaluationReport,
) -> None:
    data = render_xlsx(drilled)
    book = load_workbook(io.BytesIO(data))
    assert book.sheetnames == [
        "概况",
        *("送达-对象", "送达-区县", "送达-乡镇", "失败原因", "叫应-层级", "叫应-区县"),
        *("叫应-乡镇", "升级", "未叫应名单", "现场任务", "通道", "失败转移", "时间线", "演练对比"),
        "演练对比-乡镇",
    ]
    trend = _sheet(book, "演练对比-乡镇")
    assert [[c.value for c in row] for row in trend.iter_rows()] == [
        ["乡镇", f"#{drilled.drills[1].warning_id} 07-22", f"#{drilled.warning.id} 07-29"],
        ["许庄街道", 90.0, 48.1],
    ]
    towns = _sheet(book, "叫应-乡镇")
    assert [c.value for c in towns[2]][:2] == ["许庄街道", "任城区"]
    rate, score = _charts(towns)
    assert isinstance(rate, BarChart) and isinstance(score, BarChart)
    # One town: its ranges are single cells (openpyxl writes $G$2 for $G$2:$G$2).
    assert rate.series[0].tx.strRef.f.replace("$", "") == "'叫应-乡镇'!G1"
    assert rate.series[0].val.numRef.f == "'叫应-乡镇'!$G$2"
    assert _reference(rate.series[0].cat) == "'叫应-乡镇'!$A$2"
    assert towns["G1"].value == "应答率" and towns["G2"].value == 0.5
    assert score.series[0].val.numRef.f == "'叫应-乡镇'!$L$2"
    assert towns["L1"].value == "评分" and towns["L2"].value == 48.1

    timeline = _sheet(book, "时间线")
    (line,) = _charts(timeline)
    assert isinstance(line, LineChart)
    assert [s.val.numRef.f for s in line.series] == ["'时间线'!$B$2:$B$13"]
    # The answers are a second line on a second axis: openpyxl reads back only the first plot
    # of a combined chart, so the chart's own XML says what Excel will draw.
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        (xml,) = [
            text
            for name in package.namelist()
            if name.startswith("xl/charts/")
            and "'时间线'!$B$2:$B$13" in (text := package.read(name).decode())
        ]
    assert "<f>'时间线'!$C$2:$C$13</f>" in xml and xml.count("<valAx>") == 2
    assert [timeline.cell(r, 3).value for r in range(2, 14)] == [0, 1, 1, 1, *[0] * 7, 1]

    drills = _sheet(book, "演练对比")
    (trend,) = _charts(drills)
    assert trend.series[0].val.numRef.f == "'演练对比'!$G$2:$G$3"
    assert [drills["G2"].value, drills["G3"].value] == [1.0, pytest.approx(4 / 6)]  # oldest first

    never = _sheet(book, "未叫应名单")
    assert [never.cell(r, 2).value for r in (2, 3)] == ["+8613900000003", "+8613900000006"]


def _sheet(book: Workbook, name: str) -> Worksheet:
    sheet = book[name]
    assert isinstance(sheet, Worksheet)
    return sheet


def _charts(sheet: Worksheet) -> list[Any]:
    """The charts openpyxl read back from a sheet (it keeps them in a private list)."""
    charts: list[Any] = getattr(sheet, "_charts")  # noqa: B009
    return charts


def _reference(source: object) -> str:
    """The formula of a chart's categories, whether numbers or strings."""
    ref = getattr(source, "numRef", None) or getattr(source, "strRef", None)
    assert ref is not None
    return str(ref.f)


async def test_the_pdf_is_chinese_text_with_the_figures_and_a_drawn_first_page(
    drilled: EvaluationReport, tmp_path: Path
) -> None:
    require("pdftotext", "pdftoppm")
    require_cjk_font()
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_pdf(drilled))
    text = await _run("pdftotext", "-layout", str(pdf), "-")
    for expected in (
        "【演练】预警",
        "效果评估报告",
        "任城区",
        "许庄街道",
        "李庄村",  # its gong was never sounded; 张庄村's door-knocking was done on time:
        "其余 1 个村的任务均已按时完成",  # on paper, only the villages that need a look
        "许镇长",
        "+8613900000003",
        "66.3",
        "48.1",
        "60.0%",
        "应答率",
        "未叫应名单",
        "历次演练",
        "各乡镇历次演练评分",
        "90.0",  # 许庄街道's score in the earlier drill
    ):
        assert expected in text, expected
    await _run("pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "p"))
    with Image.open(tmp_path / "p-1.png") as image:
        grey = image.convert("L")
        dark = sum(grey.histogram()[:200])
        assert dark > grey.width * grey.height * 0.01, "the first page is blank"


async def _run(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
async def api(pool: asyncpg.Pool, policy: Policy) -> AsyncIterator[tuple[Api, int]]:
    warning_id = await drill(pool, policy)
    async for api in serve_api(pool, policy, {}):
        yield api, warning_id


async def test_the_api_answers_the_report_in_each_format_and_refuses_what_it_cannot(
    api: tuple[Api, int],
) -> None:
    client, warning_id = api
    path = f"{API}/warnings/{warning_id}/report"
    status, body = await client.call("GET", path, OFFICER_TOKEN)
    assert status == 200, body
    assert body["towns"][0]["score"] == 48.1 and body["warning"]["id"] == warning_id

    headers = {"Authorization": f"Bearer {OFFICER_TOKEN}"}
    response = await client.client.get(f"{path}?format=xlsx", headers=headers)
    assert response.status == 200
    assert response.content_type == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert "warning-" in response.headers["Content-Disposition"]
    assert load_workbook(io.BytesIO(await response.read()))["叫应-乡镇"]["L2"].value == 48.1

    require_cjk_font()
    response = await client.client.get(f"{path}?format=pdf", headers=headers)
    assert response.status == 200 and response.content_type == "application/pdf"
    assert (await response.read()).startswith(b"%PDF-")

    status, body = await client.call("GET", f"{path}?format=docx", OFFICER_TOKEN)
    assert (status, body["error"]) == (400, "invalid_parameter")
    assert "format" in body["detail"]
    status, body = await client.call("GET", f"{API}/warnings/999999/report", OFFICER_TOKEN)
    assert (status, body["error"]) == (404, "not_found")
    assert "999999" in body["detail"]
    status, _ = await client.call("GET", path, None)
    assert status == 401


async def test_the_cli_writes_the_report_the_api_serves(
    api: tuple[Api, int], tmp_path: Path
) -> None:
    client, warning_id = api
    server = str(client.client.make_url("")).rstrip("/")
    out = tmp_path / "drill.xlsx"

    def cli(*args: str) -> Result:
        options = ["--server", server, "--token", OFFICER_TOKEN]
        return CliRunner().invoke(main, ["report", *args, *options], catch_exceptions=False)

    result = await asyncio.to_thread(cli, str(warning_id), "--format", "xlsx", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    assert _sheet(load_workbook(out), "叫应-乡镇")["L2"].value == 48.1

    result = await asyncio.to_thread(cli, "999999", "--format", "json", "--out", str(out))
    assert result.exit_code == 2 and "404" in result.output and "999999" in result.output
    result = await asyncio.to_thread(cli, str(warning_id), "--format", "docx")
    assert result.exit_code == 2 and "--format" in result.output


async def test_a_live_warning_nobody_has_answered_yet_reports_and_renders(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    # A yellow warning just planned: messages queued, no call-out (yellow needs no answer), no
    # task, no delivery yet, no drill to compare with.
    warning_id = await plan(pool, policy, rainstorm(Level.YELLOW))
    report = await report_of(pool, policy, warning_id)
    assert report.warning.status == "Actual" and not report.is_drill
    queued = await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE warning_id = $1 AND state = 'queued'", warning_id
    )
    assert queued > 0
    assert sum(r.messages for r in report.reach_by_audience) == queued
    assert all(r.delivered == 0 and r.first_s is None for r in report.reach_by_audience)
    assert [(o.level, o.total, o.p50_s) for o in report.callouts_by_level] == [("all", 0, None)]
    assert report.never_answered == [] and report.escalation_steps == []
    assert report.towns == [] and report.field_tasks == [] and report.drills == []
    assert report.timeline == []
    book = load_workbook(io.BytesIO(render_xlsx(report)))
    assert "演练对比" not in book.sheetnames
    assert _charts(_sheet(book, "叫应-乡镇")) == []  # no town was called: no chart of nothing
    require_cjk_font()
    assert render_pdf(report).startswith(b"%PDF-")


async def test_a_real_fail_over_is_counted_where_it_went(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    # Dispatch itself records the kind a delivery left (migration 014), not only the script.
    warning_id = await plan(pool, policy, rainstorm())
    household = await pool.fetchrow(
        "SELECT * FROM deliveries WHERE warning_id = $1 AND audience = 'household' LIMIT 1",
        warning_id,
    )
    assert household is not None
    await pool.execute("UPDATE deliveries SET fallback = '{voice}' WHERE id = $1", household["id"])
    sms = RecordingChannel("sms", ChannelKind.SMS, fail_prefix=household["address"])
    dispatcher = Dispatcher(pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup())
    while claimed := await dispatcher.claim(sms, 10):
        await dispatcher.record("sms", claimed, await sms.send([c.message() for c in claimed]))
    report = await report_of(pool, policy, warning_id)
    assert _rows(report.failovers, "from_kind", "to_kind", "count", "delivered") == [
        ("sms", "voice", 1, 0)
    ]
    waiting = [c for c in report.channels if (c.channel, c.channel_kind) == ("", "voice")]
    assert [c.failed_over_in for c in waiting] == [1]


async def test_without_a_cjk_font_the_pdf_is_refused_naming_the_package(
    api: tuple[Api, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, warning_id = api
    monkeypatch.delenv("WARND_CJK_FONT", raising=False)
    monkeypatch.setattr(report_files, "CJK_FONT_PATHS", ())
    path = f"{API}/warnings/{warning_id}/report"
    status, body = await client.call("GET", f"{path}?format=pdf", OFFICER_TOKEN)
    assert (status, body["error"]) == (503, "font_missing")
    assert "fonts-noto-cjk" in body["detail"]
    status, _ = await client.call("GET", path, OFFICER_TOKEN)  # the figures need no font
    assert status == 200
