"""The whole daemon: CAP over HTTP → planning → simulated channels → states in PostgreSQL,
and a warnd process killed with SIGKILL in the middle of a fan-out loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest

from warnd.core.config import load_config_data
from warnd.db.pool import connect
from warnd.runtime.daemon import Daemon, make_channels
from warnd.runtime.settings import REPO_CONFIG_DIR, Settings

from . import seed

FEED_TOKEN = "feed-token-0123456789abcdef"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def cap(identifier: str, sent: datetime, code: str = "370811") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>jnqxt@sd.cma.cn</sender>
  <sent>{sent.isoformat(timespec="seconds")}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Met</category>
    <event>暴雨红色预警</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <expires>{(sent + timedelta(hours=6)).isoformat(timespec="seconds")}</expires>
    <headline>任城区气象台发布暴雨红色预警信号</headline>
    <instruction>请立即转移低洼地带群众。</instruction>
    <area>
      <areaDesc>任城区</areaDesc>
      <geocode><valueName>行政区划代码</valueName><value>{code}</value></geocode>
    </area>
  </info>
</alert>""".encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def post_cap(port: int, body: bytes) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{port}/api/v1/cap",
            data=body,
            headers={"Authorization": f"Bearer {FEED_TOKEN}", "Content-Type": "application/xml"},
        ) as response,
    ):
        return response.status, await response.json()


async def settle(pool: asyncpg.Pool | asyncpg.Connection, seconds: float) -> dict[str, int]:
    """Wait until nothing is queued or sending (or the time is up); return counts by state."""
    deadline = time.monotonic() + seconds
    while True:
        rows = await pool.fetch("SELECT state, count(*) AS n FROM deliveries GROUP BY state")
        counts = {r["state"]: r["n"] for r in rows}
        if counts and not counts.get("queued") and not counts.get("sending"):
            return counts
        if time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.1)


SIM = {
    "type": "simulator",
    "time_scale": 0.001,
    "deliver_probability": 1.0,
    "answer_probability": 1.0,
    "play_probability": 1.0,
}


@pytest.fixture
async def seeded(db_url: str) -> AsyncIterator[str]:
    conn = await connect(db_url)
    try:
        await seed.seed(conn)
    finally:
        await conn.close()
    yield db_url


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
        status, body = await post_cap(daemon.port, cap("e2e-1", now))
        assert status == 201, body
        counts = await settle(services.pool, 20)
        rows = await services.pool.fetch(
            "SELECT audience, address, state, division_code FROM deliveries"
        )
        # Receipts arrive a moment after the sends; wait for them too.
        deadline = time.monotonic() + 10
        while any(r["state"] == "sent" for r in rows) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            rows = await services.pool.fetch(
                "SELECT audience, address, state, division_code FROM deliveries"
            )
        again_status, again = await post_cap(daemon.port, cap("e2e-1", now))
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


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """Start ``warnd run --simulate`` as its own process and wait until it answers /healthz."""
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "warnd",
            "run",
            "--simulate",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    port = int(env["WARND_HTTP_PORT"])
    deadline = time.monotonic() + 60  # a loaded CI machine starts Python slowly
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            if process.returncode is not None or time.monotonic() > deadline:
                output = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"warnd did not start: {output[-2000:]}")
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_kill_9_during_fan_out_loses_nothing(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    db_url = worker_env["WARND_DATABASE_URL"]
    log = tmp_path / "warnd.log"
    process = await start_worker(worker_env, log)
    conn = await connect(db_url)
    try:
        status, body = await post_cap(
            int(worker_env["WARND_HTTP_PORT"]), cap("crash-1", datetime.now(SHANGHAI))
        )
        assert status == 201, body
        # Let some deliveries go out while others wait, then kill the process without warning.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            sent = await conn.fetchval(
                "SELECT count(*) FILTER (WHERE state IN ('sent', 'delivered')) >= 2"
                "   AND count(*) FILTER (WHERE state IN ('queued', 'sending')) >= 3"
                "  FROM deliveries"
            )
            if sent:
                break
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
        before = {r["id"]: r["state"] for r in await conn.fetch("SELECT id, state FROM deliveries")}
        unfinished = [i for i, s in before.items() if s in ("queued", "sending")]
        assert unfinished, ("the kill came too late to test anything", before)
        restarted = await start_worker(worker_env, log)
        try:
            counts = await settle(conn, 120)
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
