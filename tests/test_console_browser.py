"""The duty officer's round in a real browser: Debian's chromium driven by Playwright against a
whole warnd (planner, dispatch, escalation, simulated phones and loudspeakers) on the seed roster.

Sign in → compose a red warning for 任城区 → the preview counts → submit → a second officer
approves by typing the county → the board's figures move without a reload (SSE) → an answer
obtained by phone is recorded from the 未叫应名单 → cancel (解除), its notice shown first and
approved by the second officer. Then an exercise: every page of it carries the 演练 watermark.

Screenshots of each page go to the test's folder; with WARND_CONSOLE_SCREENSHOTS=docs/console
they are written there instead (how the README's pictures are made).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests import seed
from tests.peers import require_chromium
from tests.waiting import until
from warnd.app.users import add_user
from warnd.core.clock import ScaledClock
from warnd.core.config import load_config_data
from warnd.runtime.daemon import Daemon, make_channels
from warnd.runtime.settings import Settings

# Drill time runs 60 times faster: a village head's 10-minute deadline passes in 10 s.
SPEED = 60.0
PASSWORD = "console-pass-123"
SILENT_HEAD = "+8613900000006"  # 李书记 of 李庄村: never answers, so he is on the 未叫应名单
SILENT_TOWN = "+8613900000003"  # 许镇长, his superior, who would otherwise answer for him
SIM = {
    "type": "simulator",
    "time_scale": 0.001,
    "deliver_probability": 1.0,
    "reply_probability": 1.0,
    "answer_probability": 1.0,
    "press_one_probability": 1.0,
    "play_probability": 1.0,
    "behaviours": {SILENT_HEAD: "never", SILENT_TOWN: "never"},
}


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    wanted = os.environ.get("WARND_CONSOLE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def warnd(seeded: str) -> AsyncIterator[tuple[Daemon, str]]:
    channels = make_channels(
        {
            f"sim-{k}": {**SIM, "kind": k, "seed": i}
            for i, k in enumerate(("sms", "voice", "broadcast"))
        },
        simulate=True,
    )
    config = load_config_data({}, source=Path("<test>"))
    clock = ScaledClock(SPEED, datetime.now(UTC))
    daemon = Daemon(
        Settings(http_port=0), simulate=True, config=config, channels=channels, clock=clock
    )
    async with daemon.running(seeded) as services:
        await add_user(services.pool, "zhang", ["officer"], PASSWORD, now=clock.now())
        await add_user(services.pool, "li", ["approver", "officer"], PASSWORD, now=clock.now())
        yield daemon, f"http://127.0.0.1:{daemon.port}/console"


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_officers_round_in_chromium(warnd: tuple[Daemon, str], shots: Path) -> None:
    chromium = require_chromium()
    from playwright.async_api import Page, async_playwright, expect

    daemon, base = warnd
    services = daemon.services
    assert services is not None
    pool = services.pool

    async def sign_in(page: Page, name: str) -> None:
        await page.goto(f"{base}/login")
        await page.fill("input[name=username]", name)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("span.who")).to_contain_text(name)

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, headless=True)
        officer = await (
            await browser.new_context(viewport={"width": 1280, "height": 900})
        ).new_page()
        approver = await (
            await browser.new_context(viewport={"width": 1280, "height": 900})
        ).new_page()
        errors: list[str] = []
        for page in (officer, approver):
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status == 404 else None,
            )

        await officer.goto(f"{base}/login")
        await officer.screenshot(path=shots / "login.png")
        await sign_in(officer, "zhang")

        # Compose: pick 任城区 from the searchable list; the texts are prefilled.
        await officer.click("text=发布预警")
        await officer.fill("input[name=q]", "任城")
        pick = officer.locator(f"button.pick[data-code='{seed.RENCHENG}']")
        await pick.click()
        await expect(officer.locator("#chosen input[name=codes]")).to_have_value(seed.RENCHENG)
        await expect(officer.locator("input[name=area_desc]")).to_have_value("任城区")
        # What the area holds, before anything is stored.
        await expect(officer.locator("#area-villages")).to_have_text("2")
        await expect(officer.locator("#area-households")).to_have_text("5")
        await expect(officer.locator("#area-responders")).to_have_text("6")
        await officer.select_option("select[name=level]", "red")
        await expect(officer.locator("input[name=headline]")).to_have_value("任城区暴雨红色预警")
        await officer.screenshot(path=shots / "compose.png", full_page=True)
        await officer.click("button:has-text('提交审批（审批前不发送）')")

        # The preview: the people per audience, before anything is sent; the author cannot
        # approve.
        await expect(officer.locator("#preview")).to_be_visible()
        warning_id = int(officer.url.rsplit("/", 1)[1])
        total = int(await officer.locator("#total-recipients").inner_text())
        assert total > 0
        responders = officer.locator("td[data-audience=responder]")
        await expect(responders).to_have_text(str(len(seed.RED_RAINSTORM_RENCHENG["responder"])))
        await expect(officer.locator("#own-warning")).to_be_visible()
        assert await officer.locator("input[name=area_confirm]").count() == 0
        assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
        await officer.screenshot(path=shots / "preview.png", full_page=True)

        # The officer watches the board; a second officer approves by typing the county.
        await officer.goto(f"{base}/")
        board_warning = officer.locator(f"article[data-warning='{warning_id}']")
        await expect(board_warning).to_have_count(0)
        await sign_in(approver, "li")
        await approver.click(f"a[href='/console/warnings/{warning_id}']")
        await approver.fill("input[name=area_confirm]", "任城区")
        await approver.screenshot(path=shots / "approve.png", full_page=True)
        await approver.click("button:has-text('审批并发送')")
        await expect(approver.locator("h1 .state")).to_have_text("生效中")

        # The board moves by itself (SSE): deliveries and answers come in.
        await expect(board_warning).to_have_count(1, timeout=30_000)
        delivered = board_warning.locator(".delivered-count")
        await expect(delivered).not_to_have_text("0", timeout=30_000)
        await expect(board_warning.locator(".answered-count")).not_to_have_text("0", timeout=30_000)
        await officer.screenshot(path=shots / "board.png", full_page=True)

        # 李书记 never answers: once his deadline has passed he is on the 未叫应名单.
        overdue = (
            "SELECT count(*) FROM callouts WHERE phone = $1 AND deadline < $2 "
            "AND state IN ('pending', 'notified', 'escalated')"
        )
        await until(
            lambda: pool.fetchval(overdue, SILENT_HEAD, daemon.clock.now()),
            40,
            what="李书记's call-out to be overdue",
        )
        await officer.goto(f"{base}/warnings/{warning_id}")
        row = officer.locator("#overdue tr", has_text="李书记")
        await expect(row).to_have_count(1)
        await expect(row.locator("a.phone")).to_have_text(SILENT_HEAD)
        # The time chart, loaded after the page: deliveries and answers so far.
        await expect(officer.locator("#chart-delivered")).not_to_have_text("0")
        await expect(officer.locator("svg.chart polyline.answered")).to_have_count(1)
        await officer.screenshot(path=shots / "warning.png", full_page=True)
        # 一张图: 李庄村 red (overdue), 张庄村 by where its people stand.
        await officer.click("text=一张图")
        await expect(officer.locator("svg.map circle.village")).to_have_count(2)
        await expect(
            officer.locator(f"circle.village[data-code='{seed.VILLAGE_R2}']")
        ).to_have_class("village overdue")
        await officer.screenshot(path=shots / "map.png", full_page=True)
        await officer.go_back()
        row = officer.locator("#overdue tr", has_text="李书记")
        await row.locator("input[name=reason]").fill("电话联系李书记本人，已收到并开始鸣锣")
        await row.locator("button:has-text('记录应答')").click()
        await expect(officer.locator("#overdue tr", has_text="李书记")).to_have_count(0)
        answered = await pool.fetchrow(
            "SELECT state, ack_via, ack_by FROM callouts WHERE phone = $1", SILENT_HEAD
        )
        assert answered is not None
        assert tuple(answered) == ("acknowledged", "officer", "zhang")
        audited = await pool.fetchval(
            "SELECT actor FROM audit_log WHERE action = 'callout_acknowledged'"
        )
        assert audited == "zhang"

        # 解除: the notice texts first, then the cancel, which a second officer approves.
        await officer.click("text=解除…")
        notices = officer.locator(".notice-text pre")
        await expect(notices.first).to_contain_text("解除")
        await officer.fill("form[method=post] input[name=reason]", "降雨已停止，险情解除")
        await officer.screenshot(path=shots / "cancel.png", full_page=True)
        await officer.click("button:has-text('确认解除')")
        await expect(officer.locator("h1 .state")).to_have_text("待审批")
        cancel_id = int(officer.url.rsplit("/", 1)[1])
        # The warning itself says its cancel waits, and offers no second cancel.
        await officer.goto(f"{base}/warnings/{warning_id}")
        await expect(officer.locator(".pending-amendment")).to_contain_text(f"#{cancel_id}")
        await expect(officer.locator("text=解除…")).to_have_count(0)
        await approver.goto(f"{base}/warnings/{cancel_id}")
        await approver.fill("input[name=area_confirm]", "任城区")
        await approver.click("button:has-text('审批并发送')")
        state = "SELECT state = 'cancelled' FROM warnings WHERE id = $1"
        await until(
            lambda: pool.fetchval(state, warning_id),
            what="the warning to be cancelled",
        )
        await approver.goto(f"{base}/warnings/{warning_id}")
        await expect(approver.locator("h1 .state")).to_have_text("已解除")
        # Nothing on a live warning's pages says exercise.
        await expect(approver.locator(".watermark")).to_be_hidden()

        # An exercise: the band and the watermark on its every page.
        await officer.goto(f"{base}/compose")
        await officer.check("input[name=status][value=Exercise]")
        await expect(officer.locator(".watermark")).to_be_visible()
        await officer.fill("input[name=q]", "张庄")
        await officer.locator(f"button.pick[data-code='{seed.VILLAGE_R1}']").click()
        await officer.select_option("select[name=level]", "blue")
        # 预览 before anything is stored (no confirmation needed to look): who, and what.
        await officer.click("#preview-button")
        await expect(officer.locator("#preview #total-recipients")).to_be_visible()
        await expect(officer.locator("#chosen input[name=codes]")).to_have_value(seed.VILLAGE_R1)
        await expect(officer.locator(".watermark")).to_be_visible()  # still an exercise
        assert await pool.fetchval("SELECT count(*) FROM warnings WHERE level = 'blue'") == 0
        await officer.screenshot(path=shots / "compose-preview.png", full_page=True)
        # A blue warning goes out at once: the form asks the officer to confirm first.
        await expect(officer.locator("button:has-text('立即发布')")).to_be_visible()
        await officer.check("input[name=confirm_now]")
        await officer.click("button:has-text('立即发布')")
        await expect(officer.locator(".band-exercise")).to_be_visible()
        await expect(officer.locator(".watermark")).to_be_visible()
        await expect(officer.locator("h1 .exercise-chip")).to_have_text("演练")
        exercise_id = int(officer.url.rsplit("/", 1)[1])
        assert (
            await pool.fetchval("SELECT status FROM warnings WHERE id = $1", exercise_id)
            == "Exercise"
        )
        await officer.screenshot(path=shots / "exercise.png", full_page=True)
        await officer.goto(f"{base}/warnings/{exercise_id}/cancel")
        await expect(officer.locator(".watermark")).to_be_visible()

        # 名册: who answers for 李庄村, with the phones to call.
        await officer.click("text=名册")
        await officer.fill("input[name=q]", "李庄")
        await officer.click("button:has-text('查找')")
        await officer.click(f"a[href='/console/roster/{seed.VILLAGE_R2}']")
        await expect(officer.locator("#responders")).to_contain_text("李书记")
        await officer.screenshot(path=shots / "roster.png", full_page=True)

        await browser.close()
    assert errors == []  # no script error, no CSP violation


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_an_area_is_drawn_on_the_compose_map_in_chromium(
    warnd: tuple[Daemon, str], shots: Path
) -> None:
    chromium = require_chromium()
    from playwright.async_api import async_playwright, expect

    daemon, base = warnd
    assert daemon.services is not None
    pool = daemon.services.pool
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, headless=True)
        page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(f"{base}/login")
        await page.fill("input[name=username]", "zhang")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.click("text=发布预警")

        drawing = page.locator("#draw-map")
        box = await drawing.bounding_box()
        assert box is not None
        corners = [(0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7)]
        for fx, fy in corners:
            await drawing.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
        vertices = (await page.input_value("input[name=polygon]")).split()
        assert len(vertices) == 4
        points = [tuple(map(float, v.split(","))) for v in vertices]
        # North up, east right: the first click (top left) is north and west of the third.
        assert points[0][0] > points[2][0] and points[0][1] < points[2][1]
        shown = await page.get_attribute("#drawn-polygon", "points")
        assert shown is not None and len(shown.split()) == 4

        await page.check("input[name=draw_mode][value=circle]")
        await drawing.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
        await drawing.click(position={"x": box["width"] * 0.6, "y": box["height"] * 0.5})
        circle = (await page.input_value("input[name=circle]")).split()
        assert len(circle) == 2 and float(circle[1]) > 0
        await expect(page.locator("#drawn-circle")).not_to_have_attribute("r", "0")
        await page.screenshot(path=shots / "compose-draw.png", full_page=True)

        await page.fill("input[name=area_desc]", "所画区域")
        await page.click("button:has-text('提交审批（审批前不发送）')")
        await expect(page.locator("h1")).to_contain_text("暴雨")
        area = await pool.fetchval("SELECT area FROM warnings ORDER BY id DESC LIMIT 1")
        assert len(area["polygons"][0]) == 5  # closed for the officer
        assert len(area["circles"]) == 1
        await browser.close()
    assert errors == []
