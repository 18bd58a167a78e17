"""Channel ownership: one process at a time holds a channel; another takes it over, after a
fence, when the holder dies; a holder whose connection breaks gives its channels up at once;
and two whole daemons on one database send every message once, through the holder alone.

The rounds of the ownership loop are driven by hand (``round``), so no test waits for a timer.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from channels.base import ChannelKind
from channels.registry import ChannelConfigError
from tests import seed
from tests.fixtures import FEED_TOKEN, RecordingChannel, post_cap, rainstorm_cap
from tests.waiting import until
from warnd.core.clock import SystemClock
from warnd.core.config import load_config_data
from warnd.core.errors import ConfigError
from warnd.db.pool import connect
from warnd.pipeline.ownership import FENCE_ROUNDS, ChannelOwnership, channel_key
from warnd.runtime.daemon import Daemon
from warnd.runtime.settings import Settings


class Log:
    """What an ownership asked of its process, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def take(self, name: str) -> None:
        self.calls.append(("take", name))

    async def give_up(self, name: str) -> None:
        self.calls.append(("give_up", name))


def ownership(db_url: str, name: str, log: Log) -> ChannelOwnership:
    return ChannelOwnership(
        db_url,
        ["smpp-a", "sip-trunk"],
        SystemClock(),
        take=log.take,
        give_up=log.give_up,
        name=name,
    )


async def gone(db_url: str, name: str) -> None:
    """Until PostgreSQL has ended the session of a closed ownership (and freed its locks)."""
    conn = await connect(db_url)
    try:
        query = (
            "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database())"
        )
        await until(lambda: conn.fetchval(query, name), what=f"the session of {name} to end")
    finally:
        await conn.close()


def test_channel_keys_are_stable_signed_ints() -> None:
    keys = {channel_key(n) for n in ("smpp-a", "sip-trunk", "mqtt", "")}
    assert len(keys) == 4
    assert all(-(2**31) <= k < 2**31 for k in keys)
    assert channel_key("smpp-a") == channel_key("smpp-a")


async def test_one_holder_and_a_fenced_takeover_when_it_dies(db_url: str) -> None:
    first_log, second_log = Log(), Log()
    first = ownership(db_url, "warnd host-a pid 1", first_log)
    second = ownership(db_url, "warnd host-b pid 2", second_log)
    try:
        assert await first.first_round() == {"smpp-a", "sip-trunk"}
        assert await second.first_round() == set()
        await second.round()
        assert second_log.calls == []
        # Both see who holds what.
        assert first.owner_of("smpp-a") == (True, "warnd host-a pid 1")
        assert second.owner_of("smpp-a") == (False, "warnd host-a pid 1")
        assert second.owner_of("sip-trunk") == (False, "warnd host-a pid 1")

        await first.close()  # the holder dies: its session and locks go with it
        await gone(db_url, "warnd host-a pid 1")
        await second.round()  # the locks are taken, but nothing starts before the fence
        assert second_log.calls == []
        assert second.owner_of("smpp-a") == (False, "warnd host-b pid 2")  # locked, not started
        for _ in range(FENCE_ROUNDS):
            await second.round()
        assert sorted(second_log.calls) == [("take", "sip-trunk"), ("take", "smpp-a")]
        assert second.owner_of("smpp-a") == (True, "warnd host-b pid 2")
    finally:
        await first.close()
        await second.close()


