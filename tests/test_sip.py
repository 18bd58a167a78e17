"""The sip channel against a real far end: sipp on 127.0.0.1 playing the scenarios in tests/sip/
(answer and press keys, refuse, ring out, hang up), a worker killed mid-call, and the shared
channel contract. tests/test_sip_baresip.py has the independent phone that records what it heard.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from channels.base import CallResult, OutboundMessage, Outcome, Reason
from channels.registry import ChannelConfigError
from channels.sip.channel import SipChannel
from channels.sip.config import SipConfig
from channels.sip.engine import EngineStartError
from tests.channel_contract import (
    ChannelContract,
    ChannelFactory,
    assert_one_result_each,
    collect_events,
)
from tests.peers import (
    Sipp,
    free_udp_port,
    require,
    require_pjsua2,
    running_sipp,
    wav_seconds,
)
from tests.waiting import until

# About nine seconds of speech with its pads: long enough for keys pressed into its middle.
PROMPT = "暴雨红色预警。确认收到请按1，重听请按2。"
# About two seconds: for the tests that wait for every repetition.
SHORT = "请按1。"
NUMBER = "+8613800000001"
PASSWORD = "sip-test-secret"  # what tests/sip/register_digest.xml accepts


@pytest.fixture(scope="module")
def tts_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One speech cache for the module: each text is rendered once for all the tests."""
    return tmp_path_factory.mktemp("tts")


@pytest.fixture
def speech() -> None:
    """What every call needs: PJSIP, and the programs that make its audio."""
    require_pjsua2()
    require("espeak-ng", "sox")


@pytest.fixture
def peers(speech: None) -> None:
    """And sipp as the far end."""
    require("sipp")


def make_channel(proxy: str, tts_cache: Path, **settings: object) -> SipChannel:
    table: dict[str, object] = {
        "type": "sip",
        "proxy": proxy,
        "from_number": "12379",
        "local_address": "127.0.0.1",
        "max_calls": 4,
        "calls_per_s": 100,
        "ring_timeout": 10,
        "repeat_prompt": 1,
        "repeat_pause": 0.5,
        "key_wait": 1,
        "max_queue_wait_s": 20,
        "tts": {"cache_dir": str(tts_cache)},
    }
    table.update(settings)
    return SipChannel("voice", SipConfig.model_validate(table))


async def one_call(
    channel: SipChannel, text: str = PROMPT, *, within: float = 30
) -> tuple[str, CallResult]:
    """Place one call; its external id and the CallResult that ends it."""
    message = OutboundMessage(key=1, address=NUMBER, text=text)
    (result,) = await channel.send([message])
    assert result.outcome is Outcome.ACCEPTED, result
    assert result.external_id
    (event,) = await collect_events(channel, 1, within=within)
    assert isinstance(event, CallResult)
    assert event.external_id == result.external_id
    return result.external_id, event


@pytest.fixture
async def started(
    request: pytest.FixtureRequest, tts_cache: Path, tmp_path: Path, peers: None
) -> AsyncIterator[tuple[SipChannel, Sipp]]:
    """A started channel calling a sipp that plays a scenario: ``request.param`` is (scenario
    file, channel settings), given with :func:`scenario`."""
    scenario, settings = request.param
    presses = settings.pop("presses", ())
    tcp = settings.get("transport") == "tcp"
    async with running_sipp(scenario, tmp_path / "sipp", presses=presses, tcp=tcp) as sipp:
        channel = make_channel(sipp.proxy, tts_cache, **settings)
        await channel.start()
        try:
            yield channel, sipp
        finally:
            await channel.stop()


def trunk(channel: SipChannel) -> dict[str, object]:
    links = channel.health()["links"]
    assert isinstance(links, dict)
    facts = links["trunk"]
    assert isinstance(facts, dict)
    return facts


def scenario(file: str, **settings: object) -> pytest.MarkDecorator:
    """Run the test with ``started``: sipp playing ``file``, the channel with ``settings``."""
    return pytest.mark.parametrize("started", [(file, settings)], indirect=True, ids=[file])


