"""Issue 10's "done when": a red warning for one county, with the voice channel pointed at a real
SIP peer (sipp), run by a real warnd process. Every responder's call is placed;
"1" acknowledges the call-out with ``ack_via = "voice"``; busy and unanswered responders escalate
exactly as the policy says; and a kill -9 of the voice engine mid-call loses no call-out.

SMS and loudspeakers go to simulators that never answer, so every acknowledgement here is a key
pressed on a SIP call. The phones (tests/sip/county.xml, decided by the number called):

- the city head, the county head, 张庄村's deputy and the school press 1 as soon as they hear
  the warning;
- the town head answers and never presses a key; his first call is in progress when every
  worker of the voice engine is killed (kill -9);
- 张庄村's head is busy (486) every time; 李庄村's head lets the phone ring out.

The red policy (config/policy.toml) counts its escalation steps in minutes from opening: repeat
at 2, backup at 5, superior at 8, the duty officer at 12. warnd refuses a fast clock with a real
channel (a SIP call takes its own real time), so the drill runs in real time on that policy with
each of its minutes made 6 s: repeat at 12 s, backup at 30 s, superior at 48 s, the duty officer
at 72 s. So:

- the town head: his call lost with the engine, repeat (answers, no key), no backup (skipped),
  the county head called as his superior, who presses 1: acknowledged by the superior;
- 张庄村's head: busy, repeat (busy), his backup (the deputy) is called and presses 1;
- 李庄村's head: no answer, repeat (no answer), no backup, the town head called as superior
  (answers, no key), the duty officer told.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests import seed
from tests.fixtures import FEED_TOKEN, free_port, post_cap, rainstorm_cap, start_worker
from tests.peers import Sipp, require, require_pjsua2, running_sipp
from tests.waiting import until_while_running
from warnd.db.pool import connect
from warnd.runtime.settings import REPO_CONFIG_DIR

# The red escalation steps of config/policy.toml, each minute made 6 s (see above).
DRILL_STEPS = {"2m": "12s", "5m": "30s", "8m": "48s", "12m": "72s"}

CITY_HEAD = "+8613900000000"
COUNTY_HEAD = "+8613900000001"
TOWN_HEAD = "+8613900000003"  # answers, never presses a key
VILLAGE_HEAD = "+8613900000004"  # 张庄村: busy
DEPUTY = "+8613900000005"  # 张庄村's deputy, the village head's backup (B角)
AWAY = "+8613900000006"  # 李庄村's head: rings out

CONFIG = """
[feeds.met]
token = "{token}"

[channels.trunk]
type = "sip"
proxy = "{proxy}"
from_number = "12379"
local_address = "127.0.0.1"
max_calls = 8
calls_per_s = 20
ring_timeout = 5
repeat_prompt = 1
key_wait = 2

[channels.trunk.tts]
cache_dir = "{tts}"

[channels.sim-sms]
type = "simulator"
kind = "sms"
time_scale = 0.1
deliver_probability = 1.0
reply_probability = 0.0

