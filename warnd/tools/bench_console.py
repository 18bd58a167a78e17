"""``warnd bench console``: what the duty officer's console reads, on a city-wide red warning.

Plans the red rainstorm warning of ``bench fanout`` over the generated city, moves its
deliveries into a mid-round mix of states with one set-based statement (through the tally
triggers, like every other change), answers half its call-outs and leaves the other half
overdue. Then, while a dispatch worker sends the remaining queued rows at a steady rate and the
tally changes are folded as housekeeping folds them, it times the application functions behind
each console read, server-side (the time of the function call, as a handler would make it):

- ``board``: the console's board page as its handler answers it: ``board_figures`` (warnings
  under way with their deliveries, call-outs and field tasks, silent feeds, offline speakers,
  the newest refused feed messages) rendered into the page;
- ``warning_page``: the console's warning page as its handler answers it: the detail, the
  roll-up per county (the page's default level), the 未叫应名单 (overdue call-outs), the audit
  trail, the field tasks, pending cancels and corrections, rendered. What the API's client
  would read for such a page (detail, roll-ups per county and per town, the first 50 overdue
  call-outs) is timed too and reported as ``warning_reads_*``;
- ``progress``: ``GET /api/v1/warnings/{id}/progress`` at its default level (town). The village
  level of the whole city (6,000 rows) is timed too and reported as ``progress_village_*``, and
  the village level within the town of most villages (what the page shows when an officer
  opens a town: ``?level=village&within=``) as ``progress_town_villages_*``;
- ``sse_update``: one live update of the board as its stream makes it: ``board_figures``
  rendered into the board's live part (the stream sends it when it changed). ``GET
  /api/v1/board`` (the same figures as JSON) is timed too and reported as ``api_board_*``.

The console's handlers are called as the server calls them, on a request made for them (no
socket): the time is the handler's, reads and rendering, without the network.

For comparison it also times, once, the roll-up read the old way (counting the deliveries).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import asyncpg
import click
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from channels.base import Channel, ChannelKind, Limits, OutboundMessage, Outcome, SendResult
from warnd.app.board import board_figures, fold_tallies
from warnd.app.metrics import Metrics
from warnd.app.reads import CalloutFilter, callouts_page, progress, warning_detail
from warnd.app.services import Services
from warnd.app.users import ConsoleUser, LiveSession
from warnd.core.clock import SystemClock
from warnd.core.config import AppConfig
from warnd.db.notify import Wakeup
from warnd.db.pool import open_pool, recreate_database, with_database
from warnd.ingest.store import store_warning
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.planner import Planner
from warnd.policy.loader import PolicyHolder, load_policy
from warnd.runtime.settings import Settings, database_url
from warnd.tools.bench_fanout import BENCH_DB, _generate, bench, city_warning, report
from warnd.web.app import build_app
from warnd.web.console import pages
from warnd.web.console.guard import SESSION

KEYS: Final = (
    "deliveries",
    "board_ms_p99",
    "warning_page_ms_p99",
    "progress_ms_p99",
    "sse_update_ms_p99",
)
LIST_PAGE: Final = 50  # rows of a list's first page, as the console asks
FOLD_EVERY_S: Final = 2.0

# A city-wide warning in mid-round: most delivered, some still on the wire, some failed or
# cancelled, a fifth still queued (which the background worker keeps sending).
MIX: Final = """
UPDATE deliveries d
   SET state = m.state,
       sent_at = CASE WHEN m.state IN ('sent', 'delivered', 'failed') THEN $2::timestamptz END,
       delivered_at = CASE WHEN m.state = 'delivered' THEN $2::timestamptz END,
       failed_at = CASE WHEN m.state = 'failed' THEN $2::timestamptz END,
       cancelled_at = CASE WHEN m.state = 'cancelled' THEN $2::timestamptz END,
       channel = CASE WHEN m.state <> 'queued' THEN 'bench' END,
       lease_until = CASE WHEN m.state = 'sending' THEN $2::timestamptz + interval '1 hour' END
  FROM (SELECT id,
               CASE WHEN id % 100 < 60 THEN 'delivered'
                    WHEN id % 100 < 70 THEN 'sent'
                    WHEN id % 100 < 73 THEN 'failed'
                    WHEN id % 100 < 75 THEN 'cancelled'
                    WHEN id % 100 < 76 THEN 'sending'
                    ELSE 'queued' END AS state
          FROM deliveries WHERE warning_id = $1) m
 WHERE d.id = m.id
