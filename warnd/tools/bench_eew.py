"""``warnd bench eew``: the earthquake fast path over the whole generated city (issue 12).

The bench builds its own database (``warnd_bench_eew``, dropped and created again on every run)
with the generated city: every county's villages with their coordinates and blind spots, the
responders and the facilities, written by ``warnd roster generate --households 0`` in a child
process. The fast path reads no household (they are the planner's), so none is generated: that
saves the minute the city's 2.9 million households take and changes no alert.

Then the real ``FastPath`` runs — the policy of ``config/policy.toml``, the real
``Dispatcher.record`` as its ``record`` callable, the real database — with two bench doubles as
its channels:

- ``SpeakerStopwatch`` (broadcast) accepts every command at once and notes when ``send`` is
  entered with the first command of each event;
- ``QueueingSmsGateway`` (sms) models a queueing gateway such as an SMPP link: a priority queue
  holding 10,000 ordinary messages (priority 25, claimed rainstorm messages), kept at 10,000 as
  they drain, taken by a few lanes at a fixed rate. It notes when the first message of each event
  is *taken from the queue to go on the wire*: that message has to overtake the 10,000.

The same M 5.5 report near Jining (35.40 N, 116.60 E, 10 km, origin one second before arrival)
is posted ``--events`` times, each a distinct event (report 1), as the seismic feed's JSON through
warnd's intake (``receive_eew``: parsed, its row written, handed to the fast path, the feed's
answer computed) — all of ``POST /api/v1/eew`` but the HTTP server. Per event: the time from just
before the intake takes the body to the first loudspeaker command handed to its channel, and to
the first SMS taken from the gateway's queue.

Events are separate samples, as separate earthquakes are: before the next event, what is left of
the previous event's alerts in the gateway's queue is settled as accepted without wire time (at a
gateway's rate a city's alerts take many seconds to send, and the next event's alerts would queue
behind them at the same priority), and the previous event's durable record is awaited
(``FastPath.drain``). So each event meets an idle process and a database that is not busy with an
earlier record, and at most one record (warning, villages, call-outs, deliveries, outcomes: tens
of thousands of rows) is ever being written: the run's length is the record's times the events.
``--drain-every N`` awaits the records only every N events instead, so that up to N of them are
written in the background while the next events are posted: what a busy record costs the fast
path.

At the end the database is checked: every message handed to a channel has its delivery row,
sent or expired, and every event alerted some village; otherwise the bench exits with status 2.

The database grows by ~36 MB an event, and the records slow down as it grows: 1,000 events took
40 to 110 minutes. ``--prune`` counts each event's records once they are written and then empties
the tables (the bench's own database), so that every event meets the database the first met; the
check at the end adds the counts up. What is timed, arrival to the first command and SMS, reads
nothing from the database either way.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import asyncpg
import click
from rich.console import Console

from channels.base import (
    Channel,
    ChannelKind,
    Limits,
    OutboundMessage,
    Outcome,
    SendResult,
    expiry,
)
from warnd.app.eew import receive_eew
from warnd.app.metrics import Metrics
from warnd.app.services import Services
from warnd.core.clock import SystemClock
from warnd.core.config import AppConfig
from warnd.core.eew import EewReport, assess
from warnd.core.errors import WarndError
from warnd.core.vocabulary import Level, priority
from warnd.db.notify import Wakeup
from warnd.db.pool import open_pool, recreate_database
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.eew import FastPath
from warnd.policy.loader import PolicyHolder, load_policy
from warnd.runtime.daemon import tune_gc
from warnd.runtime.settings import Settings, database_url

BENCH_DB = "warnd_bench_eew"
ORDINARY = 10_000  # ordinary messages the SMS gateway holds when an event arrives
# A claimed rainstorm message (orange, to households): below every earthquake alert (0).
ORDINARY_PRIORITY = priority("rainstorm", Level.ORANGE, 5)
EPICENTRE = (35.40, 116.60, 10.0)  # near Jining: lat, lon, depth in km
MAGNITUDE = 5.5
JSON_KEYS = ("events", "p50_ms", "p99_ms", "villages_alerted", "speakers", "first_sms_ms_p99")


class BenchError(WarndError):
    """The benchmark did not do the work it reports; its figures must not be recorded."""

    code = "bench_failed"


# ---------------------------------------------------------------------------------------------
# Bench doubles of the channels.
# ---------------------------------------------------------------------------------------------


class SpeakerStopwatch(Channel):
    """Bench double of a loudspeaker channel: accepts every command at once and notes when
    ``send`` is entered with the first command after ``arm`` (one event's)."""

    kind = ChannelKind.BROADCAST
    simulated = True

    def __init__(self) -> None:
        super().__init__("speakers", self.config_model(type="bench"))
        self.first_at: float | None = None
        self.handed = 0

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=1e9, window=100_000, max_text=670)

    def arm(self) -> None:
        self.first_at = None

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        if self.first_at is None and batch:
            self.first_at = time.perf_counter()
        self.handed += len(batch)
        return [SendResult(m.key, Outcome.ACCEPTED, external_id=f"spk-{m.key}") for m in batch]


