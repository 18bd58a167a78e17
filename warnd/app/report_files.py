"""The evaluation report as files: JSON for other systems, XLSX for the bureau's own analysis (one
sheet per section, real Excel charts), PDF in Chinese to file and to print (a CJK font embedded,
charts drawn with the PDF's own lines and boxes).

Every renderer lays out the figures of one ``EvaluationReport`` and computes nothing of its own
beyond shares and formatting, so the three formats always agree.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from fpdf import FPDF, FontFace
from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from warnd.app.report import DivisionOutcome, EvaluationReport, Reach, ReportFormat
from warnd.core.errors import ConfigError
from warnd.core.vocabulary import HAZARDS, Level

CJK_FONT_PACKAGE: Final = "fonts-noto-cjk"
# Where distributions put Noto Sans CJK (Debian/Ubuntu first); WARND_CJK_FONT overrides.
CJK_FONT_PATHS: Final = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto-cjk/NotoSansCJK-Regular.ttc",
)
# In the Noto Sans CJK collection the fonts are JP, KR, SC, TC, HK: simplified Chinese is third.
NOTO_CJK_SC_INDEX: Final = 2

MEDIA_TYPES: Final[dict[ReportFormat, str]] = {
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}

AUDIENCE_ZH: Final = {
    "responder": "责任人",
    "broadcast": "大喇叭",
    "facility": "重点场所",
    "helper": "包保人",
    "household": "住户",
    "escalation": "升级呼叫",
    "field_task": "现场任务",
}
RESPONDER_LEVEL_ZH: Final = {
    "city": "市级",
    "county": "县级",
    "town": "乡镇级",
    "village": "村级",
    "all": "合计",
}
STEP_ZH: Final = {
    "repeat": "重拨本人",
    "backup": "呼叫B角",
    "superior": "呼叫上级",
    "duty_officer": "转值班员",
}
STATUS_ZH: Final = {"Actual": "实发预警", "Exercise": "演练", "Test": "测试", "System": "系统"}
KIND_ZH: Final = {"door_knock": "敲门入户", "gong": "鸣锣吹哨", "sms": "短信", "voice": "语音"}
KIND_ZH_ALL: Final = KIND_ZH | {"broadcast": "大喇叭"}
CALLOUT_STATE_ZH: Final = {
    "pending": "待发送",
    "notified": "已通知",
    "escalated": "已升级",
    "closed": "已关闭",
}


class CjkFontMissingError(ConfigError):
    """No CJK font to embed in the PDF; the message names the package to install."""


def cjk_font() -> Path:
    """The font the PDF embeds: WARND_CJK_FONT, or Noto Sans CJK where distributions put it."""
    override = os.environ.get("WARND_CJK_FONT")
    if override:
        if not Path(override).is_file():
            raise CjkFontMissingError(f"WARND_CJK_FONT={override}: no such file")
        return Path(override)
    for candidate in CJK_FONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise CjkFontMissingError(
        "the PDF report needs a Chinese (CJK) font: install the Debian package "
        f"{CJK_FONT_PACKAGE} (apt-get install {CJK_FONT_PACKAGE}), or set WARND_CJK_FONT to a "
        ".ttf/.otf/.ttc file"
    )


# --- shared wording -------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 90:
        return f"{seconds / 60:.1f}分"
    return f"{seconds:.0f}秒"


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def title_of(report: EvaluationReport) -> str:
    w = report.warning
    drill = "【演练】" if report.is_drill else ""
    return f"{drill}预警 #{w.id} 效果评估报告"


def _level_zh(level: str) -> str:
    try:
        return Level(level).zh
    except ValueError:
        return level


def summary_rows(report: EvaluationReport) -> list[tuple[str, str]]:
    """The report's first page: what the warning was and the headline figures."""
    w = report.warning
    zone = ZoneInfo(report.timezone)

    def t(at: datetime | None) -> str:
        return "—" if at is None else at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    hazard = HAZARDS[w.hazard].zh if w.hazard in HAZARDS else w.hazard
    people = sum(r.people for r in report.reach_by_audience if r.key not in _MACHINERY)
    messages = sum(r.messages for r in report.reach_by_audience if r.key not in _MACHINERY)
    delivered = sum(r.delivered for r in report.reach_by_audience if r.key not in _MACHINERY)
    total = next((o for o in report.callouts_by_level if o.level == "all"), None)
    tasks = sum(v.ordered for v in report.field_tasks)
    tasks_done = sum(v.done for v in report.field_tasks)
    rows = [
        (
            "预警",
            f"{w.event or hazard + _level_zh(w.level) + '预警'}"
            f"（{STATUS_ZH.get(w.status, w.status)}）",
        ),
        ("标题", w.headline or "—"),
        ("灾种 / 级别", f"{hazard} / {_level_zh(w.level)}"),
        ("区域", "、".join(w.counties) or w.area_desc or "—"),
        ("覆盖村（社区）", f"{w.villages}"),
        *(
            [
                (
                    "演练方式",
                    f"双盲演练 #{w.blind_drill_id}（{w.drill_scheduled_by} 安排，时段 "
                    f"{t(w.drill_window_start)} 至 {t(w.drill_window_end)}，"
                    f"推迟 {w.drill_postponements} 次）",
                )
            ]
            if w.blind_drill_id is not None
            else []
        ),
        ("发布时间", t(w.issued_at)),
        ("报告生成时间", t(report.generated_at)),
        ("覆盖人数（对象）", f"{people}"),
        ("消息数 / 已送达", f"{messages} / {delivered}（{_pct(_share(delivered, messages))}）"),
    ]
    if total is not None:
        answered = total.on_time + total.late
        rows += [
            (
                "叫应",
                f"应叫应 {total.total}，按时 {total.on_time}，迟到 {total.late}，"
                f"未应 {total.never}（应答率 {_pct(_share(answered, total.total))}）",
            ),
            ("应答用时 p50 / p90", f"{_dur(total.p50_s)} / {_dur(total.p90_s)}"),
        ]
    rows.append(("现场任务", f"下达 {tasks}，完成 {tasks_done}"))
    weakest = min(
        (d for d in report.towns if d.score is not None), key=lambda d: d.score or 0, default=None
    )
    if weakest is not None:
        rows.append(("最弱乡镇（评分）", f"{weakest.name} {weakest.score:.1f}"))
    return rows


