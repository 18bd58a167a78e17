"""``warnd bench eew`` on one county and a few events: every event alerts villages, loudspeakers
and phones, and every message handed is recorded. Counts only: its timings are the bench's to
report, not a test's."""

from __future__ import annotations

import uuid

import pytest

from warnd.db.pool import connect
from warnd.tools.bench_eew import eew


# Pruned, the records are counted and emptied after each drain, and still add up.
@pytest.mark.parametrize(("drain_every", "prune"), [(1, False), (2, False), (1, True)])
async def test_every_event_alerts_and_every_message_is_recorded(
    server_url: str, drain_every: int, prune: bool
) -> None:
    database = f"warnd_bench_eew_{uuid.uuid4().hex[:10]}"
    try:
        result = await eew(
            3,
            counties="370811",
            drain_every=drain_every,
            prune_records=prune,
            server_url=server_url,
            database=database,
        )
    finally:
        admin = await connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
    assert result["events"] == 3
    # 任城区 holds the epicentre: all its villages shake at degree III or more.
    villages, speakers = result["villages_alerted"], result["speakers"]
    assert isinstance(villages, int) and isinstance(speakers, int)
    assert 0 < speakers <= villages
    messages = result["messages_per_event"]
    assert isinstance(messages, int) and messages > speakers
    assert result["deliveries_recorded"] == 3 * messages
    callouts = result["callouts_recorded"]
    assert isinstance(callouts, int) and callouts > 0 and callouts % 3 == 0
    taken = result["sms_taken_on_wire"]
    assert isinstance(taken, int) and taken >= 3  # each event's first SMS overtook the 10,000
