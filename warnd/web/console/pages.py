"""The console's pages: sign-in, the 值班台 board, 发布预警, a warning's page with its 审批,
未叫应名单 and 解除. Each handler reads the form, calls ``warnd.app`` (the same use cases and
reads as the JSON API, which write the audit entries) and renders a template."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import web

from warnd.app import callouts as callout_cases
from warnd.app import console_reads, reads, rosters, users
from warnd.app import warnings as use_cases
from warnd.app.board import board_figures
from warnd.app.services import Services
from warnd.app.views import PROGRESS_LEVELS
from warnd.core.config import Role
from warnd.core.errors import InputError
from warnd.core.vocabulary import HAZARDS, Level
from warnd.ingest.amend import CancelRequest, CorrectRequest, parse_request
from warnd.web.console import charts, drawn, guard, mapping, uploads
from warnd.web.console.guard import PREFIX, require
from warnd.web.console.words import REFUSALS, ZONE
from warnd.web.http import SERVICES, path_id

OVERDUE_SHOWN: Final = 200  # the 未叫应名单 on the page; the API's CSV export has every row
AUDIT_SHOWN: Final = 200
TASKS_SHOWN: Final = 200
PROBLEMS_SHOWN: Final = 500  # of a refused roster upload; `warnd roster import --problems` has all
MAX_NAME: Final = 64


def _page(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    return guard.page(request, template, context, status)


def _see(path: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{PREFIX}{path}")


# --- signing in and out ------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    return _login(request, "", None)


def _login(request: web.Request, name: str, error: str | None, status: int = 200) -> web.Response:
    token = guard.new_login_csrf()
    response = _page(request, "login.html", {"name": name, "error": error, "csrf": token}, status)
    guard.set_cookie(request, response, guard.LOGIN_CSRF_COOKIE, token)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    data = await guard.form(request)
    name = data.get("username", "").strip()[:MAX_NAME]
    password = data.get("password", "")
    try:
        opened = await users.sign_in(
            request.app[SERVICES], name, password, remote=request.remote or ""
        )
    except users.SignInRefusedError as exc:
        return _login(request, name, exc.detail, status=401)
    response = web.HTTPSeeOther(f"{PREFIX}/")
    guard.set_cookie(request, response, guard.SESSION_COOKIE, opened.token)
    response.del_cookie(guard.LOGIN_CSRF_COOKIE, path=PREFIX)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    await users.sign_out(request.app[SERVICES], request[guard.TOKEN])
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(guard.SESSION_COOKIE, path=PREFIX)
    raise response


# --- the board ---------------------------------------------------------------------------------


async def board_page(request: web.Request) -> web.Response:
    figures = await board_figures(request.app[SERVICES])
    return _page(request, "board.html", {"board": figures})


async def board_fragment(request: web.Request) -> str:
    """The board's live part, as the SSE stream sends it: the figures of GET /api/v1/board."""
    figures = await board_figures(request.app[SERVICES])
    return guard.fragment(request, "_board_live.html", {"board": figures})


# --- composing a warning -----------------------------------------------------------------------

_INSTRUCTIONS: Final = {
    "rainstorm": "低洼地带、地下空间人员立即转移；停止户外作业，远离河道、山洪沟。",
    "flash_flood": "山洪沟、河道两岸人员立即向高处转移，切勿涉水过河。",
    "geological": "隐患点周边人员立即撤离，密切关注山体、房屋变化，不要返回取物。",
    "gale": "加固或拆除临时搭建物，停止高空及户外作业，人员留在室内。",
}
_DEFAULT_INSTRUCTION: Final = "请关注预警信息，做好防范，听从当地政府和村（居）指挥。"


def prefilled(hazard: str, level: str, place: str) -> dict[str, str]:
    """Headline, description and instruction suggested for a hazard and level; the officer
    edits them before sending."""
    h = HAZARDS.get(hazard)
    try:
        colour = Level(level).zh
    except ValueError:
        colour = ""
    name = h.zh if h is not None else ""
    place = place or "相关区域"
    return {
        "headline": f"{place}{name}{colour}预警",
        "description": (
            f"济宁市应急管理局发布{name}{colour}预警：{place}可能受到{name}影响，请做好防范。"
        ),
        "instruction": _INSTRUCTIONS.get(hazard, _DEFAULT_INSTRUCTION),
    }


