"""``warnd bench faults``: real warnd processes, faults injected, and what was lost or doubled.

Each scenario runs real ``warnd run`` child processes on a bench database (``warnd_bench_faults``
on the configured server), sends a red rainstorm warning for the whole city through one SMPP link
to a local SMSC that this process runs and counts (every ``submit_sm`` by destination), injects
its fault, waits for the fan-out to end, and compares what the SMSC accepted with the outbox:

- **lost**: planned SMS that the SMSC never accepted, or rows not ``sent`` at the end;
- **duplicates**: messages the SMSC accepted more often than they were planned (first parts),
  escalation steps handed to the link counted as planned at their address;
- **recovery_s**: from the end of the fault to the next message the SMSC accepted.

Scenarios (``--scenario``, all by default):

- ``kill9``: three processes; the one holding the SMPP link is killed with SIGKILL a third of
  the way through;
- ``db-cut``: three processes reach PostgreSQL through a TCP proxy that cuts every connection and
  refuses new ones for ``--cut-seconds`` (10) a third of the way through;
- ``smsc-flaky``: one process; the SMSC drops the link every 5,000th message (without answering
  it) and answers every 2,000th with ESME_RTHROTTLED (the link halves its rate each time;
  ``--drop-every`` and ``--throttle-every`` change both);
- ``pg-restart``: three processes on an embedded PostgreSQL of the bench's own (it is the one
  server the bench may stop): the server is stopped (fast shutdown: every session cut) a third
  of the way, kept down ``--cut-seconds``, and started again; the processes reconnect by
  themselves;
- ``slow-fast``: one process, the SMS link beside a simulated voice channel paced at 10 calls a
  second whose gateway takes half a second to a second to answer each batch (the red warning
  calls every responder and facility); the fan-out is run twice, without and with the voice
  channel, and the SMS rates at the SMSC compared: the fast channel must not be held back;
- ``escalation-kill``: three processes with only the escalate role, a city's call-outs all due
  (opened months ago); one is killed with SIGKILL a third of the way: every step of every chain
  must fire exactly once (messages = steps, lost = steps never fired, duplicates = fired twice).

Every SMS scenario also reports what the SMSC saw of the link: how many binds, how many at once,
and the most ``submit_sm`` it accepted in one second: the link's configured rate (``--rate``,
1,000 a second), whatever the number of processes.

Duplicates are allowed only for messages whose gateway answer never came or was not recorded
(at most what the killed holder had claimed); lost, never.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import asyncpg
import click

from warnd.core.clock import ManualClock
from warnd.core.model import Area
from warnd.db.embedded import control, embedded_url
from warnd.db.pool import open_pool, recreate_database
from warnd.ingest.store import store_warning
from warnd.pipeline.planner import Planner
from warnd.policy.loader import load_policy
from warnd.runtime.settings import Settings, database_url
from warnd.tools.bench_fanout import city_warning, report

BENCH_DB = "warnd_bench_faults"
TOKEN = "bench-faults-feed-token-0123456789"  # noqa: S105 - the bench database's own feed
RATE = 1000  # submit_sm a second on the one SMPP link, unless --rate says otherwise
WINDOW = 20
SCENARIOS = ("kill9", "db-cut", "pg-restart", "smsc-flaky", "slow-fast", "escalation-kill")
CONFIG = """
[feeds.bench]
token = "{token}"

