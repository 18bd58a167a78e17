"""Update and Cancel for the people already reached, read back from the database: notices on the
channel that reached each person, corrections instead of the whole warning again, call-outs and
field tasks carried over with their deadlines; and the officer's one-click cancel and correct."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from channels.base import ChannelKind
from tests import seed
from tests.fixtures import (
    APPROVER_TOKEN,
    DAYTIME,
    LIMITS,
    OFFICER_TOKEN,
    Api,
    RecordingChannel,
    cancel_of,
    manual,
    plan,
    preview,
    rainstorm,
)
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.core.model import Area, NormalisedWarning
from warnd.db.notify import Wakeup
from warnd.db.queries import sql
from warnd.ingest.store import store_warning
from warnd.pipeline.answers import Answers
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.planner import NOTICES_PER_CHUNK, Planner
from warnd.policy.model import Policy
from warnd.web.routing import API

LATER = DAYTIME + timedelta(minutes=5)
R1_PHONES = {"+8613800000001", "+8613800000002", "+8613800000003", "+8613800000004"}
R2_PHONES = {"+8613800000005", "+8613800000006"}


async def reach(pool: asyncpg.Pool, warning_id: int, condition: str) -> None:
    """Mark the deliveries matching ``condition`` as sent: the people a channel reached."""
    await pool.execute(
        f"UPDATE deliveries SET state = 'sent', sent_at = $2 WHERE warning_id = $1 AND {condition}",
        warning_id,
        DAYTIME,
    )


async def notices(pool: asyncpg.Pool, warning_id: int) -> dict[str, tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT d.address, d.channel_kind, d.notice, m.body FROM deliveries d "
        "JOIN messages m ON m.id = d.message_id WHERE d.warning_id = $1 AND d.notice IS NOT NULL",
        warning_id,
    )
    return {r["address"]: (r["channel_kind"], r["notice"], r["body"]) for r in rows}


def update_of(original: NormalisedWarning, codes: tuple[str, ...]) -> NormalisedWarning:
    return NormalisedWarning(
        **{
            **original.__dict__,
            "identifier": f"update-{original.identifier}",
            "msg_type": "Update",
            "sent": LATER,
            "area": Area(codes=codes),
            "description": "降雨范围缩小至张庄村。",
            "references": (f"{original.sender},{original.identifier},{original.sent.isoformat()}",),
        }
    )


async def plan_at(
    pool: asyncpg.Pool, policy: Policy, warning: NormalisedWarning, chunk: int = NOTICES_PER_CHUNK
) -> int:
    stored = await store_warning(pool, warning, source="test", now=LATER)
    planner = Planner(pool, lambda: policy, ManualClock(LATER), LIMITS, notices_per_chunk=chunk)
    await planner.plan_pending()
    return stored.warning_id


# The notices of a city-wide warning are written a range of the ended warning's deliveries at a
# time (one plan step each); with ranges of 2 ids the small roster takes many steps, and the
# people told, and how, must be exactly the same.
CHUNKS = pytest.mark.parametrize("chunk", [NOTICES_PER_CHUNK, 2], ids=["one step", "steps of 2"])


@CHUNKS
async def test_a_cancel_tells_exactly_those_reached_on_the_channel_that_reached_them(
    pool: asyncpg.Pool, policy: Policy, chunk: int
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    # Responders were reached by their call (their SMS still queued), households by SMS, the
    # loudspeaker played; facilities and field tasks were never sent.
    await reach(
        pool,
        warning_id,
        "((audience = 'responder' AND channel_kind = 'voice')"
        " OR (audience = 'household') OR audience = 'broadcast')",
    )
    cancel_id = await plan_at(pool, policy, cancel_of(rainstorm()), chunk)
    told = await notices(pool, cancel_id)
    steps = await pool.fetchval("SELECT plan_cursor FROM warnings WHERE id = $1", cancel_id)
    assert (steps > 1) == (chunk == 2)
    expected = {
        **dict.fromkeys(seed.RED_RAINSTORM_RENCHENG["responder"], "voice"),
        **dict.fromkeys(R1_PHONES | R2_PHONES, "sms"),
        seed.VILLAGE_R1: "broadcast",
    }
    assert {a: k for a, (k, _, _) in told.items()} == expected
    assert {n for _, n, _ in told.values()} == {"cancelled"}
    sms = next(body for kind, _, body in told.values() if kind == "sms")
    assert sms.startswith("【济宁市应急管理局】") and "预警已解除" in sms
    # nothing else of the cancelled warning goes out, and nobody is chased for an answer
    states = await pool.fetch(
        "SELECT DISTINCT state FROM deliveries WHERE warning_id = $1", warning_id
    )
    assert {r["state"] for r in states} == {"sent", "cancelled"}
    open_callouts = await pool.fetchval(
        "SELECT count(*) FROM callouts WHERE warning_id = $1 AND state <> 'closed'", warning_id
    )
    assert open_callouts == 0
    tasks = await pool.fetch("SELECT state FROM field_tasks WHERE warning_id = $1", warning_id)
    assert tasks and {r["state"] for r in tasks} == {"closed"}
    # the notices go out although the Cancel itself alarms nobody (it is muted)
    sms_channel = RecordingChannel("sms-1", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms_channel}, ManualClock(LATER), Metrics(), Wakeup())
    claimed = await dispatcher.claim(sms_channel, 100)
    assert {c.address for c in claimed} == R1_PHONES | R2_PHONES


@CHUNKS
async def test_an_update_corrects_the_reached_withdraws_the_outside_and_carries_callouts(
    pool: asyncpg.Pool, policy: Policy, chunk: int
) -> None:
    original = rainstorm()
    warning_id = await plan(pool, policy, original)
    # Everyone was reached by SMS and the loudspeaker; calls, facilities and tasks not yet.
    await reach(
        pool,
        warning_id,
        "(channel_kind IN ('sms', 'broadcast') AND audience <> 'facility'"
        " AND audience <> 'field_task')",
    )
    before = {
        r["phone"]: r
        for r in await pool.fetch("SELECT * FROM callouts WHERE warning_id = $1", warning_id)
    }
    clock = ManualClock(LATER)
    await Answers(pool, clock).answer_sms("+8613900000001", "1")  # the county head answered
    update_id = await plan_at(pool, policy, update_of(original, (seed.VILLAGE_R1,)), chunk)

    told = await notices(pool, update_id)
    inside = (seed.RED_RAINSTORM_RENCHENG["responder"] - {"+8613900000006"}) | R1_PHONES
    outside = {"+8613900000006"} | R2_PHONES  # 李庄村's responder and households
    assert {a for a, (_, n, _) in told.items() if n == "correction"} == inside | {seed.VILLAGE_R1}
    assert {a for a, (_, n, _) in told.items() if n == "withdrawn"} == outside
    assert all(
        kind == ("broadcast" if a == seed.VILLAGE_R1 else "sms") for a, (kind, _, _) in told.items()
    )
    correction = told["+8613800000001"][2]
    assert "（更新）" in correction and "降雨范围缩小至张庄村" in correction
    assert "不在预警范围内" in told["+8613800000005"][2]
    # The rest of the plan reaches only those never reached: no household gets the warning
    # twice; the school, never reached, gets the whole warning now.
    rest = await pool.fetch(
        "SELECT audience, address FROM deliveries WHERE warning_id = $1 AND notice IS NULL",
        update_id,
    )
    assert not {r["address"] for r in rest} & (inside | outside)
    assert "+8613700000001" in {r["address"] for r in rest if r["audience"] == "facility"}
    # Call-outs: carried over with their deadline and state, closed for those now outside.
    after = {
        r["phone"]: r
        for r in await pool.fetch(
            "SELECT * FROM callouts WHERE id = ANY($1)", [r["id"] for r in before.values()]
        )
    }
    for phone, row in after.items():
        if phone == "+8613900000006":
            assert (row["warning_id"], row["state"]) == (warning_id, "closed")
        else:
            assert row["warning_id"] == update_id
            assert row["deadline"] == before[phone]["deadline"]
    assert after["+8613900000001"]["state"] == "acknowledged"
    assert (
        await pool.fetchval("SELECT count(*) FROM callouts WHERE warning_id = $1", update_id)
        == len(after) - 1
    )  # none opened anew
    carried = await pool.fetch(
        "SELECT detail FROM callout_events WHERE kind = 'carried_over' AND callout_id = $1",
        after["+8613900000004"]["id"],
    )
    assert [(r["detail"]["from"], r["detail"]["to"]) for r in carried] == [(warning_id, update_id)]
    # The responders keep replying with the code they were given.
    codes = await pool.fetch(
        "SELECT id, short_code FROM warnings WHERE id = ANY($1)", [warning_id, update_id]
    )
    assert {r["short_code"] for r in codes} == {"A1"}
    answer = await Answers(pool, clock).answer_sms("+8613900000004", "收到A1")
    assert answer.callouts == (after["+8613900000004"]["id"],)
    # Field tasks: door-knocking in 张庄村 carries over; the gongs of 李庄村 are closed.
    tasks = {r["kind"]: r for r in await pool.fetch("SELECT * FROM field_tasks ORDER BY id")}
    assert (tasks["door_knock"]["warning_id"], tasks["door_knock"]["state"]) == (update_id, "open")
    assert (tasks["gong"]["warning_id"], tasks["gong"]["state"]) == (warning_id, "closed")


# --- the duty officer's one click -------------------------------------------------------------


async def test_an_officer_cancels_a_warning_once_with_a_reason(app: Api) -> None:
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("blue"))
    assert status == 201, body
    warning_id = body["warning_id"]
    path = f"{API}/warnings/{warning_id}/cancel"
    status, bad = await app.call("POST", path, OFFICER_TOKEN, {"message": "降雨减弱"})
    assert status == 422 and "reason" in bad["detail"]
    status, cancel = await app.call(
        "POST", path, OFFICER_TOKEN, {"reason": "误发：区域选错", "message": "降雨减弱"}
    )
    assert status == 201, cancel
    rows = await app.pool.fetch(
        "SELECT id, state, msg_type, ended_by, description FROM warnings ORDER BY id"
    )
    assert [(r["state"], r["msg_type"]) for r in rows] == [
        ("cancelled", "Alert"),
        ("muted", "Cancel"),
    ]
    assert rows[0]["ended_by"] == cancel["warning_id"] and rows[1]["description"] == "降雨减弱"
    audit = await app.pool.fetchrow(
        "SELECT actor, detail FROM audit_log WHERE action = 'warning_cancelled' AND subject = $1",
        f"warning:{warning_id}",
    )
    assert audit is not None and audit["actor"] == "zhang"
    assert audit["detail"]["reason"] == "误发：区域选错"
    status, again = await app.call("POST", path, OFFICER_TOKEN, {"reason": "再点一次"})
    assert status == 409 and again["error"] == "not_active"
    assert await app.count("warnings") == 2


async def test_an_approver_refuses_a_waiting_warning(app: Api) -> None:
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("red"))
    assert status == 201 and body["status"] == "pending_approval"
    status, _ = await app.call(
        "POST", f"{API}/warnings/{body['warning_id']}/reject", APPROVER_TOKEN, {"reason": "不实"}
    )
    assert status == 200
    state = await app.pool.fetchval("SELECT state FROM warnings WHERE id = $1", body["warning_id"])
    assert state == "rejected"
    read = await preview(app, body["warning_id"])
    status, _ = await app.call(
        "POST",
        f"{API}/warnings/{body['warning_id']}/approve",
        APPROVER_TOKEN,
        {"texts_sha256": read["texts_sha256"]},
    )
    assert status == 409


async def test_a_correction_may_lower_but_never_raise_the_level(app: Api) -> None:
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("yellow"))
    assert status == 201, body
    path = f"{API}/warnings/{body['warning_id']}/correct"
    status, refused = await app.call(
        "POST", path, OFFICER_TOKEN, {"reason": "升级", "level": "red"}
    )
    assert status == 422 and refused["detail"].startswith("level: red is higher than yellow")
    status, empty = await app.call("POST", path, OFFICER_TOKEN, {"reason": "无改动"})
    assert status == 422 and "nothing to correct" in empty["detail"]
    assert await app.count("warnings") == 1
    status, fixed = await app.call(
        "POST",
        path,
        OFFICER_TOKEN,
        {"reason": "降级", "level": "blue", "instruction": "请注意防范。"},
    )
    assert status == 201 and fixed["status"] == "active"
    update = await app.pool.fetchrow("SELECT * FROM warnings WHERE id = $1", fixed["warning_id"])
    assert update is not None
    assert (update["msg_type"], update["level"], update["instruction"]) == (
        "Update",
        "blue",
        "请注意防范。",
    )
    assert update["event"] == "暴雨蓝色预警" and update["source"] == "officer"
    original = await app.pool.fetchrow(
        "SELECT state, ended_by FROM warnings WHERE id = $1", body["warning_id"]
    )
    assert original is not None
    assert (original["state"], original["ended_by"]) == ("superseded", fixed["warning_id"])


async def test_an_expired_warning_closes_its_callouts_and_tasks_at_once(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    original = rainstorm()
    warning_id = await plan(
        pool, policy, NormalisedWarning(**{**original.__dict__, "expires": LATER})
    )
    await pool.execute(sql("expire_warnings"), LATER)
    assert await pool.fetchval("SELECT state FROM warnings WHERE id = $1", warning_id) == "expired"
    for table, events, key in (
        ("callouts", "callout_events", "callout_id"),
        ("field_tasks", "field_task_events", "task_id"),
    ):
        rows = await pool.fetch(f"SELECT id, state, next_check_at FROM {table}")
        assert rows and {(r["state"], r["next_check_at"]) for r in rows} == {("closed", None)}
        reasons = await pool.fetch(
            f"SELECT detail FROM {events} WHERE kind = 'closed' ORDER BY {key}"
        )
        assert [r["detail"]["reason"] for r in reasons] == ["warning expired"] * len(rows)