async def test_a_holder_whose_connection_breaks_gives_its_channels_up(db_url: str) -> None:
    held_log, standby_log = Log(), Log()
    holder = ownership(db_url, "warnd host-a pid 1", held_log)
    standby = ownership(db_url, "warnd host-b pid 2", standby_log)
    conn = await connect(db_url)
    try:
        assert await holder.first_round() == {"smpp-a", "sip-trunk"}
        assert await standby.first_round() == set()
        # The network between the holder and PostgreSQL fails: the server ends its session.
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            "warnd host-a pid 1",
        )
        await holder.round()
        assert sorted(held_log.calls) == [("give_up", "sip-trunk"), ("give_up", "smpp-a")]
        assert holder.held == set()
        await gone(db_url, "warnd host-a pid 1")
        # The standby takes over (after its fence); the old holder, reconnected, stays standby.
        for _ in range(1 + FENCE_ROUNDS):
            await standby.round()
            await holder.round()
        assert sorted(standby_log.calls) == [("take", "sip-trunk"), ("take", "smpp-a")]
        assert holder.owner_of("smpp-a") == (False, "warnd host-b pid 2")
        assert len(held_log.calls) == 2
    finally:
        await conn.close()
        await holder.close()
        await standby.close()


async def test_a_channel_that_fails_to_start_is_left_to_others(db_url: str) -> None:
    class Refused(Log):
        async def take(self, name: str) -> None:
            await super().take(name)
            raise RuntimeError("bind refused")

    refused_log = Refused()
    refused = ownership(db_url, "warnd host-a pid 1", refused_log)
    other = ownership(db_url, "warnd host-b pid 2", Log())
    third = ownership(db_url, "warnd host-c pid 3", Log())
    try:
        assert await other.first_round() == {"smpp-a", "sip-trunk"}
        assert await refused.first_round() == set()
        await other.close()
        await gone(db_url, "warnd host-b pid 2")
        for _ in range(1 + FENCE_ROUNDS):  # taken over, and the start fails: unlocked
            await refused.round()
        assert sorted(refused_log.calls) == [("take", "sip-trunk"), ("take", "smpp-a")]
        assert refused.held == set()
        assert await third.first_round() == {"smpp-a", "sip-trunk"}  # nobody holds them
        await refused.round()  # not asked again so soon
        assert len(refused_log.calls) == 2
        assert refused.owner_of("smpp-a") == (False, "warnd host-c pid 3")
    finally:
        await refused.close()
        await other.close()
        await third.close()


SHANGHAI = ZoneInfo("Asia/Shanghai")
SIM_CONFIG = {"feeds": {"met": {"token": FEED_TOKEN}}}


async def test_two_daemons_send_every_message_once_through_the_holder(seeded: str) -> None:
    config = load_config_data(SIM_CONFIG, source=Path("<test>"))
    sms = [RecordingChannel("sms", ChannelKind.SMS) for _ in range(2)]
    voice = [RecordingChannel("voice", ChannelKind.VOICE) for _ in range(2)]
    broadcast = [RecordingChannel("speakers", ChannelKind.BROADCAST) for _ in range(2)]
    daemons = [
        Daemon(
            Settings(http_port=0),
            config=config,
            channels={"sms": sms[i], "voice": voice[i], "speakers": broadcast[i]},
        )
        for i in range(2)
    ]
    async with (
        daemons[0].running(seeded) as services,
        daemons[1].running(seeded),
        aiohttp.ClientSession() as http,
    ):
        assert daemons[0].port is not None and daemons[1].port is not None
        readiness = []
        for daemon in daemons:
            async with http.get(f"http://127.0.0.1:{daemon.port}/readyz") as response:
                readiness.append({c["name"]: c for c in (await response.json())["channels"]})
        status, body = await post_cap(
            daemons[1].port, rainstorm_cap("two-1", datetime.now(SHANGHAI))
        )
        assert status == 201, body
        done = (
            "SELECT count(*) > 0 AND count(*) FILTER (WHERE state IN ('queued', 'sending')) = 0"
            "   AND NOT EXISTS (SELECT 1 FROM warnings WHERE plan_state <> 'done')"
            "  FROM deliveries"
        )
        await until(lambda: services.pool.fetchval(done), 30, what="the fan-out to end")
        rows = await services.pool.fetch("SELECT channel, address, audience FROM deliveries")
        async with http.get(f"http://127.0.0.1:{daemons[1].port}/metrics") as response:
            metrics = await response.text()
    # The first daemon started first and holds every channel; the second none.
    for name in ("sms", "voice", "speakers"):
        assert readiness[0][name]["held"] is True
        assert readiness[1][name]["held"] is False
        assert readiness[1][name]["holder"] == readiness[0][name]["holder"]
    assert 'warnd_channel_held{channel="sms"} 0.0' in metrics
    # Everything went through the holder's channels, each message once.
    assert not sms[1].sent and not voice[1].sent and not broadcast[1].sent
    sent = [m.address for m in (*sms[0].sent, *voice[0].sent, *broadcast[0].sent)]
    assert len(sent) == len(rows)
    reached: dict[str, set[str]] = {}
    for r in rows:
        reached.setdefault(r["audience"], set()).add(r["address"])
    assert reached == seed.RED_RAINSTORM_RENCHENG_BY_AUDIENCE