_MACHINERY: Final = ("escalation", "field_task")


Table = tuple[tuple[str, ...], list[tuple[object, ...]]]


def _tables(report: EvaluationReport) -> dict[str, Table]:
    """Each section as a header and rows of cells (numbers stay numbers for the XLSX)."""
    zone = ZoneInfo(report.timezone)

    def reach_rows(
        rows: Sequence[Reach], first: Callable[[Reach], tuple[object, ...]]
    ) -> list[tuple[object, ...]]:
        return [
            (
                *first(r),
                *(r.people, r.messages, r.delivered, r.failed, r.cancelled),
                _share(r.delivered, r.messages),
                r.first_s,
                r.p90_s,
            )
            for r in rows
        ]

    reach_head = ("人数", "消息", "已送达", "失败", "取消", "送达率", "首条送达(秒)", "90%送达(秒)")
    div_head: tuple[str, ...] = (
        *("名称", "所属区县", "应叫应", "按时", "迟到", "未应", "应答率", "p50(秒)", "p90(秒)"),
        *("任务", "完成", "评分"),
    )

    def division_rows(rows: Sequence[DivisionOutcome]) -> list[tuple[object, ...]]:
        return [
            (
                *(d.name, d.county, d.total, d.on_time, d.late, d.never, d.answer_rate),
                *(d.p50_s, d.p90_s, d.tasks, d.tasks_done, d.score),
            )
            for d in rows
        ]

    tables: dict[str, Table] = {
        "送达-对象": (
            ("对象", *reach_head),
            reach_rows(
                report.reach_by_audience,
                lambda r: (AUDIENCE_ZH.get(r.key, r.key),),
            ),
        ),
        "送达-区县": (
            ("区县", *reach_head),
            reach_rows(report.reach_by_county, lambda r: (r.name,)),
        ),
        "送达-乡镇": (
            ("乡镇", "所属区县", *reach_head),
            reach_rows(report.reach_by_town, lambda r: (r.name, r.county)),
        ),
        "失败原因": (
            ("对象", "渠道", "原因", "条数"),
            [
                (
                    AUDIENCE_ZH.get(f.audience, f.audience),
                    KIND_ZH_ALL.get(f.channel_kind, f.channel_kind),
                    f.reason,
                    f.count,
                )
                for f in report.failures
            ],
        ),
        "叫应-层级": (
            ("层级", "应叫应", "按时", "迟到", "未应", "应答率", "p50(秒)", "p90(秒)"),
            [
                (
                    RESPONDER_LEVEL_ZH.get(o.level, o.level),
                    o.total,
                    o.on_time,
                    o.late,
                    o.never,
                    _share(o.on_time + o.late, o.total),
                    o.p50_s,
                    o.p90_s,
                )
                for o in report.callouts_by_level
            ],
        ),
        "叫应-区县": (div_head, division_rows(report.counties)),
        "叫应-乡镇": (div_head, division_rows(report.towns)),
        "升级": (
            ("升级步骤", "已触发", "跳过(无人可呼)"),
            [
                (STEP_ZH.get(s.action, s.action), s.fired, s.skipped)
                for s in report.escalation_steps
            ],
        ),
        "未叫应名单": (
            (
                "姓名",
                "电话",
                "层级",
                "职务",
                "单位",
                "乡镇",
                "区县",
                "状态",
                "应答时限",
                "已升级步数",
                "B角",
                "B角电话",
            ),
            [
                (
                    u.name,
                    u.phone,
                    RESPONDER_LEVEL_ZH.get(u.level, u.level),
                    u.role,
                    u.division,
                    u.town,
                    u.county,
                    CALLOUT_STATE_ZH.get(u.state, u.state),
                    u.deadline.astimezone(zone).strftime("%m-%d %H:%M"),
                    u.steps_fired,
                    u.backup_name,
                    u.backup_phone,
                )
                for u in report.never_answered
            ],
        ),
        "现场任务": (
            ("村（社区）", "乡镇", "区县", "任务", "下达", "完成", "超时", "涉及人数", "已通知"),
            [
                (
                    v.village,
                    v.town,
                    v.county,
                    "、".join(KIND_ZH.get(k, k) for k in v.kinds.split(",")),
                    v.ordered,
                    v.done,
                    v.overdue,
                    v.persons,
                    v.reached,
                )
                for v in report.field_tasks
            ],
        ),
        "通道": (
            (
                *("通道", "类型", "消息", "网关接收", "已送达", "失败", "取消"),
                *("转入(失败转移)", "每分钟发送", "回执p50(秒)"),
            ),
            [
                (
                    c.channel or "（未发出）",
                    KIND_ZH_ALL.get(c.channel_kind, c.channel_kind),
                    c.messages,
                    c.accepted,
                    c.delivered,
                    c.failed,
                    c.cancelled,
                    c.failed_over_in,
                    c.per_minute,
                    c.receipt_p50_s,
                )
                for c in report.channels
            ],
        ),
        "失败转移": (
            ("原渠道", "转至", "条数", "其中送达"),
            [
                (
                    KIND_ZH_ALL.get(f.from_kind, f.from_kind),
                    KIND_ZH_ALL.get(f.to_kind, f.to_kind),
                    f.count,
                    f.delivered,
                )
                for f in report.failovers
            ],
        ),
        "时间线": (
            ("发布后(分钟)", "送达", "应答"),
            [(p.minute, p.delivered, p.answered) for p in report.timeline],
        ),
    }
    if report.is_drill:
        tables["演练对比"] = (
            ("预警编号", "时间", "事件", "应叫应", "已应答", "按时", "应答率", "p50(秒)"),
            [
                (
                    d.warning_id,
                    d.sent.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                    d.event,
                    d.total,
                    d.answered,
                    d.on_time,
                    d.answer_rate,
                    d.p50_s,
                )
                for d in reversed(report.drills)  # oldest first: a trend reads left to right
            ],
        )
        tables["演练对比-乡镇"] = _town_trend(report)
    return tables