async def compose_page(request: web.Request) -> web.Response:
    require(request, Role.OFFICER)
    values = {"hazard": "rainstorm", "level": "red", "status": "Actual", "area_desc": ""}
    values |= prefilled("rainstorm", "red", "") | {"polygon": "", "circle": ""}
    context: dict[str, Any] = {
        "values": values,
        "chosen": [],
        "error": None,
        "summary": None,
        "preview": None,
    }
    return await _compose(request, context)


async def _compose(
    request: web.Request, context: dict[str, Any], status: int = 200
) -> web.Response:
    """The compose page: the form, the levels that wait for approval, the map to draw on."""
    counties, towns = await console_reads.town_points(request.app[SERVICES])
    drawing = {"canvas": mapping.canvas(counties, towns), "size": (mapping.WIDTH, mapping.HEIGHT)}
    return _page(
        request, "compose.html", {**context, **_approval_levels(request), **drawing}, status
    )


def _approval_levels(request: web.Request) -> dict[str, Any]:
    """Which levels wait for a second officer by the policy in force: the others go out as soon
    as they are submitted, and the form says so and asks the officer to confirm."""
    policy = request.app[SERVICES].current_policy()
    return {"waits": [level.value for level in Level if policy.needs_approval(level, manual=True)]}


async def compose_texts(request: web.Request) -> web.Response:
    """The prefilled texts for the hazard and level picked (htmx swaps them in)."""
    q = request.query
    texts = prefilled(q.get("hazard", ""), q.get("level", ""), q.get("area_desc", "")[:100])
    return _page(request, "_texts.html", {"values": texts})


async def divisions(request: web.Request) -> web.Response:
    found = await console_reads.search_divisions(request.app[SERVICES], request.query.get("q", ""))
    return _page(request, "_divisions.html", {"found": found})


async def compose_area(request: web.Request) -> web.Response:
    """What the divisions picked hold, shown while composing (htmx swaps it in)."""
    services = request.app[SERVICES]
    codes = [c for c in request.query.getall("codes", []) if c.isdigit() and len(c) <= 12][:200]
    summary = await console_reads.area_summary(services, codes) if codes else None
    night = services.current_policy().night
    context = {"summary": summary, "night": night.is_night(services.clock.now()), "window": night}
    return _page(request, "_area.html", context)


def _confirmed(services: Services, level: str, confirmed: bool) -> None:
    """A level that does not wait for a second officer goes out on submit: only with the box
    ticked that says the officer checked level and area (one click must not warn a city)."""
    if confirmed or level not in {v.value for v in Level}:
        return  # an unknown level is refused by the use case, naming the field
    if not services.current_policy().needs_approval(Level(level), manual=True):
        raise InputError(
            "confirm_now: a warning of this level goes out as soon as it is submitted; "
            "tick the box to confirm the level and the area",
            code="confirm_now",
        )


@dataclass(frozen=True)
class _Draft:
    """The compose form as submitted: its fields, the divisions picked, the area's name."""

    data: dict[str, str]
    codes: list[str]
    chosen: list[console_reads.DivisionMatch]
    area_desc: str
    status: str

    def payload(self) -> dict[str, Any]:
        """The manual warning the form describes (``InputError`` names a bad field)."""
        data = self.data
        area = drawn.area(self.codes, data.get("polygon", ""), data.get("circle", ""))
        drawn.require_name(area, data.get("area_desc", "").strip())
        return {
            "hazard": data.get("hazard", ""),
            "level": data.get("level", ""),
            "status": self.status,
            "area": area,
            "headline": data.get("headline", ""),
            "description": data.get("description", ""),
            "instruction": data.get("instruction", ""),
            "area_desc": self.area_desc,
        }


async def _draft(request: web.Request) -> _Draft:
    items = await guard.form_items(request)
    data = {k: v for k, v in items if isinstance(v, str)}
    codes = [v.strip() for k, v in items if k == "codes" and isinstance(v, str) and v.strip()]
    chosen = await console_reads.division_names(
        request.app[SERVICES], [c.ljust(12, "0")[:12] for c in codes if c.isdigit()]
    )
    area_desc = data.get("area_desc", "").strip() or "、".join(d.name for d in chosen)
    status = "Exercise" if data.get("status") == "Exercise" else "Actual"
    return _Draft(data, codes, chosen, area_desc, status)


