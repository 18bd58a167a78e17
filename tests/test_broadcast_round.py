"""Issue 11's "done when": a red warning for one county with the loudspeakers on Mosquitto and
the simulated fleet answering. Every online speaker of the county plays exactly once and its
delivery is ``delivered``; the offline ones fail at once and their villages get gong tasks
(鸣锣吹哨), which show in the progress roll-up and the task list, next to the blind spot's.

A real warnd (in-process: its HTTP API, planner, dispatch, inbound, the media route the speakers
fetch their audio from), a real broker, real MQTT clients for the speakers; SMS and calls go to
recording doubles (nobody answers them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from channels.base import ChannelKind
from channels.mqtt_broadcast.channel import MqttBroadcastChannel
from channels.mqtt_broadcast.config import MqttBroadcastConfig
from tests import seed
from tests.brokers import Broker, any_mosquitto, unique_prefix
from tests.fixtures import (
    FEED_TOKEN,
    OFFICER_TOKEN,
    RecordingChannel,
    free_port,
    post_cap,
    rainstorm_cap,
)
from tests.peers import require
from tests.waiting import until
from warnd.core.config import load_config_data
from warnd.db.pool import connect
from warnd.runtime.daemon import Daemon
from warnd.runtime.settings import Settings
from warnd.tools.speakers import FleetOptions, SpeakerFleet
from warnd.web.routing import API

MEDIA_KEY = "media-key-of-the-round-0123456789abcdef"
# Four more villages of 张庄村's town, each with its loudspeaker and responsible person.
MORE_VILLAGES = [(f"3708110022{n:02d}", f"试验{n}村", 35.43 + n / 100) for n in range(3, 7)]


@pytest.fixture
async def county(seeded: str) -> AsyncIterator[str]:
    conn = await connect(seeded)
    try:
        for code, name, lat in MORE_VILLAGES:
            await conn.execute(
                "INSERT INTO divisions (code, name, level, parent_code, lat, lon) "
                "VALUES ($1, $2, 'village', $3, $4, 116.6)",
                code,
                name,
                seed.TOWN_R,
                lat,
            )
            await conn.execute(
                "INSERT INTO responders (ref, name, phone, division_code, level) "
                "VALUES ($1, $2, $3, $4, 'village')",
                f"more-{code}",
                f"{name}书记",
                f"+861390000{code[-2:]}99",
                code,
            )
    finally:
        await conn.close()
    yield seeded


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    require("espeak-ng", "sox")
    async with any_mosquitto(tmp_path) as found:
        yield found


async def officer_get(port: int, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{port}{API}{path}",
            headers={"Authorization": f"Bearer {OFFICER_TOKEN}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def test_a_red_round_plays_on_every_online_speaker_once_and_gongs_for_the_rest(
    county: str, broker: Broker, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    speaker_ids = [seed.VILLAGE_R1, *(code for code, _, _ in MORE_VILLAGES)]
    fleet = SpeakerFleet(
        FleetOptions(
            broker=broker.host,
            port=broker.port,
            ids=speaker_ids,
            prefix=prefix,
            offline=0.4,  # two of the five stay offline
            fail=0.0,
            speed=50.0,
            seed=3,
            clear_on_stop=True,
        )
    )
    await fleet.start()
    online, offline = set(fleet.online_ids), set(fleet.offline_ids)
    assert len(online) == 3 and len(offline) == 2
    port = free_port()
    speakers = MqttBroadcastChannel(
        "speakers",
        MqttBroadcastConfig.model_validate(
            {
                "type": "mqtt_broadcast",
                "broker": broker.host,
                "port": broker.port,
                "client_id": f"warnd-{prefix.replace('/', '-')}",
                "topic_prefix": prefix,
                "media_url": f"http://127.0.0.1:{port}/media",
                "media_key": MEDIA_KEY,
                "media_dir": str(tmp_path / "media"),
                "tts": {"cache_dir": str(tmp_path / "tts")},
            }
        ),
    )
    channels = {
        "speakers": speakers,
        "sms": RecordingChannel("sms", ChannelKind.SMS),
        "phones": RecordingChannel("phones", ChannelKind.VOICE),
    }
    config = load_config_data(
        {
            "feeds": {"met": {"token": FEED_TOKEN}},
            "users": {"zhang": {"token": OFFICER_TOKEN, "roles": ["officer"]}},
        },
        source=Path("<test>"),
    )
    daemon = Daemon(Settings(http_port=port), config=config, channels=channels)
    try:
        async with daemon.running(county) as services:
            pool: asyncpg.Pool = services.pool
            status, body = await post_cap(port, rainstorm_cap("round-1", datetime.now(UTC)))
            assert status == 201, body
            warning_id = int(str(body["warning_id"]))
            settled = (
                "SELECT count(*) FILTER (WHERE state = 'delivered') = $2 "
                "   AND count(*) FILTER (WHERE state = 'failed') = $3 "
                "   AND (SELECT count(*) FROM field_tasks WHERE warning_id = $1 "
                "        AND kind = 'gong') = $3 + 1 "
                "  FROM deliveries WHERE warning_id = $1 AND audience = 'broadcast'"
            )
            await until(
                lambda: pool.fetchval(settled, warning_id, len(online), len(offline)),
                60,
                what="every speaker played or failed over to a gong",
            )
            commands = await pool.fetch(
                "SELECT address, state, error FROM deliveries "
                "WHERE warning_id = $1 AND audience = 'broadcast'",
                warning_id,
            )
            tasks = await officer_get(port, f"/warnings/{warning_id}/tasks?kind=gong")
            progress = await officer_get(port, f"/warnings/{warning_id}/progress?level=county")
            listed = await officer_get(port, "/speakers?state=offline")
    finally:
        await fleet.stop()

    # Every online speaker played the warning once, and said so; warnd recorded it delivered.
    assert Counter(speaker for speaker, _ in fleet.played) == dict.fromkeys(online, 1)
    states = {r["address"]: (r["state"], r["error"] or "") for r in commands}
    assert {a for a, (state, _) in states.items() if state == "delivered"} == online
    # The offline ones failed at once (unreachable), and their villages got gongs.
    assert {a for a, (state, _) in states.items() if state == "failed"} == offline
    assert all("unreachable" in states[a][1] for a in offline)
    why = {t["village_code"]: t["why"] for t in tasks["tasks"]}
    assert why == {
        **dict.fromkeys(offline, "loudspeaker_failed"),
        seed.VILLAGE_R2: "blind_spot",  # 李庄村 has no loudspeaker at all
    }
    assert all(t["state"] == "open" and t["phone"].startswith("+86") for t in tasks["tasks"])
    rencheng = next(d for d in progress["divisions"] if d["code"] == seed.RENCHENG)
    assert rencheng["field_tasks"]["total"] >= len(offline) + 1
    assert (rencheng["speakers"], rencheng["speakers_offline"]) == (5, 2)
    assert {s["id"] for s in listed["speakers"]} >= offline