[channels.sim-broadcast]
type = "simulator"
kind = "broadcast"
time_scale = 0.1
play_probability = 1.0
"""


@pytest.fixture
async def county_phones(tmp_path: Path) -> AsyncIterator[Sipp]:
    require("sipp", "espeak-ng", "sox")
    require_pjsua2()
    async with running_sipp("county.xml", tmp_path / "sipp") as sipp:
        yield sipp


def drill_policy() -> str:
    """config/policy.toml with the red escalation steps in seconds."""
    policy = (REPO_CONFIG_DIR / "policy.toml").read_text()
    head, red = policy.split("[[levels.red.escalation]]", 1)
    red, tail = red.split("\n# ---", 1)
    for minutes, seconds in DRILL_STEPS.items():
        assert f'after = "{minutes}"' in red, minutes
        red = red.replace(f'after = "{minutes}"', f'after = "{seconds}"')
    return f"{head}[[levels.red.escalation]]{red}\n# ---{tail}"


@pytest.fixture
def drill_env(seeded: str, tmp_path: Path, county_phones: Sipp) -> Iterator[dict[str, str]]:
    config = tmp_path / "warnd.toml"
    (tmp_path / "policy.toml").write_text(drill_policy())
    (tmp_path / "templates").symlink_to(REPO_CONFIG_DIR / "templates")
    config.write_text(
        CONFIG.format(token=FEED_TOKEN, proxy=county_phones.proxy, tts=tmp_path / "tts")
    )
    yield {
        **os.environ,
        "WARND_DATABASE_URL": seeded,
        "WARND_CONFIG": str(config),
        "WARND_POLICY": str(tmp_path / "policy.toml"),
        "WARND_HTTP_PORT": str(free_port()),
        "WARND_LEASE_SECONDS": "60",
        "WARND_LOG_LEVEL": "warning",
    }


def engine_workers(parent: int) -> list[int]:
    """The voice engine's worker processes under the warnd process ``parent``."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"channels.sip.worker" in command:
            workers.append(int(entry.name))
    return workers


def voice_call(phone: str, step: str = "IS NULL") -> str:
    """SQL: the state of the first voice delivery to ``phone`` of the step (none: the call-out's
    own call)."""
    return (
        f"(SELECT state FROM deliveries WHERE address = '{phone}' AND channel_kind = 'voice' "
        f"AND audience = 'responder' AND step {step} ORDER BY id LIMIT 1)"
    )


def callout_of(phone: str) -> str:
    return f"(SELECT c FROM callouts c WHERE c.phone = '{phone}')"