async def _compose_again(
    request: web.Request,
    draft: _Draft,
    *,
    error: InputError | None = None,
    preview: Any = None,
) -> web.Response:
    """The compose page with what the officer entered, and what went wrong or the preview."""
    blank = dict.fromkeys(
        ("hazard", "level", "headline", "description", "instruction", "polygon", "circle"), ""
    )
    values = {**blank, **draft.data, "status": draft.status, "area_desc": draft.area_desc}
    context: dict[str, Any] = {
        "values": values,
        "chosen": draft.chosen,
        "error": None,
        "summary": None,
        "preview": preview,
    }
    if error is not None:
        context["error"] = f"{REFUSALS.get(error.code, '填写内容有误。')} {error.detail}"
    return await _compose(request, context, 422 if error is not None else 200)


async def issue(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.OFFICER)
    services = request.app[SERVICES]
    draft = await _draft(request)
    try:
        payload = draft.payload()
        _confirmed(services, payload["level"], draft.data.get("confirm_now") == "yes")
        stored = await use_cases.issue(services, user.name, payload)
    except InputError as exc:
        return await _compose_again(request, draft, error=exc)
    raise _see(f"/warnings/{stored.warning_id}")


async def compose_preview(request: web.Request) -> web.Response:
    """预览: who the form's warning would reach and what they would receive, before anything
    is stored (every level; orange and red show it again to their approver)."""
    user = require(request, Role.OFFICER)
    draft = await _draft(request)
    try:
        shown = await use_cases.preview_draft(request.app[SERVICES], user.name, draft.payload())
    except InputError as exc:
        return await _compose_again(request, draft, error=exc)
    return await _compose_again(request, draft, preview=shown)


# --- the roster (名册) ---------------------------------------------------------------------------


async def roster_page(request: web.Request) -> web.Response:
    """Find a division; its page lists who answers for it, with phones."""
    q = request.query.get("q", "")[:40]
    found = await console_reads.search_divisions(request.app[SERVICES], q) if q else []
    return _roster(request, {"q": q, "found": found})


def _roster(request: web.Request, context: dict[str, Any], status: int = 200) -> web.Response:
    blank: dict[str, Any] = {
        "q": "",
        "found": [],
        "imported": None,
        "problems": [],
        "problem_count": 0,
    }
    return _page(request, "roster.html", {**blank, "kinds": rosters.KINDS, **context}, status)


async def roster_import(request: web.Request) -> web.Response:
    """Roster files uploaded: imported all together, or nothing and every problem listed."""
    user = require(request, Role.ADMIN)
    services = request.app[SERVICES]
    reader = request.get(guard.UPLOAD)
    if reader is None:
        raise InputError("files: send the roster files as the upload form does", code="roster_file")
    with tempfile.TemporaryDirectory(prefix="warnd-roster-") as folder:
        paths = await uploads.receive(reader, Path(folder))
        try:
            summary = await rosters.import_uploaded(
                services, user.name, paths, now=services.clock.now()
            )
        except rosters.RosterImportError as exc:
            shown = {"problems": exc.problems[:PROBLEMS_SHOWN], "problem_count": len(exc.problems)}
            return _roster(request, shown, 422)
    imported = [(key, t) for key, t in summary.types.items() if t.files]
    return _roster(request, {"imported": imported})


async def roster_export(request: web.Request) -> web.StreamResponse:
    """The whole roster as a zip of one file per record type (CSV or XLSX): every phone number
    of the city, so for the roster's administrators, and audited."""
    user = require(request, Role.ADMIN)
    fmt: Literal["csv", "xlsx"] = "xlsx" if request.query.get("format") == "xlsx" else "csv"
    services = request.app[SERVICES]
    name = f"roster-{services.clock.now().astimezone(ZONE):%Y%m%d-%H%M}-{fmt}.zip"
    folder = Path(tempfile.mkdtemp(prefix="warnd-export-"))
    try:
        archive = await rosters.export_zip(services, user.name, folder, fmt, name=name)
        zipped = await asyncio.to_thread(archive.open, "rb")
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)  # the open file stays readable
    response = web.StreamResponse(
        headers={
            **guard.SECURITY_HEADERS,
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        }
    )
    with zipped:
        await response.prepare(request)
        while chunk := await asyncio.to_thread(zipped.read, 1 << 20):
            await response.write(chunk)
    await response.write_eof()
    return response