def scenarios(file: str, *variants: dict[str, object]) -> pytest.MarkDecorator:
    """Run the test once per variant of the channel's settings, against sipp playing ``file``."""
    return pytest.mark.parametrize(
        "started",
        [(file, dict(variant)) for variant in variants],
        indirect=True,
        ids=[str(variant.get("transport", "udp")) for variant in variants],
    )


# --- the far end answers -----------------------------------------------------------------------


@scenarios("answer_press_1.xml", {}, {"transport": "tcp"})
async def test_answered_and_1_pressed_acknowledges(started: tuple[SipChannel, Sipp]) -> None:
    channel, sipp = started
    _, result = await one_call(channel)
    assert (result.answered, result.keys) == (True, "1"), sipp.errors()
    assert result.cause == "answered, key 1 (prompt said once)"
    assert result.at.tzinfo is not None
    await until(lambda: trunk(channel)["in_flight"] == 0, what="the call to be over")
    facts = trunk(channel)
    assert (facts["placed"], facts["answered"], facts["acknowledged"]) == (1, 1, 1)
    assert facts["bound"] is True
    assert facts["registered"] is None, "no registrar configured"


# "2" one second into the prompt, then "1" two and a half seconds later: still in the prompt's
# second saying only if "2" started it again (the prompt is about 9 s long).
@scenario("answer_press_2_then_1.xml", presses=[("2", 1.0), ("1", 2.5)])
async def test_2_says_the_prompt_again_and_then_1_acknowledges(
    started: tuple[SipChannel, Sipp],
) -> None:
    channel, sipp = started
    _, result = await one_call(channel)
    assert (result.answered, result.keys) == (True, "21"), sipp.errors()
    assert result.cause == "answered, key 1 (prompt said 2 times)"


@scenario("answer_no_key.xml", repeat_prompt=2, repeat_pause=0.5, key_wait=1)
async def test_answered_without_a_key_hears_the_prompt_repeat_prompt_times(
    started: tuple[SipChannel, Sipp], tts_cache: Path
) -> None:
    channel, sipp = started
    prompt = wav_seconds(await channel.speech.audio(SHORT))
    began = time.monotonic()
    _, result = await one_call(channel, SHORT)
    took = time.monotonic() - began
    assert (result.answered, result.keys) == (True, ""), sipp.errors()
    assert result.cause == "answered, no key (prompt said 2 times)"
    # Two sayings, the pause between them and the wait for a key, then the hang-up.
    assert took >= 2 * prompt + 0.5 + 1 - 0.2, (took, prompt)
    assert trunk(channel)["no_key"] == 1


@scenario("answer_hang_up.xml")
async def test_the_callee_hanging_up_mid_prompt(started: tuple[SipChannel, Sipp]) -> None:
    channel, sipp = started
    _, result = await one_call(channel)
    assert (result.answered, result.keys) == (True, ""), sipp.errors()
    assert result.cause == "hung up during the prompt (play 1)"
    assert trunk(channel)["hung_up"] == 1


@scenario("answer_info_1.xml", dtmf="both")
async def test_keys_may_come_as_sip_info_when_configured(started: tuple[SipChannel, Sipp]) -> None:
    channel, sipp = started
    _, result = await one_call(channel)
    assert (result.answered, result.keys) == (True, "1"), sipp.errors()


@scenario("answer_info_1.xml", key_wait=0.5)
async def test_sip_info_keys_are_ignored_unless_configured(
    started: tuple[SipChannel, Sipp],
) -> None:
    channel, _ = started
    _, result = await one_call(channel, SHORT)
    assert (result.answered, result.keys) == (True, "")
    assert result.cause == "answered, no key (prompt said once)"


