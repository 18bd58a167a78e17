"""The deliveries' tallies (migration 012) equal a count over the deliveries themselves, after
every kind of change a round makes: planning, claims, sends, retries, fail-over, failures,
expiry, receipts, a crashed worker's rows reclaimed, a transaction rolled back, cancellation and
a delete; folded or not. And the reads built on them say what a count over deliveries says."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import asyncpg
import pytest

from channels.base import (
    ChannelKind,
    DeliveryReceipt,
    Outcome,
    Reason,
    ReceiptStatus,
    SendResult,
)
from tests.fixtures import DAYTIME, RecordingChannel, plan, rainstorm
from warnd.app.board import board_figures, fold_tallies
from warnd.app.metrics import Metrics
from warnd.app.reads import progress, warning_detail
from warnd.app.services import Services
from warnd.core.clock import ManualClock
from warnd.core.config import AppConfig
from warnd.core.outcomes import Claimed
from warnd.db.notify import Wakeup
from warnd.db.queries import sql
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.inbound import Inbound
from warnd.policy.loader import PolicyHolder
from warnd.policy.model import Policy
from warnd.runtime.settings import REPO_CONFIG_DIR

Key = tuple[str, str, str]  # division code, audience, state

TRUTH = """SELECT division_code, audience, state, count(*) AS n
             FROM deliveries WHERE warning_id = $1
            GROUP BY 1, 2, 3"""
TALLIED = """SELECT t.division_code, t.audience, s.state, sum(s.n)::bigint AS n
               FROM (SELECT * FROM delivery_tallies WHERE warning_id = $1
                     UNION ALL
                     SELECT * FROM delivery_tally_changes WHERE warning_id = $1) t
              CROSS JOIN LATERAL (VALUES ('queued', t.queued), ('sending', t.sending),
                                         ('sent', t.sent), ('delivered', t.delivered),
                                         ('failed', t.failed), ('cancelled', t.cancelled))
                         AS s(state, n)
              GROUP BY 1, 2, 3
             HAVING sum(s.n) <> 0"""
SENT_BOUNDS = "SELECT min(sent_at), max(sent_at) FROM deliveries WHERE warning_id = $1"


async def counts(pool: asyncpg.Pool, query: str, warning_id: int) -> dict[Key, int]:
    return {
        (r["division_code"], r["audience"], r["state"]): r["n"]
        for r in await pool.fetch(query, warning_id)
    }


async def assert_tallied(pool: asyncpg.Pool, warning_id: int) -> dict[Key, int]:
    """The tallies equal the count over deliveries, before and after folding; the count."""
    truth = await counts(pool, TRUTH, warning_id)
    assert await counts(pool, TALLIED, warning_id) == truth
    await fold_tallies(pool)
    assert await pool.fetchval("SELECT count(*) FROM delivery_tally_changes") == 0
    assert await counts(pool, TALLIED, warning_id) == truth
    return truth


def services(pool: asyncpg.Pool, clock: ManualClock) -> Services:
    return Services(
        pool=pool,
        config=AppConfig(),
        policy=PolicyHolder(REPO_CONFIG_DIR / "policy.toml"),
        clock=clock,
        metrics=Metrics(),
    )


async def assert_reads_agree(pool: asyncpg.Pool, clock: ManualClock, warning_id: int) -> None:
    """Detail, progress and the board say what a count over the deliveries says."""
    truth = await counts(pool, TRUTH, warning_id)
    by_state: dict[str, int] = {}
    by_audience: dict[str, dict[str, int]] = {}
    for (_, audience, state), n in truth.items():
        by_state[state] = by_state.get(state, 0) + n
        per = by_audience.setdefault(audience, {})
        per[state] = per.get(state, 0) + n
    bounds = await pool.fetchrow(SENT_BOUNDS, warning_id)
    assert bounds is not None
    first, last = bounds
    detail = await warning_detail(services(pool, clock), warning_id)
    assert detail.progress.by_state == by_state
    assert detail.progress.by_audience == by_audience
    assert detail.progress.total == sum(truth.values())
    assert (detail.progress.first_sent_at, detail.progress.last_sent_at) == (first, last)
    villages = await progress(services(pool, clock), warning_id, "village")
    per_village: dict[str, dict[str, int]] = {}
    for (code, _, state), n in truth.items():
        if len(code.rstrip("0")) > 9:  # a village's own people (a village code ends in digits)
            per = per_village.setdefault(code, {})
            per[state] = per.get(state, 0) + n
    shown = {
        d.code: {
            s: getattr(d, s)
            for s in ("queued", "sending", "sent", "delivered", "failed", "cancelled")
            if getattr(d, s)
        }
        for d in villages.divisions
        if d.total
    }
    assert shown == per_village
    board = await board_figures(services(pool, clock))
    on_board = [w for w in board.warnings if w.id == warning_id]
    if on_board:
        assert on_board[0].by_state == by_state
        assert on_board[0].deliveries == sum(truth.values())
        assert on_board[0].callouts == detail.callouts  # the same call-outs, read once more
    else:
        assert detail.state not in ("active", "pending_approval")


def results(claimed: Sequence[Claimed], outcome: Outcome, reason: Reason) -> list[SendResult]:
    return [SendResult(c.id, outcome, reason=reason, detail=str(reason)) for c in claimed]


async def test_a_mixed_round_is_tallied_exactly(pool: asyncpg.Pool, policy: Policy) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    planned = await assert_tallied(pool, warning_id)
    assert {state for (_, _, state) in planned} == {"queued"}
    await assert_reads_agree(pool, clock, warning_id)

    sms = RecordingChannel("sms", ChannelKind.SMS)
    voice = RecordingChannel("voice", ChannelKind.VOICE)
    channels = {"sms": sms, "voice": voice}
    dispatcher = Dispatcher(pool, channels, clock, Metrics(), Wakeup(), lease_seconds=60)

    # Sent, then receipts: one delivered, one undeliverable.
    claimed = await dispatcher.claim(sms, 6)
    await dispatcher.record("sms", claimed, await sms.send([c.message() for c in claimed]))
    inbound = Inbound(pool, clock, Metrics())
    await inbound.handle_events(
        "sms",
        [
            DeliveryReceipt(f"x-{claimed[0].id}", ReceiptStatus.DELIVERED),
            DeliveryReceipt(f"x-{claimed[1].id}", ReceiptStatus.UNDELIVERABLE),
        ],
    )
    # Retried, failed over to voice (or failed when there is nothing left), expired.
    retried = await dispatcher.claim(sms, 3)
    await dispatcher.record("sms", retried, results(retried, Outcome.TRANSIENT, Reason.SERVER))
    given_up = await dispatcher.claim(sms, 3)
    await dispatcher.record("sms", given_up, results(given_up, Outcome.PERMANENT, Reason.CLIENT))
    expired = await dispatcher.claim(sms, 2)
    await dispatcher.record("sms", expired, results(expired, Outcome.PERMANENT, Reason.EXPIRED))
    failed_over = await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE id = ANY($1) AND channel_kind = 'voice'",
        [c.id for c in given_up],
    )
    assert failed_over > 0
    voice_claimed = await dispatcher.claim(voice, 4)
    await dispatcher.record(
        "voice", voice_claimed, await voice.send([c.message() for c in voice_claimed])
    )
    tallied = await assert_tallied(pool, warning_id)
    states = {state for (_, _, state) in tallied}
    assert {"queued", "sent", "delivered", "failed", "cancelled"} <= states
    await assert_reads_agree(pool, clock, warning_id)

    # A worker dies holding its claim; its rows come back when the lease runs out.
    held = await dispatcher.claim(sms, 5)
    assert held
    assert "sending" in {s for (_, _, s) in await counts(pool, TALLIED, warning_id)}
    await assert_reads_agree(pool, clock, warning_id)
    clock.advance(61)
    assert await dispatcher.reclaim_leases() == len(held)
    await assert_tallied(pool, warning_id)

    # A transaction that changes deliveries and then fails leaves the tallies as they were.
    again = await dispatcher.claim(sms, 4)
    before = await counts(pool, TALLIED, warning_id)
    with pytest.raises(ConnectionResetError):
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                sql("record_sent"),
                [c.id for c in again],
                [c.attempts for c in again],
                [f"lost-{c.id}" for c in again],
                None,
                clock.now(),
            )
            raise ConnectionResetError("the process died before committing")
    assert await counts(pool, TALLIED, warning_id) == before
    await dispatcher.record("sms", again, await sms.send([c.message() for c in again]))
    await assert_tallied(pool, warning_id)
    await assert_reads_agree(pool, clock, warning_id)

    # The warning is cancelled: the claim drops what it finds, cancellation stops the rest.
    await pool.execute("UPDATE warnings SET state = 'cancelled' WHERE id = $1", warning_id)
    dropped = await dispatcher.claim(voice, 3)
    assert dropped == []  # cancelled at the claim, not handed to the channel
    assert await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE warning_id = $1 AND state = 'cancelled' "
        "AND error = 'warning no longer active'",
        warning_id,
    )
    await pool.execute(sql("cancel_queued"), [warning_id], "warning cancelled", clock.now())
    final = await assert_tallied(pool, warning_id)
    assert "queued" not in {s for (_, _, s) in final}
    await assert_reads_agree(pool, clock, warning_id)

    # Rows deleted (a test's shortcut; warnd never deletes deliveries) leave the tallies too.
    await pool.execute(
        "DELETE FROM deliveries WHERE warning_id = $1 AND audience = 'household'", warning_id
    )
    assert not any(a == "household" for (_, a, _) in await assert_tallied(pool, warning_id))
    await assert_reads_agree(pool, clock, warning_id)


async def test_a_fresh_database_folds_nothing_and_reads_nothing(pool: asyncpg.Pool) -> None:
    assert await fold_tallies(pool) == 0
    board = await board_figures(services(pool, ManualClock(DAYTIME)))
    assert board.warnings == [] and board.pending_approval == 0 and not board.more_warnings


async def test_emptying_the_outbox_empties_its_tallies(pool: asyncpg.Pool, policy: Policy) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    assert await counts(pool, TALLIED, warning_id) != {}
    await pool.execute("TRUNCATE deliveries")
    assert await counts(pool, TALLIED, warning_id) == {}
    assert await pool.fetchval("SELECT count(*) FROM delivery_tallies") == 0


async def test_sent_bounds_survive_later_states(pool: asyncpg.Pool, policy: Policy) -> None:
    """first/last hand-over stay those of the deliveries once they are delivered or failed."""
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup())
    for _ in range(3):
        claimed = await dispatcher.claim(sms, 2)
        await dispatcher.record("sms", claimed, await sms.send([c.message() for c in claimed]))
        await Inbound(pool, clock, Metrics()).handle_events(
            "sms", [DeliveryReceipt(f"x-{c.id}", ReceiptStatus.DELIVERED) for c in claimed]
        )
        clock.advance(timedelta(minutes=1).total_seconds())
    await assert_reads_agree(pool, clock, warning_id)
