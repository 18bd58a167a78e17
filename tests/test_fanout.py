"""From a stored warning to deliveries in the outbox and through a channel: read back from SQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from channels.base import (
    Channel,
    ChannelKind,
    DeliveryReceipt,
    Limits,
    OutboundMessage,
    Outcome,
    Reason,
    ReceiptStatus,
    SendResult,
)
from warnd.clock import ManualClock
from warnd.dispatch import Claimed, Dispatcher, classify
from warnd.ingest import store_warning
from warnd.metrics import Metrics
from warnd.model import Area, Audience, Level, NormalisedWarning
from warnd.plan import Planner, decide
from warnd.policy import Policy, load_policy
from warnd.settings import REPO_CONFIG_DIR
from warnd.wakeup import Wakeup

from . import seed

DAYTIME = datetime(2026, 7, 29, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
LIMITS = {"sms": 335, "voice": 500, "broadcast": 500}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO_CONFIG_DIR / "policy.toml")


def rainstorm(
    level: Level = Level.RED, *, status: str = "Actual", codes: tuple[str, ...] = (seed.RENCHENG,)
) -> NormalisedWarning:
    return NormalisedWarning(
        sender="jnqxt@sd.cma.cn",
        identifier=f"test-{level}-{status}-{'-'.join(codes)}",
        sent=DAYTIME,
        status=status,
        msg_type="Alert",
        hazard="rainstorm",
        level=level,
        area=Area(codes=codes),
        event=f"暴雨{level.zh}预警",
        headline="任城区气象台发布暴雨预警信号",
        description="预计未来3小时降雨量将达100毫米以上。",
        instruction="请立即转移低洼地带群众。",
    )


class RecordingChannel(Channel):
    """A test double of a gateway: accepts everything and remembers the order it was given."""

    def __init__(self, name: str, kind: ChannelKind, fail_prefix: str = "") -> None:
        super().__init__(name, self.config_model(type="recording"))
        self.kind = kind
        self.sent: list[OutboundMessage] = []
        self.fail_prefix = fail_prefix

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=10_000, window=50, max_text=500)

    async def send(self, batch: list[OutboundMessage]) -> list[SendResult]:  # type: ignore[override]
        results = []
        for m in batch:
            if self.fail_prefix and m.address.startswith(self.fail_prefix):
                results.append(SendResult(m.key, Outcome.PERMANENT, reason=Reason.CLIENT))
            else:
                self.sent.append(m)
                results.append(SendResult(m.key, Outcome.ACCEPTED, external_id=f"x-{m.key}"))
        return results


async def plan(pool: asyncpg.Pool, policy: Policy, warning: NormalisedWarning) -> int:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    stored = await store_warning(pool, warning, source="test", now=DAYTIME)
    planner = Planner(pool, lambda: policy, ManualClock(DAYTIME), LIMITS, villages_per_chunk=1)
    await planner.plan_pending()
    return stored.warning_id


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
    expected_addresses = {
        Audience.RESPONDER: {
            "+8613900000001",
            "+8613900000003",
            "+8613900000004",
            "+8613900000005",
            "+8613900000006",
        },  # not the geological-only county responder, nothing in 泗水县
        Audience.BROADCAST: {seed.VILLAGE_R1},  # 李庄村 is a blind spot
        Audience.FACILITY: {"+8613700000001"},
        Audience.HELPER: {"+8613900000004"},  # two special persons, one helper, one message
        Audience.HOUSEHOLD: {
            "+8613800000001",
            "+8613800000002",
            "+8613800000003",
            "+8613800000004",
            "+8613800000005",
            "+8613800000006",
        },
    }
    for audience, addresses in expected_addresses.items():
        if audience not in rule.audiences:
            assert not [r for r in rows if r["audience"] == audience.value]
            continue
        kinds = rule.audiences[audience].channels
        mine = [r for r in rows if r["audience"] == audience.value]
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
    # county and town responders; village responders and loudspeakers; facilities and helpers;
    # then one household chunk per village (the test plans one village a chunk)
    assert state["plan_cursor"] == 3 + 2


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
    original = rainstorm()
    cancel = NormalisedWarning(
        **{
            **original.__dict__,
            "identifier": "cancel-1",
            "msg_type": "Cancel",
            "sent": DAYTIME + timedelta(minutes=5),
            "references": (f"{original.sender},{original.identifier},{original.sent.isoformat()}",),
        }
    )
    stored = await store_warning(pool, cancel, source="test", now=DAYTIME)
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
        results = await sms.send([OutboundMessage(c.id, c.address, c.body) for c in claimed])
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
            await sms.send([OutboundMessage(c.id, c.address, c.body) for c in claimed]),
        )
    row = await pool.fetchrow("SELECT * FROM deliveries WHERE id = $1", household["id"])
    assert row is not None
    assert (row["channel_kind"], row["state"], list(row["fallback"])) == ("voice", "queued", [])
    assert row["error"].startswith("client")


async def test_transient_failures_back_off_then_give_up() -> None:
    claimed = [Claimed(1, 1, "+8613800000001", attempts, (), "t") for attempts in (1, 5)]
    results = [SendResult(1, Outcome.TRANSIENT, reason=Reason.SERVER)]
    retry = classify(claimed[:1], results, max_attempts=5)
    assert len(retry.retry) == 1 and 1.0 <= retry.retry[0][1] <= 6.0
    assert classify(claimed[1:], results, max_attempts=5).give_up == [(1, "server")]


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
    await dispatcher.record(
        "sms", claimed, await sms.send([OutboundMessage(c.id, c.address, c.body) for c in claimed])
    )
    ok = DeliveryReceipt(f"x-{claimed[0].id}", ReceiptStatus.DELIVERED)
    bad = DeliveryReceipt(f"x-{claimed[1].id}", ReceiptStatus.UNDELIVERABLE)
    unknown = DeliveryReceipt("nope", ReceiptStatus.DELIVERED)
    assert await dispatcher.handle_events("sms", [ok, bad, unknown]) == [unknown]
    assert await dispatcher.handle_events("sms", [unknown], final=True) == []
    states = {
        r["id"]: r["state"]
        for r in await deliveries(pool, warning_id)
        if r["id"] in {claimed[0].id, claimed[1].id}
    }
    assert states == {claimed[0].id: "delivered", claimed[1].id: "failed"}
    assert await pool.fetchval("SELECT count(*) FROM inbound_events WHERE NOT matched") == 1


def test_decide_replaces_a_kind_nobody_configured(policy: Policy) -> None:
    plans = decide(policy, rainstorm(), DAYTIME, available={"sms"})
    assert all(set(p.kinds) == {"sms"} for p in plans.values() if p.audience != Audience.BROADCAST)
    assert Audience.BROADCAST not in plans or plans[Audience.BROADCAST].kinds == ("sms",)
