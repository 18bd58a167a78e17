"""Call-and-respond on a real database: call-outs open with the plan, answers from every route
acknowledge exactly what they should, and escalation fires each step once, on time, durably."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from channels.base import CallResult, ChannelKind, Reply
from tests.fixtures import (
    DAYTIME,
    LIMITS,
    RecordingChannel,
    callouts,
    cancel_of,
    escalate_until,
    plan,
    rainstorm,
)
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.core.references import next_short_code
from warnd.core.vocabulary import Level
from warnd.db.notify import Wakeup
from warnd.ingest.store import store_warning
from warnd.pipeline.answers import Answers
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.escalation import Escalation
from warnd.pipeline.inbound import Inbound
from warnd.policy.model import Policy

CALLEES = {  # responder phone → level, for the red rainstorm on 任城区
    "+8613900000000": "city",
    "+8613900000001": "county",
    "+8613900000003": "town",
    "+8613900000004": "village",
    "+8613900000005": "village",
    "+8613900000006": "village",
}


async def events(pool: asyncpg.Pool, callout_id: int) -> list[str]:
    rows = await pool.fetch(
        "SELECT kind FROM callout_events WHERE callout_id = $1 ORDER BY id", callout_id
    )
    return [r["kind"] for r in rows]


async def test_a_red_warning_opens_one_callout_per_responder(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    opened = await callouts(pool, warning_id)
    assert set(opened) == set(CALLEES)
    within = policy.rule("rainstorm", Level.RED).ack.within
    for phone, row in opened.items():
        assert row["state"] == "pending"
        assert row["deadline"] - row["opened_at"] == within.get(
            CALLEES[phone], min(within.values())
        )
        assert row["next_check_at"] is not None
        assert await events(pool, row["id"]) == ["opened"]
    linked = await pool.fetch(
        "SELECT callout_id FROM deliveries WHERE warning_id = $1 AND audience = 'responder'",
        warning_id,
    )
    assert linked and all(r["callout_id"] is not None for r in linked)
    code = await pool.fetchval("SELECT short_code FROM warnings WHERE id = $1", warning_id)
    texts = await pool.fetch(
        "SELECT body FROM messages WHERE warning_id = $1 AND audience = 'responder' "
        "AND channel_kind = 'sms'",
        warning_id,
    )
    assert code == "A1" and all(f"1{code}" in t["body"] for t in texts)


async def test_a_yellow_warning_needs_no_answer(pool: asyncpg.Pool, policy: Policy) -> None:
    warning_id = await plan(pool, policy, rainstorm(Level.YELLOW))
    assert await callouts(pool, warning_id) == {}


async def test_an_sms_reply_acknowledges_and_stops_the_other_channels(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME + timedelta(minutes=1))
    answers = Answers(pool, clock)
    answer = await answers.answer_sms("139 0000 0004", "收到，马上转移群众")
    opened = await callouts(pool, warning_id)
    row = opened["+8613900000004"]
    assert answer.callouts == (row["id"],) and not answer.late
    assert (row["state"], row["ack_via"], row["ack_late"]) == ("acknowledged", "sms", False)
    assert row["next_check_at"] is None
    queued = await pool.fetch(
        "SELECT state, error FROM deliveries WHERE callout_id = $1 AND state <> 'sent'", row["id"]
    )
    assert queued and all((r["state"], r["error"]) == ("cancelled", "answered") for r in queued)
    assert await events(pool, row["id"]) == ["opened", "acknowledged"]
    # the same answer again changes nothing
    again = await answers.answer_sms("+8613900000004", "1")
    assert again.callouts == ()
    assert await events(pool, row["id"]) == ["opened", "acknowledged"]


async def test_a_late_answer_is_accepted_and_marked_late(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    answers = Answers(pool, ManualClock(DAYTIME + timedelta(minutes=11)))
    answer = await answers.answer_sms("+8613900000004", "1")
    assert answer.late
    row = (await callouts(pool, warning_id))["+8613900000004"]
    assert (row["state"], row["ack_late"]) == ("acknowledged", True)


async def test_unknown_numbers_and_other_words_acknowledge_nothing(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    answers = Answers(pool, ManualClock(DAYTIME))
    assert (await answers.answer_sms("+8613111111111", "1")).callouts == ()
    assert (await answers.answer_sms("+8613900000004", "我在开会")).kind == "unrecognised"
    assert (await answers.answer_sms("not a number", "1")).kind == "unknown_number"
    states = {r["state"] for r in (await callouts(pool, warning_id)).values()}
    assert states == {"pending"}


async def test_a_code_acknowledges_only_its_warning(pool: asyncpg.Pool, policy: Policy) -> None:
    first = await plan(pool, policy, rainstorm())
    second_warning = rainstorm(Level.ORANGE)
    second = (await store_warning(pool, second_warning, source="test", now=DAYTIME)).warning_id
    from warnd.pipeline.planner import Planner

    await Planner(pool, lambda: policy, ManualClock(DAYTIME), LIMITS).plan_pending()
    code = await pool.fetchval("SELECT short_code FROM warnings WHERE id = $1", second)
    assert code == "A2"
    answers = Answers(pool, ManualClock(DAYTIME))
    await answers.answer_sms("+8613900000004", f"收到{code}")
    assert (await callouts(pool, first))["+8613900000004"]["state"] == "pending"
    assert (await callouts(pool, second))["+8613900000004"]["state"] == "acknowledged"
    await answers.answer_sms("+8613900000004", "1")  # no code: every open call-out of the number
    assert (await callouts(pool, first))["+8613900000004"]["state"] == "acknowledged"


async def test_pressing_one_on_the_call_acknowledges_through_dispatch(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    voice = RecordingChannel("voice", ChannelKind.VOICE)
    dispatcher = Dispatcher(pool, {"voice": voice}, clock, Metrics(), Wakeup())
    inbound = Inbound(pool, clock, Metrics(), answers=Answers(pool, clock))
    claimed = await dispatcher.claim(voice, 1)
    results = await voice.send([c.message() for c in claimed])
    await dispatcher.record("voice", claimed, results)
    call = CallResult(f"x-{claimed[0].id}", answered=True, keys="1")
    await inbound.handle_events("voice", [call, Reply("+8613111111111", "1")])
    row = next(
        r for r in (await callouts(pool, warning_id)).values() if r["phone"] == claimed[0].address
    )
    assert (row["state"], row["ack_via"]) == ("acknowledged", "voice")
    matched = await pool.fetch("SELECT kind, matched FROM inbound_events ORDER BY id")
    assert [(r["kind"], r["matched"]) for r in matched] == [("call_result", True), ("reply", False)]


async def test_an_unanswered_callout_escalates_step_by_step_exactly_once(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    scanners = [Escalation(pool, clock), Escalation(pool, clock)]  # two warnd processes
    for _ in range(15 * 6):
        await asyncio.gather(*(s.scan() for s in scanners))
        clock.advance(10)
    village = (await callouts(pool, warning_id))["+8613900000004"]
    steps = policy.rule("rainstorm", Level.RED).escalation
    kinds = await events(pool, village["id"])
    assert kinds[0] == "opened" and len(kinds) == 1 + len(steps)
    fired = await pool.fetch(
        "SELECT at, detail FROM callout_events WHERE callout_id = $1 AND kind <> 'opened' "
        "ORDER BY id",
        village["id"],
    )
    assert [r["detail"]["action"] for r in fired] == [s.action for s in steps]
    for row, step in zip(fired, steps, strict=True):
        assert timedelta(0) <= row["at"] - (DAYTIME + step.after) < timedelta(seconds=10)
    assert village["state"] == "escalated" and village["cursor"] == len(steps)
    # the repeat called the callee again; the backup (张副书记) was called for this call-out
    escalation = await pool.fetch(
        "SELECT address, step FROM deliveries WHERE callout_id = $1 AND audience = 'escalation'",
        village["id"],
    )
    assert {(r["address"], r["step"]) for r in escalation} >= {
        ("+8613900000004", 0),
        ("+8613900000005", 1),
    }


async def test_an_answer_stops_the_escalation(pool: asyncpg.Pool, policy: Policy) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    answers = Answers(pool, clock)
    scanner = Escalation(pool, clock)
    await escalate_until(scanner, clock, 3)  # the repeat has fired
    await answers.answer_sms("+8613900000004", "1")
    await escalate_until(scanner, clock, 15)
    row = (await callouts(pool, warning_id))["+8613900000004"]
    assert await events(pool, row["id"]) == ["opened", "step_fired", "acknowledged"]


async def test_a_restarted_scanner_resumes_where_the_last_stopped(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    await escalate_until(Escalation(pool, clock), clock, 6)  # repeat and backup fired
    await escalate_until(Escalation(pool, clock), clock, 10)  # a new process takes over
    row = (await callouts(pool, warning_id))["+8613900000004"]
    kinds = await events(pool, row["id"])
    assert kinds.count("step_fired") + kinds.count("step_skipped") == len(
        policy.rule("rainstorm", Level.RED).escalation
    )


async def test_cancelling_the_warning_closes_its_callouts(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    await store_warning(pool, cancel_of(rainstorm()), source="test", now=DAYTIME)
    clock = ManualClock(DAYTIME)
    await escalate_until(Escalation(pool, clock), clock, 15)
    states = {r["state"] for r in (await callouts(pool, warning_id)).values()}
    assert states == {"closed"}


def test_short_codes_are_short_and_skip_what_is_taken() -> None:
    assert next_short_code(set()) == "A1"
    assert next_short_code({"A1", "A2"}) == "A3"
    assert next_short_code({f"A{n}" for n in range(1, 1000)}) == "B1"
    assert (
        next_short_code(
            {f"H{n}" for n in range(1, 1000)}
            | {f"{c}{n}" for c in "ABCDEFG" for n in range(1, 1000)}
        )
        == "J1"
    )  # no I: it reads as 1


async def test_a_callout_locked_while_its_message_went_out_is_marked_notified_by_the_sweep(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """record_sent skips a call-out another transaction holds (waiting deadlocks); when that
    transaction does not mark it notified itself, the call-out stayed pending although its
    message was out. The housekeeping sweep marks it, with the time the message went out."""
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup())
    head = "+8613900000001"
    claimed = [c for c in await dispatcher.claim(sms, 100) if c.address == head]
    assert claimed
    state = "SELECT state, notified_at FROM callouts WHERE warning_id = $1 AND phone = $2"
    async with pool.acquire() as holder, holder.transaction():
        # An escalation scan (or an answer that fails) holds the call-out meanwhile.
        await holder.execute(
            "SELECT 1 FROM callouts WHERE warning_id = $1 AND phone = $2 FOR UPDATE",
            warning_id,
            head,
        )
        await dispatcher.record("sms", claimed, await sms.send([c.message() for c in claimed]))
        assert await dispatcher.notify_skipped_callouts() == 0  # still held: skipped again
    row = await pool.fetchrow(state, warning_id, head)
    assert row is not None and (row["state"], row["notified_at"]) == ("pending", None)

    clock.advance(30)
    assert await dispatcher.notify_skipped_callouts() == 1
    assert await dispatcher.notify_skipped_callouts() == 0
    row = await pool.fetchrow(state, warning_id, head)
    assert row is not None and (row["state"], row["notified_at"]) == ("notified", DAYTIME)
