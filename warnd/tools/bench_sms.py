"""``warnd bench sms``: sustained SMS throughput through the SMPP channel, persisted and bare.

Two runs send the same N one-part Chinese messages to the same SMSC:

- **persisted**: N queued deliveries in a bench database, sent by warnd's own dispatch worker,
  one per channel as in the daemon (claim ``FOR UPDATE SKIP LOCKED`` → ``SmppChannel.send`` →
  record the SMSC's message id), so every delivery's state change is written to PostgreSQL;
  timed until the last row is ``sent``;
- **bare**: the limit — the cheapest loop on the same library (``smpp34``) that keeps the same
  window of ``submit_sm`` in flight, persisting nothing.

Without ``--smsc`` a minimal local SMSC (:func:`serve_smsc`) runs in a child process, so that
it does not share this process's event loop or GIL (on a 2-core machine it still shares the CPU
with this process and PostgreSQL, which the figures include).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import click
import smpp34
from pydantic import SecretStr

from channels.smpp.channel import SmppChannel
from channels.smpp.config import SmppConfig
from channels.smpp.link import INBOUND_CAPACITY
from channels.sms_codec import encode_text
from warnd.app.metrics import Metrics
from warnd.core.clock import SystemClock
from warnd.db.notify import Wakeup
from warnd.db.pool import open_pool, recreate_database
from warnd.ingest.store import store_warning
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.inbound import Inbound
from warnd.runtime.daemon import tune_gc
from warnd.runtime.settings import Settings, database_url

BENCH_DB = "warnd_bench_sms"
SOURCE = "106573700001"
# 60 characters with the signature: one UCS-2 message, the shape of a household notice.
TEXT = "【济宁市应急管理局】暴雨红色预警：请立即转移到安全地带，远离河道和低洼处，注意防范山洪。"


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    system_id: str
    password: str


async def _answer_everything(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, receipts: bool
) -> None:
    """One ESME session of the local SMSC: every request gets its OK response, and with
    ``receipts`` every accepted message a DELIVRD receipt right after."""
    number = 0
    try:
        while True:
            header = await reader.readexactly(16)
            length, command, _, sequence = struct.unpack("!IIII", header)
            await reader.readexactly(length - 16)
            body = b""
            if command == _SUBMIT_SM:
                number += 1
                body = f"{number:x}".encode() + b"\x00"
            elif command in _BINDS:
                body = b"benchsmsc\x00"
            elif command not in (_ENQUIRE_LINK, _UNBIND):
                continue  # responses from the ESME need no answer
            writer.write(struct.pack("!IIII", 16 + len(body), command | 0x80000000, 0, sequence))
            writer.write(body)
            if receipts and command == _SUBMIT_SM:
                receipt = smpp34.DeliverSm(
                    "8613800000000",
                    SOURCE,
                    f"id:{number:x} sub:001 dlvrd:001 stat:DELIVRD err:000".encode(),
                    esm_class=0x04,
                    sequence_number=number,
                )
                writer.write(receipt.encode())
            if command == _UNBIND:
                break
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


# SMPP 3.4 command ids the local SMSC answers.
_BINDS = {0x00000001, 0x00000002, 0x00000009}
_SUBMIT_SM, _UNBIND, _ENQUIRE_LINK = 0x00000004, 0x00000006, 0x00000015


async def serve_smsc(port: int, *, receipts: bool) -> None:
    """The local SMSC, run in a child process: accepts every bind and every submit_sm.

    Deliberately minimal (a 16-byte header and an OK response per request), so that the SMSC
    costs the 2-core machine as little CPU as possible and the figures measure warnd and the
    ESME library, not the peer: smpp34's own server answers only about 2,000 submit_sm/s here.
    """
    server = await asyncio.start_server(
        functools.partial(_answer_everything, receipts=receipts), "127.0.0.1", port
    )
    print("ready", flush=True)  # noqa: T201 - the parent process waits for this line
    async with server:
        await server.serve_forever()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _addresses(count: int) -> list[str]:
    return [f"86138{i:08d}" for i in range(count)]


async def bare(target: Target, messages: int, window: int) -> float:
    """Seconds to send ``messages`` straight through smpp34 and persist nothing: ``window`` lanes,
    each awaiting one ``submit_sm_resp`` at a time (the cheapest way to keep a window full,
    measured against a task per message: 17,000/s against 13,000/s here), reading (and dropping)
    whatever comes back."""
    client = smpp34.Client(
        target.host,
        target.port,
        target.system_id,
        target.password,
        bind_type="TRX",
        window_size=window,
        inbound_capacity=INBOUND_CAPACITY,
    )
    session = await client.connect()
    payload = encode_text(TEXT).parts[0]
    addresses = iter(_addresses(messages))

    async def lane() -> None:
        for address in addresses:
            response = await session.submit_sm(
                address,
                payload,
                source_addr=SOURCE,
                dest_addr_ton=1,
                dest_addr_npi=1,
                registered_delivery=1,
                data_coding=8,
            )
            if response.command_status != 0:
                raise RuntimeError(f"the SMSC refused a message: {response.command_status:#x}")

    async def drain() -> None:
        """Read (and drop) whatever the SMSC sends back, receipts included."""
        while not isinstance(await session.next(), smpp34.Disconnected):
            pass

    draining = asyncio.create_task(drain())
    try:
        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(window)))
        return time.perf_counter() - started
    finally:
        draining.cancel()
        await asyncio.gather(draining, return_exceptions=True)
        await session.unbind()
        await client.stop()


async def _queue(pool: object, messages: int) -> int:
    """A warning, its message and ``messages`` queued SMS deliveries; returns the warning id."""
    from asyncpg import Pool

    from warnd.tools.bench_fanout import city_warning

    assert isinstance(pool, Pool)
    now = datetime.now(UTC)
    stored = await store_warning(pool, city_warning(now), source="bench", now=now)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE warnings SET state = 'active' WHERE id = $1", stored.warning_id)
        message_id = await conn.fetchval(
            "INSERT INTO messages (warning_id, audience, channel_kind, body) "
            "VALUES ($1, 'household', 'sms', $2) RETURNING id",
            stored.warning_id,
            TEXT,
        )
        await conn.execute(
            """INSERT INTO deliveries (warning_id, message_id, audience, recipient_id,
                   division_code, address, channel_kind, priority)
               SELECT $1, $2, 'household', i, '370800000000',
                      '+86138' || lpad(i::text, 8, '0'), 'sms', 10
                 FROM generate_series(0, $3 - 1) AS i""",
            stored.warning_id,
            message_id,
            messages,
        )
        await conn.execute("VACUUM ANALYZE deliveries")
    return stored.warning_id


async def persisted(target: Target, messages: int, window: int, *, receipts: bool) -> float:
    """Seconds for warnd's dispatch worker (one per channel, as in the daemon) to send and record
    ``messages`` deliveries (and, with ``receipts``, for warnd's inbound side to mark every one of
    them delivered).

    The clock stops when warnd's own metrics have counted the last state change, which the
    dispatcher does after each commit, so that polling costs the database nothing; the rows are
    then counted in the database, and a shortfall fails the run.
    """
    server = database_url(Settings())
    url = await recreate_database(server, BENCH_DB)
    config = SmppConfig(
        type="smpp",
        host=target.host,
        port=target.port,
        system_id=target.system_id,
        password=SecretStr(target.password),
        source_addr=SOURCE,
        window=window,
        rate_per_s=1e9,
    )
    channel = SmppChannel("bench-smpp", config)
    metrics = Metrics()
    final = "delivered" if receipts else "sent"
    async with open_pool(url, min_size=2, max_size=4) as pool:
        warning_id = await _queue(pool, messages)
        dispatcher = Dispatcher(
            pool, {channel.name: channel}, SystemClock(), metrics, Wakeup(), poll_seconds=0.01
        )
        await channel.start()
        try:
            started = time.perf_counter()
            tasks = [asyncio.create_task(dispatcher.run_worker(channel))]
            if receipts:
                tasks.append(
                    asyncio.create_task(Inbound(pool, SystemClock(), metrics).run(channel))
                )
            try:
                labels = {"channel": channel.name, "state": final}

                def counted() -> float:
                    return metrics.registry.get_sample_value("warnd_deliveries_total", labels) or 0

                # A counter has no event to wait on, and reading it is free. A worker that died
                # stops the wait: its error is raised below.
                while counted() < messages and not any(task.done() for task in tasks):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                elapsed = time.perf_counter() - started
            finally:
                for task in tasks:
                    task.cancel()
                failed = await asyncio.gather(*tasks, return_exceptions=True)
            for outcome in failed:
                if isinstance(outcome, Exception):
                    raise outcome
            done = await pool.fetchval(
                "SELECT count(*) FROM deliveries WHERE warning_id = $1 AND state = $2 "
                "AND external_id IS NOT NULL",
                warning_id,
                final,
            )
            if done != messages:
                raise RuntimeError(f"only {done} of {messages} deliveries were recorded")
        finally:
            await channel.stop()
    return elapsed


async def run(
    target: Target | None, messages: int, window: int, *, receipts: bool = False
) -> dict[str, float | int]:
    child: asyncio.subprocess.Process | None = None
    if target is None:
        port = _free_port()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "warnd.tools.bench_sms",
            str(port),
            *(["receipts"] if receipts else []),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        async with asyncio.timeout(30):
            if (await child.stdout.readline()).strip() != b"ready":
                raise RuntimeError("the local SMSC did not start")
        target = Target("127.0.0.1", port, "warnd", "bench")
    try:
        tune_gc()  # as ``warnd run`` does, for both runs alike
        await bare(target, min(messages, 2000), window)  # warm both ends up
        # The limit is the better of a bare run before and one after: a machine that hiccups
        # during one bare run must not flatter the ratio.
        before = await bare(target, messages, window)
        persisted_seconds = await persisted(target, messages, window, receipts=receipts)
        bare_seconds = min(before, await bare(target, messages, window))
    finally:
        if child is not None:
            child.terminate()
            await child.wait()
    persisted_per_s = messages / persisted_seconds
    bare_per_s = messages / bare_seconds
    return {
        "messages": messages,
        "seconds": round(persisted_seconds, 2),
        "persisted_per_s": round(persisted_per_s),
        "bare_per_s": round(bare_per_s),
        "ratio": round(persisted_per_s / bare_per_s, 2),
    }


def _target(smsc: str | None, system_id: str, password: str) -> Target | None:
    if smsc is None:
        return None
    host, _, port = smsc.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT", param_hint="--smsc")
    return Target(host, int(port), system_id, password)


@click.command("sms")
@click.option("--smsc", metavar="HOST:PORT", help="An SMSC to use instead of a local one.")
@click.option("--system-id", default="warnd", show_default=True, help="Bind system_id.")
@click.option("--password", default="", help="Bind password.")
@click.option("--messages", default=60_000, show_default=True, help="Messages per run.")
@click.option("--window", default=100, show_default=True, help="submit_sm in flight.")
@click.option(
    "--receipts",
    is_flag=True,
    help="The local SMSC sends a receipt per message; timed until all are 'delivered'.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sms(  # noqa: PLR0917 - one parameter per command-line option, as click passes them
    smsc: str | None,
    system_id: str,
    password: str,
    messages: int,
    window: int,
    receipts: bool,
    as_json: bool,
) -> None:
    """SMS throughput through the SMPP channel, persisted in PostgreSQL, next to a bare loop."""
    from warnd.cli.errors import friendly_errors
    from warnd.tools.bench_fanout import report

    target = _target(smsc, system_id, password)
    if receipts and target is not None:
        raise click.BadParameter("only the local SMSC sends receipts", param_hint="--receipts")
    result = friendly_errors(
        lambda: asyncio.run(run(target, messages, window, receipts=receipts))
    )()
    report("SMS over SMPP", result, as_json)


if __name__ == "__main__":  # the local SMSC's child process: python -m warnd.tools.bench_sms PORT
    asyncio.run(serve_smsc(int(sys.argv[1]), receipts="receipts" in sys.argv[2:]))
