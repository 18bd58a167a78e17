"""Three real ``warnd run`` processes on one database and one SMPP link to a test SMSC; and a
record the database refused for a while, written again rather than sent twice.

The SMSC sees one bind at a time and never more than the link's configured rate, however many
processes run; the holder killed with SIGKILL mid fan-out is replaced by another, which binds
and finishes the fan-out: nothing lost, and nothing sent twice but messages that were on the
wire (claimed, unrecorded) when the holder died.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
import structlog

from channels.base import ChannelKind, SendResult
from tests import seed
from tests.fixtures import (
    DAYTIME,
    FEED_TOKEN,
    RecordingChannel,
    free_port,
    plan,
    post_cap,
    rainstorm,
    rainstorm_cap,
    start_worker,
)
from tests.smsc import TestSmsc
from tests.waiting import until
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.core.outcomes import Claimed
from warnd.db.notify import Wakeup
from warnd.db.pool import connect
from warnd.pipeline.dispatch import Dispatcher
from warnd.policy.model import Policy

log = structlog.get_logger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
RATE = 40  # submit_sm a second: the link's contracted rate
WINDOW = 5
HOUSEHOLDS = 400
TAKEOVER = 3.0  # WARND_TAKEOVER_SECONDS
CONFIG = """
[feeds.met]
token = "{token}"

[channels.sms]
type = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "warnd"
password = "secret"
source_addr = "12379"
window = {window}
rate = {rate}
response_timeout_s = 5.0
bind_timeout_s = 5.0
"""
# Every warning planned to the end, and nothing queued or sending: the fan-out is over.
FANNED_OUT = (
    "SELECT count(*) > 0 AND count(*) FILTER (WHERE state IN ('queued', 'sending')) = 0"
    "   AND NOT EXISTS (SELECT 1 FROM warnings WHERE plan_state IN ('pending', 'planning'))"
    "  FROM deliveries"
)


async def holder_of(ports: list[int], channel: str) -> list[int]:
    """The ports of the processes that say they hold ``channel`` (GET /readyz)."""
    held = []
    async with aiohttp.ClientSession() as http:
        for port in ports:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                channels = {c["name"]: c for c in (await response.json())["channels"]}
            if channels[channel]["held"]:
                held.append(port)
    return held


def most_in_one_second(times: list[float]) -> int:
    """The most submits that arrived within any one second."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


