"""``warnd bench voice``: call-and-respond by phone, through the real SIP channel, under load.

The far end is a local sipp UAS (its scenario is :data:`SCENARIO`, written to a temporary folder
at run time) that answers every call, waits a random 1–5 s and presses "1" as an RFC 2833
telephone-event (Debian's recording of one key press, played with ``play_pcap_audio``), then
waits for warnd to hang up.

warnd's side is the production path, wired as ``warnd run`` wires it, with the system clock:

1. a bench database (``warnd_bench_voice``, dropped and created again on every run) holds the
   real divisions of Jining, ``--calls`` village responders in villages of one town of 任城区, and
   a red rainstorm warning for the county, stored by ``store_warning`` and planned by the real
   ``Planner``: one call-out and one voice delivery per responder (and their SMS, which stay
   queued: the bench runs no SMS channel). The voice text is rendered (espeak-ng) when it is
   planned, through the planner's ``prepare`` hook, before the clock starts;
2. ``Dispatcher.run_worker`` claims the voice deliveries and hands them to a ``SipChannel``
   (``--max-calls`` lines: pjsua2 worker processes of 4 calls each), which places the calls;
3. ``Inbound.run`` takes the channel's ``CallResult`` events and acknowledges the call-outs
   through ``Answers`` (as the daemon, with the dispatcher's ``recorded`` signal, so that a key
   pressed before its call's send was recorded is applied once it is).

Measured, from the dispatcher's start to the last acknowledgement committed:

- ``calls``: calls placed (the channel's counter); ``answered``: the channel's counter;
  ``acknowledged``: call-outs acknowledged via voice, counted in PostgreSQL;
- ``max_concurrent``: the most calls in progress at once (the engine's count, sampled every
  10 ms);
- ``calls_per_s``: calls acknowledged per second of the run;
- ``setup_ms_p50``/``setup_ms_p99``: INVITE to answer, measured at the far end: from the
  INVITE's arrival to the arrival of the ACK of its 200 OK (sipp's message log, in microseconds),
  i.e. the caller's INVITE transaction on the loopback network. The far end answers at once, so
  this is the time the SIP path itself takes (a real phone adds its ringing);
- ``key_to_ack_ms_p99``: from the key reaching warnd (the ``CallResult``'s ``at``, stamped by
  the engine when its worker reports the key) to the acknowledgement committed: the latency
  ``Inbound`` observes for its ``warnd_answer_latency_seconds`` histogram, kept here per call
  (the table adds ``keys_before_record``: keys that came before dispatch had recorded their
  call, which ``Inbound`` applies once it has);
- ``cpu_percent``: CPU of this process and of the engine's worker processes over the run, in
  percent of one core (two cores: up to 200; the table adds the workers' share). sipp and
  PostgreSQL are not counted.

The run fails (``warnd: …``, status 2) unless every planned call was placed once, answered and
acknowledged, in the database too, every voice delivery is ``delivered``, no worker was lost,
and sipp saw every call succeed: a fast benchmark of lost calls is a defect.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

import asyncpg
import click
from rich.console import Console

from channels.base import CallResult, InboundEvent
from channels.registry import ChannelConfigError
from channels.sip.channel import SipChannel
from channels.sip.config import SipConfig
from rosters.divisions import load_divisions
from warnd.app.metrics import Metrics
from warnd.core.clock import SystemClock
from warnd.core.errors import WarndError
from warnd.core.model import Area, NormalisedWarning
from warnd.core.vocabulary import Level
from warnd.db.notify import Signal, Wakeup
from warnd.db.pool import open_pool, recreate_database
from warnd.ingest.store import store_warning
from warnd.pipeline.answers import Answers
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.inbound import Early, Inbound
from warnd.pipeline.planner import Planner
from warnd.policy.loader import load_policy
from warnd.runtime.settings import Settings, database_url

BENCH_DB: Final = "warnd_bench_voice"
COUNTY: Final = "370811000000"  # 任城区
RESPONDERS_PER_VILLAGE: Final = 10
MAX_CALLS: Final = RESPONDERS_PER_VILLAGE * 999  # village codes have three digits under a town
# A number range the roster generator never hands out, so a bench row is never a real one.
PHONE_PREFIX: Final = "+86166"
# Debian's (sip-tester) recording of one RFC 2833 key press "1", payload type 101.
KEY_1_RECORDING: Final = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")
REPORTED_GRACE_S: Final = 10.0
# The programs the bench runs (the far end, and the speech of the calls), by Debian package.
PROGRAMS: Final = {"sipp": "sip-tester", "espeak-ng": "espeak-ng", "sox": "sox"}

KEYS: Final = (
    "calls",
    "max_concurrent",
    "answered",
    "acknowledged",
    "calls_per_s",
    "setup_ms_p50",
    "setup_ms_p99",
    "key_to_ack_ms_p99",
    "cpu_percent",
)

# The far end. The answer offers telephone-event with the payload type of the caller's offer
# (101, which the recording uses).
SCENARIO: Final = f"""<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="warnd bench voice: answer, press 1 after 1-5 s">
  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp="a=rtpmap:([0-9]+) telephone-event/8000" search_in="body" check_it="true"
            assign_to="event_line,event_pt"/>
      <!-- sipp refuses a variable never used; the log is kept only with -trace_logs. -->
      <log message="offered [$event_line]"/>
    </action>
  </recv>

  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>

  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 [$event_pt]
      a=rtpmap:8 PCMA/8000
      a=rtpmap:[$event_pt] telephone-event/8000
      a=fmtp:[$event_pt] 0-16
      a=sendrecv

    ]]>
  </send>

  <recv request="ACK" crlf="true"/>

  <pause distribution="uniform" min="1000" max="5000"/>
  <nop>
    <action>
      <exec play_pcap_audio="{KEY_1_RECORDING}"/>
    </action>
  </nop>

  <recv request="BYE" timeout="120000"/>

  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


