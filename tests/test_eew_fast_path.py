"""The earthquake fast path on a real database: an M 5.5 report reaches the highest-intensity
village's loudspeaker first, then schools and care homes, then responders, each with its own
countdown; the durable record follows (warning, deliveries with the ids the alerts went out with,
call-outs) and planning goes on with the households only; a larger second report alerts the
villages whose level rose, and a cancel tells everyone reached."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg

from channels.base import ChannelKind, Outcome
from channels.smpp.channel import SmppChannel
from channels.smpp.config import SmppConfig
from tests import seed
from tests.fixtures import (
    DAYTIME,
    FEED_TOKEN,
    LIMITS,
    RecordingChannel,
    insert_eew_report,
    plan,
    rainstorm,
)
from tests.smsc import TestSmsc
from tests.waiting import until
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock, SystemClock
from warnd.core.config import load_config_data
from warnd.core.eew import EewReport
from warnd.db.notify import Wakeup
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.eew import FastPath, IdReserve
from warnd.pipeline.planner import FIRST_STEPS, Planner
from warnd.policy.model import Policy
from warnd.runtime.daemon import Daemon
from warnd.runtime.settings import Settings

ORIGIN = DAYTIME - timedelta(seconds=1)


def report(report_no: int = 1, magnitude: float = 5.5, **changes: object) -> EewReport:
    facts: dict[str, object] = {
        "event_id": "CEIC-1",
        "report_no": report_no,
        "origin_time": ORIGIN,
        "lat": 35.40,
        "lon": 116.60,
        "depth_km": 10.0,
        "magnitude": magnitude,
        "place": "济宁市任城区",
        **changes,
    }
    return EewReport(**facts)  # type: ignore[arg-type]


class Setup:
    def __init__(self, pool: asyncpg.Pool, policy: Policy) -> None:
        self.clock = ManualClock(DAYTIME)
        self.speakers = RecordingChannel("speakers", ChannelKind.BROADCAST)
        self.sms = RecordingChannel("sms", ChannelKind.SMS)
        channels = {"speakers": self.speakers, "sms": self.sms}
        dispatcher = Dispatcher(pool, channels, self.clock, Metrics(), Wakeup())
        self.fast = FastPath(pool, channels, lambda: policy, self.clock, dispatcher.record)


async def test_an_m55_report_alerts_the_nearest_villages_first_and_is_recorded(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    setup = Setup(pool, policy)
    await setup.fast(report())
    # Handed at once, before any record: 张庄村 (degree 6, 10.6 km) before 王家村 (degree 3,
    # 68 km); 李庄村 is a blind spot (no loudspeaker).
    assert [m.address for m in setup.speakers.sent] == [seed.VILLAGE_R1, seed.VILLAGE_S1]
    first = setup.speakers.sent[0]
    assert (
        first.priority == 0 and first.warning is not None and first.warning.hazard == "earthquake"
    )
    assert "秒后" in first.text and "烈度6度" in first.text and not first.text.startswith("【")
    assert first.expires_at is not None and first.expires_at > DAYTIME
    # Village by village: its schools and care homes, then its responders and those above it
    # (the geological-only and flood-only ones never), each with its village's countdown;
    # superiors once, with their worst village's text.
    assert [m.address for m in setup.sms.sent] == [
        "+8613700000001",  # 张庄小学
        "+8613900000004",  # 张庄村
        "+8613900000005",
        "+8613900000001",  # 任城区
        "+8613900000000",  # 济宁市
        "+8613900000006",  # 李庄村
        "+8613700000002",  # 泗河敬老院 (王家村)
        "+8613900000014",  # 王家村
        "+8613900000011",  # 泗水县
    ]
    school, care_home = setup.sms.sent[0], setup.sms.sent[6]
    assert school.text.startswith("【济宁市应急管理局】") and "烈度6度" in school.text
    assert "烈度3度" in care_home.text  # far away: mild shaking, later

    await setup.fast.drain()
    warning = await pool.fetchrow("SELECT * FROM warnings WHERE source = 'eew'")
    assert warning is not None
    assert (warning["hazard"], warning["level"], warning["state"]) == (
        "earthquake",
        "orange",
        "active",
    )
    assert warning["plan_cursor"] == len(FIRST_STEPS) and warning["plan_state"] == "pending"
    rows = await pool.fetch(
        "SELECT id, address, state, expires_at, callout_id, audience FROM deliveries "
        "WHERE warning_id = $1 ORDER BY id",
        warning["id"],
    )
    sent = {m.key: m for m in [*setup.speakers.sent, *setup.sms.sent]}
    assert {r["id"] for r in rows} == set(sent)  # recorded under the ids they went out with
    assert {r["state"] for r in rows} == {"sent"}
    assert all(r["expires_at"] == sent[r["id"]].expires_at for r in rows)
    callouts = await pool.fetch(
        "SELECT phone, state FROM callouts WHERE warning_id = $1", warning["id"]
    )
    responders = {r["address"] for r in rows if r["audience"] == "responder"}
    assert {c["phone"] for c in callouts} == responders
    assert {c["state"] for c in callouts} == {"notified"}
    assert all(r["callout_id"] is not None for r in rows if r["audience"] == "responder")

    # Planning goes on with the field tasks and the households: nobody gets the alert twice.
    await Planner(pool, lambda: policy, setup.clock, LIMITS).plan_pending()
    planned = await pool.fetch(
        "SELECT audience, address FROM deliveries WHERE warning_id = $1 AND id <> ALL($2)",
        warning["id"],
        list(sent),
    )
    households = [r["address"] for r in planned if r["audience"] == "household"]
    assert {r["audience"] for r in planned} == {"household", "field_task"}
    assert len(set(households)) == len(households) > 0
    # Orange: helpers knock on the doors of the special groups, and the blind spot (李庄村, no
    # loudspeaker) gets its gong — once each.
    tasks = await pool.fetch(
        "SELECT kind, village_code FROM field_tasks WHERE warning_id = $1 ORDER BY kind",
        warning["id"],
    )
    kinds = [t["kind"] for t in tasks]
    assert "door_knock" in kinds and "gong" in kinds
    assert [t["village_code"] for t in tasks if t["kind"] == "gong"] == [seed.VILLAGE_R2]
    await Planner(pool, lambda: policy, setup.clock, LIMITS).plan_pending()
    assert await pool.fetchval(
        "SELECT count(*) FROM field_tasks WHERE warning_id = $1", warning["id"]
    ) == len(tasks)


async def test_a_larger_report_alerts_where_the_level_rose_and_a_cancel_tells_everyone(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    setup = Setup(pool, policy)
    await setup.fast(report())
    await setup.fast.drain()
    before = len(setup.speakers.sent), len(setup.sms.sent)
    # M 6.0: 张庄村 and 李庄村 rise to degree 7 (red); 王家村 stays at degree 4 (yellow).
    setup.clock.advance(2)
    await setup.fast(report(2, 6.0))
    await setup.fast.drain()
    again = setup.speakers.sent[before[0] :]
    assert [m.address for m in again] == [seed.VILLAGE_R1]
    assert "7度" in again[0].text  # the shaking is there by now: 地震已发生，立即避险
    texted = {m.address for m in setup.sms.sent[before[1] :]}
    assert "+8613900000014" not in texted and "+8613700000002" not in texted
    assert {"+8613700000001", "+8613900000004", "+8613900000006"} <= texted
    # The households of the villages whose level rose hear of it again, and only they.
    await Planner(pool, lambda: policy, setup.clock, LIMITS).plan_pending()
    raised = await pool.fetch(
        """SELECT DISTINCT h.village_code FROM deliveries d
             JOIN warnings w ON w.id = d.warning_id
             JOIN households h ON h.id = d.recipient_id
            WHERE w.identifier = 'CEIC-1#2' AND d.audience = 'household'"""
    )
    assert {r["village_code"] for r in raised} == {seed.VILLAGE_R1, seed.VILLAGE_R2}
    # The same report again, or an older one, changes nothing.
    await setup.fast(report(2, 6.0))
    assert len(setup.speakers.sent) == before[0] + 1

    setup.clock.advance(5)
    await setup.fast(report(3, 6.0, cancel=True))
    cancel = await pool.fetchrow("SELECT * FROM warnings WHERE msg_type = 'Cancel'")
    assert cancel is not None
    ended = await pool.fetch("SELECT state FROM warnings WHERE ended_by = $1", cancel["id"])
    assert [r["state"] for r in ended] == ["cancelled", "cancelled"]
    await Planner(pool, lambda: policy, setup.clock, LIMITS).plan_pending()
    told = await pool.fetch(
        "SELECT DISTINCT address FROM deliveries WHERE warning_id = $1 AND notice = 'cancelled'",
        cancel["id"],
    )
    everyone = {m.address for m in [*setup.speakers.sent, *setup.sms.sent]}
    assert {r["address"] for r in told} == everyone


async def test_a_report_posted_by_the_seismic_feed_reaches_the_loudspeakers_through_warnd(
    seeded: str,
) -> None:
    """End to end: the feed's JSON over HTTP, a running daemon, its channels, its database."""
    speakers = RecordingChannel("speakers", ChannelKind.BROADCAST)
    sms = RecordingChannel("sms", ChannelKind.SMS)
    config = load_config_data({"feeds": {"seismic": {"token": FEED_TOKEN}}}, source=Path("<t>"))
    daemon = Daemon(Settings(http_port=0), config=config, channels={"s": speakers, "m": sms})
    origin = datetime.now(UTC) - timedelta(seconds=1)
    body = {
        "event_id": "CEA-E2E",
        "report_no": 1,
        "origin_time": origin.isoformat(),
        "lat": 35.40,
        "lon": 116.60,
        "depth_km": 10,
        "magnitude": 5.5,
        "place": "济宁市任城区",
        "final": False,
        "cancel": False,
        "status": "Actual",
    }
    async with daemon.running(seeded) as services, aiohttp.ClientSession() as http:
        assert daemon.port is not None
        async with http.post(
            f"http://127.0.0.1:{daemon.port}/api/v1/eew",
            json=body,
            headers={"Authorization": f"Bearer {FEED_TOKEN}"},
        ) as response:
            answer = await response.json()
            assert response.status == 202, answer
        assert answer["state"] == "handed"
        assert [m.address for m in speakers.sent] == [seed.VILLAGE_R1, seed.VILLAGE_S1]
        # Every alert handed is recorded sent (counted again each time: the last of them may
        # still be on their way to the doubles when the feed has its answer).
        recorded = (
            "SELECT count(*) FILTER (WHERE d.state = 'sent') = $1 AND count(*) = $1 "
            "FROM deliveries d JOIN warnings w ON w.id = d.warning_id WHERE w.source = 'eew'"
        )
        await until(
            lambda: services.pool.fetchval(recorded, len(speakers.sent) + len(sms.sent)),
            what="the alerts recorded",
        )