# Starts three warnd processes (up to a minute each on a loaded machine) and sends ~450 SMS at
# 40 a second; about 25 s on an idle machine.
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_three_processes_one_smpp_link_one_bind_the_rate_and_a_takeover(
    seeded: str, tmp_path: Path
) -> None:
    smsc = TestSmsc()
    await smsc.start()
    conn = await connect(seeded)
    processes: dict[int, asyncio.subprocess.Process] = {}
    try:
        await conn.execute(
            """INSERT INTO households (ref, village_code, address, phones, exercise)
               SELECT 'X-' || n, $1, '张庄村' || n || '号',
                      ARRAY['+86139' || lpad(n::text, 8, '0')], false
                 FROM generate_series(1, $2::int) AS n""",
            seed.VILLAGE_R1,
            HOUSEHOLDS,
        )
        config = tmp_path / "warnd.toml"
        config.write_text(CONFIG.format(token=FEED_TOKEN, port=smsc.port, window=WINDOW, rate=RATE))
        base = {
            **os.environ,
            "WARND_DATABASE_URL": seeded,
            "WARND_CONFIG": str(config),
            "WARND_LEASE_SECONDS": "4",
            "WARND_TAKEOVER_SECONDS": str(TAKEOVER),
            "WARND_STOP_GRACE": "2",
            "WARND_LOG_LEVEL": "warning",
        }
        logs = {}
        for i in range(3):
            port = free_port()
            logs[port] = tmp_path / f"warnd-{i}.log"
            processes[port] = await start_worker(
                {**base, "WARND_HTTP_PORT": str(port)}, logs[port], simulate=False
            )
        ports = list(processes)
        holders = await holder_of(ports, "sms")
        assert len(holders) == 1, holders
        assert (smsc.binds, smsc.bound_sessions) == (1, 1)

        # The warning comes in through a process that does not hold the link.
        front = next(p for p in ports if p not in holders)
        status, body = await post_cap(front, rainstorm_cap("scale-1", datetime.now(SHANGHAI)))
        assert status == 201, body
        await until(lambda: len(smsc.submits) >= 80, 60, what="80 messages at the SMSC")

        processes[holders[0]].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await asyncio.wait_for(processes.pop(holders[0]).wait(), 10)
        on_the_wire = await conn.fetch(
            "SELECT id, address FROM deliveries WHERE state = 'sending' AND channel_kind = 'sms'"
        )
        await until(lambda: smsc.binds == 2, 60, what="another process to bind")
        takeover = time.monotonic() - killed_at
        await until(lambda: conn.fetchval(FANNED_OUT), 120, what="the fan-out to end")
        survivors = await holder_of(list(processes), "sms")
        rows = await conn.fetch(
            "SELECT address, state FROM deliveries WHERE channel_kind = 'sms' AND audience <> "
            "'escalation'"
        )
    finally:
        await conn.close()
        for process in processes.values():
            process.terminate()
        await asyncio.gather(*(asyncio.wait_for(p.wait(), 30) for p in processes.values()))
        await smsc.stop()

    log.info("takeover_measured", seconds=round(takeover, 2), takeover_seconds=TAKEOVER)
    assert len(survivors) == 1
    # One bind at a time, two in all (the first holder's, its successor's).
    assert smsc.most_bound == 1 and smsc.binds == 2
    # The link's rate, whatever the number of processes: on average over the run, and within
    # any one second give or take the arrival jitter of this test's own event loop (its pacer
    # lets 50 ms of the rate through at once; three processes each pacing alone would show
    # three times the rate).
    arrivals = sorted(s.at for s in smsc.submits)
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= RATE * 1.02
    assert most_in_one_second(arrivals) <= RATE * 5 // 4
    # Nothing lost: every SMS delivery sent, to every address planned.
    assert {r["state"] for r in rows} <= {"sent", "delivered"}, Counter(r["state"] for r in rows)
    firsts = Counter(s.destination for s in smsc.submits if s.udh is None or s.udh[2] == 1)
    planned = Counter(r["address"].lstrip("+") for r in rows)
    assert {a for a in planned if firsts[a] < planned[a]} == set()
    # Sent twice only what the killed holder had on the wire, unrecorded.
    twice = {a: firsts[a] - planned[a] for a in firsts if firsts[a] > planned[a]}
    wire = Counter(r["address"].lstrip("+") for r in on_the_wire)
    assert all(n <= wire[a] for a, n in twice.items()), (twice, wire)
    log.info("sent_twice", messages=sum(twice.values()), on_the_wire=len(on_the_wire))


async def test_a_record_the_database_refused_for_a_while_is_written_again(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """A database cut after messages went out: their outcomes are recorded once it is back,
    not left to the lease (which would send them a second time)."""
    warning_id = await plan(pool, policy, rainstorm())
    sms = RecordingChannel("sms", ChannelKind.SMS)
    dispatcher = Dispatcher(pool, {"sms": sms}, ManualClock(DAYTIME), Metrics(), Wakeup())
    record = dispatcher.record
    refused: list[int] = []

    async def database_back_on_the_third_try(
        channel: str, claimed: Sequence[Claimed], results: Sequence[SendResult]
    ) -> None:
        if len(refused) < 2:
            refused.append(len(claimed))
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        await record(channel, claimed, results)

    dispatcher.record = database_back_on_the_third_try  # type: ignore[method-assign]
    worker = asyncio.create_task(dispatcher.run_worker(sms))
    try:
        unsent = (
            "SELECT count(*) = 0 FROM deliveries "
            "WHERE warning_id = $1 AND channel_kind = 'sms' AND state <> 'sent'"
        )
        await until(lambda: pool.fetchval(unsent, warning_id), what="every SMS recorded sent")
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert len(refused) == 2
    sent = [m.key for m in sms.sent]
    assert len(sent) == len(set(sent))  # each once
