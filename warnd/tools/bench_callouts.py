"""``warnd bench acks`` and ``warnd bench escalation``: call-and-respond under load.

Both build their own database (``warnd_bench_callouts``): the generated city's roster, topped up
with more responders in the same villages (copies of the generated posts with numbers of their
own) until one warning opens the call-outs asked for, and real warnings planned by the real
``Planner`` — so every call-out, message and responder delivery is a production row, written by
production code. Each bench then checks its outcome in the database and fails loudly when it
measured less work than it claims: a fast benchmark of nothing is a defect.

``acks`` feeds SMS replies through ``Inbound.handle_events`` (matching, acknowledging,
cancelling the other channels' queued attempts, recording every inbound event) in the batches
the inbound worker takes, and reports replies handled per second.

``escalation`` moves the call-outs' first escalation step (the repeat call) so that they come due
spread over a window of real time, runs ``Escalation.run`` with the system clock as the daemon's
escalate stage does, and reports how late each step was committed after its due time, then the
CPU the scanner costs while nothing is due.
"""

# ruff: noqa: S311 - seeded, reproducible load; nothing here is a secret

from __future__ import annotations

import asyncio
import math
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg
import click
from rich.console import Console

from channels.base import Reply
from warnd.app.metrics import Metrics
from warnd.core.clock import SystemClock
from warnd.core.errors import WarndError
from warnd.core.escalate import Snapshot
from warnd.core.model import Area, NormalisedWarning
from warnd.core.vocabulary import Level
from warnd.db.pool import open_pool, recreate_database
from warnd.ingest.store import store_warning
from warnd.pipeline.answers import Answers
from warnd.pipeline.escalation import Escalation
from warnd.pipeline.inbound import Inbound
from warnd.pipeline.planner import Planner
from warnd.policy.loader import load_policy
from warnd.runtime.settings import Settings, database_url

BENCH_DB = "warnd_bench_callouts"
CITY = "370800000000"
# Households only feed the planner's household steps, which neither bench measures; a small
# roster keeps the set-up short without changing a call-out row.
HOUSEHOLDS = 20_000
# Hazards whose responders are everyone, whatever their speciality: one warning then opens a
# call-out for every responder in the city, so the count asked for is reached exactly.
HAZARDS = ("gale", "heat", "cold_wave", "blizzard")
# Numbers for the extra responders and for strangers: prefixes the generator never hands out
# (checked at set-up), so a stranger's reply can never match a responder by accident.
EXTRA_PREFIX = "+86166"
STRANGER_PREFIX = "+86173"


class BenchError(WarndError):
    """The benchmark did not do the work it reports; its figures must not be recorded."""

    code = "bench_failed"


# ---------------------------------------------------------------------------------------------
# Set-up: roster, extra responders, warnings planned by the real planner.
# ---------------------------------------------------------------------------------------------


def _generate(url: str) -> None:
    """Generate the roster in a child process, like ``warnd bench fanout``."""
    subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "warnd", "roster", "generate", "--households", str(HOUSEHOLDS)],
        env={**os.environ, "WARND_DATABASE_URL": url},
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def _top_up_responders(pool: asyncpg.Pool, responders: int) -> int:
    """Add copies of the generated posts (same village, level, role; own number and name) until
    the city has ``responders``; return how many were added."""
    have: int = await pool.fetchval("SELECT count(*) FROM responders")
    clash = await pool.fetchval(
        "SELECT count(*) FROM responders WHERE phone LIKE $1 || '%' OR phone LIKE $2 || '%'",
        EXTRA_PREFIX,
        STRANGER_PREFIX,
    )
    if clash:
        raise BenchError("the generated roster uses the benchmark's reserved number prefixes")
    missing = max(0, responders - have)
    if missing:
        # Each copy's backup (B角) is the original's backup, so escalation chains keep their
        # real shape; the parent division's responsible person is found by the planner as usual.
        await pool.execute(
            """INSERT INTO responders (ref, name, phone, division_code, level, role,
                                       specialities, backup_id, exercise)
               SELECT r.ref || '-x' || n, r.name || n, $2 || lpad(row_number() OVER (
                          ORDER BY n, r.id)::text, 8, '0'),
                      r.division_code, r.level, r.role, r.specialities, r.backup_id, r.exercise
                 FROM responders r
                 CROSS JOIN generate_series(1, $3::int) AS n
                ORDER BY n, r.id
                LIMIT $1""",
            missing,
            EXTRA_PREFIX,
            math.ceil(missing / have),
        )
    return missing