# About 75 s: 72 s of escalation steps, and warnd's start (up to a minute on a loaded machine).
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_red_round_by_voice_escalates_as_the_policy_says_through_an_engine_kill_9(
    drill_env: dict[str, str], county_phones: Sipp, tmp_path: Path
) -> None:
    log = tmp_path / "warnd.log"
    process = await start_worker(drill_env, log, simulate=False)
    conn = await connect(drill_env["WARND_DATABASE_URL"])
    try:
        status, body = await post_cap(
            int(drill_env["WARND_HTTP_PORT"]),
            rainstorm_cap("voice-drill-1", datetime.now(UTC).replace(microsecond=0)),
        )
        assert status == 201, body
        # Mid-call: those who press 1 have answered, 李庄村's phone has rung out (5 s), the town
        # head listens to his prompt (about 15 s of speech).
        mid_call = (
            "SELECT count(*) = 3 FROM callouts WHERE state = 'acknowledged' AND phone IN "
            f"('{CITY_HEAD}', '{COUNTY_HEAD}', '{DEPUTY}') AND {voice_call(AWAY)} = 'failed' "
            f"AND {voice_call(TOWN_HEAD)} = 'sent'"
        )
        await until_while_running(
            process, log, lambda: conn.fetchval(mid_call), within=60, what="the calls answered"
        )
        workers = engine_workers(process.pid)
        assert workers, "the voice engine has no worker process"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        # The lost call comes back as a result (the delivery failed), and the round goes on.
        the_end = (
            f"SELECT {callout_of(AWAY)}.cursor = 4 "
            f"AND {callout_of(TOWN_HEAD)}.state = 'acknowledged' "
            f"AND {callout_of(VILLAGE_HEAD)}.state = 'acknowledged'"
        )
        await until_while_running(
            process, log, lambda: conn.fetchval(the_end), within=120, what="the duty officer step"
        )
        lost = await conn.fetchrow(
            "SELECT state, error FROM deliveries WHERE address = $1 AND channel_kind = 'voice' "
            "AND audience = 'responder' AND step IS NULL",
            TOWN_HEAD,
        )
        restarted = [pid for pid in engine_workers(process.pid) if pid not in workers]
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        callouts = {r["phone"]: r for r in await conn.fetch("SELECT * FROM callouts")}
        events = await conn.fetch(
            "SELECT c.phone, e.kind, e.detail FROM callout_events e "
            "JOIN callouts c ON c.id = e.callout_id ORDER BY e.id"
        )
        calls = await conn.fetch(
            "SELECT c.phone AS owner, d.step, d.address, d.state, d.error FROM deliveries d "
            "JOIN callouts c ON c.id = d.callout_id WHERE d.channel_kind = 'voice' ORDER BY d.id"
        )
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await conn.close()

    # The engine's kill: the call in progress came back as failed, the workers were restarted.
    assert lost is not None and lost["state"] == "failed", lost
    assert "engine lost" in lost["error"] and "SIGKILL" in lost["error"], lost["error"]
    assert restarted, "no worker was restarted after the kill"

    # Every responder's call-out, acknowledged by a key pressed on a call.
    assert set(callouts) == seed.RED_RAINSTORM_RENCHENG["responder"]
    outcome = {
        phone: (r["state"], r["ack_by"], r["ack_via"], r["ack_late"], r["cursor"])
        for phone, r in callouts.items()
        if phone != AWAY
    }
    assert outcome == {
        CITY_HEAD: ("acknowledged", CITY_HEAD, "voice", False, 0),
        COUNTY_HEAD: ("acknowledged", COUNTY_HEAD, "voice", False, 0),
        TOWN_HEAD: ("acknowledged", COUNTY_HEAD, "voice", False, 3),  # by the superior
        VILLAGE_HEAD: ("acknowledged", DEPUTY, "voice", False, 2),  # by the backup
        DEPUTY: ("acknowledged", DEPUTY, "voice", False, 0),
    }
    away = callouts[AWAY]
    assert (away["state"], away["ack_via"], away["cursor"]) == ("escalated", None, 4)

    chains: dict[str, list[tuple[str, str]]] = {}
    for e in events:
        if e["kind"] in ("step_fired", "step_skipped"):
            chains.setdefault(e["phone"], []).append((e["kind"], e["detail"]["action"]))
    assert chains == {
        TOWN_HEAD: [
            ("step_fired", "repeat"),
            ("step_skipped", "backup"),
            ("step_fired", "superior"),
        ],
        VILLAGE_HEAD: [("step_fired", "repeat"), ("step_fired", "backup")],
        AWAY: [
            ("step_fired", "repeat"),
            ("step_skipped", "backup"),
            ("step_fired", "superior"),
            ("step_fired", "duty_officer"),
        ],
    }
    acks = [e["phone"] for e in events if e["kind"] == "acknowledged"]
    assert sorted(acks) == sorted(set(callouts) - {AWAY})  # each answered exactly once

    # The calls, step by step: who was rung and how each call ended.
    rung = {(c["owner"], c["step"], c["address"]) for c in calls}
    assert rung == {
        *((phone, None, phone) for phone in seed.RED_RAINSTORM_RENCHENG["responder"]),
        (TOWN_HEAD, 0, TOWN_HEAD),
        (TOWN_HEAD, 2, COUNTY_HEAD),
        (VILLAGE_HEAD, 0, VILLAGE_HEAD),
        (VILLAGE_HEAD, 1, DEPUTY),
        (AWAY, 0, AWAY),
        (AWAY, 2, TOWN_HEAD),
    }
    ended = {(c["owner"], c["step"]): (c["state"], c["error"] or "") for c in calls}
    assert ended[(VILLAGE_HEAD, None)][0] == ended[(VILLAGE_HEAD, 0)][0] == "failed"
    assert "busy" in ended[(VILLAGE_HEAD, None)][1], ended
    assert ended[(AWAY, None)][0] == ended[(AWAY, 0)][0] == "failed"
    assert "no answer" in ended[(AWAY, None)][1], ended
    for key in ((CITY_HEAD, None), (COUNTY_HEAD, None), (VILLAGE_HEAD, 1), (TOWN_HEAD, 2)):
        assert ended[key][0] == "delivered", (key, ended[key])