[channels.sms]
type = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "warnd"
password = "secret"
source_addr = "12379"
window = {window}
rate = {rate}
response_timeout_s = 3.0
bind_timeout_s = 3.0
reconnect_max_s = 2.0
"""
# slow-fast: a simulated voice channel that calls 10 numbers a second and whose gateway takes
# 0.5-1 s to answer each batch. The simulator, not a SIP trunk: what is under test is that
# dispatch keeps the SMS worker apart from a slow one, not the voice channel itself.
SLOW_VOICE = """
[channels.voice]
type = "simulator"
kind = "voice"
rate_per_s = 10
window = 10
send_delay_s = [0.5, 1.0]
"""
# SMPP 3.4 command ids and statuses the SMSC uses.
_BINDS = {0x00000001, 0x00000002, 0x00000009}
_SUBMIT_SM, _UNBIND, _ENQUIRE_LINK = 0x00000004, 0x00000006, 0x00000015
_THROTTLED = 0x00000058


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def first_part_destination(body: bytes) -> str | None:
    """The destination of a submit_sm's body when it is a message's first (or only) part."""
    fields: list[bytes] = []
    at = 0

    def cstring() -> bytes:
        nonlocal at
        end = body.index(b"\x00", at)
        value, at = body[at:end], end + 1
        return value

    cstring()  # service_type
    at += 2  # source ton, npi
    cstring()  # source_addr
    at += 2  # destination ton, npi
    fields.append(cstring())
    esm_class = body[at]
    at += 3  # esm_class, protocol_id, priority_flag
    cstring()  # schedule_delivery_time
    cstring()  # validity_period
    at += 4  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
    length = body[at]
    message = body[at + 1 : at + 1 + length]
    if esm_class & 0x40 and message:  # a UDH: 8-bit (IEI 0) or 16-bit (IEI 8) concatenation
        iei = message[1]
        sequence = message[5] if iei == 0x00 else message[6] if iei == 0x08 else 1
        if sequence != 1:
            return None
    return fields[0].decode("ascii", "replace")


@dataclass
class Smsc:
    """A local SMSC that counts what it accepted and drops or throttles on request."""

    drop_every: int | None = None
    throttle_every: int | None = None
    port: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    binds: int = 0
    bound: int = 0
    most_bound: int = 0
    submits: int = 0
    first_accept: float | None = None
    last_accept: float = 0.0
    per_second: Counter[int] = field(default_factory=Counter)  # accepted, by monotonic second
    fault_over: float | None = None  # set when a fault ends; then the first accept after it:
    resumed: float | None = None
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _submit(self, body: bytes) -> tuple[int, bytes] | None:
        """A submit_sm's status and message id; None to drop the link instead of answering."""
        self.submits += 1
        if self.drop_every and self.submits % self.drop_every == 0:
            return None
        if self.throttle_every and self.submits % self.throttle_every == 0:
            return _THROTTLED, b"\x00"
        destination = first_part_destination(body)
        if destination is not None:
            self.accepted[destination] += 1
        self.last_accept = time.monotonic()
        self.per_second[int(self.last_accept)] += 1
        if self.first_accept is None:
            self.first_accept = self.last_accept
        if self.fault_over is not None and self.resumed is None:
            self.resumed = self.last_accept
        return 0, f"{self.submits:x}".encode() + b"\x00"

    @property
    def peak_rate(self) -> int:
        """The most ``submit_sm`` accepted within one second."""
        return max(self.per_second.values(), default=0)

    @property
    def rate(self) -> float:
        """Accepted a second, from the first accept to the last."""
        if self.first_accept is None or self.last_accept <= self.first_accept:
            return 0.0
        return sum(self.accepted.values()) / (self.last_accept - self.first_accept)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bound = False
        try:
            while True:
                header = await reader.readexactly(16)
                length, command, _, sequence = struct.unpack("!IIII", header)
                body = await reader.readexactly(length - 16)
                status, answer = 0, b""
                if command == _SUBMIT_SM:
                    submitted = self._submit(body)
                    if submitted is None:
                        return  # the link drops: this message's answer never comes
                    status, answer = submitted
                elif command in _BINDS:
                    self.binds += 1
                    if not bound:
                        bound = True
                        self.bound += 1
                        self.most_bound = max(self.most_bound, self.bound)
                    answer = b"benchfaults\x00"
                elif command not in (_ENQUIRE_LINK, _UNBIND):
                    continue  # responses from the ESME need no answer
                response = struct.pack(
                    "!IIII", 16 + len(answer), command | 0x80000000, status, sequence
                )
                writer.write(response + answer)
                if command == _UNBIND:
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if bound:
                self.bound -= 1
            writer.transport.abort()