class BenchError(WarndError):
    """The benchmark did not do the work it reports; its figures must not be recorded."""

    code = "bench_failed"


# ---------------------------------------------------------------------------------------------
# The far end: sipp
# ---------------------------------------------------------------------------------------------


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _udp_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


@dataclass
class FarEnd:
    """A sipp UAS on 127.0.0.1 that takes ``calls`` calls, then exits (0: all succeeded)."""

    workdir: Path
    calls: int
    port: int = field(default_factory=_free_udp_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, give_up_after: float) -> None:
        scenario = self.workdir / "bench_voice.xml"
        scenario.write_text(SCENARIO)
        self.process = await asyncio.create_subprocess_exec(
            "sipp",
            "-sf",
            str(scenario),
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            str(self.port),
            # The port advertised for RTP. sipp binds it but does not read it (without
            # -rtp_echo: echoed audio comes with another SSRC than the key press, and PJSIP
            # then missed a key now and then), so every call may name the same one.
            "-mp",
            str(_free_udp_port()),
            "-m",
            str(self.calls),
            "-nostdin",
            "-trace_err",
            # One line per SIP message, with its Call-ID and the time in microseconds.
            "-trace_shortmsg",
            # A bench killed outright must not leave sipp listening for ever.
            "-timeout",
            f"{give_up_after:.0f}s",
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _udp_bound(self.port):
            if self.process.returncode is not None:
                raise BenchError(f"sipp ended at once (exit status {self.process.returncode})")
            if time.monotonic() > deadline:
                raise BenchError("sipp did not listen within 10 s")
            await asyncio.sleep(0.05)

    async def finished(self, within: float) -> int:
        """sipp's exit status once it has taken its calls (0: every call succeeded)."""
        assert self.process is not None
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError:
            raise BenchError(
                f"sipp had not ended its {self.calls} calls {within:.0f} s after the last "
                f"acknowledgement{self.errors()}"
            ) from None

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    def setup_ms(self) -> dict[str, float]:
        """Per Call-ID, the time from the INVITE's arrival to the arrival of the ACK of the 200
        OK (sipp's message log: date, time, epoch seconds, R/S, Call-ID, CSeq, first line)."""
        invited: dict[str, float] = {}
        setup: dict[str, float] = {}
        for path in self.workdir.glob("*_shortmessages.log"):
            for line in path.read_text(errors="replace").splitlines():
                fields = line.split("\t")
                if len(fields) < 6 or fields[3] != "R":
                    continue
                at, call_id, method = float(fields[2]), fields[4], fields[5].rsplit(" ", 1)[-1]
                if method == "INVITE":
                    invited.setdefault(call_id, at)
                elif method == "ACK" and call_id in invited and call_id not in setup:
                    setup[call_id] = (at - invited[call_id]) * 1000
        return setup

    def errors(self) -> str:
        text = "".join(p.read_text(errors="replace") for p in self.workdir.glob("*_errors.log"))
        return f"; sipp's errors: {text[-1000:]}" if text.strip() else ""


# ---------------------------------------------------------------------------------------------
# The bench database: divisions, responders, a warning planned by the real planner
# ---------------------------------------------------------------------------------------------


def _warning(now: datetime) -> NormalisedWarning:
    return NormalisedWarning(
        sender="bench@warnd",
        identifier=f"bench-voice-{now.timestamp():.0f}",
        sent=now,
        status="Actual",
        msg_type="Alert",
        hazard="rainstorm",
        level=Level.RED,
        area=Area(codes=(COUNTY,)),
        event="暴雨红色预警",
        headline="任城区气象台发布暴雨红色预警信号",
        description="预计未来3小时内任城区降雨量将达100毫米以上。",
        instruction="请立即转移低洼地带群众。",
        area_desc="任城区",
    )


async def _roster(pool: asyncpg.Pool, calls: int) -> None:
    """The real divisions, villages in one town of the county, ``calls`` village responders."""
    async with pool.acquire() as conn, conn.transaction():
        await load_divisions(conn)
        town = await conn.fetchval(
            "SELECT code FROM divisions WHERE level = 'town' AND parent_code = $1 "
            "ORDER BY code LIMIT 1",
            COUNTY,
        )
        if town is None:
            raise BenchError(f"the reference divisions have no town under {COUNTY}")
        villages = math.ceil(calls / RESPONDERS_PER_VILLAGE)
        await conn.execute(
            """INSERT INTO divisions (code, name, level, parent_code)
               SELECT left($1, 9) || lpad(n::text, 3, '0'), '压测' || n || '村', 'village', $1
                 FROM generate_series(1, $2::int) AS n""",
            town,
            villages,
        )
        await conn.execute(
            """INSERT INTO responders (ref, name, phone, division_code, level, role)
               SELECT 'bench-voice-' || n, '责任人' || n, $3 || lpad(n::text, 8, '0'),
                      left($1, 9) || lpad((n / $4 + 1)::text, 3, '0'), 'village', '村支书'
                 FROM generate_series(0, $2::int - 1) AS n""",
            town,
            calls,
            PHONE_PREFIX,
            RESPONDERS_PER_VILLAGE,
        )


async def _plan(pool: asyncpg.Pool, channel: SipChannel, calls: int) -> int:
    """Store and plan the warning; render its voice text; the warning's id."""
    policy = load_policy(Settings().policy)
    clock = SystemClock()
    texts: dict[str, list[str]] = {}

    async def prepare(kind: str, bodies: Sequence[str]) -> None:
        texts.setdefault(kind, []).extend(bodies)

    planner = Planner(
        pool,
        lambda: policy,
        clock,
        {"sms": 670, "voice": channel.limits.max_text, "broadcast": 670},
        prepare=prepare,
    )
    stored = await store_warning(pool, _warning(clock.now()), source="bench", now=clock.now())
    await planner.plan_pending()
    # As the daemon's prepare hook does, before any call is placed: no callee waits for speech.
    try:
        await channel.prepare(texts.get("voice", []))
    except ChannelConfigError as exc:  # SpeechError: espeak-ng or sox missing or failing
        raise BenchError(f"the voice text cannot be rendered: {exc}") from exc
    planned = await pool.fetchval(
        "SELECT count(*) FROM deliveries d JOIN callouts c ON c.id = d.callout_id "
        "WHERE d.warning_id = $1 AND d.channel_kind = 'voice' AND d.state = 'queued'",
        stored.warning_id,
    )
    if planned != calls:
        raise BenchError(f"the plan queued {planned} calls for call-outs, not {calls}")
    await pool.execute("VACUUM ANALYZE")
    return stored.warning_id


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class TimedInbound(Inbound):
    """The real inbound stage, keeping every call's key-to-acknowledgement time: the latency it
    observes for its histogram (now − the event's ``at``), per call instead of per bucket."""

    def __init__(
        self, pool: asyncpg.Pool, metrics: Metrics, recorded: Signal, expected: int
    ) -> None:
        clock = SystemClock()
        super().__init__(pool, clock, metrics, answers=Answers(pool, clock), recorded=recorded)
        self.key_to_ack: list[float] = []
        self.all_acknowledged = asyncio.Event()
        self.last_at = 0.0  # perf_counter() when the last acknowledgement was observed
        self.causes: dict[str, str] = {}  # per call (external id), how it ended
        self.all_reported = asyncio.Event()
        # Calls whose key came before dispatch had recorded their send (the batch they were
        # placed in was still placing calls): applied only once it was.
        self.before_record: set[str] = set()
        self._expected = expected

    async def handle_events(self, channel: str, events: Sequence[InboundEvent]) -> list[Early]:
        for event in events:
            if isinstance(event, CallResult):
                self.causes.setdefault(event.external_id, event.cause)
        if len(self.causes) >= self._expected:
            self.all_reported.set()
        early = await super().handle_events(channel, events)
        self.before_record.update(
            e.event.external_id for e in early if isinstance(e.event, CallResult)
        )
        return early

    def _observe_latency(self, events: Sequence[InboundEvent]) -> None:
        super()._observe_latency(events)
        now = self._clock.now()
        for event in events:
            if isinstance(event, CallResult):
                self.key_to_ack.append(max((now - event.at).total_seconds(), 0.0))
        self.last_at = time.perf_counter()
        if len(self.key_to_ack) >= self._expected:
            self.all_acknowledged.set()


def _cpu_seconds(workers: Sequence[int], *, own: bool = True) -> float:
    """CPU seconds used so far by the engine's worker processes and (``own``) this process.
    The workers' is read from /proc: they are still running, so ``RUSAGE_CHILDREN`` does not
    count them yet, and it would count sipp, another child of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    ticks = 0
    for pid in workers:
        # The command name in field 2 may hold spaces; the fields after ")" do not.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    mine = usage.ru_utime + usage.ru_stime if own else 0.0
    return mine + ticks / os.sysconf("SC_CLK_TCK")


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def _trunk(channel: SipChannel) -> dict[str, object]:
    links = channel.health()["links"]
    assert isinstance(links, dict)
    trunk = links["trunk"]
    assert isinstance(trunk, dict)
    return trunk


def _count(trunk: dict[str, object], name: str) -> int:
    value = trunk[name]
    assert isinstance(value, int)
    return value


async def voice(
    server_url: str,
    calls: int,
    max_calls: int,
    calls_per_s: float,
    *,
    database: str = BENCH_DB,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, float | int]:
    """Run the bench against the PostgreSQL server at ``server_url`` (``database`` is dropped
    and created again); the figures, or BenchError when any call was lost."""
    for program, package in PROGRAMS.items():
        if shutil.which(program) is None:
            raise BenchError(f"{program} is not installed (Debian package {package})")
    if not KEY_1_RECORDING.exists():
        raise BenchError(f"{KEY_1_RECORDING} is missing (Debian package sip-tester)")
    # Each call lasts at most ~6 s (the far end's 5 s and the set-up and hang-up around it).
    expected_s = calls * 6 / max_calls
    give_up_after = 60 + 3 * expected_s
    url = await recreate_database(server_url, database)
    with tempfile.TemporaryDirectory(prefix="warnd-bench-voice-") as tmp:
        far_end = FarEnd(Path(tmp), calls)
        channel = SipChannel("bench-sip", _config(far_end, max_calls, calls_per_s))
        await far_end.start(give_up_after + 120)
        try:
            async with open_pool(url, min_size=2, max_size=6) as pool:
                say(f"planning {calls} call-outs; rendering the voice text")
                await _roster(pool, calls)
                warning_id = await _plan(pool, channel, calls)
                say(f"starting {len(channel.config.capacities())} SIP engine workers")
                try:
                    await channel.start()
                except ChannelConfigError as exc:  # no pjsua2, a worker that cannot set up
                    raise BenchError(f"the SIP channel cannot start: {exc}") from exc
                run = await _calls(pool, channel, calls, give_up_after, say=say)
                # Every BYE answered before sipp is asked how its calls went.
                deadline = time.monotonic() + 30
                # The engine has no event for "no call left"; reading its count is free.
                while _count(_trunk(channel), "in_flight") and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                trunk = _trunk(channel)
                await channel.stop()
                status = await far_end.finished(60)
                setup = far_end.setup_ms()
                acknowledged = await _check(
                    pool,
                    warning_id,
                    calls,
                    trunk,
                    setup,
                    sipp_status=status,
                    sipp_errors=far_end.errors(),
                )
        finally:
            await channel.stop()
            await far_end.stop()
    setup_ms = list(setup.values())
    return {
        "calls": _count(trunk, "placed"),
        "max_concurrent": run.max_concurrent,
        "answered": _count(trunk, "answered"),
        "acknowledged": acknowledged,
        "calls_per_s": round(acknowledged / run.seconds, 2),
        "setup_ms_p50": round(_percentile(setup_ms, 0.50), 1),
        "setup_ms_p99": round(_percentile(setup_ms, 0.99), 1),
        "key_to_ack_ms_p50": round(_percentile(run.key_to_ack, 0.50) * 1000, 1),
        "key_to_ack_ms_p99": round(_percentile(run.key_to_ack, 0.99) * 1000, 1),
        "key_to_ack_ms_max": round(max(run.key_to_ack) * 1000, 1),
        "keys_before_record": run.keys_before_record,
        "cpu_percent": round(run.cpu_percent, 1),
        "engine_cpu_percent": round(run.engine_cpu_percent, 1),
        "seconds": round(run.seconds, 2),
        "max_calls": max_calls,
        "workers": len(channel.config.capacities()),
    }


def _config(far_end: FarEnd, max_calls: int, calls_per_s: float) -> SipConfig:
    return SipConfig.model_validate(
        {
            "type": "sip",
            "proxy": far_end.proxy,
            "from_number": "12379",
            "local_address": "127.0.0.1",
            "max_calls": max_calls,
            "calls_per_s": calls_per_s,
            "ring_timeout": 10,
            # Rendered afresh on every run, as for a new warning's text.
            "tts": {"cache_dir": str(far_end.workdir / "tts")},
        }
    )


@dataclass(frozen=True)
class Run:
    seconds: float
    max_concurrent: int
    key_to_ack: list[float]
    cpu_percent: float
    engine_cpu_percent: float  # the worker processes' share of cpu_percent
    keys_before_record: int


async def _calls(
    pool: asyncpg.Pool,
    channel: SipChannel,
    calls: int,
    give_up_after: float,
    *,
    say: Callable[[str], None],
) -> Run:
    """Dispatch and inbound for the channel until every call-out is acknowledged."""
    metrics = Metrics()
    recorded = Signal()
    wakeup = Wakeup()
    dispatcher = Dispatcher(
        pool, {channel.name: channel}, SystemClock(), metrics, wakeup, recorded=recorded
    )
    inbound = TimedInbound(pool, metrics, recorded, calls)
    workers = channel.engine_pids()
    most = 0

    async def sample() -> None:
        nonlocal most
        while True:
            most = max(most, _count(_trunk(channel), "in_flight"))
            await asyncio.sleep(0.01)

    say(f"placing {calls} calls")
    cpu_before, started = _cpu_seconds(workers), time.perf_counter()
    engine_before = _cpu_seconds(workers, own=False)
    stages = [
        asyncio.create_task(dispatcher.run_worker(channel), name="send"),
        asyncio.create_task(inbound.run(channel), name="inbound"),
    ]

    async def every_call_over() -> None:
        await inbound.all_reported.wait()
        # A key pressed before its call's send was recorded is applied once the batch is
        # recorded: the last ones get this long to land before the run is called short.
        await asyncio.sleep(REPORTED_GRACE_S)

    sampler = asyncio.create_task(sample())
    waiting = [
        asyncio.create_task(inbound.all_acknowledged.wait()),
        asyncio.create_task(every_call_over()),
    ]
    try:
        await asyncio.wait(
            [*waiting, *stages], timeout=give_up_after, return_when=asyncio.FIRST_COMPLETED
        )
        cpu = _cpu_seconds(workers) - cpu_before
        engine_cpu = _cpu_seconds(workers, own=False) - engine_before
        wall = time.perf_counter() - started
    finally:
        for task in (*stages, sampler, *waiting):
            task.cancel()
        outcomes = await asyncio.gather(*stages, sampler, *waiting, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome  # a stage's own error says more than the shortfall below
    if not inbound.all_acknowledged.is_set():
        endings = Counter(
            cause for cause in inbound.causes.values() if not cause.startswith("answered, key 1")
        )
        endings["(no result yet)"] = calls - len(inbound.causes)
        raise BenchError(
            f"only {len(inbound.key_to_ack)} of {calls} calls were acknowledged; the others "
            f"ended: {dict(+endings)}"
        )
    return Run(
        seconds=inbound.last_at - started,
        max_concurrent=most,
        key_to_ack=inbound.key_to_ack,
        cpu_percent=cpu / wall * 100,
        engine_cpu_percent=engine_cpu / wall * 100,
        keys_before_record=len(inbound.before_record),
    )


async def _check(
    pool: asyncpg.Pool,
    warning_id: int,
    calls: int,
    trunk: dict[str, object],
    setup: dict[str, float],
    *,
    sipp_status: int,
    sipp_errors: str,
) -> int:
    """Every call placed once, answered and acknowledged, in the database too; sipp saw the
    very calls warnd recorded (their Call-IDs are the deliveries' external ids); nothing lost.
    Returns the call-outs acknowledged via voice, as PostgreSQL counts them."""
    row = await pool.fetchrow(
        """SELECT
             (SELECT count(*) FROM deliveries WHERE warning_id = $1 AND channel_kind = 'voice'
                 AND state = 'delivered') AS delivered,
             (SELECT count(*) FROM callouts WHERE warning_id = $1 AND state = 'acknowledged'
                 AND ack_via = 'voice') AS acknowledged,
             (SELECT count(*) FROM callout_events e JOIN callouts c ON c.id = e.callout_id
               WHERE c.warning_id = $1 AND e.kind = 'acknowledged') AS events,
             (SELECT array_agg(external_id) FROM deliveries WHERE warning_id = $1
                 AND channel_kind = 'voice' AND external_id IS NOT NULL) AS call_ids""",
        warning_id,
    )
    assert row is not None
    found = {
        "placed": _count(trunk, "placed"),
        "answered": _count(trunk, "answered"),
        "acknowledged by key": _count(trunk, "acknowledged"),
        "voice deliveries delivered": row["delivered"],
        "call-outs acknowledged via voice": row["acknowledged"],
        "acknowledged events": row["events"],
        "calls sipp answered and timed": len(setup),
    }
    short = {name: count for name, count in found.items() if count != calls}
    if short:
        raise BenchError(
            f"{calls} calls expected, but " + ", ".join(f"{n}: {c}" for n, c in short.items())
        )
    troubles = {
        name: trunk[name]
        for name in ("refused", "lost", "restarts", "no_key", "hung_up", "failed")
        if trunk[name]
    }
    if troubles:
        raise BenchError(f"the SIP engine reports trouble: {troubles}")
    if sorted(row["call_ids"] or ()) != sorted(setup):
        raise BenchError("the Call-IDs sipp answered are not the calls warnd recorded")
    if sipp_status != 0:
        raise BenchError(
            f"sipp says some of its calls failed (exit status {sipp_status}){sipp_errors}"
        )
    acknowledged: int = row["acknowledged"]
    return acknowledged


# ---------------------------------------------------------------------------------------------
# The command (registered on ``warnd bench``)
# ---------------------------------------------------------------------------------------------


@click.command("voice")
@click.option(
    "--calls",
    default=200,
    show_default=True,
    type=click.IntRange(1, MAX_CALLS),
    help="Call-outs to call (one call each).",
)
@click.option(
    "--max-calls",
    default=40,
    show_default=True,
    type=click.IntRange(1, 256),
    help="The channel's simultaneous calls (worker processes of 4 calls).",
)
@click.option(
    "--calls-per-s",
    default=40.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="The channel's call rate (the trunk's CAPS).",
)
@click.option(
    "--database-url",
    help="PostgreSQL server to build the bench database on (default: WARND_DATABASE_URL, or "
    "the embedded server).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def voice_command(
    calls: int, max_calls: int, calls_per_s: float, database_url: str | None, as_json: bool
) -> None:
    """Calls through the SIP channel to a local sipp that presses 1; acknowledgements in
    PostgreSQL, concurrency, set-up and key-to-acknowledgement times."""
    from warnd.cli.errors import friendly_errors
    from warnd.tools.bench_fanout import report

    server = database_url or _server_url()
    err = Console(stderr=True)

    def say(text: str) -> None:
        if not as_json:
            err.print(f"[dim]{text}[/]")

    result = friendly_errors(
        lambda: asyncio.run(voice(server, calls, max_calls, calls_per_s, say=say))
    )()
    report("voice over SIP", result, as_json, KEYS)


def _server_url() -> str:
    return database_url(Settings())
