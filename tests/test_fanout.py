"""From a stored warning to deliveries in the outbox and through a channel: read back from SQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import asyncpg
import pytest

from channels.base import (
    CallResult,
    Channel,
    ChannelKind,
    DeliveryReceipt,
    Limits,
    OutboundMessage,
    Outcome,
    Reason,
    ReceiptStatus,
    SendResult,
    WarningContext,
)
from tests import seed
from tests.fixtures import DAYTIME, LIMITS, RecordingChannel, cancel_of, plan, rainstorm
from tests.waiting import equals, until
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.core.errors import InputError
from warnd.core.model import NormalisedWarning
from warnd.core.outcomes import Claimed, classify
from warnd.core.vocabulary import Audience, Level
from warnd.db import Conn
from warnd.db.notify import Signal, Wakeup
from warnd.db.queries import sql
from warnd.ingest.store import store_warning
from warnd.pipeline.answers import Answers
from warnd.pipeline.dispatch import AHEAD_BATCHES, SHARES_PER_WINDOW, Dispatcher
from warnd.pipeline.inbound import EARLY_RECEIPT_WINDOW, Inbound
from warnd.pipeline.planner import FIRST_STEPS, Planner, PlanResult
from warnd.policy.model import Policy
from warnd.policy.targeting import decide


async def deliveries(pool: asyncpg.Pool, warning_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT d.*, m.body FROM deliveries d JOIN messages m ON m.id = d.message_id
            WHERE d.warning_id = $1 ORDER BY d.id""",
        warning_id,
    )


async def test_red_rainstorm_reaches_exactly_the_county(pool: asyncpg.Pool, policy: Policy) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    rows = await deliveries(pool, warning_id)
    rule = policy.rule("rainstorm", Level.RED)
    expected_addresses = {Audience(a): v for a, v in seed.RED_RAINSTORM_RENCHENG.items()}
    for audience, addresses in expected_addresses.items():
        if audience not in rule.audiences:
            assert not [r for r in rows if r["audience"] == audience.value]
            continue
        kinds = rule.audiences[audience].channels
        mine = [r for r in rows if r["audience"] == audience.value]
        if audience is Audience.HELPER:
            # At red the helper's message is the door-knocking task naming whom to visit.
            assert not mine
            mine = [r for r in rows if r["audience"] == "field_task" and "上门" in r["body"]]
        assert {r["address"] for r in mine} == addresses, audience
        assert Counter(r["channel_kind"] for r in mine) == {k: len(addresses) for k in kinds}
    assert all(r["state"] == "queued" for r in rows)
    texts = {r["body"] for r in rows if r["channel_kind"] == "sms"}
    assert texts and all("【济宁市应急管理局】" in t and "暴雨" in t and "红色" in t for t in texts)
    state = await pool.fetchrow(
        "SELECT plan_state, plan_cursor FROM warnings WHERE id = $1", warning_id
    )
    assert state is not None
    assert state["plan_state"] == "done"
    # city and county responders; loudspeakers; town and village responders; facilities and
    # helpers; then one household chunk per village (the test plans one village a chunk)
    assert state["plan_cursor"] == 4 + 2


async def test_exercise_reaches_only_exercise_people_and_says_so(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm(status="Exercise"))
    rows = await deliveries(pool, warning_id)
    assert {r["address"] for r in rows} == {
        "+8613900000003",
        "+8613900000004",
        "+8613800000001",
        "+8613800000002",
    }
    assert all("演练" in r["body"] for r in rows)


@pytest.mark.parametrize("status", ["Test", "Draft", "System"])
async def test_test_draft_system_reach_nobody(
    pool: asyncpg.Pool, policy: Policy, status: str
) -> None:
    warning_id = await plan(pool, policy, rainstorm(status=status))
    assert await deliveries(pool, warning_id) == []
    assert await pool.fetchval("SELECT state FROM warnings WHERE id = $1", warning_id) == "muted"


async def test_duplicate_is_stored_once(pool: asyncpg.Pool, policy: Policy) -> None:
    first = await plan(pool, policy, rainstorm())
    again = await store_warning(pool, rainstorm(), source="test", now=DAYTIME)
    assert (again.warning_id, again.created) == (first, False)
    assert await pool.fetchval("SELECT count(*) FROM warnings") == 1


async def test_cancel_stops_queued_deliveries(pool: asyncpg.Pool, policy: Policy) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    stored = await store_warning(pool, cancel_of(rainstorm()), source="test", now=DAYTIME)
    assert stored.ended == (warning_id,)
    assert (
        await pool.fetchval("SELECT state FROM warnings WHERE id = $1", warning_id) == "cancelled"
    )
    states = {r["state"] for r in await deliveries(pool, warning_id)}
    assert states == {"cancelled"}


