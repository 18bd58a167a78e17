"""The whole daemon: CAP over HTTP → planning → simulated channels → states in PostgreSQL,
and a warnd process killed with SIGKILL in the middle of a fan-out loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from channels.base import CallResult, ChannelKind, OutboundMessage, SendResult
from tests import seed
from tests.fixtures import (
    FEED_TOKEN,
    RecordingChannel,
    free_port,
    post_cap,
    rainstorm_cap,
    start_worker,
)
from tests.waiting import until, until_while_running
from warnd.core.config import load_config_data
from warnd.db.pool import connect
from warnd.runtime.daemon import Daemon, make_channels
from warnd.runtime.settings import REPO_CONFIG_DIR, Settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Every warning planned to the end, and nothing queued or sending: the fan-out is over. (Between
# two steps of a plan nothing may be queued for a moment, before the next step writes its rows.)
FANNED_OUT = (
    "SELECT count(*) > 0 AND count(*) FILTER (WHERE state IN ('queued', 'sending')) = 0"
    "   AND NOT EXISTS (SELECT 1 FROM warnings WHERE plan_state IN ('pending', 'planning'))"
    "  FROM deliveries"
)


async def counts_by_state(pool: asyncpg.Pool | asyncpg.Connection) -> dict[str, int]:
    rows = await pool.fetch("SELECT state, count(*) AS n FROM deliveries GROUP BY state")
    return {r["state"]: r["n"] for r in rows}


SIM = {
    "type": "simulator",
    "time_scale": 0.001,
    "deliver_probability": 1.0,
    "answer_probability": 1.0,
    "play_probability": 1.0,
}


async def test_cap_red_warning_reaches_the_county_through_the_simulator(seeded: str) -> None:
    channels = make_channels(
        {
            f"sim-{k}": {**SIM, "kind": k, "seed": i}
            for i, k in enumerate(("sms", "voice", "broadcast"))
        },
        simulate=True,
    )
    config = load_config_data({"feeds": {"met": {"token": FEED_TOKEN}}}, source=Path("<test>"))
    daemon = Daemon(Settings(http_port=0), simulate=True, config=config, channels=channels)
    async with daemon.running(seeded) as services:
        assert daemon.port is not None
        now = datetime.now(SHANGHAI)
        status, body = await post_cap(daemon.port, rainstorm_cap("e2e-1", now))
        assert status == 201, body
        await until(lambda: services.pool.fetchval(FANNED_OUT), 20, what="the fan-out to end")
        counts = await counts_by_state(services.pool)
        # Receipts arrive a moment after the sends; wait for them too.
        receipts = "SELECT count(*) FILTER (WHERE state = 'sent') = 0 FROM deliveries"
        await until(lambda: services.pool.fetchval(receipts), what="every receipt")
        rows = await services.pool.fetch(
            "SELECT audience, address, state, division_code FROM deliveries"
        )
        again_status, again = await post_cap(daemon.port, rainstorm_cap("e2e-1", now))
    assert counts.get("queued", 0) == 0 and counts.get("sending", 0) == 0
    reached: dict[str, set[str]] = {}
    for r in rows:
        reached.setdefault(r["audience"], set()).add(r["address"])
    assert reached == seed.RED_RAINSTORM_RENCHENG_BY_AUDIENCE
    assert {r["state"] for r in rows} == {"delivered"}
    assert again_status == 200 and again["warning_id"] == body["warning_id"]


async def test_sighup_reload_keeps_the_old_policy_on_a_bad_file(
    seeded: str, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text((REPO_CONFIG_DIR / "policy.toml").read_text())
    (tmp_path / "templates").symlink_to(REPO_CONFIG_DIR / "templates")
    daemon = Daemon(Settings(http_port=0, policy=policy_file), simulate=True)
    async with daemon.running(seeded) as services:
        before = daemon.policy.current
        policy_file.write_text("[levels.red]\nnonsense = 1\n")
        assert not await daemon.reload_policy()
        assert daemon.policy.current is before
        policy_file.write_text((REPO_CONFIG_DIR / "policy.toml").read_text())
        assert await daemon.reload_policy()
        actions = [
            r["action"]
            for r in await services.pool.fetch("SELECT action FROM audit_log ORDER BY id")
        ]
    assert actions == ["policy_reload_refused", "policy_reloaded"]


class HangsUpOnStop(RecordingChannel):
    """A phone line whose calls are all still ringing when warnd stops: stopping hangs each up
    and reports it, as the sip channel does."""

    def __init__(self) -> None:
        super().__init__("phones", ChannelKind.VOICE)

    async def stop(self) -> None:
        for message in self.sent:
            self.emit(
                CallResult(f"x-{message.key}", answered=False, cause="stopped: warnd stopped")
            )


async def test_what_channels_report_as_they_stop_is_recorded_before_warnd_exits(
    seeded: str,
) -> None:
    phones = HangsUpOnStop()
    config = load_config_data({"feeds": {"met": {"token": FEED_TOKEN}}}, source=Path("<test>"))
    daemon = Daemon(Settings(http_port=0), config=config, channels={"phones": phones})
    in_progress = (
        "SELECT count(*) > 0 AND bool_and(state = 'sent') FROM deliveries "
        "WHERE channel_kind = 'voice' AND NOT EXISTS "
        "(SELECT 1 FROM warnings WHERE plan_state IN ('pending', 'planning'))"
    )
    async with daemon.running(seeded) as services:
        assert daemon.port is not None
        status, body = await post_cap(daemon.port, rainstorm_cap("stop-1", datetime.now(SHANGHAI)))
        assert status == 201, body
        await until(lambda: services.pool.fetchval(in_progress), 20, what="every call ringing")
    conn = await connect(seeded)
    try:
        calls = await conn.fetch("SELECT state, error FROM deliveries WHERE channel_kind = 'voice'")
    finally:
        await conn.close()
    assert len(calls) == len(phones.sent) > 0
    assert {(c["state"], c["error"]) for c in calls} == {("failed", "stopped: warnd stopped")}


class SlowGateway(RecordingChannel):
    """An SMS gateway that answers a batch only when the test lets it (or never)."""

    def __init__(self) -> None:
        super().__init__("gateway", ChannelKind.SMS)
        self.on_the_wire = asyncio.Event()
        self.answer = asyncio.Event()

    async def send(self, batch: list[OutboundMessage]) -> list[SendResult]:  # type: ignore[override]
        self.on_the_wire.set()
        await self.answer.wait()
        return await super().send(batch)


async def stop_while_on_the_wire(seeded: str, gateway: SlowGateway, grace: float) -> None:
    """Run warnd, post a red warning, and stop it while the gateway holds its first batch."""
    config = load_config_data({"feeds": {"met": {"token": FEED_TOKEN}}}, source=Path("<test>"))
    settings = Settings(http_port=0, stop_grace=grace)
    daemon = Daemon(settings, config=config, channels={"gateway": gateway})
    async with daemon.running(seeded):
        assert daemon.port is not None
        status, body = await post_cap(daemon.port, rainstorm_cap("grace-1", datetime.now(SHANGHAI)))
        assert status == 201, body
        await asyncio.wait_for(gateway.on_the_wire.wait(), 20)
        # Leaving the block stops warnd; the gateway answers a moment into the stop.
        asyncio.get_running_loop().call_later(0.2, gateway.answer.set)


async def sms_states(seeded: str) -> dict[str, int]:
    conn = await connect(seeded)
    try:
        return await counts_by_state(conn)
    finally:
        await conn.close()


async def test_a_graceful_stop_records_what_is_on_the_wire_and_hands_nothing_back(
    seeded: str,
) -> None:
    gateway = SlowGateway()
    await stop_while_on_the_wire(seeded, gateway, grace=20)
    states = await sms_states(seeded)
    # What the gateway took is recorded sent; nothing went back to the queue to go twice.
    assert states.get("sent") == len(gateway.sent) > 0
    assert states.get("sending", 0) == 0


async def test_past_the_grace_what_is_still_unanswered_goes_back_to_the_queue(
    seeded: str,
) -> None:
    gateway = SlowGateway()
    await stop_while_on_the_wire(seeded, gateway, grace=0)
    states = await sms_states(seeded)
    assert states.get("sent", 0) == 0 and states.get("sending", 0) == 0
    assert states.get("queued", 0) > 0  # handed back: another process sends it


WORKER_CONFIG = """
[feeds.met]
token = "{token}"

