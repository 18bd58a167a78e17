"""The ``http_voice`` channel against a real HTTP voice-notification gateway: an aiohttp server on
127.0.0.1, in its own thread and event loop, that records every request and answers as scripted.

What comes back by webhook (call results, keys) is tests/test_inbound_voice.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from channels.base import ChannelKind, OutboundMessage, Outcome, Reason, SendResult
from channels.http_voice.channel import HttpVoiceChannel, HttpVoiceConfig
from channels.registry import ChannelConfigError, build_channels
from tests.channel_contract import (
    ChannelContract,
    ChannelFactory,
    assert_no_secret_leaks,
    assert_one_result_each,
    batch_of,
)
from tests.fixtures import Answer, Body, VoiceGateway

TOKEN = "voice-secret-token-0123456789abcdef"
INBOUND_TOKEN = "voice-inbound-token-fedcba9876543210"
T0 = datetime(2026, 7, 29, 2, 0, tzinfo=UTC)
SCRIPT = (
    "这里是济宁市应急管理局。任城区暴雨红色预警。预计未来3小时降雨量将达100毫米以上。"
    "请立即到岗，按预案组织巡查和人员转移。确认收到请按1"
)
# The default menu says no prompt of its own: warnd's scripts end with it.
MENU = {"confirm": "1", "replay": "2"}


@pytest.fixture
def voice_gateway() -> Iterator[VoiceGateway]:
    peer = VoiceGateway()
    peer.start()
    yield peer
    peer.stop()


class StepClock:
    """Time that moves only when the channel sleeps; each sleep is recorded with how many
    requests the gateway had received when it began."""

    def __init__(self, gateway: VoiceGateway | None = None) -> None:
        self.at = T0
        self.gateway = gateway
        self.sleeps: list[tuple[float, int]] = []

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        seen = len(self.gateway.received) if self.gateway is not None else 0
        self.sleeps.append((seconds, seen))
        self.at += timedelta(seconds=max(seconds, 0.0))
        await asyncio.sleep(0)


def make_channel(
    url: str, *, clock: StepClock | None = None, **settings: object
) -> HttpVoiceChannel:
    table: dict[str, object] = {
        "type": "http_voice",
        "url": url,
        "token": TOKEN,
        "inbound_token": INBOUND_TOKEN,
        "rate_per_s": 10_000,
        "window": 20,
    }
    table.update(settings)
    return HttpVoiceChannel(
        "phone", HttpVoiceConfig.model_validate(table), clock=clock or StepClock()
    )


def one(key: int = 1, address: str = "+8613900000001", text: str = SCRIPT) -> OutboundMessage:
    return OutboundMessage(key=key, address=address, text=text)


async def send(channel: HttpVoiceChannel, *messages: OutboundMessage) -> dict[int, SendResult]:
    await channel.start()
    try:
        results = await channel.send(list(messages))
    finally:
        await channel.stop()
    assert_one_result_each(messages, results)
    return {r.key: r for r in results}


# --- the shared contract, per call and batched -------------------------------------------------


class TestHttpVoiceContract(ChannelContract):
    # Call results reach this channel only through warnd's webhook, which applies them (or calls
    # emit()); the channel itself reports nothing (tests/test_inbound_voice.py covers that path).
    expected_events = ()

    @pytest.fixture
    def channel_factory(self, voice_gateway: VoiceGateway) -> ChannelFactory:
        return lambda: make_channel(voice_gateway.url)


class TestHttpVoiceBatchedContract(ChannelContract):
    expected_events = ()

    @pytest.fixture
    def channel_factory(self, voice_gateway: VoiceGateway) -> ChannelFactory:
        return lambda: make_channel(voice_gateway.url, batch_size=10, window=40)


# --- the wire format -------------------------------------------------------------------------


async def test_one_call_is_one_post_with_the_token_the_script_and_the_key_menu(
    voice_gateway: VoiceGateway,
) -> None:
    channel = make_channel(voice_gateway.url, caller="12379", ring_timeout=30, repeats=3)
    results = await send(channel, one(42, "+8613900000004"))
    assert results[42].outcome is Outcome.ACCEPTED
    assert results[42].external_id == "vc-42"
    (request,) = voice_gateway.received
    assert request.authorization == f"Bearer {TOKEN}"
    assert request.content_type == "application/json"
    assert request.body == {
        "to": "+8613900000004",
        "ref": "42",
        "text": SCRIPT,
        "caller": "12379",
        "menu": MENU,
        "ring_timeout": 30,
        "repeats": 3,
    }


async def test_the_defaults_let_the_gateway_choose_the_caller(
    voice_gateway: VoiceGateway,
) -> None:
    await send(make_channel(voice_gateway.url), one())
    body = voice_gateway.received[0].body
    assert "caller" not in body and "audio_url" not in body
    assert (body["menu"], body["ring_timeout"], body["repeats"]) == (MENU, 45, 2)


async def test_the_menu_is_configurable(voice_gateway: VoiceGateway) -> None:
    await send(make_channel(voice_gateway.url, menu_prompt="", replay_key="*"), one())
    assert voice_gateway.received[0].body["menu"] == {"confirm": "1", "replay": "*"}
    voice_gateway.received.clear()
    await send(make_channel(voice_gateway.url, menu_prompt="收到请按1", replay_key=""), one())
    assert voice_gateway.received[0].body["menu"] == {"prompt": "收到请按1", "confirm": "1"}


async def test_an_audio_url_names_the_recording_of_the_script(
    voice_gateway: VoiceGateway,
) -> None:
    channel = make_channel(
        voice_gateway.url, audio_url="https://tts.example.cn/audio/{text_sha256}.wav?ref={ref}"
    )
    await send(channel, one(7))
    body = voice_gateway.received[0].body
    digest = hashlib.sha256(SCRIPT.encode("utf-8")).hexdigest()
    assert body["audio_url"] == f"https://tts.example.cn/audio/{digest}.wav?ref=7"
    assert body["text"] == SCRIPT  # kept, for a gateway that cannot fetch the recording


async def test_an_integer_call_id_is_kept_as_text(voice_gateway: VoiceGateway) -> None:
    voice_gateway.answer(Answer(body={"call_id": 981234}))
    results = await send(make_channel(voice_gateway.url), one())
    assert results[1].external_id == "981234"


async def test_a_batch_goes_in_requests_of_batch_size_sharing_the_menu(
    voice_gateway: VoiceGateway,
) -> None:
    channel = make_channel(voice_gateway.url, batch_size=10, caller="12379")
    batch = batch_of(25, text=SCRIPT)
    results = await send(channel, *batch)
    assert all(r.outcome is Outcome.ACCEPTED for r in results.values())
    assert {results[m.key].external_id for m in batch} == {f"vc-{m.key}" for m in batch}
    assert sorted(len(r.body["calls"]) for r in voice_gateway.received) == [5, 10, 10]
    for request in voice_gateway.received:
        assert request.authorization == f"Bearer {TOKEN}"
        shared = {k: v for k, v in request.body.items() if k != "calls"}
        assert shared == {"caller": "12379", "menu": MENU, "ring_timeout": 45, "repeats": 2}
    calls = [c for r in voice_gateway.received for c in r.body["calls"]]
    assert sorted(calls, key=lambda c: int(c["ref"])) == [
        {"to": m.address, "ref": str(m.key), "text": SCRIPT} for m in batch
    ]


async def test_each_result_of_a_batch_is_its_own_outcome(voice_gateway: VoiceGateway) -> None:
    def mixed(body: Body) -> object:
        refs = [c["ref"] for c in body["calls"]]
        return {
            "results": [
                {"ref": refs[0], "call_id": "vc-a"},
                {"ref": refs[1], "error": "invalid number"},
                {"ref": int(refs[2]), "error": "line busy", "temporary": True},
                {"ref": refs[3]},
                # refs[4] is not mentioned at all
            ]
        }

    voice_gateway.answer(Answer(body=mixed))
    results = await send(make_channel(voice_gateway.url, batch_size=5), *batch_of(5))
    assert (results[1].outcome, results[1].external_id) == (Outcome.ACCEPTED, "vc-a")
    assert (results[2].outcome, results[2].reason) == (Outcome.PERMANENT, Reason.CLIENT)
    assert results[2].detail == "invalid number"
    assert (results[3].outcome, results[3].reason) == (Outcome.TRANSIENT, Reason.SERVER)
    assert (results[4].outcome, results[4].reason) == (Outcome.PERMANENT, Reason.SERVER)
    assert "neither call_id nor error" in results[4].detail
    assert (results[5].outcome, results[5].reason) == (Outcome.PERMANENT, Reason.SERVER)


async def test_the_window_bounds_requests_in_flight(voice_gateway: VoiceGateway) -> None:
    results = await send(make_channel(voice_gateway.url, window=2), *batch_of(12))
    assert all(r.outcome is Outcome.ACCEPTED for r in results.values())
    assert len(voice_gateway.received) == 12
    assert voice_gateway.most_in_flight <= 2


async def test_scripts_no_gateway_could_say_are_refused_without_a_request(
    voice_gateway: VoiceGateway,
) -> None:
    channel = make_channel(voice_gateway.url, max_text=100)
    results = await send(channel, one(1, address="  "), one(2, text="洪" * 101), one(3))
    assert (results[1].outcome, results[1].reason) == (Outcome.PERMANENT, Reason.CLIENT)
    assert (results[2].outcome, results[2].reason) == (Outcome.PERMANENT, Reason.CLIENT)
    assert results[3].outcome is Outcome.ACCEPTED
    assert [r.body["ref"] for r in voice_gateway.received] == ["3"]


# --- how answers become outcomes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "outcome", "reason", "words"),
    [
        (Answer(429), Outcome.TRANSIENT, Reason.RATE_LIMITED, "HTTP 429"),
        (Answer(500, {"error": "ivr down"}), Outcome.TRANSIENT, Reason.SERVER, "ivr down"),
        (Answer(502, raw=b"<html>Bad Gateway</html>"), Outcome.TRANSIENT, Reason.SERVER, "502"),
        (Answer(503), Outcome.TRANSIENT, Reason.SERVER, "HTTP 503"),
        (Answer(408), Outcome.TRANSIENT, Reason.TIMEOUT, "HTTP 408"),
        (Answer(401, {"error": "bad token"}), Outcome.PERMANENT, Reason.AUTH, "bad token"),
        (Answer(403), Outcome.PERMANENT, Reason.AUTH, "HTTP 403"),
        (
            Answer(400, {"message": "callee +861 is not a number"}),
            Outcome.PERMANENT,
            Reason.CLIENT,
            "callee +861 is not a number",
        ),
        (Answer(422, raw=b"script too long"), Outcome.PERMANENT, Reason.CLIENT, "script too long"),
        (Answer(200, {"status": "ok"}), Outcome.PERMANENT, Reason.SERVER, "no call_id"),
        (Answer(200, {"call_id": " "}), Outcome.PERMANENT, Reason.SERVER, "no call_id"),
        (Answer(200, {"call_id": True}), Outcome.PERMANENT, Reason.SERVER, "no call_id"),
        (Answer(200, {"message_id": "x"}), Outcome.PERMANENT, Reason.SERVER, "no call_id"),
        (Answer(202, raw=b"OK"), Outcome.PERMANENT, Reason.SERVER, "not JSON"),
        (
            Answer(200, raw=b" " * (1024 * 1024 + 1)),
            Outcome.PERMANENT,
            Reason.SERVER,
            "larger than",
        ),
        (
            Answer(302, headers={"Location": "http://127.0.0.1:1/elsewhere"}),
            Outcome.PERMANENT,
            Reason.SERVER,
            "unexpected HTTP 302",
        ),
    ],
)
async def test_status_mapping(
    voice_gateway: VoiceGateway, answer: Answer, outcome: Outcome, reason: Reason, words: str
) -> None:
    voice_gateway.answer(answer)
    results = await send(make_channel(voice_gateway.url), one())
    assert (results[1].outcome, results[1].reason) == (outcome, reason)
    assert words in results[1].detail
    assert len(voice_gateway.received) == 1


async def test_a_refused_batch_fails_every_call_in_it(voice_gateway: VoiceGateway) -> None:
    voice_gateway.answer(Answer(401))
    results = await send(make_channel(voice_gateway.url, batch_size=5), *batch_of(5))
    assert {(r.outcome, r.reason) for r in results.values()} == {(Outcome.PERMANENT, Reason.AUTH)}


async def test_a_gateway_that_does_not_answer_in_time_is_a_timeout(
    voice_gateway: VoiceGateway,
) -> None:
    voice_gateway.answer(Answer(hang=True))
    results = await send(make_channel(voice_gateway.url, timeout=0.2), one(1), one(2))
    outcomes = sorted((r.outcome, r.reason) for r in results.values())
    # One request hangs and times out; the other is answered.
    assert (Outcome.TRANSIENT, Reason.TIMEOUT) in outcomes
    assert [r for r in results.values() if r.outcome is Outcome.ACCEPTED]


async def test_a_gateway_nobody_listens_on_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port is free again and nothing listens on it: the connection is refused.
    results = await send(make_channel(f"http://127.0.0.1:{port}/voice"), one())
    assert (results[1].outcome, results[1].reason) == (Outcome.TRANSIENT, Reason.UNREACHABLE)


# --- Retry-After and the rate ----------------------------------------------------------------


async def test_retry_after_pauses_the_next_request(voice_gateway: VoiceGateway) -> None:
    clock = StepClock(voice_gateway)
    channel = make_channel(voice_gateway.url, clock=clock)
    voice_gateway.answer(Answer(429, {"error": "slow down"}, headers={"Retry-After": "7"}))
    await channel.start()
    try:
        first = await channel.send([one(1)])
        assert (first[0].outcome, first[0].reason) == (Outcome.TRANSIENT, Reason.RATE_LIMITED)
        assert "pausing 7 s" in first[0].detail
        assert clock.sleeps == []
        second = await channel.send([one(2)])
        assert second[0].outcome is Outcome.ACCEPTED
    finally:
        await channel.stop()
    # The channel waited the 7 s after the one refused request and before calling again.
    assert clock.sleeps == [(7.0, 1)]
    assert [r.body["ref"] for r in voice_gateway.received] == ["1", "2"]


async def test_a_503_with_a_retry_after_date_pauses_too_and_pauses_are_capped(
    voice_gateway: VoiceGateway,
) -> None:
    clock = StepClock(voice_gateway)
    channel = make_channel(voice_gateway.url, clock=clock, max_pause=30)
    voice_gateway.answer(Answer(503, headers={"Retry-After": "Wed, 29 Jul 2026 03:00:00 GMT"}))
    await channel.start()
    try:
        first = await channel.send([one(1)])
        assert (first[0].outcome, first[0].reason) == (Outcome.TRANSIENT, Reason.SERVER)
        await channel.send([one(2)])
    finally:
        await channel.stop()
    assert clock.sleeps == [(30.0, 1)]  # an hour asked for, 30 s allowed


async def test_a_429_without_retry_after_pauses_a_second(voice_gateway: VoiceGateway) -> None:
    clock = StepClock(voice_gateway)
    channel = make_channel(voice_gateway.url, clock=clock)
    voice_gateway.answer(Answer(429))
    await channel.start()
    try:
        await channel.send([one(1)])
        await channel.send([one(2)])
    finally:
        await channel.stop()
    assert clock.sleeps == [(1.0, 1)]


async def test_the_rate_paces_calls(voice_gateway: VoiceGateway) -> None:
    clock = StepClock(voice_gateway)
    channel = make_channel(voice_gateway.url, clock=clock, rate_per_s=2, window=1)
    results = await send(channel, *batch_of(4))
    assert all(r.outcome is Outcome.ACCEPTED for r in results.values())
    # A burst of one second's worth (2 calls) goes at once; each further one waits 0.5 s.
    assert [seconds for seconds, _ in clock.sleeps] == [0.5, 0.5]


# --- lifecycle, configuration and secrets ----------------------------------------------------


async def test_calling_before_start_is_refused_loudly(voice_gateway: VoiceGateway) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await make_channel(voice_gateway.url).send([one()])


def test_the_registry_builds_it_from_a_config_table_through_its_entry_point(
    voice_gateway: VoiceGateway, tmp_path: Path
) -> None:
    secret = tmp_path / "voice.token"
    secret.write_text(f"{TOKEN}\n", "utf-8")
    channels = build_channels(
        {"phone": {"type": "http_voice", "url": voice_gateway.url, "token_file": str(secret)}}
    )
    channel = channels["phone"]
    assert isinstance(channel, HttpVoiceChannel)
    assert channel.kind is ChannelKind.VOICE and not channel.simulated
    assert channel.config.token.get_secret_value() == TOKEN
    assert channel.config.inbound_token is None
    limits = channel.limits
    assert (limits.rate_per_s, limits.window, limits.max_text) == (10.0, 20, 500)


def test_a_bad_config_names_the_keys_and_never_the_token() -> None:
    with pytest.raises(ChannelConfigError) as caught:
        build_channels(
            {
                "phone": {
                    "type": "http_voice",
                    "url": TOKEN,
                    "token": 5,
                    "batch_size": 0,
                    "timeout": -1,
                    "ring_timeout": 1,
                    "repeats": 9,
                    "replay_key": "1",  # "1" confirms: it cannot also replay
                    "caller": "call-me",
                    "inbound_token": "guessable",  # too short to be a secret
                }
            }
        )
    text = str(caught.value)
    for key in (
        "url",
        "token",
        "batch_size",
        "timeout",
        "ring_timeout",
        "repeats",
        "replay_key",
        "caller",
        "inbound_token",
    ):
        assert f"channels.phone.{key}:" in text
    assert TOKEN not in text and "guessable" not in text


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("https://tts.example.cn/{delivery}.wav", "may name only {ref} and {text_sha256}"),
        ("https://tts.example.cn/{ref:08d}.wav", "without a format"),
        ("https://tts.example.cn/{ref!r}.wav", "without a format"),
        ("https://tts.example.cn/{}.wav", "may name only"),
        ("https://tts.example.cn/{ref.real}.wav", "may name only"),
        ("https://tts.example.cn/{ref.wav", "unbalanced braces"),
        ("ftp://tts.example.cn/{ref}.wav", "does not make an http or https URL"),
        ("{ref}", "does not make an http or https URL"),
    ],
)
def test_an_audio_url_template_that_cannot_work_is_refused(template: str, words: str) -> None:
    with pytest.raises(ChannelConfigError) as caught:
        build_channels(
            {
                "phone": {
                    "type": "http_voice",
                    "url": "http://x.cn/",
                    "token": TOKEN,
                    "audio_url": template,
                }
            }
        )
    text = str(caught.value)
    assert "channels.phone.audio_url:" in text and words in text
    assert "tts.example.cn" not in text  # the value itself is never quoted


async def test_tokens_never_show_in_reprs_results_or_logs(
    voice_gateway: VoiceGateway, caplog: pytest.LogCaptureFixture
) -> None:
    channel = make_channel(voice_gateway.url)
    assert isinstance(channel.config.inbound_token, SecretStr)
    assert_no_secret_leaks(channel)
    voice_gateway.answer(
        Answer(401, {"error": "bad token"}),
        Answer(500, raw=b"oops"),
        Answer(hang=True),
    )
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        results = await send(
            make_channel(voice_gateway.url, timeout=0.2), one(1), one(2), one(3), one(4)
        )
    shown: list[Any] = [repr(channel), str(channel.config), channel.config.model_dump_json()]
    shown += [caplog.text, json.dumps(events, default=str)]
    shown += [f"{r.detail} {r.external_id}" for r in results.values()]
    for text in shown:
        assert TOKEN not in text
        assert INBOUND_TOKEN not in text
    assert {r.outcome for r in results.values()} >= {Outcome.PERMANENT, Outcome.TRANSIENT}