def _warning(hazard: str, now: datetime, index: int) -> NormalisedWarning:
    return NormalisedWarning(
        sender="bench@warnd",
        identifier=f"bench-callouts-{hazard}-{now.timestamp():.0f}-{index}",
        sent=now,
        status="Actual",
        msg_type="Alert",
        hazard=hazard,
        level=Level.RED,
        area=Area(codes=(CITY,)),
        event="红色预警",
        headline="济宁市气象台发布红色预警信号",
        description="预计未来数小时内全市将出现严重灾害性天气。",
        instruction="请立即组织群众转移避险。",
        area_desc="济宁市",
    )


@dataclass(frozen=True)
class Prepared:
    url: str
    warning_ids: tuple[int, ...]
    short_codes: tuple[str, ...]
    callouts: int
    setup_seconds: float


async def _prepare(callouts: int, warnings: int, *, say: Callable[[str], None]) -> Prepared:
    """A fresh database with ``callouts`` open call-outs over ``warnings`` red warnings."""
    started = time.perf_counter()
    server = database_url(Settings())
    url = await recreate_database(server, BENCH_DB)
    async with open_pool(url, min_size=1, max_size=2):
        pass  # migrate before the generator connects
    say("generating the roster")
    await asyncio.to_thread(_generate, url)
    policy = load_policy(Settings().policy)
    per_warning = math.ceil(callouts / warnings)
    async with open_pool(url, min_size=2, max_size=4) as pool:
        added = await _top_up_responders(pool, per_warning)
        say(f"added {added:,} responders; planning {warnings} warning(s)")
        await pool.execute("VACUUM ANALYZE")
        clock = SystemClock()
        planner = Planner(pool, lambda: policy, clock, {"sms": 670, "voice": 670, "broadcast": 670})
        ids = []
        for index in range(warnings):
            warning = _warning(HAZARDS[index % len(HAZARDS)], clock.now(), index)
            stored = await store_warning(pool, warning, source="bench", now=clock.now())
            ids.append(stored.warning_id)
        await planner.plan_pending()
        rows = await pool.fetch(
            "SELECT w.id, w.short_code, (SELECT count(*) FROM callouts c WHERE c.warning_id = w.id"
            "  AND c.state = 'pending') AS opened FROM warnings w WHERE w.id = ANY($1) ORDER BY id",
            ids,
        )
        opened = sum(r["opened"] for r in rows)
        if opened < callouts:
            raise BenchError(f"the plan opened {opened:,} call-outs, not {callouts:,}")
        await pool.execute("VACUUM ANALYZE")
    return Prepared(
        url,
        tuple(ids),
        tuple(r["short_code"] for r in rows),
        opened,
        time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------------------------
# acks
# ---------------------------------------------------------------------------------------------

# Registered numbers as people's phones and gateways really present them.
_NUMBER_FORMS: tuple[Callable[[str], str], ...] = (
    lambda e164: e164,  # +8619901234567
    lambda e164: e164[3:],  # 19901234567
    lambda e164: f"+86 {e164[3:6]} {e164[6:10]} {e164[10:]}",
    lambda e164: f"{e164[3:6]}-{e164[6:10]}-{e164[10:]}",
    lambda e164: "0086" + e164[3:],
    lambda e164: e164[1:],  # 8619901234567
)
_ACK_WORDS = ("1", "收到", "确认", "１", "OK", "好的", "已收到", "收到，马上转移群众", "Yes.")
_ACK_WITH_CODE = ("1 {code}", "收到{code}", "1{code}", "确认 {code}")
_UNRECOGNISED = ("我在开会", "谁？", "在路上了，等会儿", "?")


@dataclass(frozen=True)
class ReplyMix:
    """The replies to feed, and what they must leave in the database."""

    replies: list[Reply]
    acknowledging: int  # call-outs the replies must acknowledge


def reply_mix(phones: Sequence[str], code: str, count: int, seed: int = 1) -> ReplyMix:
    """``count`` replies: 75 % acknowledgements from distinct callees (a quarter naming the
    warning's code, numbers in every format), 8 % repeats of an acknowledgement already sent,
    7 % from strangers, 6 % unrecognised text and 4 % a code no open warning has, from callees
    who do not acknowledge. Shuffled; which reply of a callee comes first does not change what
    is acknowledged."""
    rng = random.Random(seed)
    acks = round(count * 0.75)
    repeats = round(count * 0.08)
    strangers = round(count * 0.07)
    unrecognised = round(count * 0.06)
    wrong_code = count - acks - repeats - strangers - unrecognised
    silent = unrecognised + wrong_code
    if acks + silent > len(phones):
        raise BenchError(f"{count:,} replies need {acks + silent:,} call-outs; there are fewer")
    chosen = rng.sample(list(phones), acks + silent)
    answering, others = chosen[:acks], chosen[acks:]

    def form(phone: str) -> str:
        return rng.choice(_NUMBER_FORMS)(phone)

    replies = []
    for n, phone in enumerate(answering):
        text = (
            rng.choice(_ACK_WITH_CODE).format(code=code) if n % 4 == 0 else rng.choice(_ACK_WORDS)
        )
        replies.append(Reply(form(phone), text))
    replies += [Reply(form(rng.choice(answering)), "1") for _ in range(repeats)]
    replies += [
        Reply(form(f"{STRANGER_PREFIX}{rng.randrange(10**8):08d}"), "1") for _ in range(strangers)
    ]
    replies += [Reply(form(p), rng.choice(_UNRECOGNISED)) for p in others[:unrecognised]]
    replies += [Reply(form(p), "1 Z99") for p in others[unrecognised:]]
    rng.shuffle(replies)
    return ReplyMix(replies, acks)


async def _deliver_first_texts(pool: asyncpg.Pool, warning_id: int) -> None:
    """Mark the responders' SMS delivered, as dispatch and the receipts would have by the time
    anyone replies (a reply answers a text that arrived); their calls stay queued, as a
    rate-limited voice line leaves most of a city's calls when the first replies come in."""
    now = datetime.now(UTC)
    await pool.execute(
        """WITH sent AS (
               UPDATE deliveries
                  SET state = 'delivered', attempts = 1, channel = 'bench-sms',
                      external_id = 'bench-' || id, sending_at = $2, sent_at = $2,
                      delivered_at = $2
                WHERE warning_id = $1 AND audience = 'responder' AND channel_kind = 'sms'
                  AND state = 'queued'
               RETURNING callout_id
           )
           UPDATE callouts c SET state = 'notified', notified_at = $2
             FROM sent WHERE c.id = sent.callout_id AND c.state = 'pending'""",
        warning_id,
        now,
    )
    await pool.execute("VACUUM ANALYZE deliveries")
    await pool.execute("VACUUM ANALYZE callouts")


async def acks(
    callouts: int, replies: int, batch: int, *, say: Callable[[str], None]
) -> dict[str, float | int]:
    prepared = await _prepare(callouts, 1, say=say)
    warning_id, code = prepared.warning_ids[0], prepared.short_codes[0]
    async with open_pool(prepared.url, min_size=2, max_size=4) as pool:
        phones = [
            r["phone"]
            for r in await pool.fetch(
                "SELECT phone FROM callouts WHERE warning_id = $1 ORDER BY id", warning_id
            )
        ]
        mix = reply_mix(phones, code, replies)
        await _deliver_first_texts(pool, warning_id)
        clock = SystemClock()
        inbound = Inbound(pool, clock, Metrics(), answers=Answers(pool, clock))
        say(f"feeding {len(mix.replies):,} replies in batches of {batch}")
        started = time.perf_counter()
        for first in range(0, len(mix.replies), batch):
            await inbound.handle_events("bench-sms", mix.replies[first : first + batch])
        seconds = time.perf_counter() - started
        check = await pool.fetchrow(
            """SELECT
                 (SELECT count(*) FROM callouts WHERE state = 'acknowledged' AND ack_via = 'sms')
                   AS acknowledged,
                 (SELECT count(*) FROM callout_events WHERE kind = 'acknowledged') AS events,
                 (SELECT count(DISTINCT callout_id) FROM callout_events
                   WHERE kind = 'acknowledged') AS distinct_events,
                 (SELECT count(*) FROM inbound_events WHERE kind = 'reply') AS recorded,
                 (SELECT count(*) FROM deliveries d JOIN callouts c ON c.id = d.callout_id
                   WHERE c.state = 'acknowledged' AND d.state = 'queued') AS still_queued,
                 (SELECT count(*) FROM deliveries d JOIN callouts c ON c.id = d.callout_id
                   WHERE c.state = 'acknowledged' AND d.channel_kind = 'voice'
                     AND (d.state, d.error) IS DISTINCT FROM ('cancelled', 'answered'))
                   AS calls_not_stopped"""
        )
    assert check is not None
    expected = (mix.acknowledging, mix.acknowledging, mix.acknowledging, len(mix.replies), 0, 0)
    got = tuple(check)
    if got != expected:
        raise BenchError(
            "acknowledged, events, distinct events, recorded replies, queued after an answer, "
            "calls not stopped by an answer: "
            f"expected {expected}, found {got}"
        )
    return {
        "open_callouts": prepared.callouts,
        "replies": len(mix.replies),
        "acks_per_s": round(len(mix.replies) / seconds),
        "acknowledged": mix.acknowledging,
        "batch": batch,
        "seconds": round(seconds, 2),
        "setup_seconds": round(prepared.setup_seconds, 1),
    }


# ---------------------------------------------------------------------------------------------
# escalation
# ---------------------------------------------------------------------------------------------


class RecordingClock(SystemClock):
    """The system clock, remembering the last ``now`` it gave: a scan takes ``now`` once, at its
    start, and writes it as every event's ``at``, so it names the scan an event belongs to."""

    last: datetime | None = None

    def now(self) -> datetime:
        self.last = super().now()
        return self.last


class CommitTimedEscalation(Escalation):
    """The real scanner, noting when each scan's transaction had committed.

    ``callout_events.at`` is when the scan started; its rows become visible (to dispatch, to the
    duty officer) only at commit, up to a whole batch later. Lateness is measured to the commit.
    """

    def __init__(self, pool: asyncpg.Pool, clock: RecordingClock) -> None:
        super().__init__(pool, clock)
        self._recording = clock
        self.committed: dict[datetime, datetime] = {}
        self.stopping = False
        self.parked = asyncio.Event()

    async def scan(self) -> int:
        if self.stopping:
            # No new transaction once asked to stop, so cancelling the loop afterwards can never
            # land between a commit and the note of its time.
            self.parked.set()
            return 0
        worked = await super().scan()
        started = self._recording.last
        if worked and started is not None:
            self.committed[started] = datetime.now(UTC)
        return worked


async def _spread_first_steps(
    pool: asyncpg.Pool, warning_ids: Sequence[int], lead: float, window: float
) -> datetime:
    """Shift every open call-out's chain so its first step comes due at a random moment of
    [now + lead, now + lead + window]; the chain keeps its real shape (later steps minutes
    away). Returns the window's end."""
    rows = await pool.fetch(
        "SELECT id, snapshot FROM callouts WHERE warning_id = ANY($1) AND state = 'pending' "
        "ORDER BY id",
        warning_ids,
    )
    rng = random.Random(2)
    start = datetime.now(UTC) + timedelta(seconds=lead)
    ids, snapshots, opened, deadlines, checks = [], [], [], [], []
    for row in rows:
        snapshot = Snapshot.from_json(row["snapshot"])
        if not snapshot.steps:
            raise BenchError(f"call-out {row['id']} has no escalation step to fire")
        due = start + timedelta(seconds=rng.uniform(0, window))
        shift = due - snapshot.steps[0].due_at
        shifted = replace(
            snapshot,
            opened_at=snapshot.opened_at + shift,
            deadline=snapshot.deadline + shift,
            steps=tuple(replace(s, due_at=s.due_at + shift) for s in snapshot.steps),
        )
        ids.append(row["id"])
        snapshots.append(shifted.to_json())
        opened.append(shifted.opened_at)
        deadlines.append(shifted.deadline)
        checks.append(due)
    await pool.execute(
        """UPDATE callouts c
              SET snapshot = s.snapshot, opened_at = s.opened_at, deadline = s.deadline,
                  next_check_at = s.check_at
             FROM unnest($1::bigint[], $2::jsonb[], $3::timestamptz[], $4::timestamptz[],
                         $5::timestamptz[]) AS s(id, snapshot, opened_at, deadline, check_at)
            WHERE c.id = s.id""",
        ids,
        snapshots,
        opened,
        deadlines,
        checks,
    )
    await pool.execute("VACUUM ANALYZE callouts")
    return start + timedelta(seconds=window)


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


async def escalation(
    callouts: int, window: float, idle_seconds: float, *, say: Callable[[str], None]
) -> dict[str, float | int | str]:
    prepared = await _prepare(callouts, 2, say=say)
    async with open_pool(prepared.url, min_size=2, max_size=4) as pool:
        # Exactly the number asked for: the rest of the second warning's call-outs are answered.
        await pool.execute(
            """UPDATE callouts SET state = 'acknowledged', acknowledged_at = opened_at,
                      ack_late = false, ack_via = 'officer', ack_by = 'bench', next_check_at = NULL
                WHERE id IN (SELECT id FROM callouts ORDER BY id DESC LIMIT $1)""",
            prepared.callouts - callouts,
        )
        say(f"spreading {callouts:,} first steps over {window:.0f} s")
        # The rewrite, UPDATE and VACUUM of 100,000 chains must end before the first step is due,
        # even on a machine busy with other work (it took over 20 s at a load average of 6).
        lead = 60.0
        end = await _spread_first_steps(pool, prepared.warning_ids, lead, window)
        if datetime.now(UTC) > end - timedelta(seconds=window):
            raise BenchError("the set-up ran into the window: raise the lead time")
        clock = RecordingClock()
        scanner = CommitTimedEscalation(pool, clock)
        task = asyncio.create_task(scanner.run())
        try:
            await _wait_first_steps(pool, end, lead + window + 1800, task)
            scanner.stopping = True
            await asyncio.wait_for(scanner.parked.wait(), 60)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        say("all first steps fired; checking the database")
        late = await _check_escalation(pool, callouts, scanner.committed)
        busy = (max(scanner.committed.values()) - (end - timedelta(seconds=window))).total_seconds()
        # Idle: a fresh scanner (the real class) with no timer due for a day.
        await pool.execute(
            "UPDATE callouts SET next_check_at = next_check_at + interval '1 day' "
            "WHERE next_check_at IS NOT NULL"
        )
        say(f"measuring the idle scanner's CPU for {idle_seconds:.0f} s")
        idle_cpu, idle_server = await _idle_cpu(pool, idle_seconds)
    return {
        "callouts": callouts,
        "steps_fired": len(late),
        "lateness_p50_ms": round(_percentile(late, 0.50), 1),
        "lateness_p99_ms": round(_percentile(late, 0.99), 1),
        "lateness_max_ms": round(max(late), 1),
        "idle_cpu_percent": round(idle_cpu, 2),
        "idle_server_cpu_percent": round(idle_server, 2) if idle_server is not None else "n/a",
        "steps_per_s": round(len(late) / busy),
        "window_seconds": window,
        "scans": len(scanner.committed),
        "setup_seconds": round(prepared.setup_seconds, 1),
    }


async def _wait_first_steps(
    pool: asyncpg.Pool, end: datetime, give_up_after: float, task: asyncio.Task[None]
) -> None:
    """Wait until the window is over and every call-out's first step has fired.

    Not until nothing is due: a scanner that falls minutes behind meets the chains' next steps
    (the backup, three minutes on) coming due as well, and would be measured on those forever.
    One cheap count a second, so the measurement hardly competes with the scanner.
    """
    give_up = time.monotonic() + give_up_after
    while True:
        row = await pool.fetchrow(
            "SELECT now() AS at, (SELECT count(*) FROM callouts WHERE cursor = 0 "
            "AND state <> 'acknowledged') AS waiting"
        )
        assert row is not None
        if row["at"] > end and not row["waiting"]:
            return
        if task.done():
            task.result()  # the scanner's own error
            raise BenchError("the scanner stopped")
        if time.monotonic() > give_up:
            raise BenchError(f"{row['waiting']:,} first steps still waiting")
        await asyncio.sleep(1.0)


async def _check_escalation(
    pool: asyncpg.Pool,
    callouts: int,
    committed: dict[datetime, datetime],
) -> list[float]:
    """Check that every due step fired exactly once; return each step's lateness to its commit.

    Each open call-out has fired steps 0 … cursor-1, once each, and its timer waits for the
    step at the cursor: so no step was lost (its timer would be wrong) or fired twice. When the
    scanner falls far behind, later steps come due and fire too; they count, and are checked.
    """
    events = await pool.fetch(
        "SELECT callout_id, kind, at, detail->>'due_at' AS due_at, (detail->>'step')::int AS step "
        "FROM callout_events WHERE kind IN ('step_fired', 'step_skipped')"
    )
    rows = await pool.fetch(
        "SELECT id, cursor, next_check_at, snapshot FROM callouts WHERE state <> 'acknowledged'"
    )
    if len(rows) != callouts:
        raise BenchError(f"{len(rows):,} open call-outs, not {callouts:,}")
    by_callout: dict[int, list[int]] = {}
    skipped_at: dict[int, datetime] = {}  # a skip sets the timer to "now": look again at once
    for e in sorted(events, key=lambda e: (e["callout_id"], e["step"])):
        by_callout.setdefault(e["callout_id"], []).append(e["step"])
        if e["kind"] == "step_skipped":
            skipped_at[e["callout_id"]] = e["at"]
        else:
            skipped_at.pop(e["callout_id"], None)
    for row in rows:
        steps = Snapshot.from_json(row["snapshot"]).steps
        fired = sorted(by_callout.pop(row["id"], []))
        # Steps 0 … cursor-1 once each: none lost, none twice, the cursor agrees with them.
        if not fired or fired != list(range(row["cursor"])):
            raise BenchError(f"call-out {row['id']}: steps {fired}, cursor {row['cursor']}")
        following = steps[row["cursor"]].due_at if row["cursor"] < len(steps) else None
        if row["next_check_at"] not in (following, skipped_at.get(row["id"])):
            raise BenchError(f"call-out {row['id']}: timer {row['next_check_at']}, {following}")
    if by_callout:
        raise BenchError(f"steps fired for call-outs that are not open: {sorted(by_callout)[:5]}")
    doubled = await pool.fetchval(
        """SELECT count(*) FROM (SELECT 1 FROM deliveries WHERE audience = 'escalation'
            GROUP BY callout_id, step, channel_kind HAVING count(*) > 1) d"""
    )
    repeat_calls = await pool.fetchval(
        "SELECT count(DISTINCT callout_id) FROM deliveries WHERE audience = 'escalation' "
        "AND step = 0"
    )
    if doubled or repeat_calls != callouts:
        raise BenchError(f"{repeat_calls:,} repeat calls queued, {doubled:,} queued twice")
    late = []
    for e in events:
        at_commit = committed.get(e["at"])
        if at_commit is None:
            raise BenchError(f"no commit time noted for the scan at {e['at'].isoformat()}")
        late.append((at_commit - datetime.fromisoformat(e["due_at"])).total_seconds() * 1000)
    return late


async def _idle_cpu(pool: asyncpg.Pool, seconds: float) -> tuple[float, float | None]:
    """Percent of one core the scanner loop and its PostgreSQL backends use with nothing due."""
    task = asyncio.create_task(Escalation(pool, SystemClock()).run())
    try:
        await asyncio.sleep(2)  # past start-up
        backends = [
            r["pid"]
            for r in await pool.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            )
        ]
        before_cpu, before_wall = _cpu_seconds(), time.perf_counter()
        before_server = _server_cpu_seconds(backends)
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - before_wall
        cpu = (_cpu_seconds() - before_cpu) / wall * 100
        after_server = _server_cpu_seconds(backends)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    server = (
        (after_server - before_server) / wall * 100
        if before_server is not None and after_server is not None
        else None
    )
    return cpu, server


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu_seconds(pids: Sequence[int]) -> float | None:
    """CPU seconds used so far by these PostgreSQL backends, when the server runs on this
    machine and /proc lets us read them (the scanner's queries cost the server too)."""
    ticks = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as stat:  # noqa: PTH123 - one small read per backend
                # The command name in field 2 may hold spaces; the fields after ")" do not.
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, IndexError, ValueError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Commands (registered on ``warnd bench``)
# ---------------------------------------------------------------------------------------------