async def test_responders_are_sent_before_households(pool: asyncpg.Pool, policy: Policy) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup())
    while claimed := await dispatcher.claim(sms, 3):
        results = await sms.send([c.message() for c in claimed])
        await dispatcher.record("sms", claimed, results)
    audiences = await pool.fetch(
        "SELECT audience FROM deliveries WHERE id = ANY($1::bigint[])",
        [m.key for m in sms.sent[:5]],
    )
    assert {r["audience"] for r in audiences} == {"responder"}
    rows = [r for r in await deliveries(pool, warning_id) if r["channel_kind"] == "sms"]
    assert rows and all(r["state"] == "sent" and r["external_id"] == f"x-{r['id']}" for r in rows)


async def test_two_workers_never_claim_the_same_delivery(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    await plan(pool, policy, rainstorm())
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatchers = [
        Dispatcher(pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup()) for _ in range(4)
    ]

    async def drain(d: Dispatcher) -> list[int]:
        mine: list[int] = []
        while claimed := await d.claim(sms, 1):
            mine += [c.id for c in claimed]
            await asyncio.sleep(0)
        return mine

    claims = await asyncio.gather(*(drain(d) for d in dispatchers))
    every = [i for c in claims for i in c]
    assert len(every) == len(set(every))
    assert len(every) == await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE channel_kind = 'sms'"
    )


class GatedChannel(RecordingChannel):
    """Holds every batch until the test opens the gate, counting the batches it holds at once."""

    def __init__(self, *, queues: bool) -> None:
        super().__init__("sms", ChannelKind.SMS)
        self.queues = queues
        self.gate = asyncio.Event()
        self.holding = 0
        self.peak = 0
        self.sizes: list[int] = []
        self.let_through = 0  # batches that pass without waiting for the gate
        self.senders: list[asyncio.Task[object]] = []  # the task that handed over each batch
        self.changed = asyncio.Condition()

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=6, window=4, max_text=500, queues=self.queues)

    async def send(self, batch: list[OutboundMessage]) -> list[SendResult]:  # type: ignore[override]
        sender = asyncio.current_task()
        assert sender is not None
        self.senders.append(sender)
        self.sizes.append(len(batch))
        held = len(self.sizes) > self.let_through
        if held:
            self.holding += 1
            self.peak = max(self.peak, self.holding)
        async with self.changed:
            self.changed.notify_all()
        if held:
            await self.gate.wait()
            self.holding -= 1
        return await super().send(batch)

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked whenever a batch is handed over."""
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(predicate)


class CountedClaims:
    """Wraps a dispatcher's ``claim`` to count the worker's calls, optionally holding one back."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.calls = 0
        self.before: dict[int, Callable[[], Awaitable[object]]] = {}  # call number -> wait
        self._claim = dispatcher.claim
        dispatcher.claim = self  # type: ignore[method-assign]

    async def __call__(self, channel: Channel, limit: int) -> list[Claimed]:
        self.calls += 1
        wait = self.before.get(self.calls)
        if wait is not None:
            await wait()
        return await self._claim(channel, limit)


class WindowOfFour(RecordingChannel):
    """A queueing channel (an SMPP link's shape) with a window of four, answering at once."""

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=1000, window=4, max_text=500, queues=True)


async def every_sms_row_sent(pool: asyncpg.Pool, warning_id: int) -> None:
    unsent = (
        "SELECT count(*) = 0 FROM deliveries WHERE warning_id = $1 AND channel_kind = 'sms'"
        " AND state <> 'sent'"
    )
    await until(lambda: pool.fetchval(unsent, warning_id), what="every sms row sent")