[channels.slow-sms]
type = "simulator"
kind = "sms"
rate_per_s = 4
window = 2
time_scale = 0.001
deliver_probability = 1.0

[channels.slow-voice]
type = "simulator"
kind = "voice"
rate_per_s = 4
window = 2
time_scale = 0.001

[channels.slow-broadcast]
type = "simulator"
kind = "broadcast"
rate_per_s = 4
window = 2
time_scale = 0.001
"""


@pytest.fixture
def worker_env(seeded: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    config = tmp_path / "warnd.toml"
    config.write_text(WORKER_CONFIG.format(token=FEED_TOKEN))
    yield {
        **os.environ,
        "WARND_DATABASE_URL": seeded,
        "WARND_CONFIG": str(config),
        "WARND_HTTP_PORT": str(free_port()),
        "WARND_LEASE_SECONDS": "1",
        "WARND_LOG_LEVEL": "warning",
    }


# Starts warnd twice as a child process, which may take up to a minute each on a loaded machine
# (start_worker); the whole test takes about 6 s on an idle one.
@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_kill_9_during_fan_out_loses_nothing(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    db_url = worker_env["WARND_DATABASE_URL"]
    log = tmp_path / "warnd.log"
    process = await start_worker(worker_env, log)
    conn = await connect(db_url)
    try:
        status, body = await post_cap(
            int(worker_env["WARND_HTTP_PORT"]), rainstorm_cap("crash-1", datetime.now(SHANGHAI))
        )
        assert status == 201, body
        # Let some deliveries go out while others wait, then kill the process without warning.
        halfway = (
            "SELECT count(*) FILTER (WHERE state IN ('sent', 'delivered')) >= 2"
            "   AND count(*) FILTER (WHERE state IN ('queued', 'sending')) >= 3"
            "  FROM deliveries"
        )
        await until_while_running(
            process, log, lambda: conn.fetchval(halfway), within=20, what="a fan-out half done"
        )
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
        before = {r["id"]: r["state"] for r in await conn.fetch("SELECT id, state FROM deliveries")}
        unfinished = [i for i, s in before.items() if s in ("queued", "sending")]
        assert unfinished, ("the kill came too late to test anything", before)
        restarted = await start_worker(worker_env, log)
        try:
            await until_while_running(
                restarted,
                log,
                lambda: conn.fetchval(FANNED_OUT),
                within=60,
                what="the restarted warnd to finish the fan-out",
            )
            counts = await counts_by_state(conn)
        finally:
            restarted.terminate()
            await asyncio.wait_for(restarted.wait(), 10)
        rows = await conn.fetch(
            "SELECT id, audience, address, channel_kind, state, sent_at, error FROM deliveries"
        )
    finally:
        await conn.close()
    after = {r["id"]: r for r in rows}
    assert set(before) <= set(after), counts  # nothing lost…
    reached: dict[str, set[str]] = {}
    for r in rows:
        reached.setdefault(r["audience"], set()).add(r["address"])
    assert reached == seed.RED_RAINSTORM_RENCHENG_BY_AUDIENCE, (counts, before)  # …all planned…
    # …and nothing twice
    assert len(rows) == len({(r["audience"], r["address"], r["channel_kind"]) for r in rows})
    assert counts.get("queued", 0) == 0 and counts.get("sending", 0) == 0
    # Every row the killed process left unfinished was handed to a channel by the new one (a
    # voice call may then end unanswered: failed, with its sent time recorded), unless its
    # call-out was answered first.
    for delivery_id in unfinished:
        row = after[delivery_id]
        if row["state"] == "cancelled":
            # Its call-out was answered on another channel first (a simulated phone pressed 1),
            # which stops the attempts still queued: right, and a matter of timing.
            assert row["error"] == "answered", dict(row)
            continue
        assert row["state"] in ("sent", "delivered", "failed"), dict(row)
        assert row["sent_at"] is not None, dict(row)