async def test_an_earthquakes_sms_overtake_a_rainstorm_already_held_by_the_smsc_link(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """A red rainstorm's messages wait in an SMPP link's lanes (one message in flight, the SMSC
    slow to answer); an earthquake report arrives: every alert of it goes on the wire next,
    ahead of the rainstorm's messages still waiting, and the rainstorm's follow."""
    smsc = TestSmsc()
    await smsc.start()
    smsc.response_delay = 0.1
    sms = SmppChannel(
        "sms",
        SmppConfig.model_validate(
            {
                "type": "smpp",
                "host": "127.0.0.1",
                "port": smsc.port,
                "system_id": "warnd",
                "password": "secret",
                "source_addr": "106573700001",
                "window": 1,
                "rate": 1000,
            }
        ),
    )
    await sms.start()
    try:
        clock = ManualClock(DAYTIME)
        dispatcher = Dispatcher(pool, {"sms": sms}, clock, Metrics(), Wakeup())
        await plan(pool, policy, rainstorm())
        # The link checks expiries on the wall clock: the earthquake happens now.
        fast = FastPath(pool, {"sms": sms}, lambda: policy, SystemClock(), dispatcher.record)
        await fast.prepare()  # as at a daemon's start
        held = await dispatcher.claim(sms, 100)
        rainstorm_sent = asyncio.create_task(sms.send([c.message() for c in held]))
        await smsc.wait_for(lambda: len(smsc.submits) >= 1)
        await fast(report(origin_time=datetime.now(UTC) - timedelta(seconds=1)))
        results = await asyncio.wait_for(rainstorm_sent, 30)
        await fast.drain()
    finally:
        await sms.stop()
        await smsc.stop()
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    quake = ["地震" in s.text for s in smsc.submits]
    first_quake = quake.index(True)
    count = sum(quake)
    # One rainstorm message was on the wire already; then every earthquake alert; then the rest.
    assert quake[first_quake : first_quake + count] == [True] * count
    assert first_quake <= 2 and False in quake[first_quake + count :]
    assert count == 9  # the school, the care home and seven responders (see the first test)


async def test_delivery_ids_come_from_memory_and_are_never_handed_twice(
    pool: asyncpg.Pool,
) -> None:
    reserve = IdReserve(pool, kept=10)
    await reserve.top_up()
    assert len(reserve) == 10
    first = await reserve.take(4)  # from memory; 6 left, above half: no top-up yet
    assert len(reserve) == 6
    second = await reserve.take(3)  # 3 left, below half: topped up in the background
    larger = await reserve.take(25)  # more than in hand: the shortfall is drawn at once
    await until(lambda: len(reserve) >= 5)
    taken = first + second + larger
    assert len(taken) == len(set(taken)) == 32
    # They are the deliveries' own sequence: a row inserted now gets a later id.
    last = await pool.fetchval("SELECT last_value FROM deliveries_id_seq")
    assert max(taken) <= last


async def test_after_a_restart_a_later_report_alerts_only_where_the_level_rose(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """The event's earlier reports are replayed from their rows: a process that did not handle
    them (a restart, or another process) alerts only the villages whose level rises."""
    async with pool.acquire() as conn:
        await seed.seed(conn)
    first = Setup(pool, policy)
    await insert_eew_report(pool, report(), DAYTIME)
    await first.fast(report())
    await first.fast.drain()
    restarted = Setup(pool, policy)
    restarted.clock.advance(2)
    await insert_eew_report(pool, report(2, 5.5), DAYTIME)
    await restarted.fast(report(2, 5.5))  # the same estimate: nothing new
    assert not restarted.speakers.sent and not restarted.sms.sent
    await insert_eew_report(pool, report(3, 6.0), DAYTIME)
    await restarted.fast(report(3, 6.0))
    await restarted.fast.drain()
    # As in one process: only 张庄村's loudspeaker again (degree 7), not 王家村's.
    assert [m.address for m in restarted.speakers.sent] == [seed.VILLAGE_R1]


async def test_a_roster_change_is_loaded_at_the_next_prepare(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    setup = Setup(pool, policy)
    before = await setup.fast.prepare()
    await pool.execute("UPDATE facilities SET contact_phone = '+8613700000099' WHERE id = 1")
    assert await setup.fast.prepare() is before  # nothing said: kept (up to RELOAD)
    setup.fast.roster_changed()  # the roster NOTIFY, as the daemon's listener passes it on
    after = await setup.fast.prepare()
    assert after is not before
    phones = {phone for entries in after.facilities.values() for _, phone, _ in entries}
    assert "+8613700000099" in phones