def _town_trend(report: EvaluationReport) -> Table:
    """Each town's score in each drill compared, oldest drill first: the weakest over time."""
    zone = ZoneInfo(report.timezone)
    drills = list(reversed(report.drills))
    scores = {(t.code, t.warning_id): t.score for t in report.drill_towns}
    names = {t.code: t.name for t in report.drill_towns}
    head = (
        "乡镇",
        *(f"#{d.warning_id} {d.sent.astimezone(zone):%m-%d}" for d in drills),
    )
    rows: list[tuple[object, ...]] = [
        (names[code], *(scores.get((code, d.warning_id)) for d in drills)) for code in sorted(names)
    ]
    return head, rows


# --- JSON -----------------------------------------------------------------------------------


def render_json(report: EvaluationReport) -> bytes:
    return report.model_dump_json(indent=2).encode("utf-8")


# --- XLSX -----------------------------------------------------------------------------------

_BOLD: Final = Font(bold=True)
_HEAD_FILL: Final = PatternFill("solid", fgColor="DDEBF7")
_SHARE_HEADS: Final = ("送达率", "应答率")


def _write_table(ws: Worksheet, head: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    ws.append(list(head))
    for cell in ws[1]:
        cell.font = _BOLD
        cell.fill = _HEAD_FILL
    for row in rows:
        ws.append(list(row))
        for cell in ws[ws.max_row]:
            # Names and texts come from rosters and feeds: text, never a formula Excel would run
            # (openpyxl takes a string starting with "=" for one); phones keep their "+".
            if isinstance(cell.value, str):
                cell.data_type = "s"
    for i, name in enumerate(head, start=1):
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = max(10, min(30, len(name) * 2 + 4))
        if name in _SHARE_HEADS:
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.number_format = "0.0%"
        elif name.endswith("(秒)") or name == "每分钟发送":
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.number_format = "0.0"
    ws.freeze_panes = "A2"


def _column(head: tuple[str, ...], name: str) -> int:
    return head.index(name) + 1


def _town_charts(sheets: dict[str, Worksheet], tables: dict[str, Table]) -> None:
    """Answer rate and score per town, as bars."""
    towns_head, town_rows = tables["叫应-乡镇"]
    if town_rows:
        ws = sheets["叫应-乡镇"]
        chart = BarChart()
        chart.type = "bar"
        chart.title = "各乡镇应答率"
        chart.y_axis.title = "应答率"
        chart.y_axis.number_format = "0%"
        chart.y_axis.scaling.min = 0
        chart.y_axis.scaling.max = 1
        col = _column(towns_head, "应答率")
        chart.add_data(
            Reference(ws, min_col=col, min_row=1, max_row=len(town_rows) + 1), titles_from_data=True
        )
        chart.set_categories(Reference(ws, min_col=1, min_row=2, max_row=len(town_rows) + 1))
        chart.height = max(7.5, 0.6 * len(town_rows))
        ws.add_chart(chart, f"{get_column_letter(len(towns_head) + 2)}2")

        score = BarChart()
        score.type = "bar"
        score.title = "各乡镇演练评分"
        score.y_axis.scaling.min = 0
        score.y_axis.scaling.max = 100
        col = _column(towns_head, "评分")
        score.add_data(
            Reference(ws, min_col=col, min_row=1, max_row=len(town_rows) + 1), titles_from_data=True
        )
        score.set_categories(Reference(ws, min_col=1, min_row=2, max_row=len(town_rows) + 1))
        score.height = chart.height
        ws.add_chart(score, f"{get_column_letter(len(towns_head) + 12)}2")


def _timeline_chart(
    sheets: dict[str, Worksheet], report: EvaluationReport, tables: dict[str, Table]
) -> None:
    """Deliveries (left axis) and answers (right axis) per bucket, as lines: thousands of
    deliveries beside dozens of answers would flatten the answers on one axis."""
    _, points = tables["时间线"]
    if points:
        ws = sheets["时间线"]
        rows = len(points) + 1
        line = LineChart()
        line.title = f"送达与应答（每{report.timeline_bucket_minutes}分钟）"
        line.x_axis.title = "发布后(分钟)"
        line.y_axis.title = "送达"
        line.add_data(Reference(ws, min_col=2, min_row=1, max_row=rows), titles_from_data=True)
        line.set_categories(Reference(ws, min_col=1, min_row=2, max_row=rows))
        answers = LineChart()
        answers.add_data(Reference(ws, min_col=3, min_row=1, max_row=rows), titles_from_data=True)
        answers.y_axis.axId = 200
        answers.y_axis.title = "应答"
        answers.y_axis.crosses = "max"
        line += answers
        line.width = 24
        ws.add_chart(line, "E2")


def _drill_chart(sheets: dict[str, Worksheet], tables: dict[str, Table]) -> None:
    """The answer rate of this and the previous drills of the same area, oldest first."""
    if "演练对比" in tables and tables["演练对比"][1]:
        head, drills = tables["演练对比"]
        ws = sheets["演练对比"]
        trend = LineChart()
        trend.title = "历次演练应答率"
        trend.y_axis.number_format = "0%"
        trend.y_axis.scaling.min = 0
        trend.y_axis.scaling.max = 1
        trend.add_data(
            Reference(ws, min_col=_column(head, "应答率"), min_row=1, max_row=len(drills) + 1),
            titles_from_data=True,
        )
        trend.set_categories(Reference(ws, min_col=2, min_row=2, max_row=len(drills) + 1))
        ws.add_chart(trend, f"{get_column_letter(len(head) + 2)}2")


def render_xlsx(report: EvaluationReport) -> bytes:
    """One sheet per section; charts reference the cells of their own sheet."""
    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "概况"
    summary.append([title_of(report)])
    summary["A1"].font = Font(bold=True, size=14)
    for label, value in summary_rows(report):
        summary.append([label, value])
        summary.cell(summary.max_row, 2).data_type = "s"
    summary.column_dimensions["A"].width = 20
    summary.column_dimensions["B"].width = 80

    tables = _tables(report)
    sheets: dict[str, Worksheet] = {}
    for name, (head, rows) in tables.items():
        sheets[name] = book.create_sheet(name)
        _write_table(sheets[name], head, rows)

    _town_charts(sheets, tables)
    _timeline_chart(sheets, report, tables)
    _drill_chart(sheets, tables)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- PDF ------------------------------------------------------------------------------------

_FONT: Final = "cjk"
# A printed table stops here (a city-wide warning has thousands of villages); the XLSX and the
# JSON have every row. Laying out a cell costs about a millisecond.
PDF_ROWS_MAX: Final = 300
_BAR_RGB: Final = (46, 117, 182)
_ANSWER_RGB: Final = (217, 83, 25)
_HEAD_RGB: Final = (221, 235, 247)


def _cell_text(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


class _Pdf(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self._title = title
        self.set_auto_page_break(auto=True, margin=15)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(_FONT, size=8)
        self.cell(0, 8, f"{self._title}  第 {self.page_no()} 页", align="C")


def _section(pdf: FPDF, title: str) -> None:
    if pdf.get_y() > 250:
        pdf.add_page()
    pdf.ln(3)
    pdf.set_font(_FONT, size=12)
    pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(_FONT, size=7.5)


def _pdf_table(pdf: FPDF, head: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    if not rows:
        pdf.cell(0, 6, "（无）", new_x="LMARGIN", new_y="NEXT")
        return
    shares = {i for i, h in enumerate(head) if h in _SHARE_HEADS}
    # Phone numbers must not wrap: their columns are wider.
    widths = tuple(2.3 if h.endswith("电话") else 1.0 for h in head)
    pdf.set_fill_color(255, 255, 255)
    with pdf.table(
        first_row_as_headings=True,
        line_height=4.5,
        text_align="CENTER",
        padding=0.8,
        col_widths=widths,
        # Headings in the regular face: embedding a second CJK face doubled the PDF's time.
        headings_style=FontFace(fill_color=_HEAD_RGB),
        cell_fill_mode="NONE",
    ) as table:
        header = table.row()
        for h in head:
            header.cell(h)
        for row in rows:
            line = table.row()
            for i, value in enumerate(row):
                if i in shares:
                    line.cell(_pct(value if isinstance(value, float) else None))
                else:
                    line.cell(_cell_text(value))


def _bar_chart(pdf: FPDF, title: str, labels: list[str], values: list[float | None]) -> None:
    """Horizontal bars, one per label, for shares between 0 and 1; continued on the next page
    when there are more bars than fit (a city has over a hundred towns)."""
    if pdf.get_y() + 30 > 280:
        pdf.add_page()
    pdf.set_font(_FONT, size=10)
    pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(_FONT, size=7.5)
    x0, width = pdf.l_margin + 35, 120.0
    top = pdf.get_y()
    y = top
    pdf.set_draw_color(160, 160, 160)
    for label, value in zip(labels, values, strict=True):
        if y + 5 > 280:
            _ticks(pdf, x0, width, top, y)
            pdf.add_page()
            top = y = pdf.get_y()
        pdf.set_xy(pdf.l_margin, y)
        pdf.cell(34, 4.5, label[:12], align="R")
        if value is not None:
            pdf.set_fill_color(*_BAR_RGB)
            pdf.rect(x0, y + 0.7, max(0.3, width * value), 3.2, style="F")
        pdf.set_xy(x0 + width + 2, y)
        pdf.cell(20, 4.5, _pct(value))
        y += 5
    _ticks(pdf, x0, width, top, y)
    pdf.set_y(y + 3)


def _ticks(pdf: FPDF, x0: float, width: float, top: float, bottom: float) -> None:
    """The 0, 50 % and 100 % lines behind a column of bars."""
    pdf.set_draw_color(160, 160, 160)
    for tick in (0.0, 0.5, 1.0):
        pdf.line(x0 + width * tick, top, x0 + width * tick, bottom)


def _line_chart(pdf: FPDF, report: EvaluationReport) -> None:
    """Deliveries (bars, left scale) and answers (line, right scale) per bucket of the timeline:
    a warning delivers thousands of messages and gets dozens of answers, so one scale would
    flatten the answers to nothing."""
    points = report.timeline
    if not points:
        return
    if pdf.get_y() + 75 > 280:
        pdf.add_page()
    pdf.set_font(_FONT, size=10)
    pdf.cell(
        0,
        7,
        f"时间线：每{report.timeline_bucket_minutes}分钟送达（蓝，左轴）与应答（橙，右轴）",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.set_font(_FONT, size=7)
    x0, y0, width, height = pdf.l_margin + 10, pdf.get_y() + 2, 165.0, 55.0
    top = max(*(p.delivered for p in points), 1)
    top_answers = max(*(p.answered for p in points), 1)
    pdf.set_draw_color(120, 120, 120)
    pdf.line(x0, y0 + height, x0 + width, y0 + height)
    pdf.line(x0, y0, x0, y0 + height)
    pdf.line(x0 + width, y0, x0 + width, y0 + height)
    for text, x, align in ((str(top), x0 - 10, "R"), (str(top_answers), x0 + width + 1, "L")):
        pdf.set_xy(x, y0 - 2)
        pdf.cell(9, 4, text, align=align)
        pdf.set_xy(x, y0 + height - 2)
        pdf.cell(9, 4, "0", align=align)
    step = width / len(points)
    pdf.set_fill_color(*_BAR_RGB)
    for i, p in enumerate(points):
        h = height * p.delivered / top
        if h > 0:
            pdf.rect(x0 + i * step + step * 0.1, y0 + height - h, step * 0.8, h, style="F")
    pdf.set_draw_color(*_ANSWER_RGB)
    pdf.set_line_width(0.5)
    previous = None
    for i, p in enumerate(points):
        here = (x0 + i * step + step / 2, y0 + height - height * p.answered / top_answers)
        if previous is not None:
            pdf.line(*previous, *here)
        previous = here
    pdf.set_line_width(0.2)
    labels = max(1, len(points) // 8)
    for i in range(0, len(points), labels):
        pdf.set_xy(x0 + i * step, y0 + height + 1)
        pdf.cell(step * labels, 4, f"{points[i].minute}分")
    pdf.set_y(y0 + height + 8)


def render_pdf(report: EvaluationReport) -> bytes:
    """The report in Chinese, A4: summary, then each section's table, with the charts."""
    font = cjk_font()
    title = title_of(report)
    pdf = _Pdf(title)
    index = NOTO_CJK_SC_INDEX if font.suffix.lower() == ".ttc" else 0
    pdf.add_font(_FONT, "", str(font), collection_font_number=index)
    pdf.set_title(title)
    pdf.set_creator("warnd")
    pdf.add_page()
    pdf.set_font(_FONT, size=16)
    pdf.cell(0, 10, "济宁市应急管理局", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 10, title, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(_FONT, size=9)
    pdf.set_fill_color(255, 255, 255)
    with pdf.table(
        col_widths=(1, 3), line_height=5.5, first_row_as_headings=False, cell_fill_mode="NONE"
    ) as table:
        for label, value in summary_rows(report):
            row = table.row()
            row.cell(label)
            row.cell(value)

    tables = _tables(report)
    towns = report.towns
    if towns:
        _section(pdf, "各乡镇应答率与评分")
        _bar_chart(pdf, "各乡镇应答率", [t.name for t in towns], [t.answer_rate for t in towns])
    _line_chart(pdf, report)
    titles = {
        "送达-对象": "一、按对象送达",
        "送达-区县": "二、按区县送达",
        "送达-乡镇": "三、按乡镇送达",
        "失败原因": "四、失败原因",
        "叫应-层级": "五、叫应（按层级）",
        "叫应-区县": "六、叫应与评分（按区县）",
        "叫应-乡镇": "七、叫应与评分（按乡镇）",
        "升级": "八、升级步骤",
        "未叫应名单": "九、未叫应名单",
        "现场任务": "十、现场任务（按村）",
        "通道": "十一、通道",
        "失败转移": "十二、失败转移",
        "演练对比": "十三、与本区域历次演练对比",
        "演练对比-乡镇": "十四、各乡镇历次演练评分（由早到晚）",
    }
    for name, heading in titles.items():
        if name not in tables:
            continue
        head, rows = tables[name]
        _section(pdf, heading)
        notes = []
        if name == "现场任务":
            # On paper, the villages that need a look: a task not done, or done late.
            late = [r for r in rows if r[5] != r[4] or r[6] != 0]
            if len(late) < len(rows):
                notes.append(f"其余 {len(rows) - len(late)} 个村的任务均已按时完成。")
            rows = late
        if len(rows) > PDF_ROWS_MAX:
            notes.append(f"仅列前 {PDF_ROWS_MAX} 行，共 {len(rows)} 行；完整数据见 XLSX 或 JSON。")
            rows = rows[:PDF_ROWS_MAX]
        _pdf_table(pdf, head, rows)
        for note in notes:
            pdf.cell(0, 5, note, new_x="LMARGIN", new_y="NEXT")
        if name == "演练对比" and rows:
            _bar_chart(
                pdf,
                "历次演练应答率（由早到晚）",
                [f"#{r[0]} {r[1]}"[:12] for r in rows],
                [r[6] if isinstance(r[6], float) else None for r in rows],
            )
    _section(pdf, "说明")
    s = report.scoring
    pdf.multi_cell(
        0,
        5,
        f"评分 = {s.answer_rate:g}×应答率 + {s.time_to_answer:g}×时效分 + "
        f"{s.task_completion:g}×任务完成率（无任务时按前两项重新加权），满分100。"
        f"时效分：应答用时中位数不超过{_dur(s.target_s)}得满分，达到{_dur(s.limit_s)}为0，其间线性。"
        "时间为北京时间；用时从叫应发出起算，送达用时从预警发布起算。",
    )
    return bytes(pdf.output())


RENDERERS: Final[dict[ReportFormat, Callable[[EvaluationReport], bytes]]] = {
    "json": render_json,
    "xlsx": render_xlsx,
    "pdf": render_pdf,
}


def render(report: EvaluationReport, fmt: ReportFormat) -> bytes:
    return RENDERERS[fmt](report)


def file_name(report: EvaluationReport, fmt: ReportFormat) -> str:
    drill = "drill-" if report.is_drill else ""
    return f"warning-{report.warning.id}-{drill}report.{fmt}"