class Proxy:
    """A TCP proxy to PostgreSQL that can cut every connection and refuse new ones a while. The
    server is the URL's: a host and port, or a Unix socket (the embedded server's ``?host=``
    folder and ``port``)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        host = parts.hostname or query.get("host") or "127.0.0.1"
        port = parts.port or int(query.get("port", "5432"))
        self._socket = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self._target = (host, port)
        self._cut_until = 0.0
        self._pipes: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut(0)

    def cut(self, seconds: float) -> None:
        self._cut_until = time.monotonic() + seconds
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._cut_until:
            writer.transport.abort()
            return
        try:
            if self._socket is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._socket)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()
                self._pipes.discard(sink)

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


def proxied(url: str, port: int) -> str:
    """The URL with its host and port (or socket) replaced by the proxy's."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")])
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}", query=query))


@dataclass
class Fleet:
    """warnd child processes and their HTTP ports."""

    env: dict[str, str]
    logs: Path
    processes: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)

    async def start(self, count: int, *args: str, http: bool = True) -> None:
        """Start ``count`` processes at once; wait until each answers /healthz or, without
        the api role (``http`` false), has logged that it started."""
        started: dict[int, Path] = {}
        for _ in range(count):
            port = free_port()
            path = self.logs / f"warnd-{port}.log"
            with path.open("ab") as log:
                self.processes[port] = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "warnd",
                    "run",
                    *args,
                    env={**self.env, "WARND_HTTP_PORT": str(port), "WARND_LOG_LEVEL": "info"},
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log,
                )
            started[port] = path
        for port, path in started.items():
            ready = functools.partial(_answers, port) if http else functools.partial(_logged, path)
            await wait_for(ready, 120, f"warnd on port {port} to start")

    async def holder(self, channel: str) -> int | None:
        for port in self.processes:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/readyz") as response,
            ):
                channels = {c["name"]: c for c in (await response.json())["channels"]}
            if channels.get(channel, {}).get("held"):
                return port
        return None

    async def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        await asyncio.gather(*(p.wait() for p in self.processes.values()))
        self.processes.clear()


