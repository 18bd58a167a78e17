"""``warnd bench broadcast``: a red warning for the whole city through the loudspeakers.

The generated city's villages (5,998) each get a simulated speaker (``warnd speakers simulate``
in a child process, so its work is not counted as warnd's) on a real MQTT broker; a red rainstorm
warning for the city is stored and planned by the real Planner, and the real Dispatcher hands
its broadcast deliveries to a real ``mqtt_broadcast`` channel, which speaks the audio once,
publishes a command per village and hears every speaker's acknowledgement (the speakers fetch the
audio over HTTP from a media server in this process, under signed URLs, and play it 1,000 times
faster than real).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import asyncpg
import click
from aiohttp import web

from channels.base import DeviceConfirmation, DeviceStatus, OutboundMessage, Outcome, SendResult
from channels.media import MediaVerdict, valid_name
from channels.mqtt_broadcast.channel import MqttBroadcastChannel
from channels.mqtt_broadcast.config import MqttBroadcastConfig
from warnd.app.metrics import Metrics
from warnd.core.clock import SystemClock
from warnd.db.notify import Wakeup
from warnd.db.pool import open_pool, recreate_database, with_database
from warnd.ingest.store import store_warning
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.planner import Planner
from warnd.policy.loader import load_policy
from warnd.policy.model import Policy
from warnd.runtime.settings import Settings, database_url
from warnd.tools.bench_fanout import _generate, bench, city_warning, report
from warnd.tools.speakers import parse_broker

BENCH_DB: Final = "warnd_bench_broadcast"
KEYS: Final = (
    "speakers",
    "commands",
    "publish_seconds",
    "commands_per_s",
    "acks_per_s",
    "first_command_ms",
    "peak_rss_mb",
)


class TimedBroadcast(MqttBroadcastChannel):
    """The channel, noting when the first command was accepted and the last one (bench only)."""

    def __init__(self, name: str, config: MqttBroadcastConfig) -> None:
        super().__init__(name, config)
        self.first_send: float | None = None
        self.first_accepted: float | None = None
        self.last_accepted = 0.0
        self.accepted = 0

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        if self.first_send is None:
            self.first_send = time.perf_counter()
        results = await super().send(batch)
        accepted = sum(1 for r in results if r.outcome is Outcome.ACCEPTED)
        if accepted:
            self.last_accepted = time.perf_counter()
            if self.first_accepted is None:
                self.first_accepted = self.last_accepted
            self.accepted += accepted
        return results


@contextlib.asynccontextmanager
async def media_server(channels: list[MqttBroadcastChannel]) -> AsyncIterator[str]:
    """The media of ``channels`` (the list may be filled later) over HTTP on 127.0.0.1, as
    warnd's GET /media/{name} serves it."""

    async def handle(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if valid_name(name) and channels:
            answer = channels[0].media_file(
                name,
                request.query.get("expires", ""),
                request.query.get("sig", ""),
                datetime.now(UTC),
            )
            if answer.verdict is MediaVerdict.FOUND and answer.path is not None:
                return web.FileResponse(answer.path, headers={"Content-Type": answer.content_type})
            if answer.verdict is not MediaVerdict.MISSING:
                return web.Response(status=403)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/media/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/media"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def broker_at(url: str, workdir: Path) -> AsyncIterator[tuple[str, int]]:
    """The broker at ``url`` when it answers; else a mosquitto of our own on a free port."""
    host, port, _, _ = parse_broker(url)
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        await writer.wait_closed()
        yield host, port
        return
    program = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if program is None:
        raise click.ClickException(f"no broker at {url}, and mosquitto is not installed")
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n")
    process = await asyncio.create_subprocess_exec(program, "-c", str(config))
    try:
        await asyncio.sleep(0.5)
        yield "127.0.0.1", port
    finally:
        process.kill()
        await process.wait()


async def broadcast(broker: str, connections: int, *, reuse: bool) -> dict[str, float | int]:
    settings = Settings()
    server = database_url(settings)
    url = with_database(server, BENCH_DB)
    if not reuse:
        url = await recreate_database(server, BENCH_DB)
        async with open_pool(url, min_size=1, max_size=2):
            pass  # migrate before the generator connects
        _generate(url, 20_000)  # the whole city's villages; households do not matter here
    policy = load_policy(settings.policy)
    with tempfile.TemporaryDirectory(prefix="warnd-bench-broadcast-") as tmp:
        work = Path(tmp)
        async with (
            open_pool(url, min_size=2, max_size=4) as pool,
            broker_at(broker, work) as (host, port),
        ):
            async with pool.acquire() as conn:
                # The benchmark's own database: its history is disposable (superuser only).
                await conn.execute("SET session_replication_role = replica")
                await conn.execute(  # the tallies' trigger is bypassed too: named here
                    "TRUNCATE warnings, messages, deliveries, warning_villages, delivery_tallies, "
                    "delivery_tally_changes CASCADE"
                )
                await conn.execute("RESET session_replication_role")
            villages: int = await pool.fetchval(
                "SELECT count(*) FROM divisions WHERE level = 'village'"
            )
            prefix = f"bench/{uuid.uuid4().hex[:8]}"
            config = MqttBroadcastConfig.model_validate(
                {
                    "type": "mqtt_broadcast",
                    "broker": host,
                    "port": port,
                    "client_id": f"warnd-bench-{prefix[6:]}",
                    "topic_prefix": prefix,
                    "media_url": "http://127.0.0.1:1/media",  # replaced below
                    "media_key": secrets.token_hex(32),
                    "media_dir": str(work / "media"),
                    # A cold cache, as for every new warning's text: its speech is rendered
                    # while the first commands wait (the daemon starts it at planning).
                    "tts": {"cache_dir": str(work / "tts")},
                    "rate_per_s": 100_000,
                    "window": 500,
                    "start_wait": 10,
                }
            )
            served: list[MqttBroadcastChannel] = []
            async with media_server(served) as media_url:
                channel = TimedBroadcast(
                    "loudspeakers", config.model_copy(update={"media_url": media_url})
                )
                served.append(channel)
                return await _run(
                    pool,
                    policy,
                    channel,
                    url=url,
                    broker=(host, port),
                    villages=villages,
                    connections=connections,
                )


class _Heard:
    """What the speakers said, as the channel's events: who is online, how many acknowledged."""

    def __init__(self, villages: int) -> None:
        self.villages = villages
        self.online: set[str] = set()
        self.all_online = asyncio.Event()
        self.all_acked = asyncio.Event()
        self.acks = 0
        self.last_ack = 0.0
        self.expected = -1

    def expect(self, commands: int) -> None:
        self.expected = commands
        if self.acks >= commands:
            self.all_acked.set()

    async def listen(self, channel: MqttBroadcastChannel) -> None:
        async for event in channel.events():
            if isinstance(event, DeviceStatus) and event.online:
                self.online.add(event.device_id)
                if len(self.online) >= self.villages:
                    self.all_online.set()
            elif isinstance(event, DeviceConfirmation):
                self.acks += 1
                self.last_ack = time.perf_counter()
                if self.acks == self.expected:
                    self.all_acked.set()


async def _fleet(
    url: str, prefix: str, broker: tuple[str, int], villages: int, connections: int
) -> asyncio.subprocess.Process:
    """The simulated speakers of every village, in a child process."""
    host, port = broker
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warnd",
        "speakers",
        "simulate",
        "--broker",
        f"mqtt://{host}:{port}",
        "--database-url",
        url,
        "--count",
        str(villages),
        "--offline",
        "0",
        "--fail",
        "0",
        "--speed",
        "1000",
        "--connections",
        str(connections),
        "--prefix",
        prefix,
        "--clear-on-stop",
        env={**os.environ},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _run(
    pool: asyncpg.Pool,
    policy: Policy,
    channel: TimedBroadcast,
    *,
    url: str,
    broker: tuple[str, int],
    villages: int,
    connections: int,
) -> dict[str, float | int]:
    await channel.start()
    fleet = await _fleet(url, channel.config.topic_prefix, broker, villages, connections)
    heard = _Heard(villages)
    listening = asyncio.create_task(heard.listen(channel))
    try:
        async with asyncio.timeout(180):
            await heard.all_online.wait()
        clock = SystemClock()
        preparing: set[asyncio.Task[None]] = set()

        async def prepare(kind: str, texts: Sequence[str]) -> None:
            # As the daemon does: the speech is made in the background while planning goes on.
            if kind == channel.kind.value:
                preparing.add(asyncio.create_task(channel.prepare(texts)))

        planner = Planner(
            pool,
            lambda: policy,
            clock,
            {"sms": 670, "voice": 670, "broadcast": 670},
            prepare=prepare,
        )
        # The daemon wakes its workers by LISTEN/NOTIFY; here they look every 5 ms instead.
        dispatcher = Dispatcher(
            pool, {channel.name: channel}, clock, Metrics(), Wakeup(), poll_seconds=0.005
        )
        t0 = time.perf_counter()
        warning = city_warning(clock.now())
        stored = await store_warning(pool, warning, source="bench", now=clock.now())
        sending = asyncio.create_task(dispatcher.run_worker(channel))
        planning = time.perf_counter()
        await planner.plan_pending()
        plan_ms = (time.perf_counter() - planning) * 1000
        heard.expect(
            await pool.fetchval(
                "SELECT count(*) FROM deliveries"
                " WHERE warning_id = $1 AND channel_kind = 'broadcast'",
                stored.warning_id,
            )
        )
        async with asyncio.timeout(300):
            await heard.all_acked.wait()
        await asyncio.gather(*preparing)
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        fleet.terminate()
        await fleet.wait()
        await channel.stop()
    assert channel.first_send is not None and channel.first_accepted is not None
    publish_seconds = channel.last_accepted - channel.first_send
    return {
        "speakers": villages,
        "commands": channel.accepted,
        "publish_seconds": round(publish_seconds, 2),
        "commands_per_s": round(channel.accepted / publish_seconds),
        "acks_per_s": round(heard.acks / max(heard.last_ack - channel.first_accepted, 1e-6)),
        "first_command_ms": round((channel.first_accepted - t0) * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "plan_ms": round(plan_ms, 1),
        # From the first batch handed to the channel to its commands accepted: the channel's
        # own share of first_command_ms (the rest is planning, which goes by the policy's order).
        "first_batch_ms": round((channel.first_accepted - channel.first_send) * 1000, 1),
        "speech_renderings": channel.audio.speech.rendered,
        "republished": channel.counts["republished"],
        "unanswered": channel.counts["unanswered"],
    }


@bench.command("broadcast")
@click.option("--broker", default="mqtt://127.0.0.1:1883", show_default=True)
@click.option("--connections", default=16, show_default=True, help="The fleet's connections.")
@click.option("--reuse", is_flag=True, help="Reuse the roster of the previous run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def broadcast_command(broker: str, connections: int, reuse: bool, as_json: bool) -> None:
    """A red warning for the whole city through simulated loudspeakers on an MQTT broker."""
    from warnd.cli.errors import friendly_errors

    result = friendly_errors(lambda: asyncio.run(broadcast(broker, connections, reuse=reuse)))()
    report("broadcast", result, as_json, KEYS if as_json else None)