async def division_page(request: web.Request) -> web.Response:
    code = request.match_info["code"]
    card = await console_reads.division_card(request.app[SERVICES], code)
    return _page(request, "division.html", {"d": card})


# --- a warning ---------------------------------------------------------------------------------


def _level(request: web.Request) -> str:
    level = request.query.get("level", "county")
    return level if level in PROGRESS_LEVELS else "county"


def _within(request: web.Request) -> str | None:
    """The division a roll-up stays within (a county's towns, a town's villages), if any."""
    code = request.query.get("within", "")
    return code if len(code) == 12 and code.isascii() and code.isdigit() else None


async def _warning_live(
    request: web.Request, warning_id: int, *more: Callable[[], Awaitable[Any]]
) -> tuple[dict[str, Any], list[Any]]:
    """What the live part of a warning's page shows, and the results of ``more`` reads run
    beside its detail and roll-up. A warning that is not there is a 404 from the detail or
    the roll-up, whichever reads it first; the other reads find nothing of it."""
    services = request.app[SERVICES]
    level = _level(request)

    async def slotted(read: Awaitable[Any]) -> Any:
        async with services.console_slots:
            return await read

    # Independent reads on connections of their own: the page costs the slowest, not the sum
    # (within the console's share of the pool).
    detail, report, *results = await asyncio.gather(
        slotted(reads.warning_detail(services, warning_id)),
        slotted(reads.progress(services, warning_id, level, _within(request))),
        *(slotted(read()) for read in more),
    )
    live = {
        "w": detail,
        "report": report,
        "level": level,
        "tasks": console_reads.task_totals(report),
    }
    return live, results


async def warning_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    live, (overdue, audit, tasks, amendments) = await _warning_live(
        request,
        warning_id,
        partial(
            reads.callouts,
            services.pool,
            warning_id,
            reads.CalloutFilter(overdue_at=services.clock.now()),
            after=0,
            limit=OVERDUE_SHOWN,
        ),
        partial(reads.audit_page, services, warning_id, after=None, limit=AUDIT_SHOWN),
        partial(
            reads.field_tasks_page,
            services,
            warning_id,
            kind=None,
            state=None,
            after=0,
            limit=TASKS_SHOWN,
        ),
        partial(console_reads.pending_amendments, services, warning_id),
    )
    detail = live["w"]
    preview = None
    if detail.state == "pending_approval":
        preview = await reads.preview(services, warning_id)
    user = guard.officer(request)
    context = {
        **live,
        "amendments": amendments,
        "cancel_pending": any(a.msg_type == "Cancel" for a in amendments),
        "preview": preview,
        "overdue": overdue,
        "audit": audit.entries,
        "field_tasks": tasks.tasks,
        "exercise": detail.warning.status == "Exercise",
        "may_approve": user.has(Role.APPROVER) and detail.author != user.name,
        "may_act": user.has(Role.OFFICER),
        "error": request.query.get("error"),
    }
    return _page(request, "warning.html", context)


async def warning_fragment(request: web.Request) -> str:
    warning_id = path_id(request, "warning_id")
    live, _ = await _warning_live(request, warning_id)
    return guard.fragment(request, "_warning_live.html", live)


async def chart_fragment(request: web.Request) -> web.Response:
    """The time chart, asked for by the page once it has loaded (htmx): it reads every
    delivered time of the warning, so it is kept out of the page's own answer and the stream."""
    warning_id = path_id(request, "warning_id")
    line = await console_reads.timeline(request.app[SERVICES], warning_id)
    context = {
        "chart": charts.chart(line),
        "size": (charts.WIDTH, charts.HEIGHT),
        "warning_id": warning_id,
    }
    return _page(request, "_chart.html", context)