"""
# Half the call-outs answered (a few late), the rest open past their deadline.
ANSWER: Final = """
UPDATE callouts
   SET state = CASE WHEN id % 2 = 0 THEN 'acknowledged' ELSE 'notified' END,
       acknowledged_at = CASE WHEN id % 2 = 0 THEN $2::timestamptz END,
       ack_late = CASE WHEN id % 2 = 0 THEN id % 10 = 0 END,
       ack_via = CASE WHEN id % 2 = 0 THEN 'sms' END,
       deadline = $2::timestamptz - interval '1 minute', next_check_at = NULL
 WHERE warning_id = $1
"""
# The roll-up as it was read before the tallies: every delivery of the warning counted.
FROM_DELIVERIES: Final = """
SELECT rpad(left(x.division_code, $2), 12, '0') AS code, count(*) AS total,
       count(*) FILTER (WHERE x.state = 'delivered') AS delivered
  FROM deliveries x
 WHERE x.warning_id = $1
 GROUP BY 1
"""


class PacedChannel(Channel):
    """Accepts everything at a gateway's pace: the load of a round in progress (bench only)."""

    kind = ChannelKind.SMS
    simulated = True

    def __init__(self, rate_per_s: float) -> None:
        super().__init__("bench", self.config_model(type="bench"))
        self._rate = rate_per_s
        self.sent = 0

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=self._rate, window=100, max_text=670)

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        self.sent += len(batch)
        return [SendResult(m.key, Outcome.ACCEPTED, external_id=f"b-{m.key}") for m in batch]


def p99(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def p50(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2]


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def _prepare(pool: asyncpg.Pool, policy_holder: PolicyHolder, clock: SystemClock) -> int:
    """Store and plan the city warning on an empty outbox; its id."""
    async with pool.acquire() as conn:
        # The benchmark's own database: the append-only triggers are bypassed for this one
        # statement (superuser only), so the tallies are named (their trigger is bypassed too).
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "TRUNCATE warnings, messages, deliveries, warning_villages, delivery_tallies, "
            "delivery_tally_changes CASCADE"
        )
        await conn.execute("RESET session_replication_role")
    planner = Planner(pool, policy_holder, clock, {"sms": 670, "voice": 670, "broadcast": 670})
    stored = await store_warning(pool, city_warning(clock.now()), source="bench", now=clock.now())
    await planner.plan_pending()
    return stored.warning_id


async def console(households: int, *, reuse: bool, rounds: int, rate: float) -> dict[str, float]:
    settings = Settings()
    server = database_url(settings)
    url = with_database(server, BENCH_DB)
    if not reuse:
        url = await recreate_database(server, BENCH_DB)
        async with open_pool(url, min_size=1, max_size=2):
            pass  # migrate before the generator connects
        _generate(url, households)
    clock = SystemClock()
    policy = PolicyHolder(settings.policy, load_policy(settings.policy))
    async with open_pool(url, min_size=2, max_size=6) as pool:
        plan_started = time.perf_counter()
        warning_id = await _prepare(pool, policy, clock)
        plan_seconds = time.perf_counter() - plan_started
        mix_started = time.perf_counter()
        await pool.execute(MIX, warning_id, clock.now())
        mix_seconds = time.perf_counter() - mix_started
        await pool.execute(ANSWER, warning_id, clock.now())
        await fold_tallies(pool)
        await pool.execute("VACUUM ANALYZE")
        deliveries: int = await pool.fetchval(
            "SELECT count(*) FROM deliveries WHERE warning_id = $1", warning_id
        )
        old = [await timed(lambda: pool.fetch(FROM_DELIVERIES, warning_id, 9)) for _ in range(2)]

        channel = PacedChannel(rate)
        services = Services(
            pool=pool,
            config=AppConfig(),
            policy=policy,
            clock=clock,
            metrics=Metrics(),
            channels={channel.name: channel},
        )
        samples = await _measure(services, channel, warning_id, rounds)
    return {
        "deliveries": deliveries,
        "board_ms_p99": round(p99(samples["board"]), 1),
        "warning_page_ms_p99": round(p99(samples["warning_page"]), 1),
        "progress_ms_p99": round(p99(samples["progress"]), 1),
        "sse_update_ms_p99": round(p99(samples["sse_update"]), 1),
        "board_ms_p50": round(p50(samples["board"]), 1),
        "warning_page_ms_p50": round(p50(samples["warning_page"]), 1),
        "progress_ms_p50": round(p50(samples["progress"]), 1),
        "progress_village_ms_p99": round(p99(samples["progress_village"]), 1),
        "progress_village_ms_p50": round(p50(samples["progress_village"]), 1),
        "progress_town_villages_ms_p99": round(p99(samples["progress_town_villages"]), 1),
        "progress_town_villages_ms_p50": round(p50(samples["progress_town_villages"]), 1),
        "sse_update_ms_p50": round(p50(samples["sse_update"]), 1),
        "api_board_ms_p99": round(p99(samples["api_board"]), 1),
        "api_board_ms_p50": round(p50(samples["api_board"]), 1),
        "warning_reads_ms_p99": round(p99(samples["warning_reads"]), 1),
        "warning_reads_ms_p50": round(p50(samples["warning_reads"]), 1),
        "progress_from_deliveries_ms": round(min(old), 1),
        "rounds": rounds,
        "sent_while_reading": channel.sent,
        "plan_seconds": round(plan_seconds, 2),
        "mix_seconds": round(mix_seconds, 2),
    }