ACKS_KEYS = ("open_callouts", "replies", "acks_per_s")
ESCALATION_KEYS = (
    "callouts",
    "steps_fired",
    "lateness_p50_ms",
    "lateness_p99_ms",
    "idle_cpu_percent",
)


def _say(as_json: bool) -> Callable[[str], None]:
    err = Console(stderr=True)
    return (lambda _: None) if as_json else (lambda text: err.print(f"[dim]{text}[/]"))


@click.command("acks")
@click.option("--callouts", default=50_000, show_default=True, help="Open call-outs.")
@click.option("--replies", default=20_000, show_default=True, help="SMS replies to feed.")
@click.option(
    "--batch", default=1000, show_default=True, help="Replies per batch (the inbound worker's)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def acks_command(callouts: int, replies: int, batch: int, as_json: bool) -> None:
    """Match and record SMS replies against open call-outs; replies per second."""
    from warnd.cli.errors import friendly_errors
    from warnd.tools.bench_fanout import report

    run = friendly_errors(lambda: asyncio.run(acks(callouts, replies, batch, say=_say(as_json))))
    report("acknowledgements", run(), as_json, ACKS_KEYS)


@click.command("escalation")
@click.option("--callouts", default=100_000, show_default=True, help="Open call-outs.")
@click.option(
    "--window", default=60.0, show_default=True, help="Seconds over which the steps come due."
)
@click.option(
    "--idle", "idle_seconds", default=10.0, show_default=True, help="Seconds of idle CPU."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def escalation_command(callouts: int, window: float, idle_seconds: float, as_json: bool) -> None:
    """Fire escalation steps due over a window of real time; lateness p50/p99, idle CPU."""
    from warnd.cli.errors import friendly_errors
    from warnd.tools.bench_fanout import report

    run = friendly_errors(
        lambda: asyncio.run(escalation(callouts, window, idle_seconds, say=_say(as_json)))
    )
    report("escalation", run(), as_json, ESCALATION_KEYS)