async def _answers(port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def _logged(path: Path) -> bool:
    return "warnd_started" in await asyncio.to_thread(path.read_text, "utf-8", "replace")


async def wait_for(check: Callable[[], Awaitable[object]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Size:
    """How big a run is, and where: the generated roster, the warning's area, the lease."""

    households: int = 20_000
    county: str | None = None  # one county (6 digits) instead of the whole city
    lease_seconds: float = 60.0  # longer than a batch waits in a throttled link's lanes
    server_url: str | None = None  # default: the configured server, or the embedded one
    database: str = BENCH_DB
    rate: int = RATE  # the SMPP link's configured rate
    drop_every: int = 5000  # smsc-flaky: the SMSC drops the link on every Nth submit_sm
    throttle_every: int = 2000  # smsc-flaky: … and answers every Mth with ESME_RTHROTTLED

    @property
    def area(self) -> str:
        return self.county or "370800"


@contextlib.asynccontextmanager
async def bench_database(size: Size) -> AsyncIterator[str]:
    """A fresh bench database with a generated roster; its owner's URL."""
    server = size.server_url or database_url(Settings())
    url = await recreate_database(server, size.database)
    async with open_pool(url, min_size=1, max_size=2):
        pass  # migrated before the generator connects
    generate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warnd",
        "roster",
        "generate",
        "--households",
        str(size.households),
        *(("--counties", size.county) if size.county else ()),
        env={**os.environ, "WARND_DATABASE_URL": url},
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await generate.wait() != 0:
        raise click.ClickException("warnd roster generate failed")
    yield url


async def reset(url: str) -> None:
    """Empty the outbox between scenarios (the bench's own database: history is disposable)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "TRUNCATE warnings, messages, deliveries, warning_villages, audit_log CASCADE"
        )
        await conn.execute("RESET session_replication_role")
    finally:
        await conn.close()


# The SMS fan-out has ended (slow-fast leaves voice calls queued: they are not waited for).
FANNED_OUT = (
    "SELECT count(*) > 0 AND count(*) FILTER (WHERE state IN ('queued', 'sending')) = 0"
    "   AND NOT EXISTS (SELECT 1 FROM warnings WHERE plan_state IN ('pending', 'planning'))"
    "  FROM deliveries WHERE channel_kind = 'sms'"
)


async def post_warning(port: int, area: str) -> None:
    now = datetime.now(UTC)
    sent = now.astimezone().isoformat(timespec="seconds")
    expires = (now + timedelta(hours=6)).astimezone().isoformat(timespec="seconds")
    cap = f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>bench-faults-{time.time_ns()}</identifier>
  <sender>bench@warnd</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Met</category>
    <event>暴雨红色预警</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <expires>{expires}</expires>
    <headline>济宁市气象台发布暴雨红色预警信号</headline>
    <instruction>请立即转移低洼地带群众。</instruction>
    <area>
      <areaDesc>济宁市</areaDesc>
      <geocode><valueName>行政区划代码</valueName><value>{area}</value></geocode>
    </area>
  </info>
</alert>""".encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{port}/api/v1/cap",
            data=cap,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/xml"},
        ) as response,
    ):
        if response.status != 201:
            raise click.ClickException(f"the warning was refused: {await response.text()}")


@dataclass
class Outcome:
    scenario: str
    messages: int
    lost: int
    duplicates: int
    recovery_s: float | None
    seconds: float
    detail: str = ""
    # Rows the killed holder had claimed and not recorded: what may go twice at most.
    on_the_wire: int | None = None
    # The SMSC's view of the link: the most accepted in one second, and the mean rate.
    peak_per_s: int | None = None
    rate_per_s: float | None = None

    def row(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "messages": self.messages,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "recovery_s": "-" if self.recovery_s is None else round(self.recovery_s, 2),
            "seconds": round(self.seconds, 1),
            "on_the_wire": "-" if self.on_the_wire is None else self.on_the_wire,
            "peak_per_s": "-" if self.peak_per_s is None else self.peak_per_s,
            "detail": self.detail,
        }


async def tally(conn: asyncpg.Connection, smsc: Smsc) -> tuple[int, int, int]:
    """Messages planned, lost and sent twice: the outbox against the SMSC's counts, read once
    no process sends any more (``outcome_counts``)."""
    rows = await conn.fetch(
        "SELECT address, state, audience = 'escalation' AS step, attempts > 0 AS handed"
        "  FROM deliveries WHERE channel_kind = 'sms'"
    )
    return outcome_counts(
        [(r["address"], r["state"], r["step"], r["handed"]) for r in rows], smsc.accepted
    )


def outcome_counts(
    rows: Sequence[tuple[str, str, bool, bool]], accepted: Counter[str]
) -> tuple[int, int, int]:
    """Fan-out messages, lost and duplicates from the outbox's SMS rows (address, state,
    escalation step?, handed to a channel?) and what the SMSC accepted per address (no "+").

    The fan-out's rows must all have reached the SMSC (lost otherwise). Escalation steps (a
    repeat to a responder who has not answered by the deadline, their backup, …) are messages
    warnd meant to send too: one handed to the link is expected at its address, so only what
    the SMSC accepted beyond the rows handed for an address is a duplicate."""
    fan_out = [(address, state) for address, state, step, _ in rows if not step]
    planned = Counter(address.lstrip("+") for address, _ in fan_out)
    unsent = sum(1 for _, state in fan_out if state not in ("sent", "delivered"))
    lost = sum(max(0, n - accepted[a]) for a, n in planned.items())
    expected = planned + Counter(
        address.lstrip("+") for address, _, step, handed in rows if step and handed
    )
    twice = sum(max(0, n - expected[a]) for a, n in accepted.items())
    return len(fan_out), max(lost, unsent), twice


async def sms_scenario(
    name: str,
    url: str,
    logs: Path,
    size: Size,
    *,
    processes: int,
    fault: str,
    cut_seconds: float = 10.0,
    drop_every: int | None = None,
    throttle_every: int | None = None,
    channels: str = "",
    server: Path | None = None,
) -> Outcome:
    """A fan-out (the city, or ``size.county``) through one SMPP link (and ``channels``, more
    channel tables), with ``fault`` injected a third of the way: ``kill9``, ``db-cut``,
    ``pg-restart`` (of the embedded server under ``server``) or ``none``."""
    await reset(url)
    smsc = Smsc(drop_every=drop_every, throttle_every=throttle_every)
    await smsc.start()
    proxy: Proxy | None = None
    served = url
    if fault == "db-cut":
        proxy = Proxy(url)
        await proxy.start()
        served = proxied(url, proxy.port)
    config = logs / f"{name}.toml"
    config.write_text(
        CONFIG.format(token=TOKEN, port=smsc.port, window=WINDOW, rate=size.rate) + channels
    )
    fleet = Fleet(
        {
            **os.environ,
            "WARND_DATABASE_URL": served,
            "WARND_CONFIG": str(config),
            "WARND_LEASE_SECONDS": str(size.lease_seconds),
            "WARND_TAKEOVER_SECONDS": "5",
            "WARND_STOP_GRACE": "3",
            "WARND_LOG_LEVEL": "warning",
        },
        logs,
    )
    conn = await asyncpg.connect(url)
    recovery: float | None = None
    on_the_wire: int | None = None  # kill9: what the killed holder had claimed, unrecorded
    try:
        await fleet.start(processes)
        started = time.monotonic()
        await post_warning(next(iter(fleet.processes)), size.area)
        planned = "SELECT count(*) FROM deliveries WHERE channel_kind = 'sms'"
        await wait_for(lambda: _planned(conn), 120, "the plan")
        total = await conn.fetchval(planned)
        third = max(1, total // 3)
        await wait_for(lambda: _at_least(smsc, third), 300, f"{third} messages at the SMSC")
        if fault == "kill9":
            on_the_wire = await kill_holder(fleet, conn)
        elif fault == "db-cut" and proxy is not None:
            proxy.cut(cut_seconds)
            await asyncio.sleep(cut_seconds)
        elif fault == "pg-restart" and server is not None:
            await conn.close()
            await restart(server, cut_seconds)
            conn = await asyncpg.connect(url)
        smsc.fault_over = time.monotonic()
        await wait_for(lambda: _resumed(smsc), 300, "sending to resume")
        if fault != "none" and smsc.resumed is not None:
            recovery = smsc.resumed - smsc.fault_over
        await wait_for(lambda: conn.fetchval(FANNED_OUT), 600, "the fan-out to end")
        seconds = time.monotonic() - started
        await fleet.stop()  # escalation steps go on falling due: count when nothing sends
        messages, lost, twice = await tally(conn, smsc)
    finally:
        await conn.close()
        await fleet.stop()
        await smsc.stop()
        if proxy is not None:
            await proxy.stop()
    return Outcome(
        name,
        messages,
        lost,
        twice,
        recovery,
        seconds,
        f"binds {smsc.binds}, at once {smsc.most_bound}",
        on_the_wire,
        peak_per_s=smsc.peak_rate,
        rate_per_s=smsc.rate,
    )


async def kill_holder(fleet: Fleet, conn: asyncpg.Connection) -> int:
    """SIGKILL the process holding the SMPP link; the rows it had claimed and not recorded."""
    holder = await fleet.holder("sms")
    if holder is not None:
        await fleet.kill(holder)
    on_the_wire: int = await conn.fetchval(
        "SELECT count(*) FROM deliveries WHERE state = 'sending' AND channel_kind = 'sms'"
    )
    return on_the_wire


async def restart(server: Path, down_seconds: float) -> None:
    """Stop the embedded server under ``server`` (fast shutdown: every session cut), keep it
    down a while, start it again with the same options."""
    await asyncio.to_thread(control, server, "-m", "fast", "stop")
    await asyncio.sleep(down_seconds)
    await asyncio.to_thread(control, server, "-l", str(server / "pg" / "log"), "restart")


async def slow_fast_scenario(url: str, logs: Path, size: Size) -> Outcome:
    """The same fan-out without and then with a slow voice channel beside the SMS link: the
    SMS rate at the SMSC, compared side by side."""
    alone = await sms_scenario("sms-alone", url, logs, size, processes=1, fault="none")
    beside = await sms_scenario(
        "slow-fast", url, logs, size, processes=1, fault="none", channels=SLOW_VOICE
    )
    alone_rate, beside_rate = alone.rate_per_s or 0.0, beside.rate_per_s or 0.0
    ratio = beside_rate / alone_rate if alone_rate else 0.0
    return replace(
        beside,
        detail=f"{beside.detail}; SMS {beside_rate:,.0f}/s beside voice at 10/s, "
        f"{alone_rate:,.0f}/s alone (ratio {ratio:.2f})",
    )


async def restart_scenario(logs: Path, size: Size, down_seconds: float) -> Outcome:
    """kill9's fan-out with the server stopped and started: on an embedded server of its own,
    since a shared one is not the bench's to stop."""
    data_dir = logs / "pg-restart"
    server = await asyncio.to_thread(embedded_url, data_dir)
    try:
        async with bench_database(replace(size, server_url=server)) as url:
            return await sms_scenario(
                "pg-restart",
                url,
                logs,
                size,
                processes=3,
                fault="pg-restart",
                cut_seconds=down_seconds,
                server=data_dir,
            )
    finally:
        # Started again by pg_ctl, the server is no longer the one the package would stop.
        with contextlib.suppress(subprocess.CalledProcessError):
            await asyncio.to_thread(control, data_dir, "-m", "immediate", "stop")


async def _planned(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval("SELECT count(*) > 0 AND bool_and(plan_state = 'done') FROM warnings")
    )


async def _at_least(smsc: Smsc, count: int) -> bool:
    return sum(smsc.accepted.values()) >= count


async def _resumed(smsc: Smsc) -> bool:
    return smsc.resumed is not None


async def escalation_scenario(url: str, logs: Path, size: Size, *, processes: int) -> Outcome:
    """Every call-out of a city-wide warning opened months ago, so that every step is due; three
    escalate-only processes work them, one killed with SIGKILL a third of the way."""
    await reset(url)
    settings = Settings()
    policy = load_policy(settings.policy)
    opened = datetime.now(UTC) - timedelta(days=60)
    async with open_pool(url, min_size=1, max_size=2, run_migrations=False) as pool:
        warning = city_warning(opened)
        if size.county:
            warning = replace(warning, area=Area(codes=(size.county.ljust(12, "0"),)))
        await store_warning(pool, warning, source="bench", now=opened)
        planner = Planner(pool, lambda: policy, ManualClock(opened), {"sms": 670})
        await planner.plan_pending()
    conn = await asyncpg.connect(url)
    fleet = Fleet({**os.environ, "WARND_DATABASE_URL": url, "WARND_LOG_LEVEL": "warning"}, logs)
    try:
        chains = {
            r["id"]: r["steps"]
            for r in await conn.fetch(
                "SELECT id, jsonb_array_length(snapshot->'steps') AS steps FROM callouts"
            )
        }
        total = sum(chains.values())
        started = time.monotonic()
        await fleet.start(processes, "--simulate", "--roles", "escalate", http=False)
        done = "SELECT count(*) FROM callout_events WHERE kind IN ('step_fired', 'step_skipped')"
        await wait_for(lambda: _fetch_at_least(conn, done, total // 3), 600, "a third of the steps")
        await fleet.kill(next(iter(fleet.processes)))
        finished = "SELECT NOT EXISTS (SELECT 1 FROM callouts WHERE next_check_at IS NOT NULL)"
        await wait_for(lambda: conn.fetchval(finished), 600, "every chain to end")
        seconds = time.monotonic() - started
        fired = Counter(
            (r["callout_id"], r["step"])
            for r in await conn.fetch(
                "SELECT callout_id, (detail->>'step')::int AS step FROM callout_events "
                "WHERE kind IN ('step_fired', 'step_skipped')"
            )
        )
    finally:
        await conn.close()
        await fleet.stop()
    expected = {(c, i) for c, steps in chains.items() for i in range(steps)}
    lost = len(expected - set(fired))
    twice = sum(n - 1 for n in fired.values() if n > 1)
    return Outcome("escalation-kill", total, lost, twice, None, seconds, f"{len(chains)} call-outs")


async def _fetch_at_least(conn: asyncpg.Connection, query: str, count: int) -> bool:
    return bool(await conn.fetchval(query) >= count)


async def run(scenarios: tuple[str, ...], size: Size, cut_seconds: float) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="warnd-faults-") as folder:
        logs = Path(folder)
        if "pg-restart" in scenarios:
            outcomes.append(await restart_scenario(logs, size, cut_seconds))
            click.echo(f"{outcomes[-1].row()}", err=True)
        if set(scenarios) <= {"pg-restart"}:
            return outcomes
        async with bench_database(size) as url:
            for scenario in scenarios:
                if scenario in ("kill9", "db-cut"):
                    outcome = await sms_scenario(
                        scenario,
                        url,
                        logs,
                        size,
                        processes=3,
                        fault=scenario,
                        cut_seconds=cut_seconds,
                    )
                elif scenario == "smsc-flaky":
                    outcome = await sms_scenario(
                        "smsc-flaky",
                        url,
                        logs,
                        size,
                        processes=1,
                        fault="none",
                        drop_every=size.drop_every,
                        throttle_every=size.throttle_every,
                    )
                elif scenario == "slow-fast":
                    outcome = await slow_fast_scenario(url, logs, size)
                elif scenario == "escalation-kill":
                    outcome = await escalation_scenario(url, logs, size, processes=3)
                else:
                    continue  # pg-restart: run above, on its own server
                outcomes.append(outcome)
                click.echo(f"{outcome.row()}", err=True)
    return outcomes


@click.command("faults")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(SCENARIOS),
    help="Run only these (repeat the option); all by default.",
)
@click.option(
    "--households",
    default=20_000,
    show_default=True,
    help="Households of the generated city (CI runs 20,000; by hand 500,000).",
)
@click.option("--county", default=None, help="Generate and warn one county (e.g. 370811).")
@click.option(
    "--rate",
    default=RATE,
    show_default=True,
    type=click.IntRange(min=1),
    help="The SMPP link's configured rate, submit_sm a second (a full-size run goes faster).",
)
@click.option(
    "--cut-seconds",
    default=10.0,
    show_default=True,
    help="db-cut: the connections cut this long; pg-restart: the server down this long.",
)
@click.option(
    "--drop-every",
    default=Size.drop_every,
    show_default=True,
    type=click.IntRange(min=1),
    help="smsc-flaky: the SMSC drops the link on every Nth submit_sm.",
)
@click.option(
    "--throttle-every",
    default=Size.throttle_every,
    show_default=True,
    type=click.IntRange(min=1),
    help="smsc-flaky: the SMSC throttles every Mth submit_sm (the link halves its rate).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per scenario.")
def faults_command(
    *,
    scenarios: tuple[str, ...],
    households: int,
    county: str | None,
    rate: int,
    cut_seconds: float,
    drop_every: int,
    throttle_every: int,
    as_json: bool,
) -> None:
    """Real processes, injected faults: messages, lost, duplicates, recovery seconds."""
    from warnd.cli.errors import friendly_errors

    size = Size(
        households=households,
        county=county,
        rate=rate,
        drop_every=drop_every,
        throttle_every=throttle_every,
    )
    outcomes = friendly_errors(
        lambda: asyncio.run(run(scenarios or SCENARIOS, size, cut_seconds))
    )()
    for outcome in outcomes:
        report(f"faults: {outcome.scenario}", outcome.row(), as_json)
