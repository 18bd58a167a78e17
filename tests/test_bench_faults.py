"""``warnd bench faults``: the SMSC's counting reads real submit_sm bodies, and a reduced kill -9
run of every scenario (one county) loses nothing, sends twice only what a killed holder had on
the wire, and holds one bind at the configured rate.
Counts only: its timings are the bench's to report, not a test's."""

from __future__ import annotations

import struct
import uuid
from collections import Counter

import pytest

from channels.sms_codec import encode_text
from warnd.db.pool import connect
from warnd.tools.bench_faults import (
    SCENARIOS,
    WINDOW,
    Size,
    first_part_destination,
    outcome_counts,
    run,
)


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


def test_escalation_steps_the_link_was_handed_are_not_duplicates() -> None:
    # A full-size fan-out lasts past the call-outs' deadlines: responders who have not answered
    # are sent a repeat. The SMSC then sees their number twice, and only the second time beyond
    # the rows warnd handed for it is a message sent twice.
    responder, household = "+8613900000001", "+8613800000001"
    rows = [
        (responder, "sent", False, True),
        (household, "sent", False, True),
        (responder, "sent", True, True),  # the repeat, handed and sent
        (responder, "queued", True, False),  # a later step, not yet handed
    ]
    accepted = Counter({responder.lstrip("+"): 2, household.lstrip("+"): 1})
    assert outcome_counts(rows, accepted) == (2, 0, 0)
    accepted[household.lstrip("+")] += 1  # the household's message went out again
    accepted[responder.lstrip("+")] += 1  # and the step that was never handed "went out"
    assert outcome_counts(rows, accepted) == (2, 0, 2)
    lost = Counter({responder.lstrip("+"): 2})  # the household never reached
    assert outcome_counts(rows, lost) == (2, 1, 0)
    unsent = [*rows[:1], (household, "sending", False, True), *rows[2:]]
    assert outcome_counts(unsent, accepted)[1] == 1  # accepted but never recorded sent


# Every scenario at a reduced size: one county of 2,000 households, a 10 s lease, a 2 s cut.
# Starts warnd processes a dozen times (up to a minute each on a loaded machine) and an embedded
# server for pg-restart; about four minutes on an idle machine.
@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_every_scenario_at_a_reduced_size_loses_nothing(server_url: str) -> None:
    database = f"warnd_bench_faults_{uuid.uuid4().hex[:10]}"
    size = Size(
        households=2000,
        county="370811",
        lease_seconds=10,
        server_url=server_url,
        database=database,
    )
    try:
        outcomes = {o.scenario: o for o in await run(SCENARIOS, size, cut_seconds=2)}
    finally:
        admin = await connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
    assert set(outcomes) == set(SCENARIOS)
    for outcome in outcomes.values():
        assert outcome.messages > 100, outcome
        assert outcome.lost == 0, outcome
    kill9 = outcomes["kill9"]
    assert kill9.on_the_wire is not None
    assert kill9.recovery_s is not None
    for name in ("kill9", "db-cut", "pg-restart"):
        outcome = outcomes[name]
        # One interruption each: sent twice at most the link's window (what it had been handed
        # and warnd had not recorded).
        assert outcome.duplicates <= WINDOW, outcome
        # One bind at a time whatever the number of processes, and the link's configured rate
        # at the SMSC, not three times it (the link's pacer lets 50 ms of its rate through at
        # once).
        assert "at once 1" in outcome.detail, outcome
        assert outcome.peak_per_s is not None
        assert outcome.peak_per_s <= size.rate * 1.2, outcome
    assert outcomes["pg-restart"].recovery_s is not None
    assert outcomes["escalation-kill"].duplicates == 0
    # The SMS link beside a slow voice channel reached the SMSC (the side-by-side rate is the
    # bench's figure to record, not a test's assertion).
    assert "beside voice" in outcomes["slow-fast"].detail
