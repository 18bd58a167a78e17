"""Alarm integrity (issue 15): the rules that keep a tired click, a drill or a hostile feed from
alarming people falsely, or from silencing a real warning."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests import seed
from tests.fixtures import (
    APPROVER_TOKEN,
    CHIEF_TOKEN,
    DAYTIME,
    LIMITS,
    NOW,
    OFFICER_TOKEN,
    Api,
    cap_alert,
    escalate_until,
    manual,
    preview,
    rainstorm,
    seed_roster,
)
from warnd.app.metrics import Metrics
from warnd.app.services import Services
from warnd.core.clock import ManualClock
from warnd.core.config import AppConfig
from warnd.core.errors import ConfigError
from warnd.ingest.store import store_warning
from warnd.pipeline.answers import Answers
from warnd.pipeline.escalation import Escalation
from warnd.pipeline.planner import Planner
from warnd.policy.loader import PolicyHolder
from warnd.policy.model import Policy
from warnd.runtime.daemon import Daemon, make_channels
from warnd.runtime.settings import REPO_CONFIG_DIR, Settings
from warnd.web.app import build_app
from warnd.web.routing import API


@pytest.fixture
def api(app: Api) -> Api:
    """The API on the small roster (conftest's ``app``), under this module's name for it."""
    return app


def test_simulate_refuses_a_real_channel_in_the_config(tmp_path: Path) -> None:
    """--simulate with a real channel configured used to send for real, and with
    WARND_TIME_SCALE escalate 60 times faster against real phones."""
    tables = {
        "trail": {"type": "log", "kind": "sms", "path": str(tmp_path / "sms.jsonl")},
        "sim": {"type": "simulator", "kind": "voice"},
    }
    with pytest.raises(ConfigError, match=r"--simulate.*real channels: trail"):
        make_channels(tables, simulate=True)


def test_a_simulated_daemon_refuses_real_channels_handed_to_it(tmp_path: Path) -> None:
    real = make_channels(
        {"trail": {"type": "log", "kind": "sms", "path": str(tmp_path / "sms.jsonl")}},
        simulate=False,
    )
    with pytest.raises(ConfigError, match="real channels: trail"):
        Daemon(Settings(http_port=0, time_scale=60), simulate=True, channels=real)


# --- the two-person rule, whole ----------------------------------------------------------------


async def issue_red(api: Api) -> int:
    """A red manual warning issued by zhang and approved by li: active, as in use."""
    status, body = await api.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("red"))
    assert status == 201 and body["status"] == "pending_approval", body
    await approve(api, body["warning_id"])
    return int(body["warning_id"])


async def approve(api: Api, warning_id: int, token: str = CHIEF_TOKEN) -> dict[str, Any]:
    """Approve as a second officer does: read the preview, name its texts."""
    read = await preview(api, warning_id)
    status, body = await api.call(
        "POST",
        f"{API}/warnings/{warning_id}/approve",
        token,
        {"texts_sha256": read["texts_sha256"]},
    )
    assert status == 200, body
    return body


async def state_of(api: Api, warning_id: int) -> str:
    state = await api.pool.fetchval("SELECT state FROM warnings WHERE id = $1", warning_id)
    assert isinstance(state, str)
    return state


async def test_a_content_correction_of_a_red_warning_waits_for_a_second_officer(api: Api) -> None:
    """One officer alone used to send new words to everyone a red warning had reached."""
    red = await issue_red(api)
    status, body = await api.call(
        "POST",
        f"{API}/warnings/{red}/correct",
        OFFICER_TOKEN,
        {"reason": "补充转移地点", "instruction": "立即转移到镇中学避险"},
    )
    assert status == 201 and body["status"] == "pending_approval", body
    correction = body["warning_id"]
    # Until approved the red warning stays in force, unchanged, and nothing new is queued.
    assert await state_of(api, red) == "active"
    assert await api.count("deliveries") == 0
    assert (
        await api.pool.fetchval(
            "SELECT count(*) FROM warnings WHERE plan_state <> 'none' AND id = $1", correction
        )
        == 0
    )
    # The officer who asked cannot approve it; the approval is by a second officer.
    read = await preview(api, correction)
    status, refused = await api.call(
        "POST",
        f"{API}/warnings/{correction}/approve",
        OFFICER_TOKEN,
        {"texts_sha256": read["texts_sha256"]},
    )
    assert status == 403, refused
    approved = await approve(api, correction)
    assert approved["status"] == "active"
    assert await state_of(api, red) == "superseded"
    row = await api.pool.fetchrow(
        "SELECT approver, amends_id, instruction FROM warnings WHERE id = $1", correction
    )
    assert row is not None and row["approver"] == "li" and row["amends_id"] == red
    assert row["instruction"] == "立即转移到镇中学避险"


@pytest.mark.parametrize(
    "change",
    [
        {"level": "orange"},  # lower, with the templates' fixed texts
        {"expires": "2026-07-29T04:00:00+08:00"},  # earlier than the warning's own
        {"level": "yellow", "expires": "2026-07-29T04:00:00+08:00"},
    ],
)
async def test_what_reduces_harm_without_new_words_goes_at_once(
    api: Api, change: dict[str, str]
) -> None:
    red = await issue_red(api)
    await api.pool.execute(
        "UPDATE warnings SET expires = '2026-07-29T08:00:00+08:00' WHERE id = $1", red
    )
    status, body = await api.call(
        "POST", f"{API}/warnings/{red}/correct", OFFICER_TOKEN, {"reason": "雨势减弱", **change}
    )
    assert status == 201 and body["status"] == "active", body
    assert await state_of(api, red) == "superseded"


async def test_a_later_expiry_of_a_red_warning_waits(api: Api) -> None:
    red = await issue_red(api)
    await api.pool.execute(
        "UPDATE warnings SET expires = '2026-07-29T08:00:00+08:00' WHERE id = $1", red
    )
    status, body = await api.call(
        "POST",
        f"{API}/warnings/{red}/correct",
        OFFICER_TOKEN,
        {"reason": "延长", "expires": "2026-07-29T20:00:00+08:00"},
    )
    assert status == 201 and body["status"] == "pending_approval", body
    assert await state_of(api, red) == "active"


async def test_a_correction_of_a_blue_warning_goes_at_once(api: Api) -> None:
    status, body = await api.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("blue"))
    assert status == 201 and body["status"] == "active", body
    status, corrected = await api.call(
        "POST",
        f"{API}/warnings/{body['warning_id']}/correct",
        OFFICER_TOKEN,
        {"reason": "措辞", "headline": "任城区暴雨蓝色预警（更正）"},
    )
    assert status == 201 and corrected["status"] == "active", corrected


async def test_a_cancel_of_a_red_warning_waits_and_ends_it_only_when_approved(api: Api) -> None:
    red = await issue_red(api)
    status, body = await api.call(
        "POST", f"{API}/warnings/{red}/cancel", OFFICER_TOKEN, {"reason": "雨停了"}
    )
    assert status == 201 and body["status"] == "pending_approval", body
    assert await state_of(api, red) == "active"
    approved = await approve(api, body["warning_id"])
    assert approved["status"] == "muted"  # a Cancel alarms nobody; its notices are planned
    assert await state_of(api, red) == "cancelled"
    actions = [
        r["action"]
        for r in await api.pool.fetch(
            "SELECT action FROM audit_log WHERE subject = $1 ORDER BY id", f"warning:{red}"
        )
    ]
    assert "warning_cancelled_requested" in actions


async def test_withdrawing_a_warning_still_waiting_needs_nobody_else(api: Api) -> None:
    status, body = await api.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("red"))
    waiting = body["warning_id"]
    status, cancelled = await api.call(
        "POST", f"{API}/warnings/{waiting}/cancel", OFFICER_TOKEN, {"reason": "发错了"}
    )
    assert status == 201 and cancelled["status"] == "muted", cancelled
    assert await state_of(api, waiting) == "cancelled"


async def test_an_approver_alone_can_refuse_but_not_cancel_or_correct(api: Api) -> None:
    red = await issue_red(api)
    for action, change in (
        ("cancel", {"reason": "雨停了"}),
        ("correct", {"reason": "x", "level": "blue"}),
    ):
        status, refused = await api.call(
            "POST", f"{API}/warnings/{red}/{action}", APPROVER_TOKEN, change
        )
        assert status == 403, (action, refused)
    status, body = await api.call(
        "POST", f"{API}/warnings/{red}/cancel", OFFICER_TOKEN, {"reason": "雨停了"}
    )
    cancel = body["warning_id"]
    status, rejected = await api.call(
        "POST", f"{API}/warnings/{cancel}/reject", APPROVER_TOKEN, {"reason": "雨还在下"}
    )
    assert status == 200 and rejected["status"] == "rejected", rejected
    # The refused cancel leaves the red warning in force.
    assert await state_of(api, red) == "active"
    assert await state_of(api, cancel) == "rejected"
    status, again = await api.call(
        "POST", f"{API}/warnings/{cancel}/reject", APPROVER_TOKEN, {"reason": "再次"}
    )
    assert status == 409, again


async def test_approval_names_the_texts_it_read(api: Api) -> None:
    status, body = await api.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("red"))
    warning_id = body["warning_id"]
    read = await preview(api, warning_id)
    assert read["texts"] and all(t["body"] for t in read["texts"])
    path = f"{API}/warnings/{warning_id}/approve"
    status, refused = await api.call("POST", path, CHIEF_TOKEN, {})
    assert status == 422, refused
    status, refused = await api.call("POST", path, CHIEF_TOKEN, {"texts_sha256": "0" * 64})
    assert (status, refused["error"]) == (409, "texts_changed")
    assert await state_of(api, warning_id) == "pending_approval"
    status, approved = await api.call(
        "POST", path, CHIEF_TOKEN, {"texts_sha256": read["texts_sha256"]}
    )
    assert status == 200, approved
    # What was approved is stored as the warning's messages and in the audit log, word for word.
    stored = {
        (r["audience"], r["channel_kind"]): r["body"]
        for r in await api.pool.fetch(
            "SELECT audience, channel_kind, body FROM messages WHERE warning_id = $1", warning_id
        )
    }
    assert stored == {(t["audience"], t["channel_kind"]): t["body"] for t in read["texts"]}
    detail = await api.pool.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'warning_approved' AND subject = $1",
        f"warning:{warning_id}",
    )
    assert detail["texts_sha256"] == read["texts_sha256"]
    assert {t["body"] for t in detail["texts"]} == {t["body"] for t in read["texts"]}


async def test_a_cancel_whose_reason_holds_a_nul_changes_nothing(api: Api) -> None:
    """It used to answer 500 after the cancel had committed, with no audit entry."""
    status, body = await api.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("blue"))
    blue = body["warning_id"]
    before = await api.count("audit_log")
    status, refused = await api.call(
        "POST", f"{API}/warnings/{blue}/cancel", OFFICER_TOKEN, {"reason": "雨停\u0000了"}
    )
    assert status == 422 and refused["detail"].startswith("reason"), refused
    assert await state_of(api, blue) == "active"
    assert await api.count("audit_log") == before


# --- drills and live warnings never mix --------------------------------------------------------


async def live_and_drill(pool: asyncpg.Pool, policy: Policy) -> tuple[int, int]:
    """A live and an exercise red rainstorm for 任城区, planned: the village head 张书记
    (+8613900000004, marked for exercises) has a call-out open in each."""
    async with pool.acquire() as conn:
        await seed.seed(conn)
    ids = []
    for status in ("Actual", "Exercise"):
        stored = await store_warning(pool, rainstorm(status=status), source="test", now=DAYTIME)
        ids.append(stored.warning_id)
    await Planner(pool, lambda: policy, ManualClock(DAYTIME), LIMITS).plan_pending()
    return ids[0], ids[1]


async def open_callout(pool: asyncpg.Pool, warning_id: int, phone: str) -> bool:
    state = await pool.fetchval(
        "SELECT state FROM callouts WHERE warning_id = $1 AND phone = $2", warning_id, phone
    )
    assert state is not None
    return bool(state != "acknowledged")


async def test_a_plain_answer_with_a_live_and_a_drill_open_answers_neither(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """A "1" used to acknowledge both: a drill closed a live call-out."""
    live, drill = await live_and_drill(pool, policy)
    head = "+8613900000004"
    answers = Answers(pool, ManualClock(DAYTIME + timedelta(minutes=1)))
    answer = await answers.answer_sms(head, "1")
    assert answer.kind == "ambiguous" and answer.callouts == ()
    assert await open_callout(pool, live, head) and await open_callout(pool, drill, head)


async def test_an_answer_naming_the_drill_closes_only_the_drill(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    live, drill = await live_and_drill(pool, policy)
    head = "+8613900000004"
    codes = {
        r["id"]: r["short_code"]
        for r in await pool.fetch(
            "SELECT id, short_code FROM warnings WHERE id = ANY($1)", [live, drill]
        )
    }
    answers = Answers(pool, ManualClock(DAYTIME + timedelta(minutes=1)))
    answer = await answers.answer_sms(head, f"收到{codes[drill]}")
    assert answer.kind == "ack" and len(answer.callouts) == 1
    assert await open_callout(pool, live, head) and not await open_callout(pool, drill, head)
    # …and naming the live one closes the live one only.
    answer = await answers.answer_sms(head, f"1{codes[live]}")
    assert answer.kind == "ack" and len(answer.callouts) == 1
    assert not await open_callout(pool, live, head)


async def test_a_plain_answer_to_a_drill_alone_still_counts(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    drill = (
        await store_warning(pool, rainstorm(status="Exercise"), source="test", now=DAYTIME)
    ).warning_id
    await Planner(pool, lambda: policy, ManualClock(DAYTIME), LIMITS).plan_pending()
    answers = Answers(pool, ManualClock(DAYTIME + timedelta(minutes=1)))
    assert (await answers.answer_sms("+8613900000004", "1")).kind == "ack"
    assert not await open_callout(pool, drill, "+8613900000004")


async def test_a_stand_in_answers_only_when_their_message_went_out(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """A backup's "1" used to close the call-out their escalation was for even when that
    message was still queued, failed or cancelled: they had never been told."""
    async with pool.acquire() as conn:
        await seed.seed(conn)
    live = (await store_warning(pool, rainstorm(), source="test", now=DAYTIME)).warning_id
    await Planner(pool, lambda: policy, ManualClock(DAYTIME), LIMITS).plan_pending()
    clock = ManualClock(DAYTIME)
    await escalate_until(Escalation(pool, clock), clock, 20)  # repeat, then the backup B角
    head, backup = "+8613900000004", "+8613900000005"
    to_backup = await pool.fetch(
        "SELECT d.id FROM deliveries d JOIN callouts c ON c.id = d.callout_id "
        "WHERE d.audience = 'escalation' AND d.address = $1 AND c.phone = $2",
        backup,
        head,
    )
    assert to_backup, "the escalation reached the backup's step"
    answers = Answers(pool, clock)
    # Queued, failed or cancelled: the backup was never reached.
    for state in ("queued", "failed", "cancelled"):
        await pool.execute(
            "UPDATE deliveries SET state = $2 WHERE id = ANY($1)",
            [r["id"] for r in to_backup],
            state,
        )
        await answers.answer_sms(backup, "1")
        assert await open_callout(pool, live, head), state
    await pool.execute(
        "UPDATE deliveries SET state = 'sent' WHERE id = ANY($1)", [r["id"] for r in to_backup]
    )
    answer = await answers.answer_sms(backup, "1")
    assert not await open_callout(pool, live, head)
    acked = await pool.fetchval(
        "SELECT ack_by FROM callouts WHERE warning_id = $1 AND phone = $2", live, head
    )
    assert acked == backup and answer.callouts


# --- a feed's messages are its own -------------------------------------------------------------

CMA_TOKEN = "feed-token-cma-aaaaaaaaaa"
FLOOD_TOKEN = "feed-token-flood-bbbbbbbbb"


async def two_feeds(pool: asyncpg.Pool, policy: Policy, *, cma_senders: list[str]) -> Api:
    """The API with two feeds: cma (its senders as given) and flood (no list)."""
    config = AppConfig.model_validate(
        {
            "feeds": {
                "cma": {"token": CMA_TOKEN, "senders": cma_senders},
                "flood": {"token": FLOOD_TOKEN},
            }
        }
    )
    services = Services(
        pool=pool,
        config=config,
        policy=PolicyHolder(REPO_CONFIG_DIR / "policy.toml", policy),
        clock=ManualClock(NOW),
        metrics=Metrics(),
    )
    client = TestClient(TestServer(build_app(services)))
    await client.start_server()
    return Api(client, services, pool)


async def test_a_feed_cannot_post_as_a_sender_another_feed_owns(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """flood used to post cma's message first, and cma's real one was then a "duplicate"."""
    await seed_roster(pool)
    api = await two_feeds(pool, policy, cma_senders=["37080041600000"])
    try:
        status, body = await api.cap(cap_alert(), token=FLOOD_TOKEN)
        assert (status, body["error"]) == (403, "sender_not_allowed"), body
        assert await api.count("warnings") == 0
        assert (
            await api.pool.fetchval("SELECT error FROM rejected_messages") == "sender_not_allowed"
        )
        status, body = await api.cap(cap_alert(), token=CMA_TOKEN)
        assert status == 201 and body["status"] == "active", body
    finally:
        await api.client.close()


async def test_a_feed_may_post_only_its_own_senders(pool: asyncpg.Pool, policy: Policy) -> None:
    await seed_roster(pool)
    api = await two_feeds(pool, policy, cma_senders=["jnqxt@cma.gov.cn"])
    try:
        status, body = await api.cap(cap_alert(), token=CMA_TOKEN)
        assert (status, body["error"]) == (403, "sender_not_allowed"), body
        assert "jnqxt@cma.gov.cn" in body["detail"]
        assert await api.count("warnings") == 0
    finally:
        await api.client.close()


async def test_duplicates_are_per_feed(pool: asyncpg.Pool, policy: Policy) -> None:
    """Without sender lists, one feed's message still cannot make another's a duplicate."""
    await seed_roster(pool)
    api = await two_feeds(pool, policy, cma_senders=[])
    try:
        first, _ = await api.cap(cap_alert(), token=FLOOD_TOKEN)
        real, body = await api.cap(cap_alert(), token=CMA_TOKEN)
        again, same = await api.cap(cap_alert(), token=CMA_TOKEN)
        assert (first, real, again) == (201, 201, 200), body
        assert same["warning_id"] == body["warning_id"]
        sources = await api.pool.fetch("SELECT source, state FROM warnings ORDER BY id")
        assert [(r["source"], r["state"]) for r in sources] == [
            ("flood", "active"),
            ("cma", "active"),
        ]
    finally:
        await api.client.close()


def test_two_feeds_cannot_list_one_sender() -> None:
    with pytest.raises(ValueError, match="both list sender"):
        AppConfig.model_validate(
            {
                "feeds": {
                    "cma": {"token": CMA_TOKEN, "senders": ["x"]},
                    "flood": {"token": FLOOD_TOKEN, "senders": ["x"]},
                }
            }
        )
