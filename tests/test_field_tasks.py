"""Field tasks (敲门入户, 鸣锣吹哨) on a real database: opened by the plan as the policy says,
progress by SMS, overdue tasks escalating once per step; plus the other answer routes (device
confirmations, rate limits) and what stand-ins are told."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from channels.base import ChannelKind, DeviceConfirmation
from tests import seed
from tests.fixtures import (
    DAYTIME,
    LIMITS,
    RecordingChannel,
    callouts,
    escalate_until,
    plan,
    rainstorm,
)
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.core.texts import TaskText, stand_in_text, task_text, text_length
from warnd.core.vocabulary import Level
from warnd.db.notify import Wakeup
from warnd.pipeline.answers import Answers
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.escalation import Escalation
from warnd.pipeline.inbound import Inbound
from warnd.pipeline.planner import Planner
from warnd.policy.model import Policy

NIGHT = datetime(2026, 7, 29, 23, 30, tzinfo=ZoneInfo("Asia/Shanghai"))


async def tasks(pool: asyncpg.Pool, warning_id: int) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM field_tasks WHERE warning_id = $1", warning_id)
    return {r["kind"]: r for r in rows}


async def task_events(pool: asyncpg.Pool, task_id: int) -> list[tuple[str, dict[str, object]]]:
    rows = await pool.fetch(
        "SELECT kind, detail FROM field_task_events WHERE task_id = $1 ORDER BY id", task_id
    )
    return [(r["kind"], r["detail"]) for r in rows]


async def test_a_red_warning_opens_the_tasks_the_policy_orders(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    opened = await tasks(pool, warning_id)
    assert set(opened) == set(seed.RED_RAINSTORM_RENCHENG_TASKS)
    for kind, expected in seed.RED_RAINSTORM_RENCHENG_TASKS.items():
        row = opened[kind]
        assert (row["phone"], row["village_code"], row["targets"]) == (
            expected["phone"],
            expected["village"],
            expected["targets"],
        )
        rule = getattr(policy.field_tasks, kind)
        assert row["deadline"] - row["opened_at"] == rule.within
        assert (row["state"], row["done"]) == ("open", 0)
        # the first escalation step is due when the task's time is up
        assert row["next_check_at"] == row["deadline"]
        assert [k for k, _ in await task_events(pool, row["id"])] == ["opened"]
    messages = {
        r["task_id"]: r["body"]
        for r in await pool.fetch(
            "SELECT d.task_id, m.body FROM deliveries d JOIN messages m ON m.id = d.message_id "
            "WHERE d.warning_id = $1 AND d.audience = 'field_task' AND d.channel_kind = 'sms'",
            warning_id,
        )
    }
    knock = messages[opened["door_knock"]["id"]]
    assert knock.startswith("【济宁市应急管理局】")
    assert "张奶奶(张庄村1号)、张小宝(张庄村3号)共2人" in knock and "回复“完成”" in knock
    gong = messages[opened["gong"]["id"]]
    assert "李庄村" in gong and "鸣锣吹哨" in gong


async def test_tasks_follow_the_level_and_the_night(pool: asyncpg.Pool, policy: Policy) -> None:
    day = await plan(pool, policy, rainstorm(Level.YELLOW))
    assert await tasks(pool, day) == {}
    # At night helpers knock on doors at every level; gongs stay for orange and red.
    night_warning = rainstorm(Level.YELLOW, codes=(seed.VILLAGE_R1,))
    from warnd.ingest.store import store_warning
    from warnd.pipeline.planner import Planner

    stored = await store_warning(pool, night_warning, source="test", now=NIGHT)
    await Planner(pool, lambda: policy, ManualClock(NIGHT), LIMITS).plan_pending()
    assert set(await tasks(pool, stored.warning_id)) == {"door_knock"}


async def test_progress_replies_count_and_finish_a_task(pool: asyncpg.Pool, policy: Policy) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    answers = Answers(pool, ManualClock(DAYTIME + timedelta(minutes=4)))
    task = (await tasks(pool, warning_id))["door_knock"]
    # "收到，已通知1户": an acknowledgement of the call-out and a progress report in one text
    answer = await answers.answer_sms("+86 139 0000 0004", "收到，已通知1户")
    assert answer.kind == "ack" and answer.callouts and answer.tasks == (task["id"],)
    row = (await tasks(pool, warning_id))["door_knock"]
    assert (row["state"], row["done"]) == ("open", 1)
    # a lower count later never lowers what was reported
    await answers.answer_sms("+8613900000004", "已通知 0")
    assert (await tasks(pool, warning_id))["door_knock"]["done"] == 1
    done = await answers.answer_sms("+8613900000004", "完成")
    assert done.kind == "progress" and done.tasks == (task["id"],)
    row = (await tasks(pool, warning_id))["door_knock"]
    assert (row["state"], row["done"], row["next_check_at"]) == ("done", 2, None)
    assert [k for k, _ in await task_events(pool, task["id"])] == [
        "opened",
        "progress",
        "progress",
        "done",
    ]
    # a report from someone with no task matches nothing
    stray = await answers.answer_sms("+8613900000011", "完成")
    assert stray.tasks == ()


async def test_an_overdue_task_escalates_and_stops_when_done(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    answers = Answers(pool, clock)
    scanner = Escalation(pool, clock)
    for phone in ("+8613900000000", "+8613900000001", "+8613900000003", "+8613900000005"):
        await answers.answer_sms(phone, "1")  # keep call-out escalations out of the way
    await answers.answer_sms("+8613900000004", "1")
    await answers.answer_sms("+8613900000006", "1")
    knock = (await tasks(pool, warning_id))["door_knock"]
    within = policy.field_tasks.door_knock.within
    chain = policy.rule("rainstorm", Level.RED).escalation
    # until the deadline nothing happens
    await escalate_until(scanner, clock, int(within.total_seconds() // 60) - 1)
    assert [k for k, _ in await task_events(pool, knock["id"])] == ["opened"]
    # at the deadline the helper is reminded (the task again), then the backup takes over
    await escalate_until(scanner, clock, 2 + int((chain[1].after - chain[0].after).seconds // 60))
    fired = await task_events(pool, knock["id"])
    assert [d["action"] for k, d in fired if k == "step_fired"] == ["repeat", "backup"]
    steps = await pool.fetch(
        "SELECT d.address, d.step, m.body FROM deliveries d JOIN messages m ON m.id = d.message_id"
        " WHERE d.task_id = $1 AND d.step IS NOT NULL AND d.channel_kind = 'sms' ORDER BY d.step",
        knock["id"],
    )
    assert [(r["address"], r["step"]) for r in steps] == [
        ("+8613900000004", 0),
        ("+8613900000005", 1),
    ]
    assert "上门通知" in steps[0]["body"]  # the repeat is the task itself
    assert "张书记（张庄村）未完成" in steps[1]["body"] and "0/2" in steps[1]["body"]
    # the backup finishes it: escalation stops there
    await answers.answer_sms("+8613900000005", "完成")
    row = (await tasks(pool, warning_id))["door_knock"]
    assert (row["state"], row["done"]) == ("done", 2)
    await escalate_until(scanner, clock, 30)
    after = await task_events(pool, knock["id"])
    assert [k for k, _ in after].count("step_fired") == 2


async def test_a_device_confirmation_acknowledges_its_callout(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME + timedelta(minutes=1))
    voice = RecordingChannel("voice-1", ChannelKind.VOICE)
    dispatcher = Dispatcher(pool, {"voice": voice}, clock, Metrics(), Wakeup())
    inbound = Inbound(pool, clock, Metrics(), answers=Answers(pool, clock))
    claimed = await dispatcher.claim(voice, 50)
    results = await voice.send([c.message() for c in claimed])
    await dispatcher.record("voice-1", claimed, results)
    town = (await callouts(pool, warning_id))["+8613900000003"]
    external = await pool.fetchval(
        "SELECT external_id FROM deliveries WHERE callout_id = $1 AND channel_kind = 'voice'",
        town["id"],
    )
    await inbound.handle_events("voice-1", [DeviceConfirmation(external, played=True)])
    row = (await callouts(pool, warning_id))["+8613900000003"]
    assert (row["state"], row["ack_via"]) == ("acknowledged", "device")


async def test_a_number_that_keeps_sending_is_rate_limited(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    answers = Answers(pool, clock, reply_limit=3)
    looped = [await answers.answer_sms("+8613900000004", "自动回复：我正在开会") for _ in range(3)]
    assert [a.kind for a in looped] == ["unrecognised"] * 3
    assert (await answers.answer_sms("+8613900000004", "1")).kind == "rate_limited"
    row = (await callouts(pool, warning_id))["+8613900000004"]
    assert row["state"] != "acknowledged"
    clock.advance(60)  # the next minute the number is heard again
    assert (await answers.answer_sms("+8613900000004", "1")).callouts == (row["id"],)


def test_a_task_text_lists_as_many_persons_as_fit() -> None:
    whom = tuple(f"居民{i}(幸福路{i}号)" for i in range(40))
    task = TaskText("door_knock", "任城区", "暴雨", "红色", "张庄村", whom)
    full = task_text(task, "sms", signature="【济宁市应急管理局】", exercise=False, max_chars=None)
    assert "居民39(幸福路39号)共40人" in full
    cut = task_text(task, "sms", signature="【济宁市应急管理局】", exercise=True, max_chars=200)
    assert text_length(cut) <= 200 and "等40人" in cut
    assert cut.startswith("【济宁市应急管理局】【演练】")
    assert "居民0(幸福路0号)" in cut and "回复“完成”" in cut
    call = task_text(task, "voice", signature="【济宁市应急管理局】", exercise=False, max_chars=500)
    assert not call.startswith("【") and "短信回复" in call


def test_a_stand_in_is_told_whom_they_cover_and_how_to_answer() -> None:
    about = {"person": "张书记", "division": "张庄村"}
    sms = stand_in_text(
        about,
        hazard="暴雨",
        level="红色",
        code="A7",
        channel_kind="sms",
        signature="【济宁市应急管理局】",
        exercise=False,
    )
    assert sms == (
        "【济宁市应急管理局】张书记（张庄村）未确认暴雨红色预警，请您立即联系落实防范。收到请回复1A7"
    )
    call = stand_in_text(
        about,
        hazard="暴雨",
        level="红色",
        code="A7",
        channel_kind="voice",
        signature="【济宁市应急管理局】",
        exercise=True,
    )
    assert call.startswith("【演练】这里是济宁市应急管理局。") and call.endswith(
        "确认收到请按1，重听请按2"
    )


async def test_an_answer_aborted_by_a_deadlock_is_applied_on_retry(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())

    class OnceDeadlocked:
        """The pool, whose first statement PostgreSQL aborts to break a deadlock."""

        failed = False

        async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
            if not self.failed:
                self.failed = True
                raise asyncpg.DeadlockDetectedError("deadlock detected")
            return await pool.fetch(query, *args)

    answers = Answers(OnceDeadlocked(), ManualClock(DAYTIME))  # type: ignore[arg-type]
    answer = await answers._acknowledge([("+8613900000004", None)], "sms")
    assert answer["+8613900000004"].callouts
    row = (await callouts(pool, warning_id))["+8613900000004"]
    assert row["state"] == "acknowledged"


async def test_a_silent_loudspeaker_gets_its_village_a_gong_task_once(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """张庄村's speaker is offline: its command fails for good (PERMANENT unreachable, the
    broadcast channel's answer for an offline speaker) and the village's responsible person gets
    a gong task, like a blind-spot village's, once however often the planner looks."""
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    speakers = RecordingChannel("speakers", ChannelKind.BROADCAST, fail_prefix=seed.VILLAGE_R1)
    dispatcher = Dispatcher(pool, {"speakers": speakers}, clock, Metrics(), Wakeup())
    claimed = await dispatcher.claim(speakers, 50)
    assert [c.address for c in claimed] == [seed.VILLAGE_R1]
    await dispatcher.record(
        "speakers", claimed, await speakers.send([c.message() for c in claimed])
    )
    failed = "SELECT state FROM deliveries WHERE warning_id = $1 AND audience = 'broadcast'"
    assert await pool.fetchval(failed, warning_id) == "failed"

    planner = Planner(pool, lambda: policy, clock, LIMITS)
    assert await planner.gongs_for_silent_speakers() == 1
    assert await planner.gongs_for_silent_speakers() == 0
    gongs = await pool.fetch(
        "SELECT village_code, phone FROM field_tasks WHERE warning_id = $1 AND kind = 'gong' "
        "ORDER BY village_code",
        warning_id,
    )
    # 李庄村 is a blind spot (its gong was planned); 张庄村's speaker failed: its head's gong.
    assert [(g["village_code"], g["phone"]) for g in gongs] == [
        (seed.VILLAGE_R1, "+8613900000004"),
        (seed.VILLAGE_R2, "+8613900000006"),
    ]
    body = await pool.fetchval(
        "SELECT m.body FROM deliveries d JOIN messages m ON m.id = d.message_id "
        "JOIN field_tasks t ON t.id = d.task_id "
        "WHERE t.village_code = $1 AND t.kind = 'gong' AND d.state = 'queued'",
        seed.VILLAGE_R1,
    )
    assert "张庄村" in body and "鸣锣吹哨" in body


async def test_no_gong_for_a_silent_loudspeaker_where_the_policy_orders_none(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    orange = rainstorm(Level.ORANGE)
    only_red = policy.field_tasks.gong.model_copy(update={"levels": [Level.RED]})
    no_gongs = policy.model_copy(
        update={"field_tasks": policy.field_tasks.model_copy(update={"gong": only_red})}
    )
    warning_id = await plan(pool, policy, orange)
    await pool.execute(
        "UPDATE deliveries SET state = 'failed' WHERE warning_id = $1 AND audience = 'broadcast'",
        warning_id,
    )
    planner = Planner(pool, lambda: no_gongs, ManualClock(DAYTIME), LIMITS)
    assert await planner.gongs_for_silent_speakers() == 0