@dataclass(eq=False)
class _Batch:
    """One ``send`` call's messages in the gateway's queue: a result per message, and a future
    set when the last of them is settled."""

    results: list[SendResult | None]
    done: asyncio.Future[None]
    left: int = field(init=False)

    def __post_init__(self) -> None:
        self.left = len(self.results)

    def settle(self, index: int, result: SendResult) -> None:
        self.results[index] = result
        self.left -= 1
        if not self.left and not self.done.done():
            self.done.set_result(None)


# In the queue: (priority, order of arrival, batch or None for an ordinary message, index,
# message). As in the SMPP link, the most urgent first, in order of arrival within a priority.
_Queued = tuple[int, int, _Batch | None, int, OutboundMessage | None]


class QueueingSmsGateway(Channel):
    """Bench double of a queueing SMS gateway (an SMPP link's lanes): a priority queue that holds
    ``ordinary`` claimed ordinary messages, kept at that number as lanes take them, and ``lanes``
    lanes that take the most urgent message and hold the wire for ``lanes / rate_per_s`` seconds
    each, so the gateway sends ``rate_per_s`` messages a second. Notes when the first urgent
    message after ``arm`` is taken from the queue to go on the wire, and (modelled) the first one
    to ``responders``."""

    kind = ChannelKind.SMS
    simulated = True

    def __init__(
        self, *, lanes: int, rate_per_s: float, ordinary: int, responders: frozenset[str]
    ) -> None:
        super().__init__("sms", self.config_model(type="bench"))
        self.lanes = lanes
        self.rate_per_s = rate_per_s
        self.ordinary = ordinary
        self._responders = responders
        self._queue: asyncio.PriorityQueue[_Queued] = asyncio.PriorityQueue()
        self._arrivals = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self.first_at: float | None = None
        self.handed_at: float | None = None  # ``send`` entered with the event's first message
        self.first_taken = asyncio.Event()
        self.handed = 0  # urgent messages handed to ``send``
        self.on_wire = 0  # urgent messages taken by a lane
        self.settled_at_once = 0  # urgent messages settled without wire time (``flush``)
        self.ordinary_sent = 0
        self.first_responder_position: int | None = None  # in the event's SMS order
        self._event_sms = 0  # the event's SMS handed so far, over all its ``send`` calls

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=self.rate_per_s, window=self.lanes, max_text=670, queues=True)

    async def start(self) -> None:
        for _ in range(self.ordinary):
            self._put_ordinary()
        self._tasks = [asyncio.create_task(self._lane()) for _ in range(self.lanes)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def arm(self) -> None:
        self.first_at = self.handed_at = None
        self.first_taken.clear()
        self.first_responder_position = None
        self._event_sms = 0

    def _put_ordinary(self) -> None:
        self._queue.put_nowait((ORDINARY_PRIORITY, next(self._arrivals), None, 0, None))

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        if not batch:
            return []
        if self.handed_at is None:
            self.handed_at = time.perf_counter()
        pending = _Batch([None] * len(batch), asyncio.get_running_loop().create_future())
        for index, message in enumerate(batch):
            if self.first_responder_position is None and message.address in self._responders:
                self.first_responder_position = self._event_sms + index
            self._queue.put_nowait(
                (message.priority, next(self._arrivals), pending, index, message)
            )
        self.handed += len(batch)
        self._event_sms += len(batch)
        await pending.done
        return [r for r in pending.results if r is not None]

    async def _lane(self) -> None:
        wire = self.lanes / self.rate_per_s
        clock = SystemClock()
        while True:
            _, _, pending, index, message = await self._queue.get()
            if pending is None or message is None:
                self._put_ordinary()  # the gateway keeps holding ``ordinary`` of them
                self.ordinary_sent += 1
            else:
                if self.first_at is None:
                    self.first_at = time.perf_counter()
                    self.first_taken.set()
                self.on_wire += 1
                late = expiry(message, clock.now()) if message.expires_at is not None else None
                pending.settle(
                    index,
                    late
                    or SendResult(message.key, Outcome.ACCEPTED, external_id=f"sms-{message.key}"),
                )
            await asyncio.sleep(wire)

    def flush(self) -> int:
        """Settle as accepted, without wire time, the urgent messages still queued (an event's
        rest, before the next event: the events are separate samples); how many."""
        flushed = 0
        while not self._queue.empty():
            head = self._queue.get_nowait()
            _, _, pending, index, message = head
            if pending is None or message is None:
                self._queue.put_nowait(head)  # only ordinary messages are left
                break
            pending.settle(
                index, SendResult(message.key, Outcome.ACCEPTED, external_id=f"sms-{message.key}")
            )
            flushed += 1
        self.settled_at_once += flushed
        return flushed

    @property
    def queued(self) -> int:
        return self._queue.qsize()


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------


def _generate(url: str, counties: str | None) -> float:
    """The generated city without households, in a child process (its memory is not ours)."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "warnd", "roster", "generate", "--households", "0"]
    if counties:
        command += ["--counties", counties]
    subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        command,
        env={**os.environ, "WARND_DATABASE_URL": url},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def _report(index: int, run: str, now: datetime) -> EewReport:
    lat, lon, depth = EPICENTRE
    return EewReport(
        event_id=f"BENCH-{run}-{index:05d}",
        report_no=1,
        origin_time=now - timedelta(seconds=1),
        lat=lat,
        lon=lon,
        depth_km=depth,
        magnitude=MAGNITUDE,
        place="济宁市任城区",
    )


def _feed_json(report: EewReport) -> bytes:
    """The report as the seismic feed posts it (README, "Earthquake early warning")."""
    return json.dumps(
        {
            "event_id": report.event_id,
            "report_no": report.report_no,
            "origin_time": report.origin_time.isoformat(),
            "lat": report.lat,
            "lon": report.lon,
            "depth_km": report.depth_km,
            "magnitude": report.magnitude,
            "place": report.place,
            "final": report.final,
            "cancel": report.cancel,
            "status": report.status,
        },
        ensure_ascii=False,
    ).encode()


async def eew(
    events: int,
    *,
    counties: str | None = None,
    lanes: int = 4,
    rate_per_s: float = 2_000.0,
    drain_every: int = 1,
    prune_records: bool = False,
    server_url: str | None = None,
    database: str = BENCH_DB,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, float | int | str]:
    """Run the bench; its measures (``JSON_KEYS`` and more) as a dict."""
    settings = Settings()
    server = server_url or database_url(settings)
    url = await recreate_database(server, database)
    async with open_pool(url, min_size=1, max_size=2):
        pass  # migrate before the generator connects
    say("generating the city (no households)")
    generate_seconds = await asyncio.to_thread(_generate, url, counties)
    policy = load_policy(settings.policy)
    async with open_pool(url, min_size=2, max_size=4) as pool:
        await pool.execute("VACUUM ANALYZE")
        responders = frozenset(
            r["phone"]
            for r in await pool.fetch(
                "SELECT phone FROM responders WHERE specialities && ARRAY['all', 'earthquake']"
            )
        )
        clock = SystemClock()
        speakers = SpeakerStopwatch()
        sms = QueueingSmsGateway(
            lanes=lanes, rate_per_s=rate_per_s, ordinary=ORDINARY, responders=responders
        )
        channels: dict[str, Channel] = {"speakers": speakers, "sms": sms}
        dispatcher = Dispatcher(pool, channels, clock, Metrics(), Wakeup())
        fast_path = FastPath(pool, channels, lambda: policy, clock, dispatcher.record)
        roster = await fast_path.prepare()  # at start in the daemon too: not an event's
        villages = assess(
            _report(0, "probe", clock.now()),
            roster.villages,
            policy.earthquake_early_warning.parameters,
            clock.now(),
        ).alerted_count
        services = Services(
            pool=pool,
            config=AppConfig(),
            policy=PolicyHolder(settings.policy, policy),
            clock=clock,
            metrics=Metrics(),
            channels=channels,
            eew=fast_path,
        )
        await sms.start()
        tune_gc()  # as ``warnd run`` does once its roster and channels are loaded
        recorded = Recorded()
        prune = partial(_prune, pool, recorded) if prune_records else None
        try:
            measured = await _post(
                services, fast_path, speakers, sms, events, drain_every, clock, say, prune
            )
        finally:
            await fast_path.drain()
            await sms.stop()
        say("checking the database")
        handed = speakers.handed + sms.handed
        recorded.add(await _count(pool))
    if recorded.warnings != events:
        raise BenchError(f"{recorded.warnings:,} warnings recorded for {events:,} events")
    if recorded.deliveries != handed or recorded.sent_or_expired != handed:
        raise BenchError(
            f"{handed:,} messages handed to the channels, but {recorded.deliveries:,} delivery "
            f"rows ({recorded.sent_or_expired:,} sent or expired)"
        )
    first, first_sms = measured.first_command_ms, measured.first_sms_ms
    responder_ms = [
        sms_ms + position / rate_per_s * 1000
        for sms_ms, position in zip(first_sms, measured.responder_positions, strict=True)
    ]
    return {
        "events": events,
        "p50_ms": round(_percentile(first, 0.50), 2),
        "p99_ms": round(_percentile(first, 0.99), 2),
        "villages_alerted": villages,
        "speakers": measured.speakers,
        "first_sms_ms_p99": round(_percentile(first_sms, 0.99), 2),
        "first_sms_ms_p50": round(_percentile(first_sms, 0.50), 2),
        "max_ms": round(max(first), 2),
        "first_sms_ms_max": round(max(first_sms), 2),
        "first_sms_handed_ms_p99": round(_percentile(measured.sms_handed_ms, 0.99), 2),
        "answered_ms_p99": round(_percentile(measured.handed_ms, 0.99), 2),  # the feed's answer
        "messages_per_event": measured.messages,
        "sms_per_event": measured.sms,
        "first_responder_sms_ms_p99_modelled": round(_percentile(responder_ms, 0.99), 1),
        "sms_settled_without_wire": sms.settled_at_once,
        "sms_taken_on_wire": sms.on_wire,
        "ordinary_sms_sent": sms.ordinary_sent,
        "deliveries_recorded": recorded.deliveries,
        "callouts_recorded": recorded.callouts,
        "records_per_s": round(events / measured.seconds, 2),
        "run_seconds": round(measured.seconds, 1),
        "generate_seconds": round(generate_seconds, 1),
        "gateway": f"{lanes} lanes, {rate_per_s:,.0f}/s, {ORDINARY:,} held at {ORDINARY_PRIORITY}",
        "drain_every": drain_every,
        "pruned": prune_records,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


@dataclass
class Recorded:
    """What the events' durable records hold, added up over the prunes."""

    deliveries: int = 0
    sent_or_expired: int = 0
    warnings: int = 0
    callouts: int = 0

    def add(self, other: Recorded) -> None:
        self.deliveries += other.deliveries
        self.sent_or_expired += other.sent_or_expired
        self.warnings += other.warnings
        self.callouts += other.callouts


async def _count(pool: asyncpg.Pool) -> Recorded:
    row = await pool.fetchrow(
        """SELECT count(*) AS deliveries,
                  count(*) FILTER (WHERE state IN ('sent', 'expired')) AS sent_or_expired,
                  (SELECT count(*) FROM warnings WHERE source = 'eew') AS warnings,
                  (SELECT count(*) FROM callouts) AS callouts
             FROM deliveries"""
    )
    assert row is not None
    return Recorded(row["deliveries"], row["sent_or_expired"], row["warnings"], row["callouts"])


async def _prune(pool: asyncpg.Pool, recorded: Recorded) -> None:
    """Count the records written so far, then empty their tables (the bench's own database)."""
    recorded.add(await _count(pool))
    async with pool.acquire() as conn:
        await conn.execute("SET session_replication_role = replica")  # the audit log's guard
        try:
            await conn.execute(
                "TRUNCATE warnings, warning_villages, messages, deliveries, delivery_tallies,"
                " delivery_tally_changes, callouts, callout_events, field_tasks,"
                " field_task_events, audit_log CASCADE"
            )
        finally:
            await conn.execute("RESET session_replication_role")


@dataclass
class _Measured:
    first_command_ms: list[float] = field(default_factory=list)
    first_sms_ms: list[float] = field(default_factory=list)
    handed_ms: list[float] = field(default_factory=list)
    sms_handed_ms: list[float] = field(default_factory=list)
    responder_positions: list[int] = field(default_factory=list)
    speakers: int = 0
    messages: int = 0
    sms: int = 0
    seconds: float = 0.0


async def _post(  # noqa: PLR0917 - one private call site
    services: Services,
    fast_path: FastPath,
    speakers: SpeakerStopwatch,
    sms: QueueingSmsGateway,
    events: int,
    drain_every: int,
    clock: SystemClock,
    say: Callable[[str], None],
    prune: Callable[[], Awaitable[None]] | None,
) -> _Measured:
    measured = _Measured()
    run = f"{int(time.time())}"
    started = time.perf_counter()
    for index in range(events):
        speakers.arm()
        sms.arm()
        before = (speakers.handed, sms.handed)
        body = _feed_json(_report(index, run, clock.now()))
        arrival = time.perf_counter()
        await receive_eew(services, "seismic", body)
        handed = time.perf_counter()
        try:
            await asyncio.wait_for(sms.first_taken.wait(), 10)
        except TimeoutError:
            raise BenchError(f"event {index}: no SMS taken from the gateway's queue") from None
        if speakers.first_at is None:
            raise BenchError(f"event {index}: no loudspeaker command handed")
        measured.first_command_ms.append((speakers.first_at - arrival) * 1000)
        assert sms.first_at is not None
        measured.first_sms_ms.append((sms.first_at - arrival) * 1000)
        measured.handed_ms.append((handed - arrival) * 1000)
        assert sms.handed_at is not None
        measured.sms_handed_ms.append((sms.handed_at - arrival) * 1000)
        measured.responder_positions.append(sms.first_responder_position or 0)
        event_speakers = speakers.handed - before[0]
        event_sms = sms.handed - before[1]
        if not event_speakers or not event_sms:
            raise BenchError(f"event {index} alerted nothing")
        # The same report every time: the same villages, speakers and messages.
        measured.speakers = event_speakers
        measured.sms = event_sms
        measured.messages = event_speakers + event_sms
        sms.flush()
        if (index + 1) % drain_every == 0:
            await fast_path.drain()
            if prune is not None:
                await prune()
        if (index + 1) % 50 == 0:
            say(f"{index + 1:,} events")
    await fast_path.drain()
    measured.seconds = time.perf_counter() - started
    return measured


# ---------------------------------------------------------------------------------------------
# The command (registered on ``warnd bench``).
# ---------------------------------------------------------------------------------------------


@click.command("eew")
@click.option("--events", default=1000, show_default=True, help="Reports posted, one per event.")
@click.option(
    "--counties",
    help="Comma-separated 6-digit county codes to generate  [default: the whole city]",
)
@click.option("--lanes", default=4, show_default=True, help="The SMS gateway's lanes.")
@click.option(
    "--sms-rate", default=2000.0, show_default=True, help="The SMS gateway's messages a second."
)
@click.option(
    "--drain-every",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Await the durable records every N events (1: each before the next event).",
)
@click.option(
    "--prune",
    "prune_records",
    is_flag=True,
    help="Count and empty the records after each drain: every event meets a small database.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eew_command(  # noqa: PLR0917 - click passes the options by name
    events: int,
    counties: str | None,
    lanes: int,
    sms_rate: float,
    drain_every: int,
    prune_records: bool,
    as_json: bool,
) -> None:
    """Post an M 5.5 report near Jining as separate events; first command and first SMS, ms."""
    from warnd.cli.errors import friendly_errors
    from warnd.tools.bench_fanout import report

    err = Console(stderr=True)
    say = (lambda _: None) if as_json else (lambda text: err.print(f"[dim]{text}[/]"))
    run = friendly_errors(
        lambda: asyncio.run(
            eew(
                events,
                counties=counties,
                lanes=lanes,
                rate_per_s=sms_rate,
                drain_every=drain_every,
                prune_records=prune_records,
                say=say,
            )
        )
    )
    report("earthquake early warning", run(), as_json, JSON_KEYS)