# --- the far end does not answer ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "cause", "counter"),
    [
        ("busy_486.xml", "busy: 486 Busy Here", "busy"),
        ("decline_603.xml", "declined: 603 Decline", "declined"),
        ("unavailable_503.xml", "unreachable: 503 Service Unavailable", "unreachable"),
    ],
)
async def test_refusals_come_back_with_their_status(
    scenario: str, cause: str, counter: str, tts_cache: Path, tmp_path: Path
) -> None:
    require_pjsua2()
    require("sipp", "espeak-ng", "sox")
    async with running_sipp(scenario, tmp_path / "sipp") as sipp:
        channel = make_channel(sipp.proxy, tts_cache)
        await channel.start()
        try:
            _, result = await one_call(channel)
            assert (result.answered, result.keys, result.cause) == (False, "", cause)
            facts = trunk(channel)
            assert (facts[counter], facts["answered"]) == (1, 0)
        finally:
            await channel.stop()


@scenario("ring_no_answer.xml", ring_timeout=5)
async def test_a_phone_that_rings_out_is_no_answer(started: tuple[SipChannel, Sipp]) -> None:
    channel, sipp = started
    began = time.monotonic()
    _, result = await one_call(channel)
    assert (result.answered, result.cause) == (False, "no answer: rang 5 s"), sipp.errors()
    assert 5 <= time.monotonic() - began < 9
    assert trunk(channel)["no_answer"] == 1


async def test_a_trunk_that_never_answers_is_unreachable(tts_cache: Path, speech: None) -> None:
    channel = make_channel(f"127.0.0.1:{free_udp_port()}", tts_cache, ring_timeout=5)
    await channel.start()
    try:
        _, result = await one_call(channel)
        assert (result.answered, result.cause) == (False, "unreachable: no ringing within 5 s")
    finally:
        await channel.stop()


# --- sending -----------------------------------------------------------------------------------


@scenario("answer_press_1.xml", max_calls=2, max_queue_wait_s=30)
async def test_calls_beyond_the_free_lines_wait_for_one(started: tuple[SipChannel, Sipp]) -> None:
    channel, sipp = started
    batch = [OutboundMessage(key=k, address=f"+86138000000{k:02d}", text=PROMPT) for k in range(5)]
    results = await channel.send(batch)
    assert_one_result_each(batch, results)
    assert all(r.outcome is Outcome.ACCEPTED for r in results), results
    events = await collect_events(channel, 5, within=40)
    assert all(isinstance(e, CallResult) and e.keys == "1" for e in events), sipp.errors()
    assert {e.external_id for e in events if isinstance(e, CallResult)} == {
        r.external_id for r in results
    }


@scenario("answer_press_1.xml", max_calls=1, max_queue_wait_s=30)
async def test_a_line_takes_one_call_after_another(started: tuple[SipChannel, Sipp]) -> None:
    # One line, so every call reuses the PJSIP call slot of the one before it: the worker once
    # kept the ended call's object alive a loop too long, and freeing it hung up the next call
    # right after its INVITE (found by ``warnd bench voice``).
    channel, sipp = started
    batch = [OutboundMessage(key=k, address=f"+86138000000{k:02d}", text=SHORT) for k in range(3)]
    results = await channel.send(batch)
    assert all(r.outcome is Outcome.ACCEPTED for r in results), results
    events = await collect_events(channel, 3, within=30)
    assert [(e.answered, e.keys) for e in events if isinstance(e, CallResult)] == [
        (True, "1")
    ] * 3, (events, sipp.errors())


@scenario("answer_press_1.xml", max_calls=1, max_queue_wait_s=1)
async def test_a_call_that_finds_no_line_in_time_goes_back_unsent(
    started: tuple[SipChannel, Sipp],
) -> None:
    channel, _ = started
    batch = [OutboundMessage(key=k, address=NUMBER, text=PROMPT) for k in (1, 2)]
    first, second = await channel.send(batch)
    assert first.outcome is Outcome.ACCEPTED
    assert (second.outcome, second.reason) == (Outcome.TRANSIENT, Reason.RATE_LIMITED)
    assert second.detail == "all 1 lines busy"