async def map_page(request: web.Request) -> web.Response:
    """一张图: the warning's villages as points coloured by state, its drawn area over them."""
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    detail = await reads.warning_detail(services, warning_id)
    report = await reads.progress(services, warning_id, "village")
    villages = await console_reads.village_points(services, warning_id)
    drawing = mapping.draw(villages, {d.code: d for d in report.divisions}, detail.warning.area)
    context = {
        "w": detail,
        "drawing": drawing,
        "states": mapping.STATES,
        "size": (mapping.WIDTH, mapping.HEIGHT),
        "exercise": detail.warning.status == "Exercise",
    }
    return _page(request, "map.html", context)


async def approve(request: web.Request) -> web.StreamResponse:
    """A second officer approves, having typed the area's name: a click alone releases
    nothing."""
    user = require(request, Role.APPROVER)
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    data = await guard.form(request)
    detail = await reads.warning_detail(services, warning_id)
    typed = "".join(data.get("area_confirm", "").split())
    if not typed or typed != "".join(detail.warning.area_desc.split()):
        return guard.refusal_page(
            request,
            422,
            "area_mismatch",
            f"area_confirm: typed {typed[:60]!r}, the warning's area is "
            f"{detail.warning.area_desc!r}",
        )
    body = parse_request(use_cases.ApproveRequest, {"texts_sha256": data.get("texts_sha256", "")})
    await use_cases.approve(services, user.name, warning_id, body)
    raise _see(f"/warnings/{warning_id}")


async def reject(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.APPROVER)
    warning_id = path_id(request, "warning_id")
    data = await guard.form(request)
    body = parse_request(use_cases.RejectRequest, {"reason": data.get("reason", "")})
    await use_cases.reject(request.app[SERVICES], user.name, warning_id, body)
    raise _see(f"/warnings/{warning_id}")


async def cancel_page(request: web.Request) -> web.Response:
    """What cancelling would send, before anything is stored: the notice texts per kind."""
    user = require(request, Role.OFFICER)
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    message = request.query.get("message", "")[:200]
    reason = request.query.get("reason", "")[:500]
    detail = await reads.warning_detail(services, warning_id)
    notices = await console_reads.cancel_notices(services, user.name, warning_id, message)
    context = {
        "w": detail,
        "notices": notices,
        "message": message,
        "reason": reason,
        "exercise": detail.warning.status == "Exercise",
    }
    return _page(request, "cancel.html", context)


async def cancel(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.OFFICER)
    warning_id = path_id(request, "warning_id")
    data = await guard.form(request)
    body = parse_request(
        CancelRequest, {"reason": data.get("reason", ""), "message": data.get("message", "")}
    )
    stored = await use_cases.cancel(request.app[SERVICES], user.name, warning_id, body)
    raise _see(f"/warnings/{stored.warning_id}")


async def correct(request: web.Request) -> web.StreamResponse:
    """更正: only the fields the officer changed go into the correction; the rules (a lower
    level only, orange and red with new words wait for a second officer) are the use case's."""
    user = require(request, Role.OFFICER)
    services = request.app[SERVICES]
    warning_id = path_id(request, "warning_id")
    data = await guard.form(request)
    detail = await reads.warning_detail(services, warning_id)
    current = detail.warning
    payload: dict[str, Any] = {"reason": data.get("reason", "")}
    for name in ("headline", "description", "instruction"):
        value = data.get(name)
        if value is not None and value.strip() != getattr(current, name):
            payload[name] = value.strip()
    if data.get("level") and data["level"] != current.level:
        payload["level"] = data["level"]
    body = parse_request(CorrectRequest, payload)
    stored = await use_cases.correct(services, user.name, warning_id, body)
    raise _see(f"/warnings/{stored.warning_id}")


async def acknowledge(request: web.Request) -> web.StreamResponse:
    """Record an answer the officer obtained by phone, with how; back to the list."""
    user = require(request, Role.OFFICER)
    callout_id = path_id(request, "callout_id")
    data = await guard.form(request)
    ack = callout_cases.parse_ack({"reason": data.get("reason", "")})
    done = await callout_cases.acknowledge(request.app[SERVICES], user.name, callout_id, ack)
    raise _see(f"/warnings/{done.warning_id}#overdue")
