"""``warnd bench``: reproducible performance runs (their figures live in benchmarks/README.md).

``fanout`` plans a red warning covering the whole generated city and compares planning with a
bare ``INSERT … SELECT`` of the same rows on the same server, measures how soon the first
responder delivery reaches a channel after ingest, and the process's peak memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from channels.base import Channel, ChannelKind, Limits, OutboundMessage, Outcome, SendResult
from warnd.app.metrics import Metrics
from warnd.core.clock import SystemClock
from warnd.core.model import Area, NormalisedWarning
from warnd.core.vocabulary import Level
from warnd.db.notify import Wakeup
from warnd.db.pool import open_pool, recreate_database, with_database
from warnd.ingest.store import store_warning
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.planner import Planner
from warnd.policy.loader import load_policy
from warnd.runtime.settings import Settings, database_url

BENCH_DB = "warnd_bench"
CITY = "370800000000"


class StopwatchChannel(Channel):
    """Accepts everything instantly and notes when the first batch arrived (bench only)."""

    kind = ChannelKind.SMS
    simulated = True

    def __init__(self) -> None:
        super().__init__("stopwatch", self.config_model(type="stopwatch"))
        self.first_batch_at: float | None = None
        self.first_batch: Sequence[OutboundMessage] = ()

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=1e9, window=100, max_text=670)

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        if self.first_batch_at is None:
            self.first_batch_at = time.perf_counter()
            self.first_batch = batch
        return [SendResult(m.key, Outcome.ACCEPTED, external_id=f"bench-{m.key}") for m in batch]


def _generate(url: str, households: int) -> float:
    """Generate the roster in a child process, so its memory is not counted as planning's."""
    started = time.perf_counter()
    subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "warnd", "roster", "generate", "--households", str(households)],
        env={**os.environ, "WARND_DATABASE_URL": url},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def city_warning(now: datetime) -> NormalisedWarning:
    return NormalisedWarning(
        sender="bench@warnd",
        identifier=f"bench-{now.timestamp():.0f}",
        sent=now,
        status="Actual",
        msg_type="Alert",
        hazard="rainstorm",
        level=Level.RED,
        area=Area(codes=(CITY,)),
        event="暴雨红色预警",
        headline="济宁市气象台发布暴雨红色预警信号",
        description="预计未来3小时内全市大部地区降雨量将达100毫米以上。",
        instruction="请立即转移低洼地带群众，停止户外作业。",
        area_desc="济宁市",
    )


async def fanout(households: int, *, reuse: bool) -> dict[str, float | int]:
    settings = Settings()
    server = database_url(settings)
    url = with_database(server, BENCH_DB)
    generate_seconds = 0.0
    if not reuse:
        url = await recreate_database(server, BENCH_DB)
        async with open_pool(url, min_size=1, max_size=2):
            pass  # migrate before the generator connects
        generate_seconds = _generate(url, households)
    policy = load_policy(settings.policy)
    async with open_pool(url, min_size=2, max_size=4) as pool:
        async with pool.acquire() as conn:
            # The benchmark's own database: its call-out history is disposable, so the
            # append-only triggers are bypassed for this one statement (superuser only).
            await conn.execute("SET session_replication_role = replica")
            await conn.execute(  # the tallies' trigger is bypassed too: named here
                "TRUNCATE warnings, messages, deliveries, warning_villages, delivery_tallies, "
                "delivery_tally_changes CASCADE"
            )
            await conn.execute("RESET session_replication_role")
        await pool.execute("VACUUM ANALYZE")
        clock = SystemClock()
        channel = StopwatchChannel()
        planner = Planner(pool, lambda: policy, clock, {"sms": 670, "voice": 670, "broadcast": 670})
        dispatcher = Dispatcher(pool, {"stopwatch": channel}, clock, Metrics(), Wakeup())

        async def first_batch() -> None:
            while channel.first_batch_at is None:
                claimed = await dispatcher.claim(channel, 100)
                if claimed:
                    results = await channel.send([c.message() for c in claimed])
                    await dispatcher.record(channel.name, claimed, results)
                else:
                    await asyncio.sleep(0.005)

        watcher = asyncio.create_task(first_batch())
        t0 = time.perf_counter()
        warning = city_warning(clock.now())
        stored = await store_warning(pool, warning, source="bench", now=clock.now())
        plan_started = time.perf_counter()
        await planner.plan_pending()
        plan_seconds = time.perf_counter() - plan_started
        await asyncio.wait_for(watcher, 30)
        assert channel.first_batch_at is not None
        first_ms = (channel.first_batch_at - t0) * 1000
        deliveries: int = await pool.fetchval(
            "SELECT count(*) FROM deliveries WHERE warning_id = $1", stored.warning_id
        )
        bare_seconds = await _bare_insert(pool, stored.warning_id)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "households": households,
        "generate_seconds": round(generate_seconds, 1),
        "deliveries": deliveries,
        "plan_seconds": round(plan_seconds, 2),
        "rows_per_s": round(deliveries / plan_seconds),
        "bare_insert_seconds": round(bare_seconds, 2),
        "ratio": round(plan_seconds / bare_seconds, 2),
        "first_responder_ms": round(first_ms, 1),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }


async def _bare_insert(pool: object, warning_id: int) -> float:
    """One INSERT … SELECT of the planned rows into a table shaped like the outbox: the limit."""
    from asyncpg import Pool

    assert isinstance(pool, Pool)
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS bench_bare")
        await conn.execute(
            "CREATE TABLE bench_bare (LIKE deliveries INCLUDING DEFAULTS INCLUDING INDEXES "
            "INCLUDING CONSTRAINTS)"
        )
        await conn.execute("CHECKPOINT")
        started = time.perf_counter()
        await conn.execute(
            """INSERT INTO bench_bare (warning_id, message_id, audience, recipient_id,
                   division_code, address, channel_kind, fallback, priority)
               SELECT warning_id, message_id, audience, recipient_id, division_code, address,
                      channel_kind, fallback, priority
                 FROM deliveries WHERE warning_id = $1""",
            warning_id,
        )
        elapsed = time.perf_counter() - started
        await conn.execute("DROP TABLE bench_bare")
    return elapsed


@click.group()
def bench() -> None:
    """Performance runs; record their figures in benchmarks/README.md."""


@bench.command("fanout")
@click.option("--households", default=2_900_000, show_default=True, help="Households to generate.")
@click.option("--reuse", is_flag=True, help="Reuse the roster of the previous run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fanout_command(households: int, reuse: bool, as_json: bool) -> None:
    """Plan a red warning over the whole city; compare with a bare INSERT … SELECT."""
    from warnd.cli.errors import friendly_errors

    result = friendly_errors(lambda: asyncio.run(fanout(households, reuse=reuse)))()
    report("fan-out", result, as_json)


def report(
    title: str,
    result: Mapping[str, float | int | str],
    as_json: bool,
    keys: Sequence[str] | None = None,
) -> None:
    """A bench's result: one JSON object (only ``keys``, when given), or a table for people."""
    if as_json:
        click.echo(json.dumps({key: result[key] for key in keys or result}))
        return
    table = Table(title=f"{title}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