@scenario("answer_press_1.xml")
async def test_what_cannot_be_called_is_refused_before_dialling(
    started: tuple[SipChannel, Sipp],
) -> None:
    channel, _ = started
    results = await channel.send(
        [
            OutboundMessage(key=1, address="", text=PROMPT),
            OutboundMessage(key=2, address="sip:evil@example.com", text=PROMPT),
            OutboundMessage(key=3, address=NUMBER, text="洪" * 501),
        ]
    )
    assert [(r.outcome, r.reason) for r in results] == [(Outcome.PERMANENT, Reason.CLIENT)] * 3
    assert results[1].detail == "not a phone number"
    assert trunk(channel)["placed"] == 0


async def test_prepare_renders_ahead_so_calls_find_their_audio(
    tts_cache: Path, tmp_path: Path, speech: None
) -> None:
    channel = make_channel("127.0.0.1:5060", tmp_path / "fresh-cache")
    await channel.prepare([PROMPT, SHORT, PROMPT])
    assert channel.speech.rendered == 2
    await channel.speech.audio(PROMPT)
    await channel.speech.audio(SHORT)
    assert channel.speech.rendered == 2  # both found on disk, nothing rendered again
    await channel.stop()


# --- the engine dies ---------------------------------------------------------------------------


@scenario("answer_no_key.xml", repeat_prompt=3)
async def test_a_worker_killed_mid_call_loses_no_call_and_comes_back(
    started: tuple[SipChannel, Sipp],
) -> None:
    channel, _ = started
    (pid,) = channel.engine_pids()
    (placed,) = await channel.send([OutboundMessage(key=1, address=NUMBER, text=PROMPT)])
    assert placed.outcome is Outcome.ACCEPTED
    await until(lambda: trunk(channel)["answered"] == 1, what="the call to be answered")
    os.kill(pid, signal.SIGKILL)
    (lost,) = await collect_events(channel, 1, within=10)
    assert isinstance(lost, CallResult)
    assert lost.external_id == placed.external_id
    assert (lost.answered, lost.keys) == (False, "")
    assert lost.cause == "engine lost: worker 0 was killed (SIGKILL) (answered, no key yet)"
    await until(lambda: trunk(channel)["workers_up"] == 1, what="a new worker", within=15)
    facts = trunk(channel)
    assert (facts["lost"], facts["restarts"], facts["in_flight"]) == (1, 1, 0)
    assert channel.engine_pids() != [pid]
    # The new worker calls as the old one did (this sipp answers and waits: hang up by stop).
    (again,) = await channel.send([OutboundMessage(key=2, address=NUMBER, text=SHORT)])
    assert again.outcome is Outcome.ACCEPTED
    await until(lambda: trunk(channel)["answered"] == 2, what="the second call to be answered")
    await channel.stop()
    (stopped,) = await collect_events(channel, 1, within=5)
    assert isinstance(stopped, CallResult)
    assert (stopped.external_id, stopped.cause) == (
        again.external_id,
        "stopped: the channel stopped during the call",
    )


@scenario("answer_no_key.xml", max_calls=8, repeat_prompt=3)
async def test_only_the_calls_of_the_killed_worker_are_lost(
    started: tuple[SipChannel, Sipp],
) -> None:
    channel, _ = started
    first, second = channel.engine_pids()
    batch = [OutboundMessage(key=k, address=f"+86138000000{k:02d}", text=PROMPT) for k in range(4)]
    placed = await channel.send(batch)
    assert all(r.outcome is Outcome.ACCEPTED for r in placed)
    await until(lambda: trunk(channel)["answered"] == 4, what="four calls to be answered")
    os.kill(first, signal.SIGKILL)
    lost = await collect_events(channel, 2, within=10)
    assert all(
        isinstance(e, CallResult) and e.cause.startswith("engine lost: worker 0 was killed")
        for e in lost
    ), lost
    # The least busy worker took every other call: the other two go on, on the other worker.
    assert trunk(channel)["in_flight"] == 2
    assert second in channel.engine_pids()
    await channel.stop()
    stopped = await collect_events(channel, 2, within=5)
    assert all(isinstance(e, CallResult) and e.cause.startswith("stopped") for e in stopped)
    ids = {e.external_id for e in [*lost, *stopped] if isinstance(e, CallResult)}
    assert ids == {r.external_id for r in placed}, "every call is reported exactly once"


