"""The ``http_sms`` channel against a real HTTP gateway: an aiohttp server on 127.0.0.1 that
records every request and answers as scripted.

The gateway runs in its own thread and event loop, as a real peer would run in its own process:
its connection handlers never mix with the tasks of the channel under test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from channels.base import ChannelKind, OutboundMessage, Outcome, Reason
from channels.http_gateway import retry_after_seconds
from channels.http_sms.channel import HttpSmsChannel, HttpSmsConfig
from channels.registry import ChannelConfigError, build_channels
from tests.channel_contract import (
    WARNING_TEXT,
    ChannelContract,
    ChannelFactory,
    assert_no_secret_leaks,
    assert_one_result_each,
    batch_of,
)
from tests.fixtures import Answer, Body, Gateway

TOKEN = "gw-secret-token-0123456789abcdef"
INBOUND_TOKEN = "gw-inbound-token-fedcba9876543210"
T0 = datetime(2026, 7, 29, 2, 0, tzinfo=UTC)


class StepClock:
    """Time that moves only when the channel sleeps; each sleep is recorded with how many
    requests the gateway had received when it began."""

    def __init__(self, gateway: Gateway | None = None) -> None:
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


def make_channel(url: str, *, clock: StepClock | None = None, **settings: object) -> HttpSmsChannel:
    table: dict[str, object] = {
        "type": "http_sms",
        "url": url,
        "token": TOKEN,
        "inbound_token": INBOUND_TOKEN,
        "rate_per_s": 10_000,
        "window": 20,
    }
    table.update(settings)
    return HttpSmsChannel("gw", HttpSmsConfig.model_validate(table), clock=clock or StepClock())


def one(key: int = 1, address: str = "+8613900000001", text: str = WARNING_TEXT) -> OutboundMessage:
    return OutboundMessage(key=key, address=address, text=text)


async def send(channel: HttpSmsChannel, *messages: OutboundMessage) -> dict[int, Any]:
    await channel.start()
    try:
        results = await channel.send(list(messages))
    finally:
        await channel.stop()
    assert_one_result_each(messages, results)
    return {r.key: r for r in results}


# --- the shared contract, per message and batched ---------------------------------------------


class TestHttpSmsContract(ChannelContract):
    # Replies and receipts reach this channel only through warnd's webhook, which calls emit();
    # the channel itself reports nothing (tests/test_inbound_sms.py covers that path).
    expected_events = ()

    @pytest.fixture
    def channel_factory(self, gateway: Gateway) -> ChannelFactory:
        return lambda: make_channel(gateway.url)


class TestHttpSmsBatchedContract(ChannelContract):
    expected_events = ()

    @pytest.fixture
    def channel_factory(self, gateway: Gateway) -> ChannelFactory:
        return lambda: make_channel(gateway.url, batch_size=10, window=40)


# --- the wire format -------------------------------------------------------------------------


async def test_one_message_is_one_post_with_the_token_and_the_gateways_id(
    gateway: Gateway,
) -> None:
    channel = make_channel(gateway.url, sender_id="12379")
    results = await send(channel, one(42, "+8613900000004", "暴雨红色预警，收到请回复1"))
    assert results[42].outcome is Outcome.ACCEPTED
    assert results[42].external_id == "gw-42"
    (request,) = gateway.received
    assert request.authorization == f"Bearer {TOKEN}"
    assert request.content_type == "application/json"
    assert request.body == {
        "to": "+8613900000004",
        "text": "暴雨红色预警，收到请回复1",
        "ref": "42",
        "from": "12379",
    }


async def test_without_a_sender_id_the_gateway_decides(gateway: Gateway) -> None:
    await send(make_channel(gateway.url), one())
    assert "from" not in gateway.received[0].body


async def test_an_integer_message_id_is_kept_as_text(gateway: Gateway) -> None:
    gateway.answer(Answer(body={"message_id": 981234}))
    results = await send(make_channel(gateway.url), one())
    assert results[1].external_id == "981234"


async def test_a_batch_goes_in_requests_of_batch_size(gateway: Gateway) -> None:
    channel = make_channel(gateway.url, batch_size=10, sender_id="12379")
    batch = batch_of(25)
    results = await send(channel, *batch)
    assert all(r.outcome is Outcome.ACCEPTED for r in results.values())
    assert {results[m.key].external_id for m in batch} == {f"gw-{m.key}" for m in batch}
    sizes = sorted(len(r.body["messages"]) for r in gateway.received)
    assert sizes == [5, 10, 10]
    for request in gateway.received:
        assert request.authorization == f"Bearer {TOKEN}"
        assert request.body["from"] == "12379"
    sent = [m for r in gateway.received for m in r.body["messages"]]
    assert sorted(sent, key=lambda m: int(m["ref"])) == [
        {"to": m.address, "text": m.text, "ref": str(m.key)} for m in batch
    ]


async def test_each_result_of_a_batch_is_its_own_outcome(gateway: Gateway) -> None:
    def mixed(body: Body) -> object:
        refs = [m["ref"] for m in body["messages"]]
        return {
            "results": [
                {"ref": refs[0], "message_id": "gw-a"},
                {"ref": refs[1], "error": "invalid number"},
                {"ref": int(refs[2]), "error": "queue full", "temporary": True},
                {"ref": refs[3]},
                # refs[4] is not mentioned at all
            ]
        }

    gateway.answer(Answer(body=mixed))
    results = await send(make_channel(gateway.url, batch_size=5), *batch_of(5))
    assert (results[1].outcome, results[1].external_id) == (Outcome.ACCEPTED, "gw-a")
    assert (results[2].outcome, results[2].reason) == (Outcome.PERMANENT, Reason.CLIENT)
    assert results[2].detail == "invalid number"
    assert (results[3].outcome, results[3].reason) == (Outcome.TRANSIENT, Reason.SERVER)
    assert (results[4].outcome, results[4].reason) == (Outcome.PERMANENT, Reason.SERVER)
    assert (results[5].outcome, results[5].reason) == (Outcome.PERMANENT, Reason.SERVER)


async def test_the_window_bounds_requests_in_flight(gateway: Gateway) -> None:
    channel = make_channel(gateway.url, window=2)
    results = await send(channel, *batch_of(12))
    assert all(r.outcome is Outcome.ACCEPTED for r in results.values())
    assert len(gateway.received) == 12
    assert gateway.most_in_flight <= 2


async def test_texts_no_gateway_could_carry_are_refused_without_a_request(
    gateway: Gateway,
) -> None:
    channel = make_channel(gateway.url, max_text=100)
    results = await send(channel, one(1, address="  "), one(2, text="洪" * 101), one(3))
    assert (results[1].outcome, results[1].reason) == (Outcome.PERMANENT, Reason.CLIENT)
    assert (results[2].outcome, results[2].reason) == (Outcome.PERMANENT, Reason.CLIENT)
    assert results[3].outcome is Outcome.ACCEPTED
    assert [r.body["ref"] for r in gateway.received] == ["3"]


# --- how answers become outcomes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "outcome", "reason", "words"),
    [
        (Answer(429), Outcome.TRANSIENT, Reason.RATE_LIMITED, "HTTP 429"),
        (Answer(500, {"error": "db down"}), Outcome.TRANSIENT, Reason.SERVER, "db down"),
        (Answer(502, raw=b"<html>Bad Gateway</html>"), Outcome.TRANSIENT, Reason.SERVER, "502"),
        (Answer(503), Outcome.TRANSIENT, Reason.SERVER, "HTTP 503"),
        (Answer(408), Outcome.TRANSIENT, Reason.TIMEOUT, "HTTP 408"),
        (Answer(401, {"error": "bad token"}), Outcome.PERMANENT, Reason.AUTH, "bad token"),
        (Answer(403), Outcome.PERMANENT, Reason.AUTH, "HTTP 403"),
        (
            Answer(400, {"detail": "number +861 is not valid"}),
            Outcome.PERMANENT,
            Reason.CLIENT,
            "number +861 is not valid",
        ),
        (Answer(422, raw=b"text too long"), Outcome.PERMANENT, Reason.CLIENT, "text too long"),
        (Answer(200, {"status": "ok"}), Outcome.PERMANENT, Reason.SERVER, "no message_id"),
        (Answer(200, {"message_id": ""}), Outcome.PERMANENT, Reason.SERVER, "no message_id"),
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
    gateway: Gateway, answer: Answer, outcome: Outcome, reason: Reason, words: str
) -> None:
    gateway.answer(answer)
    results = await send(make_channel(gateway.url), one())
    assert (results[1].outcome, results[1].reason) == (outcome, reason)
    assert words in results[1].detail
    assert len(gateway.received) == 1


async def test_a_refused_batch_fails_every_message_in_it(gateway: Gateway) -> None:
    gateway.answer(Answer(401))
    results = await send(make_channel(gateway.url, batch_size=5), *batch_of(5))
    assert {(r.outcome, r.reason) for r in results.values()} == {(Outcome.PERMANENT, Reason.AUTH)}


async def test_a_gateway_that_does_not_answer_in_time_is_a_timeout(gateway: Gateway) -> None:
    gateway.answer(Answer(hang=True))
    results = await send(make_channel(gateway.url, timeout=0.2), one(1), one(2))
    outcomes = sorted((r.outcome, r.reason) for r in results.values())
    # One request hangs and times out; the other is answered.
    assert (Outcome.TRANSIENT, Reason.TIMEOUT) in outcomes
    assert [r for r in results.values() if r.outcome is Outcome.ACCEPTED]


async def test_a_gateway_nobody_listens_on_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port is free again and nothing listens on it: the connection is refused.
    results = await send(make_channel(f"http://127.0.0.1:{port}/sms"), one())
    assert (results[1].outcome, results[1].reason) == (Outcome.TRANSIENT, Reason.UNREACHABLE)


# --- Retry-After -----------------------------------------------------------------------------


async def test_retry_after_pauses_the_next_request(gateway: Gateway) -> None:
    clock = StepClock(gateway)
    channel = make_channel(gateway.url, clock=clock)
    gateway.answer(Answer(429, {"error": "slow down"}, headers={"Retry-After": "7"}))
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
    # The channel waited the 7 s after the one refused request and before sending again.
    assert clock.sleeps == [(7.0, 1)]
    assert [r.body["ref"] for r in gateway.received] == ["1", "2"]


async def test_a_503_with_retry_after_pauses_too_and_pauses_are_capped(
    gateway: Gateway,
) -> None:
    clock = StepClock(gateway)
    channel = make_channel(gateway.url, clock=clock, max_pause=30)
    gateway.answer(Answer(503, headers={"Retry-After": "3600"}))
    await channel.start()
    try:
        first = await channel.send([one(1)])
        assert (first[0].outcome, first[0].reason) == (Outcome.TRANSIENT, Reason.SERVER)
        await channel.send([one(2)])
    finally:
        await channel.stop()
    assert clock.sleeps == [(30.0, 1)]


async def test_a_429_without_retry_after_pauses_a_second(gateway: Gateway) -> None:
    clock = StepClock(gateway)
    channel = make_channel(gateway.url, clock=clock)
    gateway.answer(Answer(429))
    await channel.start()
    try:
        await channel.send([one(1)])
        await channel.send([one(2)])
    finally:
        await channel.stop()
    assert clock.sleeps == [(1.0, 1)]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("120", T0) == 120.0
    assert retry_after_seconds(" 5 ", T0) == 5.0
    assert retry_after_seconds("Wed, 29 Jul 2026 02:00:30 GMT", T0) == 30.0
    assert retry_after_seconds("Wed, 29 Jul 2026 01:00:00 GMT", T0) == 0.0  # already past
    assert retry_after_seconds("soon", T0) is None
    assert retry_after_seconds(None, T0) is None


async def test_the_rate_paces_requests(gateway: Gateway) -> None:
    clock = StepClock(gateway)
    channel = make_channel(gateway.url, clock=clock, rate_per_s=2, window=1)
    results = await send(channel, *batch_of(4))
    assert all(r.outcome is Outcome.ACCEPTED for r in results.values())
    # A burst of one second's worth (2 messages) goes at once; each further one waits 0.5 s.
    assert [seconds for seconds, _ in clock.sleeps] == [0.5, 0.5]


# --- lifecycle, configuration and secrets ----------------------------------------------------


async def test_sending_before_start_is_refused_loudly(gateway: Gateway) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await make_channel(gateway.url).send([one()])


def test_the_registry_builds_it_from_a_config_table(gateway: Gateway) -> None:
    channels = build_channels(
        {"gw": {"type": "http_sms", "url": gateway.url, "token": TOKEN, "batch_size": 50}}
    )
    channel = channels["gw"]
    assert isinstance(channel, HttpSmsChannel)
    assert channel.kind is ChannelKind.SMS and not channel.simulated
    assert channel.config.batch_size == 50


def test_a_bad_config_names_the_keys_and_never_the_token() -> None:
    with pytest.raises(ChannelConfigError) as caught:
        build_channels(
            {
                "gw": {
                    "type": "http_sms",
                    "url": TOKEN,
                    "token": 5,
                    "batch_size": 0,
                    "timeout": -1,
                    "inbound_token": "guessable",  # too short to be a secret
                }
            }
        )
    text = str(caught.value)
    for key in ("url", "token", "batch_size", "timeout", "inbound_token"):
        assert f"channels.gw.{key}:" in text
    assert TOKEN not in text and "guessable" not in text


async def test_tokens_never_show_in_reprs_results_or_logs(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    channel = make_channel(gateway.url)
    assert isinstance(channel.config.inbound_token, SecretStr)
    assert_no_secret_leaks(channel)
    gateway.answer(
        Answer(401, {"error": "bad token"}),
        Answer(500, raw=b"oops"),
        Answer(hang=True),
    )
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        results = await send(make_channel(gateway.url, timeout=0.2), one(1), one(2), one(3), one(4))
    shown = [repr(channel), str(channel.config), channel.config.model_dump_json(), caplog.text]
    shown += [json.dumps(events, default=str)]
    shown += [f"{r.detail} {r.external_id}" for r in results.values()]
    for text in shown:
        assert TOKEN not in text
        assert INBOUND_TOKEN not in text
    assert {r.outcome for r in results.values()} >= {Outcome.PERMANENT, Outcome.TRANSIENT}