@pytest.mark.parametrize("queues", [True, False])
async def test_a_queueing_channel_is_handed_batches_ahead_a_plain_one_a_batch_at_a_time(
    pool: asyncpg.Pool, policy: Policy, queues: bool
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    sms = GatedChannel(queues=queues)
    dispatcher = Dispatcher(
        pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup(), poll_seconds=0.01
    )
    claims = CountedClaims(dispatcher)
    worker = asyncio.create_task(dispatcher.run_worker(sms))
    # A queueing channel: up to a second of its rate claimed in AHEAD_BATCHES batches (6 / 3),
    # handed in shares of a quarter window until a window (4) is with it; a plain one: one batch
    # of at most its window.
    held, batches = (sms.limits.window, AHEAD_BATCHES) if queues else (1, 1)
    try:
        claimed = "SELECT count(*) FROM deliveries WHERE channel_kind = 'sms' AND state = 'sending'"
        await sms.until(lambda: sms.holding >= held)
        if queues:  # the last batch claimed may still be on its way from the database
            await until(lambda: equals(pool.fetchval(claimed), 6), what="6 rows claimed")
        # A claimed batch reaches the channel only once the worker awaits: had the worker been
        # allowed another batch, it would have called claim again before the last of these was
        # held. Claimed and not handed are only the queueing channel's rows waiting for the
        # window: none claimed on the side.
        assert claims.calls == batches
        assert await pool.fetchval(claimed) == (6 if queues else sum(sms.sizes))
        assert sms.peak == held
        assert set(sms.sizes) == ({sms.limits.window // SHARES_PER_WINDOW} if queues else {4})
        sms.gate.set()
        await every_sms_row_sent(pool, warning_id)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert sms.peak == held  # never more at once, after the gate opened either
    sent = [m.key for m in sms.sent]
    assert len(sent) == len(set(sent))  # every row once, although batches overlapped
    rows = [r for r in await deliveries(pool, warning_id) if r["channel_kind"] == "sms"]
    assert sorted(sent) == [r["id"] for r in rows]


async def test_a_batch_that_fails_to_record_leaves_the_others_on_the_wire_to_finish(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """Handing back rows that are already on the wire would send them twice."""
    warning_id = await plan(pool, policy, rainstorm())
    sms = GatedChannel(queues=True)
    sms.let_through = 1  # the first batch goes out at once; the next wait on the wire
    dispatcher = Dispatcher(
        pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup(), poll_seconds=0.01
    )
    record = dispatcher.record
    failed: list[int] = []

    async def database_gone_for_one_batch(
        channel: str, claimed: Sequence[Claimed], results: Sequence[SendResult]
    ) -> None:
        # Gone for that batch as long as its record is tried again (half a lease).
        if not failed or failed == [c.id for c in claimed]:
            failed[:] = [c.id for c in claimed]
            raise OSError("connection to the database lost")
        await record(channel, claimed, results)

    dispatcher.record = database_gone_for_one_batch  # type: ignore[method-assign]
    claims = CountedClaims(dispatcher)

    async def first_batch_failed() -> None:
        await sms.until(lambda: bool(sms.senders))
        async with asyncio.timeout(10):
            await asyncio.wait(sms.senders[:1])
        assert failed

    # The second claim returns only once the first batch has failed to record: the worker
    # finds the failure right after it, before the batch it claimed reaches the channel.
    claims.before[2] = first_batch_failed
    worker = asyncio.create_task(dispatcher.run_worker(sms))
    await sms.until(lambda: sms.holding >= 1)
    assert not worker.done()  # the worker has seen the failure, but waits for the batch on the wire
    sms.gate.set()
    with pytest.raises(OSError, match="database lost"):
        await worker
    assert claims.calls == 2  # …and claimed nothing after it
    given = {m.key for m in sms.sent}
    states = {r["id"]: r["state"] for r in await deliveries(pool, warning_id) if r["id"] in given}
    assert set(failed) < set(states)  # more than the failed batch went out
    # The failed batch waits for its lease; the others finished and were recorded, not handed
    # back to the queue to go out a second time.
    assert {states[i] for i in failed} == {"sending"}
    assert {s for i, s in states.items() if i not in failed} == {"sent"}


async def test_a_queueing_channel_never_has_more_than_a_window_handed_and_unrecorded(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """What a gateway accepted and warnd had not recorded goes out again after a crash (its lease
    runs out): a window of it at most, however many batches are claimed ahead."""
    warning_id = await plan(pool, policy, rainstorm())
    handed: list[int] = []
    unrecorded: list[int] = []  # at each hand-over: handed rows still 'sending' in the database

    class Checked(WindowOfFour):
        async def send(self, batch: list[OutboundMessage]) -> list[SendResult]:  # type: ignore[override]
            handed.extend(m.key for m in batch)
            unrecorded.append(
                await pool.fetchval(
                    "SELECT count(*) FROM deliveries WHERE id = ANY($1::bigint[])"
                    " AND state = 'sending'",
                    handed,
                )
            )
            return await super().send(batch)

    sms = Checked("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(
        pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup(), poll_seconds=0.01
    )
    worker = asyncio.create_task(dispatcher.run_worker(sms))
    try:
        await every_sms_row_sent(pool, warning_id)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    sms_rows = [r["id"] for r in await deliveries(pool, warning_id) if r["channel_kind"] == "sms"]
    assert len(sms_rows) > 4  # more than a window: one batch, handed in shares
    assert sorted(handed) == sms_rows  # every row once
    assert max(unrecorded) <= 4  # 15 when a batch was handed at once


async def test_shares_that_come_back_during_a_record_are_recorded_together(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """One transaction per database round trip, not one per share: a fast link's records keep
    up with it."""
    warning_id = await plan(pool, policy, rainstorm())

    later_may_return = asyncio.Event()

    class Quick(WindowOfFour):
        async def send(self, batch: list[OutboundMessage]) -> list[SendResult]:  # type: ignore[override]
            if self.sent:  # the first share comes back at once, the others when let
                await later_may_return.wait()
            return await super().send(batch)

    sms = Quick("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(
        pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup(), poll_seconds=0.01
    )
    record = dispatcher.record
    first_may_go = asyncio.Event()
    recorded: list[int] = []

    async def held_first(
        channel: str, claimed: Sequence[Claimed], results: Sequence[SendResult]
    ) -> None:
        recorded.append(len(claimed))
        if len(recorded) == 1:
            await first_may_go.wait()
        await record(channel, claimed, results)

    dispatcher.record = held_first  # type: ignore[method-assign]
    worker = asyncio.create_task(dispatcher.run_worker(sms))
    try:
        # Shares of one: the first is being recorded while three more come back, and the
        # window is spent until the first is on record.
        await until(lambda: recorded == [1], what="the first share being recorded")
        later_may_return.set()
        await until(lambda: len(sms.sent) == 4, what="a window back")
        assert recorded == [1]
        first_may_go.set()
        await every_sms_row_sent(pool, warning_id)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert recorded[:2] == [1, 3]
    assert len(sms.sent) == len({m.key for m in sms.sent})


async def test_stopping_sends_what_the_channel_holds_and_hands_back_what_it_was_never_given(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """Claimed ahead is not on the wire: a graceful stop (or the channel given up to another
    process) queues it again at once, for the next holder, instead of sending it on the way out
    or leaving it to its lease."""
    warning_id = await plan(pool, policy, rainstorm())
    sms = GatedChannel(queues=True)
    dispatcher = Dispatcher(
        pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup(), poll_seconds=0.01
    )
    claim = dispatcher.claim
    claimed: list[int] = []

    async def noted(channel: Channel, limit: int) -> list[Claimed]:
        rows = await claim(channel, limit)
        claimed.extend(c.id for c in rows)
        return rows

    dispatcher.claim = noted  # type: ignore[method-assign]
    worker = asyncio.create_task(dispatcher.run_worker(sms))
    await sms.until(lambda: sms.holding >= sms.limits.window)
    await until(lambda: len(claimed) == 6, what="three batches of two claimed")
    dispatcher.stop_claiming()
    sms.gate.set()
    async with asyncio.timeout(10):
        await worker  # returns by itself: a graceful stop
    given = {m.key for m in sms.sent}
    assert len(given) == sms.limits.window  # nothing handed after the stop
    never_handed = set(claimed) - given
    assert len(never_handed) == 2
    states = {
        r["id"]: (r["state"], r["attempts"])
        for r in await deliveries(pool, warning_id)
        if r["id"] in claimed
    }
    assert {states[i] for i in given} == {("sent", 1)}
    # Back in the queue as if never claimed, not left to their lease.
    assert {states[i] for i in never_handed} == {("queued", 0)}


async def test_a_record_that_fails_stops_the_queueing_channel_being_handed_more(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """The database gone: what went out cannot be recorded, and everything handed after it would
    go out again when its lease runs out. A window at most, as for a crash."""
    await plan(pool, policy, rainstorm())

    sms = WindowOfFour("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(
        pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup(), poll_seconds=0.01
    )

    async def gone(channel: str, claimed: Sequence[Claimed], results: Sequence[SendResult]) -> None:
        raise OSError("connection to the database lost")

    dispatcher.record = gone  # type: ignore[method-assign]
    with pytest.raises(OSError, match="database lost"):
        async with asyncio.timeout(10):
            await dispatcher.run_worker(sms)
    assert len(sms.sent) == 4  # the window handed before the first record failed; no more
    rows = await pool.fetch(
        "SELECT state, count(*) FROM deliveries WHERE channel_kind = 'sms' GROUP BY state"
    )
    # The rest of the batch (more than a window) waits for its lease with the four.
    assert {r["state"]: r["count"] for r in rows}["sending"] > 4


async def test_permanent_failure_fails_over_to_the_next_kind(
    pool: asyncpg.Pool, policy: Policy
) -> None:
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
        await dispatcher.record(
            "sms",
            claimed,
            await sms.send([c.message() for c in claimed]),
        )
    row = await pool.fetchrow("SELECT * FROM deliveries WHERE id = $1", household["id"])
    assert row is not None
    assert (row["channel_kind"], row["state"], list(row["fallback"])) == ("voice", "queued", [])
    assert row["error"].startswith("client")


async def test_transient_failures_back_off_then_give_up() -> None:
    claimed = [Claimed(1, 1, "+8613800000001", attempts, (), "t") for attempts in (1, 5)]
    results = [SendResult(1, Outcome.TRANSIENT, reason=Reason.SERVER)]
    retry = classify(claimed[:1], results, max_attempts=5)
    assert len(retry.retry) == 1 and 1.0 <= retry.retry[0][2] <= 6.0
    assert classify(claimed[1:], results, max_attempts=5).give_up == [(1, 5, "server")]


async def test_expired_leases_come_back(pool: asyncpg.Pool, policy: Policy) -> None:
    await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup(), lease_seconds=60)
    claimed = await dispatcher.claim(sms, 3)  # …and the worker dies here
    assert await dispatcher.reclaim_leases() == 0
    clock.advance(61)
    assert await dispatcher.reclaim_leases() == len(claimed)
    again = await dispatcher.claim(sms, 3)
    assert [c.id for c in again] == [c.id for c in claimed]


async def test_receipts_mark_deliveries(pool: asyncpg.Pool, policy: Policy) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup())
    claimed = await dispatcher.claim(sms, 2)
    await dispatcher.record("sms", claimed, await sms.send([c.message() for c in claimed]))
    ok = DeliveryReceipt(f"x-{claimed[0].id}", ReceiptStatus.DELIVERED)
    bad = DeliveryReceipt(f"x-{claimed[1].id}", ReceiptStatus.UNDELIVERABLE)
    unknown = DeliveryReceipt("nope", ReceiptStatus.DELIVERED)
    inbound = Inbound(pool, ManualClock(DAYTIME), Metrics())
    unmatched = await inbound.handle_events("sms", [ok, bad, unknown])
    assert [e.event for e in unmatched] == [unknown]
    states = {
        r["id"]: r["state"]
        for r in await deliveries(pool, warning_id)
        if r["id"] in {claimed[0].id, claimed[1].id}
    }
    assert states == {claimed[0].id: "delivered", claimed[1].id: "failed"}
    assert await pool.fetchval("SELECT count(*) FROM inbound_events WHERE NOT matched") == 1


async def test_a_receipt_before_its_send_is_recorded_is_kept_and_applied_later(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """A fast SMSC can report delivery before the worker has written the gateway's id: the
    receipt is kept at once as unmatched, and applied once the send is recorded."""
    warning_id = await plan(pool, policy, rainstorm())
    sms = RecordingChannel("sms", ChannelKind.SMS)
    clock = ManualClock(DAYTIME)
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup())
    inbound = Inbound(pool, clock, Metrics())
    claimed = await dispatcher.claim(sms, 2)
    results = await sms.send([c.message() for c in claimed])
    early = [
        DeliveryReceipt(f"x-{claimed[0].id}", ReceiptStatus.DELIVERED),
        DeliveryReceipt(f"x-{claimed[1].id}", ReceiptStatus.UNDELIVERABLE, detail="no signal"),
    ]
    kept = await inbound.handle_events("sms", early)
    assert [e.event for e in kept] == early  # nothing to match yet
    assert await inbound.match_early_receipts() == 0
    await dispatcher.record("sms", claimed, results)
    clock.advance(1)
    assert await inbound.match_early_receipts() == 2
    rows = {r["id"]: r for r in await deliveries(pool, warning_id)}
    assert rows[claimed[0].id]["state"] == "delivered"
    assert (rows[claimed[1].id]["state"], rows[claimed[1].id]["error"]) == (
        "failed",
        "undeliverable no signal",
    )
    assert await pool.fetchval("SELECT count(*) FROM inbound_events WHERE NOT matched") == 0
    assert await inbound.match_early_receipts() == 0  # applied once


async def test_the_inbound_stage_applies_an_early_receipt_once_its_send_is_recorded(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """In a running process the receipt does not wait for housekeeping: the dispatcher's
    record wakes the inbound stage, which matches it."""
    warning_id = await plan(pool, policy, rainstorm())
    sms = RecordingChannel("sms", ChannelKind.SMS)
    clock = ManualClock(DAYTIME)
    recorded = Signal()
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup(), recorded=recorded)
    inbound = Inbound(pool, clock, Metrics(), recorded=recorded)
    claimed = await dispatcher.claim(sms, 1)
    results = await sms.send([c.message() for c in claimed])
    running = asyncio.create_task(inbound.run(sms))
    try:
        sms.emit(DeliveryReceipt(f"x-{claimed[0].id}", ReceiptStatus.DELIVERED))
        unmatched = "SELECT count(*) FROM inbound_events WHERE NOT matched"
        await until(lambda: pool.fetchval(unmatched), within=10)
        await dispatcher.record("sms", claimed, results)
        state = "SELECT state FROM deliveries WHERE id = $1"
        await until(lambda: equals(pool.fetchval(state, claimed[0].id), "delivered"), within=10)
        # The kept receipt is marked matched a statement after its delivery is: wait for both.
        await until(lambda: equals(pool.fetchval(unmatched), 0), within=10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert warning_id


async def test_a_key_press_reported_before_its_call_was_recorded_still_answers(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """A call answered with "1" and reported before the worker recorded the call: the answer
    used to be lost as an unknown call; it is kept and applied once the call is recorded."""
    warning_id = await plan(pool, policy, rainstorm())
    voice = RecordingChannel("voice", ChannelKind.VOICE)
    clock = ManualClock(DAYTIME)
    dispatcher = Dispatcher(pool, {"voice": voice}, clock, Metrics(), Wakeup())
    inbound = Inbound(pool, clock, Metrics(), answers=Answers(pool, clock))
    claimed = [c for c in await dispatcher.claim(voice, 50) if c.address == "+8613900000001"]
    assert claimed, "the county head is called"
    results = await voice.send([c.message() for c in claimed])
    press = CallResult(f"x-{claimed[0].id}", answered=True, keys="1")
    kept = await inbound.handle_events("voice", [press])
    assert [e.event for e in kept] == [press]
    state = "SELECT state FROM callouts WHERE warning_id = $1 AND phone = '+8613900000001'"
    assert await pool.fetchval(state, warning_id) != "acknowledged"
    await dispatcher.record("voice", claimed, results)
    assert await inbound.retry("voice", kept) == []
    assert await pool.fetchval(state, warning_id) == "acknowledged"
    assert await pool.fetchval("SELECT bool_and(matched) FROM inbound_events") is True


async def test_an_early_receipt_older_than_the_window_is_left_unmatched(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    await plan(pool, policy, rainstorm())
    sms = RecordingChannel("sms", ChannelKind.SMS)
    clock = ManualClock(DAYTIME)
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup())
    inbound = Inbound(pool, clock, Metrics())
    claimed = await dispatcher.claim(sms, 1)
    results = await sms.send([c.message() for c in claimed])
    await inbound.handle_events(
        "sms", [DeliveryReceipt(f"x-{claimed[0].id}", ReceiptStatus.DELIVERED)]
    )
    await dispatcher.record("sms", claimed, results)
    clock.advance(EARLY_RECEIPT_WINDOW.total_seconds() + 1)
    assert await inbound.match_early_receipts() == 0
    assert await pool.fetchval("SELECT count(*) FROM inbound_events WHERE NOT matched") == 1


def test_decide_replaces_a_kind_nobody_configured(policy: Policy) -> None:
    plans = decide(policy, rainstorm(), DAYTIME, available={"sms"})
    assert all(set(p.kinds) == {"sms"} for p in plans.values() if p.audience != Audience.BROADCAST)
    assert Audience.BROADCAST not in plans or plans[Audience.BROADCAST].kinds == ("sms",)


async def send_all(dispatcher: Dispatcher, channel: RecordingChannel, size: int = 10) -> None:
    while claimed := await dispatcher.claim(channel, size):
        results = await channel.send([c.message() for c in claimed])
        await dispatcher.record(channel.name, claimed, results)


async def test_a_mixed_batch_is_recorded_in_one_go(pool: asyncpg.Pool, policy: Policy) -> None:
    await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup())
    claimed = await dispatcher.claim(sms, 3)
    results = [
        SendResult(claimed[0].id, Outcome.ACCEPTED, external_id="a"),
        SendResult(claimed[1].id, Outcome.TRANSIENT, reason=Reason.RATE_LIMITED),
        SendResult(claimed[2].id, Outcome.PERMANENT, reason=Reason.CLIENT, detail="no such number"),
    ]
    await dispatcher.record("sms", claimed, results)
    rows = {
        r["id"]: r
        for r in await pool.fetch(
            "SELECT * FROM deliveries WHERE id = ANY($1::bigint[])", [c.id for c in claimed]
        )
    }
    assert (rows[claimed[0].id]["state"], rows[claimed[0].id]["external_id"]) == ("sent", "a")
    retry = rows[claimed[1].id]
    assert retry["state"] == "queued" and retry["due_at"] > DAYTIME
    assert retry["error"] == "rate_limited"
    failed = rows[claimed[2].id]
    assert failed["state"] in ("failed", "queued")  # failed, or failed over to another kind
    assert failed["error"] == "client: no such number"


async def test_a_stale_worker_cannot_overwrite_the_new_claim(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup(), lease_seconds=10)
    stale = await dispatcher.claim(sms, 1)
    clock.advance(11)
    await dispatcher.reclaim_leases()
    fresh = await dispatcher.claim(sms, 1)
    assert [c.id for c in fresh] == [c.id for c in stale]
    await dispatcher.record("sms", fresh, [SendResult(fresh[0].id, Outcome.ACCEPTED, "new")])
    await dispatcher.record(
        "sms", stale, [SendResult(stale[0].id, Outcome.PERMANENT, reason=Reason.SERVER)]
    )
    row = await pool.fetchrow(
        "SELECT state, external_id FROM deliveries WHERE id = $1", fresh[0].id
    )
    assert row is not None and (row["state"], row["external_id"]) == ("sent", "new")


async def test_fail_over_carries_the_text_of_the_new_kind(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    rule = policy.rule("rainstorm", Level.RED).audiences[Audience.HOUSEHOLD]
    assert rule.fallback, "the default red policy falls households back to another kind"
    sms = RecordingChannel("sms", ChannelKind.SMS, fail_prefix="+86138")
    dispatcher = Dispatcher(pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup())
    await send_all(dispatcher, sms)
    rows = await pool.fetch(
        """SELECT d.channel_kind, d.state, m.channel_kind AS text_kind
             FROM deliveries d JOIN messages m ON m.id = d.message_id
            WHERE d.warning_id = $1 AND d.audience = 'household'""",
        warning_id,
    )
    assert rows and all(
        (r["channel_kind"], r["state"], r["text_kind"])
        == (rule.fallback[0], "queued", rule.fallback[0])
        for r in rows
    )


async def test_a_cancel_before_planning_means_nothing_is_planned(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    original = rainstorm()
    stored = await store_warning(pool, original, source="test", now=DAYTIME)
    cancel = await store_warning(pool, cancel_of(original), source="test", now=DAYTIME)
    planner = Planner(pool, lambda: policy, ManualClock(DAYTIME), LIMITS)
    # Only the Cancel is planned, and it has nobody to notify: nobody was reached.
    results = await planner.plan_pending()
    assert [(r.warning_id, r.deliveries, r.done) for r in results] == [(cancel.warning_id, 0, True)]
    assert await deliveries(pool, stored.warning_id) == []
    state = await pool.fetchrow(
        "SELECT state, plan_state FROM warnings WHERE id = $1", stored.warning_id
    )
    assert state is not None and (state["state"], state["plan_state"]) == ("cancelled", "done")


async def test_rows_of_a_cancelled_warning_never_go_out_again(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup(), lease_seconds=10)
    in_flight = await dispatcher.claim(sms, 2)  # …the worker dies while these are sending
    await store_warning(pool, cancel_of(rainstorm()), source="test", now=DAYTIME)
    clock.advance(11)
    assert await dispatcher.reclaim_leases() == len(in_flight)
    assert await dispatcher.claim(sms, 100) == []
    states = {r["state"] for r in await deliveries(pool, warning_id)}
    assert states == {"cancelled"}


@pytest.mark.parametrize(("status", "source"), [("Test", "test"), ("Actual", "another-feed")])
async def test_only_the_same_source_and_status_can_end_a_warning(
    pool: asyncpg.Pool, policy: Policy, status: str, source: str
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    intruder = NormalisedWarning(**{**cancel_of(rainstorm()).__dict__, "status": status})
    with pytest.raises(InputError, match="cannot end it"):
        await store_warning(pool, intruder, source=source, now=DAYTIME)
    assert await pool.fetchval("SELECT state FROM warnings WHERE id = $1", warning_id) == "active"
    assert await pool.fetchval("SELECT count(*) FROM warnings") == 1


async def test_a_plan_resumes_after_a_crash_without_gaps_or_duplicates(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    full = {
        (r["audience"], r["address"], r["channel_kind"]) for r in await deliveries(pool, warning_id)
    }
    # The planner died after step 5 (the first household chunk): later rows were never written.
    await pool.execute(
        "DELETE FROM deliveries WHERE warning_id = $1 AND audience = 'household' "
        "AND division_code = $2",
        warning_id,
        seed.VILLAGE_R2,
    )
    await pool.execute(
        "UPDATE warnings SET plan_state = 'planning', plan_cursor = $2 WHERE id = $1",
        warning_id,
        len(FIRST_STEPS) + 1,
    )
    await Planner(
        pool, lambda: policy, ManualClock(DAYTIME), LIMITS, villages_per_chunk=1
    ).plan_pending()
    again = {
        (r["audience"], r["address"], r["channel_kind"]) for r in await deliveries(pool, warning_id)
    }
    assert again == full


async def test_the_most_urgent_warning_is_planned_next(pool: asyncpg.Pool, policy: Policy) -> None:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    yellow = await store_warning(pool, rainstorm(Level.YELLOW), source="test", now=DAYTIME)
    quake = NormalisedWarning(
        **{**rainstorm(Level.ORANGE).__dict__, "hazard": "earthquake", "identifier": "eq-1"}
    )
    red = await store_warning(pool, rainstorm(Level.RED), source="test", now=DAYTIME)
    seismic = await store_warning(pool, quake, source="test", now=DAYTIME)
    order = await pool.fetch(sql("plan_candidates"), DAYTIME)
    assert [r["id"] for r in order] == [seismic.warning_id, red.warning_id, yellow.warning_id]


async def test_a_warning_that_fails_to_plan_does_not_block_the_others(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    broken = await store_warning(pool, rainstorm(Level.RED), source="test", now=DAYTIME)
    fine = await store_warning(pool, rainstorm(Level.YELLOW), source="test", now=DAYTIME)

    class Flaky(Planner):
        async def _step(self, conn: Conn, warning_id: int) -> PlanResult:
            if warning_id == broken.warning_id:
                raise RuntimeError("template exploded")
            return await super()._step(conn, warning_id)

    await Flaky(pool, lambda: policy, ManualClock(DAYTIME), LIMITS).plan_pending()
    rows = {r["id"]: r for r in await pool.fetch("SELECT id, plan_state, plan_error FROM warnings")}
    assert rows[fine.warning_id]["plan_state"] == "done"
    assert rows[broken.warning_id]["plan_error"] == "RuntimeError: template exploded"


async def test_planning_hands_each_voice_and_loudspeaker_text_to_its_channels_once(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """Speech is rendered when a warning is planned, never while a callee waits: the planner
    hands every text but SMS to the channels of its kind, each text once."""
    async with pool.acquire() as conn:
        await seed.seed(conn)
    handed: list[tuple[str, str]] = []

    async def prepare(kind: str, texts: Sequence[str]) -> None:
        handed.extend((kind, text) for text in texts)

    stored = await store_warning(pool, rainstorm(), source="test", now=DAYTIME)
    planner = Planner(
        pool, lambda: policy, ManualClock(DAYTIME), LIMITS, villages_per_chunk=1, prepare=prepare
    )
    await planner.plan_pending()
    stored_texts = await pool.fetch(
        "SELECT channel_kind, body FROM messages WHERE warning_id = $1 AND channel_kind <> 'sms'",
        stored.warning_id,
    )
    assert sorted(handed) == sorted((r["channel_kind"], r["body"]) for r in stored_texts)
    assert {kind for kind, _ in handed} == {"voice", "broadcast"}
    assert len(handed) == len(set(handed))


async def test_a_channel_is_told_the_warning_and_priority_of_each_message(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """A loudspeaker needs the level, the hazard, the expiry and the exercise flag of what it is
    commanded to play; dispatch hands them with every message, one context per warning."""
    warning = rainstorm(status="Exercise")
    warning_id = await plan(pool, policy, warning)
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup())
    claimed = await dispatcher.claim(sms, 50)
    assert claimed, "the exercise's responders"
    rows = await pool.fetch("SELECT id, priority FROM deliveries WHERE warning_id = $1", warning_id)
    priorities = {r["id"]: r["priority"] for r in rows}
    messages = [c.message() for c in claimed]
    assert {m.priority for m in messages} == {priorities[m.key] for m in messages}
    contexts = {m.warning for m in messages}
    assert contexts == {
        WarningContext(warning_id, "rainstorm", "red", exercise=True, expires_at=warning.expires)
    }


async def test_deliveries_past_their_expiry_are_never_sent_late_nor_failed_over(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """An earthquake alert that can no longer arrive before the shaking is dropped: by the claim
    when it is already late, by the channel (reason EXPIRED) when it became late while held
    there; either way cancelled as expired, and no other channel is tried (it would be later)."""
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    late, held = "+8613900000000", "+8613900000001"
    await pool.execute(
        "UPDATE deliveries SET expires_at = $2 WHERE warning_id = $1 AND address = $3",
        warning_id,
        DAYTIME - timedelta(seconds=1),
        late,
    )
    await pool.execute(
        "UPDATE deliveries SET expires_at = $2 WHERE warning_id = $1 AND address = $3",
        warning_id,
        DAYTIME + timedelta(seconds=5),
        held,
    )
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup())
    claimed = await dispatcher.claim(sms, 1000)
    assert late not in {c.address for c in claimed}
    assert {c.expires_at for c in claimed if c.address == held} == {DAYTIME + timedelta(seconds=5)}
    results = [
        SendResult(c.id, Outcome.PERMANENT, reason=Reason.EXPIRED, detail="expired 0.2 s before")
        if c.address == held
        else SendResult(c.id, Outcome.ACCEPTED, external_id=f"x-{c.id}")
        for c in claimed
    ]
    count = "SELECT count(*) FROM deliveries WHERE warning_id = $1"
    before = await pool.fetchval(count, warning_id)
    await dispatcher.record("sms", claimed, results)
    assert await pool.fetchval(count, warning_id) == before  # no failover row
    rows = await pool.fetch(
        "SELECT address, channel_kind, state, error FROM deliveries "
        "WHERE warning_id = $1 AND address = ANY($2::text[]) ORDER BY id",
        warning_id,
        [late, held],
    )
    by_address = {(r["address"], r["channel_kind"]): (r["state"], r["error"]) for r in rows}
    assert by_address[(late, "sms")] == ("cancelled", "expired: too late to send, not sent late")
    assert by_address[(held, "sms")] == ("cancelled", "expired: expired 0.2 s before")