class Counted(RecordingChannel):
    """A recording channel that counts its starts and stops."""

    def __init__(self, name: str, kind: ChannelKind) -> None:
        super().__init__(name, kind)
        self.starts = 0
        self.stops = 0

    async def start(self) -> None:
        self.starts += 1

    async def stop(self) -> None:
        self.stops += 1


async def test_a_daemon_that_loses_its_database_connection_stops_sending_then_resumes(
    seeded: str,
) -> None:
    config = load_config_data(SIM_CONFIG, source=Path("<test>"))
    sms = Counted("sms", ChannelKind.SMS)
    daemon = Daemon(
        Settings(http_port=0, takeover_seconds=0.6), config=config, channels={"sms": sms}
    )
    conn = await connect(seeded)
    try:
        async with daemon.running(seeded) as services:
            assert (sms.starts, sms.stops) == (1, 0)
            # The ownership session ends (PostgreSQL restarted, a cable cut): the channel is
            # given up at the next check, then held again once the connection is back.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'warnd % pid %' AND datname = current_database()"
            )
            await until(lambda: sms.stops == 1, what="the channel given up")
            await until(lambda: sms.starts == 2, what="the channel held again")
            assert daemon.port is not None
            status, body = await post_cap(
                daemon.port, rainstorm_cap("lost-1", datetime.now(SHANGHAI))
            )
            assert status == 201, body
            sent = (
                "SELECT count(*) > 0 AND bool_and(state = 'sent') FROM deliveries "
                "WHERE channel_kind = 'sms'"
            )
            await until(lambda: services.pool.fetchval(sent), 30, what="the SMS sent")
    finally:
        await conn.close()
    assert sms.sent


async def test_a_bind_refused_at_start_up_stops_warnd_before_it_serves(seeded: str) -> None:
    class Refusing(Counted):
        async def start(self) -> None:
            raise ChannelConfigError("the SMSC refused the bind: check system_id and password")

    config = load_config_data(SIM_CONFIG, source=Path("<test>"))
    first = Counted("a-sms", ChannelKind.SMS)
    daemon = Daemon(
        Settings(http_port=0),
        config=config,
        channels={"a-sms": first, "b-sms": Refusing("b-sms", ChannelKind.SMS)},
    )
    with pytest.raises(ConfigError, match=r"channels\.b-sms: the SMSC refused the bind"):
        async with daemon.running(seeded):
            pass
    assert daemon.port is None  # never served
    assert (first.starts, first.stops) == (1, 1)  # started before the refusal, unbound after
    # Its locks went with its ownership connection: another process takes both at once.
    log = Log()
    standby = ChannelOwnership(
        seeded, ["a-sms", "b-sms"], SystemClock(), take=log.take, give_up=log.give_up
    )
    try:
        await until(lambda: _takes_both(standby), what="the locks freed")
    finally:
        await standby.close()


async def _takes_both(standby: ChannelOwnership) -> bool:
    await standby.close()
    standby.held.clear()
    return await standby.first_round() == {"a-sms", "b-sms"}
