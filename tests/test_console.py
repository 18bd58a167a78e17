"""The console's guard over plain HTTP: signing in (argon2, lockout, idle timeout), the session
cookie's flags, CSRF on every POST, the CSP, and ``warnd user add``.

The whole officer's round in a real browser is in tests/test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import io
import re
import ssl
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import trustme
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from click.testing import CliRunner

from tests.fixtures import (
    CHIEF_TOKEN,
    COUNTY,
    NOW,
    TOWN,
    VILLAGE_1,
    Api,
    cap_alert,
    insert_deliveries,
    manual,
)
from warnd.app.console_reads import Timeline
from warnd.app.users import IDLE_TIMEOUT, MAX_FAILURES, add_user
from warnd.app.views import CalloutSummary, DivisionProgress, FieldTaskProgress
from warnd.cli.main import main
from warnd.core.clock import ManualClock
from warnd.core.config import AppConfig
from warnd.runtime.daemon import Daemon, make_channels
from warnd.runtime.settings import Settings
from warnd.web.console import live
from warnd.web.console.charts import chart
from warnd.web.console.mapping import village_state
from warnd.web.routing import API

PASSWORD = "correct horse 1"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def add_officers(pool: asyncpg.Pool) -> None:
    await add_user(pool, "zhang", ["officer"], PASSWORD, now=NOW)
    await add_user(pool, "li", ["approver", "officer"], PASSWORD, now=NOW)


async def csrf_of(api: Api, path: str) -> str:
    response = await api.client.get(path)
    assert response.status == 200, await response.text()
    found = _CSRF.search(await response.text())
    assert found is not None
    return found[1]


async def sign_in(api: Api, name: str, password: str = PASSWORD) -> Any:
    token = await csrf_of(api, "/console/login")
    return await api.client.post(
        "/console/login",
        data={"csrf_token": token, "username": name, "password": password},
        allow_redirects=False,
    )


async def test_sign_in_opens_a_session_with_safe_cookie_and_headers(app: Api) -> None:
    await add_officers(app.pool)
    response = await sign_in(app, "zhang")
    assert response.status == 303
    assert response.headers["Location"] == "/console/"
    cookie = response.cookies["warnd_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/console"
    assert not cookie["secure"]  # plain HTTP here; over TLS it is Secure (request.secure)
    board = await app.client.get("/console/")
    assert board.status == 200
    csp = board.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page = await board.text()
    assert "值班台" in page and "<script>" not in page  # no inline script anywhere
    stored = await app.pool.fetchval("SELECT token_sha256 FROM console_sessions")
    assert stored != cookie.value  # only its digest is kept
    actions = await app.pool.fetch("SELECT actor, action FROM audit_log ORDER BY id")
    assert ("zhang", "console_signed_in") in [tuple(r) for r in actions]


async def test_pages_need_a_session(app: Api) -> None:
    response = await app.client.get("/console/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/login"
    live = await app.client.get("/console/live/board", headers={"HX-Request": "true"})
    assert live.status == 401


async def test_a_post_without_csrf_token_is_refused_and_changes_nothing(app: Api) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    form = {
        "hazard": "rainstorm",
        "level": "blue",
        "codes": "370811",
        "headline": "任城区暴雨蓝色预警",
        "area_desc": "任城区",
    }
    refused = await app.client.post("/console/warnings", data=form, allow_redirects=False)
    assert refused.status == 403
    assert "页面已过期或请求来源不明" in await refused.text()
    wrong = await app.client.post(
        "/console/warnings", data={**form, "csrf_token": "x" * 40}, allow_redirects=False
    )
    assert wrong.status == 403
    assert await app.count("warnings") == 0
    # The same form with the session's token is taken, once the officer has confirmed that a
    # blue warning goes out at once.
    token = await csrf_of(app, "/console/compose")
    unconfirmed = await app.client.post("/console/warnings", data={**form, "csrf_token": token})
    assert unconfirmed.status == 422 and "立即发送" in await unconfirmed.text()
    assert await app.count("warnings") == 0
    taken = await app.client.post(
        "/console/warnings",
        data={**form, "csrf_token": token, "confirm_now": "yes"},
        allow_redirects=False,
    )
    assert taken.status == 303, await taken.text()
    assert await app.count("warnings") == 1


async def test_sign_in_form_needs_its_own_token(app: Api) -> None:
    await add_officers(app.pool)
    response = await app.client.post(
        "/console/login", data={"username": "zhang", "password": PASSWORD}
    )
    assert response.status == 403
    assert await app.count("console_sessions") == 0


async def test_repeated_failures_lock_the_officer_out(app: Api) -> None:
    await add_officers(app.pool)
    for _ in range(MAX_FAILURES - 1):
        failed = await sign_in(app, "zhang", "wrong password")
        assert failed.status == 401
        assert "用户名或密码错误" in await failed.text()
    locked = await sign_in(app, "zhang", "wrong password")
    assert locked.status == 401 and "已锁定" in await locked.text()
    still = await sign_in(app, "zhang")  # the right password, while locked
    assert still.status == 401 and "已锁定" in await still.text()
    assert await app.count("console_sessions") == 0
    clock = app.services.clock
    assert isinstance(clock, ManualClock)
    clock.advance(16 * 60)
    assert (await sign_in(app, "zhang")).status == 303
    actions = [
        r["action"]
        for r in await app.pool.fetch("SELECT action FROM audit_log WHERE actor = 'zhang'")
    ]
    assert "console_locked_out" in actions and "console_sign_in_locked" in actions
    # An unknown name answers the same as a wrong password.
    unknown = await sign_in(app, "nobody", PASSWORD)
    assert unknown.status == 401 and "用户名或密码错误" in await unknown.text()


async def test_an_idle_session_ends(app: Api) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    assert (await app.client.get("/console/", allow_redirects=False)).status == 200
    clock = app.services.clock
    assert isinstance(clock, ManualClock)
    clock.advance(IDLE_TIMEOUT.total_seconds() + 1)
    response = await app.client.get("/console/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/login"


async def test_the_author_cannot_approve_and_the_area_must_be_typed(app: Api) -> None:
    await add_officers(app.pool)
    await sign_in(app, "li")  # officer and approver
    token = await csrf_of(app, "/console/compose")
    issued = await app.client.post(
        "/console/warnings",
        data={
            "csrf_token": token,
            "hazard": "rainstorm",
            "level": "red",
            "codes": "370811",
            "headline": "任城区暴雨红色预警",
            "area_desc": "任城区",
        },
        allow_redirects=False,
    )
    assert issued.status == 303
    warning_id = int(issued.headers["Location"].rsplit("/", 1)[1])
    page = await (await app.client.get(f"/console/warnings/{warning_id}")).text()
    assert "您是发布人" in page and "area_confirm" not in page
    # 02:00: the preview says the night channels are in force.
    assert 'id="night-notice">现在是夜间时段（22:00–06:00）' in page
    area = await (await app.client.get("/console/compose/area?codes=370811")).text()
    assert "夜间时段（22:00–06:00）" in area
    digest = re.search(r'name="texts_sha256" value="([0-9a-f]+)"', page)
    assert digest is None  # no approval form for the author
    preview = await app.client.get(f"/api/v1/warnings/{warning_id}/preview", headers=_chief())
    sha = (await preview.json())["texts_sha256"]
    self_approval = await app.client.post(
        f"/console/warnings/{warning_id}/approve",
        data={"csrf_token": token, "texts_sha256": sha, "area_confirm": "任城区"},
    )
    assert self_approval.status == 403
    assert "须由另一名值班员审批" in await self_approval.text()
    assert await app.pool.fetchval("SELECT state FROM warnings") == "pending_approval"

    await app.client.post("/console/logout", data={"csrf_token": token})
    await sign_in(app, "zhang")  # an officer without the approver role
    token = await csrf_of(app, "/console/compose")
    no_role = await app.client.post(
        f"/console/warnings/{warning_id}/approve",
        data={"csrf_token": token, "texts_sha256": sha, "area_confirm": "任城区"},
    )
    assert no_role.status == 403
    await add_user(app.pool, "wang", ["approver"], PASSWORD, now=NOW)
    await sign_in(app, "wang")
    token = await csrf_of(app, f"/console/warnings/{warning_id}")
    wrong_area = await app.client.post(
        f"/console/warnings/{warning_id}/approve",
        data={"csrf_token": token, "texts_sha256": sha, "area_confirm": "泗水县"},
    )
    assert wrong_area.status == 422 and "不一致" in await wrong_area.text()
    assert await app.pool.fetchval("SELECT state FROM warnings") == "pending_approval"
    approved = await app.client.post(
        f"/console/warnings/{warning_id}/approve",
        data={"csrf_token": token, "texts_sha256": sha, "area_confirm": " 任城区 "},
        allow_redirects=False,
    )
    assert approved.status == 303, await approved.text()
    row = await app.pool.fetchrow("SELECT state, approver FROM warnings")
    assert row is not None and tuple(row) == ("active", "wang")
    audit = await app.pool.fetchval("SELECT actor FROM audit_log WHERE action = 'warning_approved'")
    assert audit == "wang"


async def test_an_area_drawn_on_the_map_is_stored_and_resolved_to_its_villages(app: Api) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    page = await (await app.client.get("/console/compose")).text()
    assert 'id="draw-map"' in page and "任城区" in page  # the counties are labelled
    token = await csrf_of(app, "/console/compose")
    form = {
        "csrf_token": token,
        "hazard": "rainstorm",
        "level": "red",
        "headline": "张庄一带暴雨红色预警",
        # A square around 张庄村 only (李庄村 is at 35.44,116.62); left open: closed for us.
        "polygon": "35.425,116.605 35.435,116.605 35.435,116.615 35.425,116.615",
        "draw_mode": "polygon",
    }
    unnamed = await app.client.post("/console/warnings", data=form)
    assert unnamed.status == 422
    text = await unnamed.text()
    assert "area_desc" in text and "35.425,116.605" in text  # the drawing is kept
    issued = await app.client.post(
        "/console/warnings", data={**form, "area_desc": "张庄一带"}, allow_redirects=False
    )
    assert issued.status == 303, await issued.text()
    warning_id = int(issued.headers["Location"].rsplit("/", 1)[1])
    area = await app.pool.fetchval("SELECT area FROM warnings WHERE id = $1", warning_id)
    assert area["polygons"] == [
        [
            [35.425, 116.605],
            [35.435, 116.605],
            [35.435, 116.615],
            [35.425, 116.615],
            [35.425, 116.605],
        ]
    ]
    preview = await app.client.get(f"/api/v1/warnings/{warning_id}/preview", headers=_chief())
    assert (await preview.json())["villages"] == 1

    circled = await app.client.post(
        "/console/warnings",
        data={**form, "polygon": "", "circle": "35.43,116.61 2", "area_desc": "张庄周边"},
        allow_redirects=False,
    )
    assert circled.status == 303, await circled.text()
    area = await app.pool.fetchval("SELECT area FROM warnings ORDER BY id DESC LIMIT 1")
    assert area["circles"] == [{"lat": 35.43, "lon": 116.61, "radius_km": 2.0}]


async def test_the_compose_preview_counts_who_would_be_reached_and_stores_nothing(
    app: Api,
) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    token = await csrf_of(app, "/console/compose")
    form = {
        "csrf_token": token,
        "hazard": "rainstorm",
        "level": "blue",
        "codes": "370811",
        "headline": "任城区暴雨蓝色预警",
    }
    shown = await app.client.post("/console/compose/preview", data=form)
    page = await shown.text()
    assert shown.status == 200, page
    # As the API's preview of the same warning: at 02:00, 4 responders and a door-knocking task.
    assert '<td class="num" id="total-recipients">5</td>' in page
    assert 'id="night-notice"' in page and "尚未保存，未发送" in page
    assert 'value="任城区暴雨蓝色预警"' in page  # the form keeps what was entered
    drawn_area = {**form, "codes": "", "level": "red", "area_desc": "张庄一带"}
    drawn_area["polygon"] = "35.425,116.605 35.435,116.605 35.435,116.615 35.425,116.615"
    drawn_page = await (await app.client.post("/console/compose/preview", data=drawn_area)).text()
    assert '<b id="villages">1</b>' in drawn_page
    bad = await app.client.post("/console/compose/preview", data={**form, "level": "purple"})
    assert bad.status == 422 and "level" in await bad.text()
    assert await app.pool.fetchval("SELECT count(*) FROM warnings") == 0
    assert (
        await app.pool.fetchval("SELECT count(*) FROM audit_log WHERE subject LIKE 'warning:%'")
        == 0
    )


async def test_a_badly_drawn_area_is_named_and_nothing_is_stored(app: Api) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    token = await csrf_of(app, "/console/compose")
    base = {
        "csrf_token": token,
        "hazard": "rainstorm",
        "level": "red",
        "headline": "暴雨红色预警",
        "area_desc": "所画区域",
    }
    for fields, says in [
        ({"polygon": "35.42;116.60 35.44,116.60 35.44,116.62"}, "polygon: point 1"),
        ({"polygon": "35.42,abc 35.44,116.60 35.44,116.62"}, "point 1 longitude"),
        ({"polygon": "35.42,116.60 35.44,116.60"}, "polygon"),
        ({"polygon": "35.40,116.50 35.50,116.70 35.50,116.50 35.40,116.70"}, "cross"),
        ({"polygon": "135.42,116.60 35.44,116.60 35.44,116.62"}, "area.polygons"),
        ({"circle": "35.43,116.61"}, "circle:"),
        ({"circle": "35.43,116.61 -3"}, "radius_km"),
    ]:
        response = await app.client.post("/console/warnings", data={**base, **fields})
        assert response.status == 422, (fields, await response.text())
        assert says in await response.text(), (fields, await response.text())
    assert await app.pool.fetchval("SELECT count(*) FROM warnings") == 0


def _chief() -> dict[str, str]:
    return {"Authorization": f"Bearer {CHIEF_TOKEN}"}


async def test_bad_compose_input_names_the_field_and_stores_nothing(app: Api) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    token = await csrf_of(app, "/console/compose")
    response = await app.client.post(
        "/console/warnings",
        data={"csrf_token": token, "hazard": "rainstorm", "level": "red", "headline": "x"},
    )
    assert response.status == 422
    page = await response.text()
    assert "area" in page and "预警内容有误" in page
    assert await app.count("warnings") == 0


async def test_warnd_user_add_reads_the_password_from_stdin(
    db_url: str, pool: asyncpg.Pool
) -> None:
    env = {"WARND_DATABASE_URL": db_url}
    args = ["user", "add", "zhao", "--roles", "officer,approver", "--password-stdin"]
    result = await asyncio.to_thread(
        CliRunner().invoke, main, args, input=PASSWORD + "\n", env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "added user zhao (approver, officer)" in result.output
    row = await pool.fetchrow("SELECT password_hash, roles FROM console_users WHERE name = 'zhao'")
    assert row is not None
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]
    again = await asyncio.to_thread(
        CliRunner().invoke, main, args, input=PASSWORD + "\n", env=env, catch_exceptions=False
    )
    assert again.exit_code == 2 and "exists already" in again.output
    bad = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["user", "add", "qian", "--roles", "boss", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        catch_exceptions=False,
    )
    assert bad.exit_code == 2 and "roles" in bad.output
    # At a terminal the password is asked twice and never echoed.
    prompted = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["user", "add", "sun"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        env=env,
        catch_exceptions=False,
    )
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output and "added user sun (officer)" in prompted.output


async def test_a_disabled_officer_is_signed_out_and_refused_until_enabled(
    db_url: str, app: Api
) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    assert (await app.client.get("/console/", allow_redirects=False)).status == 200

    def cli(*args: str) -> Any:
        env = {"WARND_DATABASE_URL": db_url, "COLUMNS": "200"}
        return CliRunner().invoke(main, ["user", *args], env=env, catch_exceptions=False)

    disabled = await asyncio.to_thread(cli, "disable", "zhang")
    assert disabled.exit_code == 0, disabled.output
    # The open session ended with it, and signing in again is refused, saying why.
    assert (await app.client.get("/console/", allow_redirects=False)).status == 303
    refused = await sign_in(app, "zhang")
    assert refused.status == 401 and "该账户已停用" in await refused.text()
    listed = await asyncio.to_thread(cli, "list")
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[1]: line for line in listed.output.splitlines() if "│" in line}
    assert "停用" in rows["zhang"] and "正常" in rows["li"]
    assert (await asyncio.to_thread(cli, "disable", "nobody")).exit_code != 0
    assert (await asyncio.to_thread(cli, "enable", "zhang")).exit_code == 0
    assert (await sign_in(app, "zhang")).status == 303
    actions = [
        r["action"]
        for r in await app.pool.fetch(
            "SELECT action FROM audit_log WHERE subject = 'user:zhang' ORDER BY id"
        )
    ]
    for action in ("console_user_disabled", "console_sign_in_disabled", "console_user_enabled"):
        assert action in actions


def test_a_village_on_the_map_shows_its_most_urgent_state() -> None:
    def row(**figures: int) -> DivisionProgress:
        callouts = CalloutSummary(
            total=figures.get("c_total", 0),
            acknowledged_on_time=figures.get("c_on_time", 0),
            acknowledged_late=0,
            open=0,
            overdue=figures.get("c_overdue", 0),
            escalated=0,
            closed=0,
        )
        tasks = FieldTaskProgress(total=0, done=0, open=0, overdue=0, persons=0, reached=0)
        return DivisionProgress(
            code="370811001201",
            name="张庄村",
            total=4,
            queued=0,
            sending=0,
            sent=0,
            delivered=figures.get("delivered", 0),
            failed=0,
            cancelled=0,
            callouts=callouts,
            field_tasks=tasks,
            speakers=1,
            speakers_offline=figures.get("offline", 0),
        )

    assert village_state(None) == "not_reached"
    assert village_state(row()) == "not_reached"
    assert village_state(row(delivered=2, c_total=2, c_overdue=1, offline=1)) == "overdue"
    assert village_state(row(delivered=2, c_total=2, offline=1)) == "speaker_offline"
    assert village_state(row(delivered=2, c_total=2, c_on_time=2)) == "answered"
    assert village_state(row(delivered=2, c_total=2, c_on_time=1)) == "reached"


async def test_the_live_board_streams_its_figures_as_server_sent_events(app: Api) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    async with app.client.get("/console/live/board") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        first = b""
        while not first.endswith(b"\n\n"):
            first += await response.content.readline()
    text = first.decode()
    assert text.startswith("event: update\ndata: ")
    assert "待审批" in text and "生效中的预警" in text


async def test_a_live_part_nobody_watches_any_more_is_forgotten() -> None:
    shared = live._Shared()
    request = make_mocked_request("GET", "/console/live/board")

    async def render(_: web.Request) -> str:
        return "<p>figures</p>"

    shared.watch("/a")
    shared.watch("/a")
    assert await shared.render("/a", request, render) == "<p>figures</p>"
    shared.unwatch("/a")
    assert "/a" in shared.latest  # one page still shows it
    shared.unwatch("/a")
    assert shared.latest == {} and shared.locks == {} and not shared.watching


async def test_the_board_shows_what_get_board_answers(app: Api) -> None:
    """The board page renders the figures of GET /api/v1/board: a warning waiting with its
    headline, an active one with its deliveries, a silent feed, an offline speaker, a refused
    message."""
    await add_officers(app.pool)
    _, created = await app.cap(cap_alert())
    active = int(created["warning_id"])
    await insert_deliveries(app.pool, active)
    status, body = await app.call("POST", f"{API}/warnings", CHIEF_TOKEN, manual("red"))
    assert status == 201, body
    await app.cap(b"<not-xml")
    await app.pool.execute(
        "INSERT INTO feed_health (feed, silent, changed_at) VALUES ('cma', true, $1)", NOW
    )
    await app.pool.execute(
        "INSERT INTO speakers (channel, id, division_code, online, state_at) "
        "VALUES ('broadcast', $1, $1, false, $2)",
        VILLAGE_1,
        NOW,
    )
    await sign_in(app, "zhang")
    page = await (await app.client.get("/console/")).text()
    pending = page.index("待审批")
    assert page.index("任城区暴雨预警", pending) < page.index("生效中的预警")
    article = page[page.index(f'data-warning="{active}"') :]
    assert re.search(r'class="delivered-count">1</b> / 3', article)
    assert "cma：自" in page and "起无心跳" in page
    assert re.search(r'离线广播 <span class="count">1</span>', page)
    assert "malformed_xml" in page
    assert f'data-warning="{body["warning_id"]}"' not in page  # waiting: a row, not a card


def _console_routes(api: Api) -> set[tuple[str, str]]:
    assert api.client.app is not None
    return {
        (route.method, re.sub(r"\{\w+\}", "1", route.resource.canonical))
        for route in api.client.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.resource.canonical.startswith("/console")
        and not route.resource.canonical.startswith(("/console/login", "/console/static"))
    }


async def test_every_console_route_needs_a_session_and_every_post_its_csrf_token(
    app: Api,
) -> None:
    routes = _console_routes(app)
    assert ("POST", "/console/warnings/1/approve") in routes
    for method, path in sorted(routes):
        response = await app.client.request(method, path, allow_redirects=False)
        assert response.status == 303, (method, path)
        assert response.headers["Location"] == "/console/login"
    await add_officers(app.pool)
    await sign_in(app, "li")
    for method, path in sorted(routes):
        if method == "POST":
            response = await app.client.post(path, data={"reason": "电话确认"})
            assert response.status == 403, (method, path)
    assert await app.count("warnings") == 0
    assert await app.count("console_sessions") == 1  # not even the sign-out went through


async def test_an_approver_refuses_and_an_officer_corrects_from_the_warning_page(
    app: Api,
) -> None:
    await add_officers(app.pool)
    await add_user(app.pool, "wang", ["approver"], PASSWORD, now=NOW)
    await sign_in(app, "zhang")
    token = await csrf_of(app, "/console/compose")
    form = {
        "csrf_token": token,
        "hazard": "rainstorm",
        "codes": "370811",
        "headline": "任城区暴雨预警",
        "area_desc": "任城区",
    }
    red = await app.client.post(
        "/console/warnings", data={**form, "level": "red"}, allow_redirects=False
    )
    red_id = int(red.headers["Location"].rsplit("/", 1)[1])
    yellow = await app.client.post(
        "/console/warnings",
        data={**form, "level": "yellow", "confirm_now": "yes"},
        allow_redirects=False,
    )
    yellow_id = int(yellow.headers["Location"].rsplit("/", 1)[1])
    page = await (await app.client.get(f"/console/warnings/{yellow_id}")).text()
    assert "更正预警" in page and "现场任务" in page
    corrected = await app.client.post(
        f"/console/warnings/{yellow_id}/correct",
        data={
            "csrf_token": token,
            "level": "blue",
            "headline": "任城区暴雨预警（已减弱）",
            "description": "",
            "instruction": "",
            "reason": "雨势减弱",
        },
        allow_redirects=False,
    )
    assert corrected.status == 303, await corrected.text()
    update = await app.pool.fetchrow(
        "SELECT msg_type, level, headline, author FROM warnings WHERE supersedes_id = $1",
        yellow_id,
    )
    assert update is not None
    assert tuple(update) == ("Update", "blue", "任城区暴雨预警（已减弱）", "zhang")
    higher = await app.client.post(
        f"/console/warnings/{red_id}/correct",
        data={"csrf_token": token, "headline": "任城区暴雨红色预警", "reason": "更正待审批的"},
    )
    assert higher.status == 409  # only an active warning is corrected

    await sign_in(app, "wang")
    token = await csrf_of(app, f"/console/warnings/{red_id}")
    refused = await app.client.post(
        f"/console/warnings/{red_id}/reject",
        data={"csrf_token": token, "reason": "区域有误"},
        allow_redirects=False,
    )
    assert refused.status == 303
    assert await app.pool.fetchval("SELECT state FROM warnings WHERE id = $1", red_id) == (
        "rejected"
    )
    reason = await app.pool.fetchval(
        "SELECT detail->>'reason' FROM audit_log WHERE action = 'warning_rejected' "
        "AND actor = 'wang'"
    )
    assert reason == "区域有误"


async def test_the_warning_page_opens_a_county_into_its_towns_and_a_town_into_its_villages(
    app: Api,
) -> None:
    await add_officers(app.pool)
    _, created = await app.cap(cap_alert())
    warning_id = created["warning_id"]
    await insert_deliveries(app.pool, warning_id)
    await sign_in(app, "zhang")
    page = await (await app.client.get(f"/console/warnings/{warning_id}")).text()
    assert f'href="?level=town&amp;within={COUNTY}"' in page  # 任城区 opens into its towns
    towns = await (
        await app.client.get(f"/console/warnings/{warning_id}?level=town&within={COUNTY}")
    ).text()
    assert '<b id="within-name">任城区</b>' in towns
    assert f'href="?level=village&amp;within={TOWN}"' in towns
    assert f"within={COUNTY}" in re.findall(r'data-live="([^"]+)"', towns)[0]
    villages = await (
        await app.client.get(f"/console/warnings/{warning_id}?level=village&within={TOWN}")
    ).text()
    assert f'href="/console/roster/{VILLAGE_1}">张庄村</a>' in villages
    path = f"/console/live/warnings/{warning_id}?level=village&within={TOWN}"
    async with app.client.get(path) as response:
        first = b""
        while not first.endswith(b"\n\n"):
            first += await response.content.readline()
    assert "张庄村" in first.decode() and "许庄街道" in first.decode()


async def test_the_roster_pages_find_a_division_and_list_who_answers_for_it(app: Api) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    found = await (await app.client.get("/console/roster", params={"q": "张庄"})).text()
    assert 'href="/console/roster/370811001201"' in found
    village = await (await app.client.get("/console/roster/370811001201")).text()
    assert "张书记" in village and 'href="tel:+8613900000004"' in village
    assert re.search(r'id="households">2<', village)
    county = await (await app.client.get("/console/roster/370811")).text()
    assert "任区长" in county and "许庄街道" in county
    missing = await app.client.get("/console/roster/370899")
    assert missing.status == 404 and "找不到" in await missing.text()
    assert (await app.client.get("/console/roster/37081")).status == 404  # not a code


async def test_a_warning_that_is_not_there_is_a_404_page_at_every_level(app: Api) -> None:
    # The page reads the warning, its roll-up and its lists side by side: whichever finds it
    # missing first answers, and it is a page for the officer, not an error trace.
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    for level in ("county", "town", "village"):
        missing = await app.client.get("/console/warnings/999999", params={"level": level})
        assert missing.status == 404 and "找不到" in await missing.text()
    assert await app.pool.fetchval("SELECT count(*) FROM warnings") == 0


def upload(token: str | None, *files: tuple[str, bytes]) -> aiohttp.FormData:
    """The roster upload form as a browser sends it: the CSRF token first, then the files."""
    data = aiohttp.FormData()
    if token is not None:
        data.add_field("csrf_token", token)
    for name, body in files:
        data.add_field("files", body, filename=name, content_type="text/csv")
    return data


VILLAGES = "行政区划代码,名称,纬度,经度\n370811001203,赵庄村,35.45,116.63\n".encode()


async def test_an_admin_uploads_a_roster_and_sees_what_it_brought(app: Api) -> None:
    await add_user(app.pool, "chief", ["admin"], PASSWORD, now=NOW)
    await sign_in(app, "chief")
    token = await csrf_of(app, "/console/roster")
    imported = await app.client.post(
        "/console/roster/import", data=upload(token, ("villages.csv", VILLAGES))
    )
    page = await imported.text()
    assert imported.status == 200, page
    assert 'id="imported"' in page and "村（社区）" in page
    assert (
        await app.pool.fetchval("SELECT name FROM divisions WHERE code = '370811001203'")
        == "赵庄村"
    )
    audit = await app.pool.fetchrow(
        "SELECT actor, detail FROM audit_log WHERE action = 'roster_imported'"
    )
    assert audit is not None and audit["actor"] == "chief"
    assert audit["detail"]["files"] == ["villages.csv"]

    exported = await app.client.get("/console/roster/export?format=csv")
    assert exported.status == 200
    assert exported.headers["Content-Type"] == "application/zip"
    assert exported.headers["Cache-Control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(await exported.read())) as archive:
        assert "赵庄村" in archive.read("divisions.csv").decode("utf-8-sig")
    assert (
        await app.pool.fetchval("SELECT actor FROM audit_log WHERE action = 'roster_exported'")
        == "chief"
    )


async def test_a_roster_upload_with_errors_lists_them_and_imports_nothing(app: Api) -> None:
    await add_user(app.pool, "chief", ["admin"], PASSWORD, now=NOW)
    await sign_in(app, "chief")
    token = await csrf_of(app, "/console/roster")
    bad = "行政区划代码,名称\n37081100120X,坏村\n".encode()
    refused = await app.client.post(
        "/console/roster/import",
        data=upload(token, ("villages.csv", VILLAGES), ("bad.csv", bad)),
    )
    page = await refused.text()
    assert refused.status == 422, page
    assert 'id="problems"' in page and "bad.csv" in page and "全部未导入" in page
    assert (
        await app.pool.fetchval("SELECT count(*) FROM divisions WHERE code = '370811001203'") == 0
    )
    for files, says in [
        ((("notes.txt", b"hello"),), "notes.txt"),
        ((("a.csv", VILLAGES), ("a.csv", VILLAGES)), "chosen twice"),
        ((), "files:"),  # no file chosen: not even an upload
    ]:
        response = await app.client.post("/console/roster/import", data=upload(token, *files))
        assert response.status == 422, files
        assert says in await response.text(), files
    assert (
        await app.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'roster_imported'")
        == 0
    )


async def test_a_roster_upload_needs_an_admin_and_its_token_first(app: Api) -> None:
    await add_officers(app.pool)
    await sign_in(app, "zhang")
    token = await csrf_of(app, "/console/roster")
    page = await (await app.client.get("/console/roster")).text()
    assert "导入、导出名册须管理员权限" in page
    assert (await app.client.get("/console/roster/export")).status == 403
    officer = await app.client.post(
        "/console/roster/import", data=upload(token, ("villages.csv", VILLAGES))
    )
    assert officer.status == 403
    await add_user(app.pool, "chief", ["admin"], PASSWORD, now=NOW)
    await sign_in(app, "chief")
    token = await csrf_of(app, "/console/roster")
    late = aiohttp.FormData()
    late.add_field("files", VILLAGES, filename="villages.csv", content_type="text/csv")
    late.add_field("csrf_token", token)
    assert (await app.client.post("/console/roster/import", data=late)).status == 403
    assert (await app.client.post("/console/roster/import", data=upload(None))).status == 403
    elsewhere = await app.client.post(
        "/console/warnings", data=upload(token, ("villages.csv", VILLAGES))
    )
    assert elsewhere.status == 422
    # A forged body: multipart without a boundary, or cut off inside a part.
    for headers, body in [
        ({"Content-Type": "multipart/form-data"}, b"csrf_token=x"),
        (
            {"Content-Type": "multipart/form-data; boundary=b"},
            f'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}'.encode(),
        ),
    ]:
        forged = await app.client.post("/console/roster/import", data=body, headers=headers)
        assert forged.status in (403, 422), await forged.text()
    long_name = "x" * 300 + ".csv"
    too_long = await app.client.post(
        "/console/roster/import", data=upload(token, (long_name, VILLAGES))
    )
    assert too_long.status == 422 and "longer than" in await too_long.text()
    assert (
        await app.pool.fetchval("SELECT count(*) FROM divisions WHERE code = '370811001203'") == 0
    )


async def test_over_tls_the_console_cookies_are_secure(seeded: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "warnd.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "warnd.key"))
    config = AppConfig.model_validate(
        {"http": {"tls_cert": "warnd.pem", "tls_key": "warnd.key"}}, context={"base": tmp_path}
    )
    daemon = Daemon(
        Settings(http_port=0),
        simulate=True,
        config=config,
        channels=make_channels({}, simulate=True),
    )
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    jar = aiohttp.CookieJar(unsafe=True)
    async with daemon.running(seeded) as services, aiohttp.ClientSession(cookie_jar=jar) as http:
        await add_user(services.pool, "zhang", ["officer"], PASSWORD, now=NOW)
        base = f"https://127.0.0.1:{daemon.port}/console"
        async with http.get(f"{base}/login", ssl=trust) as response:
            assert "; Secure" in response.headers["Set-Cookie"]
            found = _CSRF.search(await response.text())
        assert found is not None
        form = {"csrf_token": found[1], "username": "zhang", "password": PASSWORD}
        async with http.post(
            f"{base}/login", data=form, ssl=trust, allow_redirects=False
        ) as response:
            assert response.status == 303
            session = [c for c in response.headers.getall("Set-Cookie") if "warnd_session=" in c]
        assert len(session) == 1
        assert all(flag in session[0] for flag in ("; Secure", "; HttpOnly", "SameSite=Strict"))


def test_the_time_chart_is_cumulative_and_flat_between_buckets() -> None:
    start = datetime(2026, 7, 29, 2, 0, tzinfo=UTC)
    minute = timedelta(minutes=1)
    line = Timeline(
        start=start,
        end=start + 10 * minute,
        bucket=minute,
        delivered=[(start + 2 * minute, 3), (start + 4 * minute, 1)],
        answered=[],
    )
    drawn = chart(line)
    assert drawn.delivered_total == 4 and drawn.answered_total == 0 and drawn.top == 4
    assert drawn.answered == ""
    points = [tuple(map(float, p.split(","))) for p in drawn.delivered.split()]
    ys = [y for _, y in points]
    assert ys[0] == ys[1]  # nothing before the first bucket
    assert ys[-1] == ys[-2] == min(ys)  # the top, held until now
    assert [x for x, _ in points] == sorted(x for x, _ in points)
