"""Loudspeakers' states, as their channel reports them, kept on ``speakers`` rows through the real
inbound path: the latest report wins whatever order the broker delivers them in, a heartbeat keeps
the readings a state change does not carry, and a play confirmation lands on the speaker whose
command it confirms."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from channels.base import DeviceConfirmation, DeviceStatus
from tests import seed
from tests.fixtures import DAYTIME, plan, rainstorm
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.pipeline.inbound import Inbound
from warnd.policy.model import Policy

CHANNEL = "speakers"


async def speaker(pool: asyncpg.Pool, speaker_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT * FROM speakers WHERE channel = $1 AND id = $2", CHANNEL, speaker_id
    )
    assert row is not None, speaker_id
    return row


async def test_the_latest_report_of_each_speaker_is_kept_with_its_readings(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    inbound = Inbound(pool, ManualClock(DAYTIME), Metrics())
    t = DAYTIME
    beat = DeviceStatus(
        seed.VILLAGE_R1, True, heartbeat=True, power="mains", battery=80, volume=70, at=t
    )
    # Offline (the broker's Last Will) after the heartbeat; a heartbeat delivered late, in the
    # same batch, changes nothing; an unknown id is kept without a division.
    gone = DeviceStatus(seed.VILLAGE_R1, False, detail="connection lost", at=t + timedelta(1))
    late = DeviceStatus(seed.VILLAGE_R1, True, heartbeat=True, battery=10, at=t)
    stranger = DeviceStatus("not-a-village", True, battery=250, at=t)
    await inbound.handle_events(CHANNEL, [beat])
    await inbound.handle_events(CHANNEL, [gone, late, stranger])

    r1 = await speaker(pool, seed.VILLAGE_R1)
    assert (r1["online"], r1["state_at"], r1["detail"]) == (
        False,
        t + timedelta(1),
        "connection lost",
    )
    assert (r1["heartbeat_at"], r1["power"], r1["battery"], r1["volume"]) == (t, "mains", 80, 70)
    assert r1["division_code"] == seed.VILLAGE_R1
    other = await speaker(pool, "not-a-village")
    assert (other["division_code"], other["battery"]) == (None, None)  # 250 %: not kept
    # States are not inbound events an officer reads later: none was kept there.
    assert await pool.fetchval("SELECT count(*) FROM inbound_events") == 0


async def test_a_play_confirmation_lands_on_the_speaker_of_its_command(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    warning_id = await plan(pool, policy, rainstorm())
    command = await pool.fetchval(
        "UPDATE deliveries SET state = 'sent', channel = $2, external_id = 'cmd-1', "
        "sent_at = $3 WHERE warning_id = $1 AND audience = 'broadcast' AND address = $4 "
        "RETURNING id",
        warning_id,
        CHANNEL,
        DAYTIME,
        seed.VILLAGE_R1,
    )
    assert command is not None
    inbound = Inbound(pool, ManualClock(DAYTIME), Metrics())
    played = DAYTIME + timedelta(seconds=40)
    await inbound.handle_events(
        CHANNEL,
        [
            DeviceStatus(seed.VILLAGE_R1, True, at=DAYTIME),
            DeviceConfirmation("cmd-1", played=True, detail="played 2 times", at=played),
        ],
    )
    r1 = await speaker(pool, seed.VILLAGE_R1)
    assert (r1["played_at"], r1["played"], r1["played_detail"]) == (
        played,
        True,
        "played 2 times",
    )
    state = await pool.fetchval("SELECT state FROM deliveries WHERE id = $1", command)
    assert state == "delivered"