@scenario("answer_no_key.xml", max_calls=1, repeat_prompt=3)
async def test_a_worker_that_falls_silent_is_killed_and_its_call_reported(
    started: tuple[SipChannel, Sipp],
) -> None:
    channel, _ = started
    (pid,) = channel.engine_pids()
    (placed,) = await channel.send([OutboundMessage(key=1, address=NUMBER, text=PROMPT)])
    await until(lambda: trunk(channel)["answered"] == 1, what="the call to be answered")
    os.kill(pid, signal.SIGSTOP)  # alive, but stuck: it says nothing any more
    (lost,) = await collect_events(channel, 1, within=20)
    assert isinstance(lost, CallResult)
    assert lost.external_id == placed.external_id
    assert lost.cause == "engine lost: worker 0 stopped answering (answered, no key yet)"
    await until(lambda: trunk(channel)["workers_up"] == 1, what="a new worker", within=15)
    assert pid not in channel.engine_pids()


# --- start-up ----------------------------------------------------------------------------------


async def test_a_worker_that_cannot_set_up_stops_the_start_with_pjsips_words(
    tts_cache: Path, speech: None
) -> None:
    # An address of TEST-NET-1, which no interface of this machine has: binding it fails.
    channel = make_channel("127.0.0.1:5060", tts_cache, local_address="192.0.2.123")
    with pytest.raises(EngineStartError) as raised:
        await channel.start()
    assert isinstance(raised.value, ChannelConfigError)
    assert str(raised.value).startswith("the SIP engine cannot start: ")
    assert "Cannot assign requested address" in str(raised.value)
    assert channel.engine_pids() == []


async def test_registration_with_digest_credentials(
    tts_cache: Path, tmp_path: Path, peers: None
) -> None:
    async with running_sipp("register_digest.xml", tmp_path / "sipp") as sipp:
        channel = make_channel(
            sipp.proxy, tts_cache, registrar=sipp.proxy, username="warnd", password=PASSWORD
        )
        await channel.start()
        try:
            facts = trunk(channel)
            assert (facts["registered"], facts["registration"]) == (True, "200 OK"), sipp.errors()
            assert channel.health()["ready"] is True
        finally:
            await channel.stop()


async def test_a_registrar_refusing_the_password_stops_the_start(
    tts_cache: Path, tmp_path: Path, peers: None
) -> None:
    async with running_sipp("register_digest.xml", tmp_path / "sipp") as sipp:
        channel = make_channel(
            sipp.proxy, tts_cache, registrar=sipp.proxy, username="warnd", password="wrong"
        )
        with pytest.raises(EngineStartError) as raised:
            await channel.start()
    assert str(raised.value) == (
        "the registrar refused us (403 Forbidden): check registrar, username and password"
    )
    assert "wrong" not in str(raised.value)


async def test_a_registrar_that_does_not_answer_leaves_the_channel_up_but_not_ready(
    tts_cache: Path, monkeypatch: pytest.MonkeyPatch, speech: None
) -> None:
    monkeypatch.setattr("channels.sip.engine.REGISTER_WAIT_S", 0.5)
    silent = f"127.0.0.1:{free_udp_port()}"
    channel = make_channel(silent, tts_cache, registrar=silent, username="warnd", password="x")
    await channel.start()
    try:
        facts = trunk(channel)
        assert (facts["registered"], facts["workers_up"], facts["bound"]) == (False, 1, False)
        assert channel.health()["ready"] is False
    finally:
        await channel.stop()


# --- the shared contract -----------------------------------------------------------------------


class TestSipContract(ChannelContract):
    expected_events = (CallResult,)
    event_timeout = 30.0

    @pytest.fixture
    async def channel_factory(
        self, tts_cache: Path, tmp_path: Path, peers: None
    ) -> AsyncIterator[ChannelFactory]:
        async with running_sipp("answer_press_1.xml", tmp_path / "sipp") as sipp:
            yield lambda: make_channel(
                sipp.proxy, tts_cache, max_calls=8, username="warnd", password=PASSWORD
            )
