"""``warnd bench faults``: the SMSC's counting reads real submit_sm bodies, and a reduced kill -9
run (one county, three real processes) loses nothing and sends twice only what the killed
holder had on the wire.
Counts only: its timings are the bench's to report, not a test's."""

from __future__ import annotations

import struct
import uuid

import pytest

from channels.sms_codec import encode_text
from warnd.db.pool import connect
from warnd.tools.bench_faults import Size, first_part_destination, run


def submit_body(destination: str, message: bytes, esm_class: int = 0) -> bytes:
    """A submit_sm body as SMPP 3.4 §4.4.1 lays it out."""
    return b"".join(
        [
            b"\x00",  # service_type
            b"\x05\x00warnd\x00",  # source ton, npi, addr
            b"\x01\x01" + destination.encode() + b"\x00",
            struct.pack("!BBB", esm_class, 0, 0),
            b"\x00\x00",  # schedule_delivery_time, validity_period
            struct.pack("!BBBB", 1, 0, 8, 0),
            struct.pack("!B", len(message)) + message,
        ]
    )


def test_only_first_parts_are_counted() -> None:
    text = encode_text("【济宁市应急管理局】暴雨红色预警").parts[0]
    assert first_part_destination(submit_body("8613800000001", text)) == "8613800000001"
    first = b"\x05\x00\x03\x2a\x02\x01" + text
    second = b"\x05\x00\x03\x2a\x02\x02" + text
    assert first_part_destination(submit_body("8613800000001", first, 0x40)) == "8613800000001"
    assert first_part_destination(submit_body("8613800000001", second, 0x40)) is None
    sixteen = b"\x06\x08\x04\x00\x2a\x02\x02" + text
    assert first_part_destination(submit_body("8613800000001", sixteen, 0x40)) is None


# Generates a county, starts three warnd processes (up to a minute each on a loaded machine),
# kills one and waits for its rows' lease (10 s); about 40 s on an idle machine.
@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_a_reduced_kill_9_run_loses_nothing(server_url: str) -> None:
    database = f"warnd_bench_faults_{uuid.uuid4().hex[:10]}"
    size = Size(
        households=2000,
        county="370811",
        lease_seconds=10,
        server_url=server_url,
        database=database,
    )
    try:
        [outcome] = await run(("kill9",), size, cut_seconds=1)
    finally:
        admin = await connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
    assert outcome.messages > 100
    assert outcome.lost == 0
    # Sent twice at most what the killed holder had claimed and not recorded.
    assert outcome.on_the_wire is not None
    assert outcome.duplicates <= outcome.on_the_wire
    assert outcome.recovery_s is not None
    assert outcome.detail.endswith("at once 1")