async def _measure(
    services: Services, channel: PacedChannel, warning_id: int, rounds: int
) -> dict[str, list[float]]:
    """Each read ``rounds`` times (ms), while ``channel``'s worker sends and tallies fold."""
    pool, clock = services.pool, services.clock
    dispatcher = Dispatcher(pool, {channel.name: channel}, clock, Metrics(), Wakeup())

    async def housekeeping() -> None:
        while True:
            await fold_tallies(pool)
            await asyncio.sleep(FOLD_EVERY_S)

    app = build_app(services)

    def signed_in(path: str, **match: str) -> web.Request:
        request = make_mocked_request("GET", path, match_info=match, app=app)
        request[SESSION] = LiveSession(ConsoleUser("bench", frozenset({"officer"})), "-")
        return request

    async def warning_page() -> None:
        path = f"/console/warnings/{warning_id}"
        response = await pages.warning_page(signed_in(path, warning_id=str(warning_id)))
        assert response.status == 200

    async def warning_reads() -> None:
        await warning_detail(services, warning_id)
        for level in ("county", "town"):
            await progress(services, warning_id, level)
        overdue = CalloutFilter(overdue_at=clock.now())  # the 未叫应名单, as ?overdue=true
        await callouts_page(services, warning_id, overdue, after=0, limit=LIST_PAGE)

    async def board_page() -> None:
        response = await pages.board_page(signed_in("/console/"))
        assert response.status == 200

    async def sse_update() -> None:
        await pages.board_fragment(signed_in("/console/live/board"))

    async def api_board() -> None:
        (await board_figures(services)).model_dump_json()  # GET /api/v1/board's handler

    async def progress_read() -> None:
        await progress(services, warning_id, "town")

    async def progress_villages() -> None:
        await progress(services, warning_id, "village")

    busiest_town: str = await pool.fetchval(
        "SELECT parent_code FROM divisions WHERE level = 'village'"
        " GROUP BY parent_code ORDER BY count(*) DESC, parent_code LIMIT 1"
    )

    async def progress_town_villages() -> None:
        await progress(services, warning_id, "village", busiest_town)

    reads: dict[str, Callable[[], Awaitable[None]]] = {
        "board": board_page,
        "warning_page": warning_page,
        "progress": progress_read,
        "progress_village": progress_villages,
        "progress_town_villages": progress_town_villages,
        "sse_update": sse_update,
        "api_board": api_board,
        "warning_reads": warning_reads,
    }
    samples: dict[str, list[float]] = {name: [] for name in reads}
    load = [
        asyncio.create_task(dispatcher.run_worker(channel)),
        asyncio.create_task(housekeeping()),
    ]
    try:
        for read in reads.values():
            await read()  # the first call warms the pool's prepared statements
        for _ in range(rounds):
            for name, read in reads.items():
                samples[name].append(await timed(read))
    finally:
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
    return samples


@bench.command("console")
@click.option(
    "--households",
    default=200_000,
    show_default=True,
    help="Households to generate (2900000: the whole city, about 4.1 million deliveries).",
)
@click.option("--reuse", is_flag=True, help="Reuse the roster of the previous run (any bench).")
@click.option("--rounds", default=100, show_default=True, help="Times each read is measured.")
@click.option(
    "--rate", default=2000.0, show_default=True, help="Messages/s the background worker sends."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--all", "every", is_flag=True, help="With --json: every measure, not only p99s.")
def console_command(
    *, households: int, reuse: bool, rounds: int, rate: float, as_json: bool, every: bool
) -> None:
    """Time the console's reads on a city-wide red warning in mid-round."""
    from warnd.cli.errors import friendly_errors

    if rounds < 1:
        raise click.BadParameter("at least 1", param_hint="--rounds")
    result = friendly_errors(
        lambda: asyncio.run(console(households, reuse=reuse, rounds=rounds, rate=rate))
    )()
    report("console", result, as_json, None if every else KEYS)
