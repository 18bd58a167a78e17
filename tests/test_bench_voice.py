"""``warnd bench voice`` on a few calls, against sipp and the test server: every call placed,
answered and acknowledged. Counts only: its timings are the bench's to report, not a test's."""

from __future__ import annotations

import uuid

import pytest

from tests.peers import require, require_pjsua2
from warnd.db.pool import connect
from warnd.tools.bench_voice import voice


# The bench gives up after 60 s plus three times the calls' expected length: the default 60 s
# of a test would cut its own failure message short.
@pytest.mark.timeout(150)
async def test_every_call_is_placed_answered_and_acknowledged(server_url: str) -> None:
    require_pjsua2()
    require("sipp", "espeak-ng", "sox")
    database = f"warnd_bench_voice_{uuid.uuid4().hex[:10]}"
    try:
        result = await voice(server_url, 8, 8, 40.0, database=database)
    finally:
        admin = await connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
    assert (result["calls"], result["answered"], result["acknowledged"]) == (8, 8, 8), result
    assert result["max_concurrent"] >= 1
