"""The ``simulator`` channel: the shared contract for each kind, and its simulated behaviour."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from channels.base import (
    CallResult,
    ChannelKind,
    DeliveryReceipt,
    DeviceConfirmation,
    InboundEvent,
    OutboundMessage,
    Outcome,
    Reason,
    ReceiptStatus,
    Reply,
    SendResult,
    WallClock,
)
from channels.registry import ChannelConfigError, build_channels
from channels.simulator import SimulatorChannel, SimulatorConfig
from tests.channel_contract import (
    ChannelContract,
    ChannelFactory,
    batch_of,
    collect_events,
    events_so_far,
)
from tests.waiting import until

T0 = datetime(2025, 7, 20, 2, 0, tzinfo=UTC)


class VirtualClock:
    """Time that moves only when someone sleeps, and then at once: hours pass in microseconds."""

    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=max(seconds, 0.0))
        await asyncio.sleep(0)


def make_sim(
    *layers: Mapping[str, object],
    name: str = "sim",
    clock: VirtualClock | None = None,
    **settings: object,
) -> SimulatorChannel:
    """A simulator on a virtual clock, configured by ``layers`` then ``settings`` (later wins)."""
    table: dict[str, object] = {"type": "simulator"}
    for layer in (*layers, settings):
        table.update(layer)
    config = SimulatorConfig.model_validate(table)
    return SimulatorChannel(name, config, clock=clock or VirtualClock())


async def send_and_collect(
    channel: SimulatorChannel, batch: list[OutboundMessage]
) -> tuple[dict[int, SendResult], list[InboundEvent]]:
    """Send on a started channel and gather every event it then plays back."""
    results = {result.key: result for result in await channel.send(batch)}
    # On the virtual clock the timeline plays out at once; an event leaves it as it is emitted.
    await until(lambda: channel.pending_events == 0, what="the timeline to play out")
    return results, await events_so_far(channel)


# Everything answers at once: the contract needs events, not realism.
EAGER: dict[str, object] = {
    "time_scale": 0.0,
    "deliver_probability": 1.0,
    "reply_probability": 1.0,
    "answer_probability": 1.0,
    "play_probability": 1.0,
}


class TestSimulatedSmsContract(ChannelContract):
    expected_events = (DeliveryReceipt, Reply)

    @pytest.fixture
    def channel_factory(self) -> ChannelFactory:
        return lambda: make_sim(EAGER, kind="sms", transient_failure_rate=0.1)


class TestSimulatedVoiceContract(ChannelContract):
    expected_events = (CallResult,)

    @pytest.fixture
    def channel_factory(self) -> ChannelFactory:
        return lambda: make_sim(EAGER, kind="voice")


class TestSimulatedBroadcastContract(ChannelContract):
    expected_events = (DeviceConfirmation,)

    @pytest.fixture
    def channel_factory(self) -> ChannelFactory:
        return lambda: make_sim(EAGER, kind="broadcast")


def _comparable(events: list[InboundEvent]) -> list[InboundEvent]:
    return sorted(events, key=repr)


async def test_same_seed_same_outcomes_and_events() -> None:
    settings = {"transient_failure_rate": 0.2, "deliver_probability": 0.7, "reply_probability": 0.5}
    runs = []
    for seed in (7, 7, 8):
        channel = make_sim(settings, seed=seed)
        await channel.start()
        try:
            runs.append(await send_and_collect(channel, batch_of(200)))
        finally:
            await channel.stop()
    (results_a, events_a), (results_b, events_b), (results_c, events_c) = runs
    assert results_a == results_b
    assert _comparable(events_a) == _comparable(events_b)
    assert results_a != results_c
    assert _comparable(events_a) != _comparable(events_c)


async def test_outcomes_do_not_depend_on_batching() -> None:
    whole = make_sim(seed=3, transient_failure_rate=0.3)
    pieces = make_sim(seed=3, transient_failure_rate=0.3)
    await whole.start()
    await pieces.start()
    try:
        batch = batch_of(100)
        one = await whole.send(batch)
        many: list[SendResult] = []
        for start in range(0, 100, 7):
            many += await pieces.send(list(reversed(batch[start : start + 7])))
    finally:
        await whole.stop()
        await pieces.stop()
    by_key = {r.key: r for r in many}
    assert all(by_key[r.key].outcome is r.outcome for r in one)


async def test_failure_prefixes_fail_permanently_and_nothing_comes_back() -> None:
    channel = make_sim(EAGER, permanent_failure_prefixes=["+8617000"])
    await channel.start()
    try:
        batch = [
            OutboundMessage(1, "+8617000123456", "预警"),
            OutboundMessage(2, "+8613800000002", "预警"),
        ]
        results, events = await send_and_collect(channel, batch)
    finally:
        await channel.stop()
    assert (results[1].outcome, results[1].reason) == (Outcome.PERMANENT, Reason.CLIENT)
    assert results[1].external_id is None
    assert results[2].outcome is Outcome.ACCEPTED
    assert {e.sender for e in events if isinstance(e, Reply)} == {"+8613800000002"}
    assert {e.external_id for e in events if isinstance(e, DeliveryReceipt)} == {
        results[2].external_id
    }


async def test_transient_failures_clear_on_retry() -> None:
    channel = make_sim(transient_failure_rate=0.5, seed=11)
    await channel.start()
    try:
        first = {r.key: r for r in await channel.send(batch_of(50))}
        message = next(m for m in batch_of(50) if first[m.key].outcome is Outcome.TRANSIENT)
        outcomes = []
        for _ in range(40):
            (result,) = await channel.send([message])
            outcomes.append(result)
            if result.outcome is Outcome.ACCEPTED:
                break
    finally:
        await channel.stop()
    assert all(r.reason is Reason.SERVER for r in outcomes if r.outcome is Outcome.TRANSIENT)
    assert outcomes[-1].outcome is Outcome.ACCEPTED
    # The id carries the attempt, so a retried message has a fresh one.
    assert outcomes[-1].external_id == f"sim-sim-{message.key}-{len(outcomes)}"


def _assert_near(count: int, trials: int, p: float) -> None:
    """``count`` successes out of ``trials`` is within 4.5 standard deviations of ``p``."""
    slack = 4.5 * math.sqrt(trials * p * (1 - p)) + 1
    assert abs(count - trials * p) <= slack, (count, trials, p)


async def test_sms_probabilities_are_roughly_honoured_over_1000_sends() -> None:
    channel = make_sim(
        seed=5,
        transient_failure_rate=0.1,
        deliver_probability=0.8,
        reply_probability=0.6,
        time_scale=0.0,
    )
    await channel.start()
    try:
        results, events = await send_and_collect(channel, batch_of(1000))
    finally:
        await channel.stop()
    outcomes = Counter(r.outcome for r in results.values())
    _assert_near(outcomes[Outcome.TRANSIENT], 1000, 0.1)
    accepted = outcomes[Outcome.ACCEPTED]
    assert accepted + outcomes[Outcome.TRANSIENT] == 1000
    receipts = [e for e in events if isinstance(e, DeliveryReceipt)]
    assert len(receipts) == accepted
    delivered = sum(r.status is ReceiptStatus.DELIVERED for r in receipts)
    _assert_near(delivered, accepted, 0.8)
    assert {r.status for r in receipts} == {ReceiptStatus.DELIVERED, ReceiptStatus.UNDELIVERABLE}
    replies = [e for e in events if isinstance(e, Reply)]
    _assert_near(len(replies), delivered, 0.6)
    assert {r.text for r in replies} == {"1", "收到", "确认", "收到，马上转移群众"}


async def test_voice_calls_end_with_call_results_and_key_presses() -> None:
    channel = make_sim(
        kind="voice", seed=2, answer_probability=0.7, press_one_probability=0.8, time_scale=0.0
    )
    await channel.start()
    try:
        results, events = await send_and_collect(channel, batch_of(1000))
    finally:
        await channel.stop()
    assert all(isinstance(e, CallResult) for e in events)
    calls = [e for e in events if isinstance(e, CallResult)]
    assert {c.external_id for c in calls} == {r.external_id for r in results.values()}
    answered = [c for c in calls if c.answered]
    _assert_near(len(answered), 1000, 0.7)
    _assert_near(sum(c.keys == "1" for c in answered), len(answered), 0.8)
    assert {c.keys for c in answered} == {"1", ""}
    assert all(c.keys == "" and c.cause == "simulated: no answer" for c in calls if not c.answered)


async def test_broadcast_speakers_confirm_playing() -> None:
    channel = make_sim(kind="broadcast", seed=4, play_probability=0.6, time_scale=0.0)
    await channel.start()
    try:
        results, events = await send_and_collect(channel, batch_of(1000))
    finally:
        await channel.stop()
    assert all(isinstance(e, DeviceConfirmation) for e in events)
    confirmations = [e for e in events if isinstance(e, DeviceConfirmation)]
    assert len(confirmations) == 1000 == len(results)
    _assert_near(sum(c.played for c in confirmations), 1000, 0.6)


async def test_everything_it_emits_is_labelled_simulated() -> None:
    for kind in ("sms", "voice", "broadcast"):
        channel = make_sim(name=f"sim-{kind}", kind=kind, time_scale=0.0, seed=9)
        await channel.start()
        try:
            results, events = await send_and_collect(channel, batch_of(100))
        finally:
            await channel.stop()
        assert SimulatorChannel.simulated is True
        assert all(r.external_id and r.external_id.startswith("sim-") for r in results.values())
        assert events
        for event in events:
            if isinstance(event, DeliveryReceipt | DeviceConfirmation):
                assert event.detail == "simulated"
            elif isinstance(event, CallResult):
                assert event.cause.startswith("simulated")
            else:
                assert isinstance(event, Reply) and event.to == "simulator"


async def test_delays_follow_the_configured_ranges_on_the_injected_clock() -> None:
    clock = VirtualClock()
    channel = make_sim(
        clock=clock,
        receipt_delay_s=[2.0, 4.0],
        reply_delay_s=[30.0, 60.0],
        deliver_probability=1.0,
        reply_probability=1.0,
    )
    await channel.start()
    started = time.monotonic()
    try:
        results, events = await send_and_collect(channel, batch_of(50))
    finally:
        await channel.stop()
    assert time.monotonic() - started < 0.2, "simulated minutes must not take real time"
    receipts = {e.external_id: e.at for e in events if isinstance(e, DeliveryReceipt)}
    replies = {e.sender: e.at for e in events if isinstance(e, Reply)}
    assert len(receipts) == len(replies) == 50
    for message in batch_of(50):
        receipt_at = receipts[results[message.key].external_id or ""]
        assert T0 + timedelta(seconds=2) <= receipt_at <= T0 + timedelta(seconds=4)
        reply_after = (replies[message.address] - receipt_at).total_seconds()
        assert 30.0 <= reply_after <= 60.0


async def test_behaviours_script_single_addresses() -> None:
    fast, late, never, fail, normal = (f"+8613900000{i:03d}" for i in range(5))
    behaviours = {fast: "fast", late: "late", never: "never", fail: "fail"}
    batch = [OutboundMessage(i, address, "预警") for i, address in enumerate(behaviours, 1)]
    batch.append(OutboundMessage(5, normal, "预警"))
    # Scripted addresses ignore the dice: nothing normal is ever delivered or answered here.
    settings: dict[str, object] = {
        "behaviours": behaviours,
        "deliver_probability": 0.0,
        "reply_probability": 0.0,
        "answer_probability": 0.0,
        "play_probability": 0.0,
        "transient_failure_rate": 1.0,
    }
    sms = make_sim(settings)
    await sms.start()
    try:
        results, events = await send_and_collect(sms, batch)
    finally:
        await sms.stop()
    assert results[4].outcome is Outcome.PERMANENT
    assert results[5].outcome is Outcome.TRANSIENT
    receipts = {e.external_id: e.status for e in events if isinstance(e, DeliveryReceipt)}
    assert set(receipts.values()) == {ReceiptStatus.DELIVERED}
    assert len(receipts) == 3
    replies = {e.sender: e.at for e in events if isinstance(e, Reply)}
    assert set(replies) == {fast, late}
    assert replies[fast] <= T0 + timedelta(seconds=1), "fast answers at the earliest moment"
    assert replies[late] >= T0 + timedelta(seconds=600), "late answers after the deadline"

    voice = make_sim(settings, kind="voice")
    await voice.start()
    try:
        results, events = await send_and_collect(voice, batch)
    finally:
        await voice.stop()
    calls = {e.external_id: e for e in events if isinstance(e, CallResult)}
    assert calls[results[1].external_id or ""].keys == "1"
    assert calls[results[2].external_id or ""].at >= T0 + timedelta(seconds=600)
    assert calls[results[3].external_id or ""].answered is False

    speakers = make_sim(settings, kind="broadcast")
    await speakers.start()
    try:
        results, events = await send_and_collect(speakers, batch)
    finally:
        await speakers.stop()
    confirmed = {e.external_id for e in events if isinstance(e, DeviceConfirmation)}
    assert confirmed == {results[1].external_id, results[2].external_id}, "never: silent speaker"


class NappingWallClock(WallClock):
    """The real clock, telling when a sleep of a minute or more begins."""

    def __init__(self) -> None:
        self.napping = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        if seconds >= 60:
            self.napping.set()
        await super().sleep(seconds)


async def test_an_earlier_event_wakes_the_timeline_on_the_real_clock() -> None:
    # Real clock, real scale: one responder answers in ten minutes, another at once. The
    # channel must not sleep towards the late event and hold back the early one.
    late, fast = "+8613900000001", "+8613900000002"
    config = SimulatorConfig(
        type="simulator",
        receipt_delay_s=(0.0, 0.0),
        behaviours={late: "late", fast: "fast"},
    )
    clock = NappingWallClock()
    channel = SimulatorChannel("sim", config, clock=clock)
    await channel.start()
    try:
        await channel.send([OutboundMessage(1, late, "预警")])
        async with asyncio.timeout(5):
            await clock.napping.wait()  # the timeline now sleeps towards the late reply
        await channel.send([OutboundMessage(2, fast, "预警")])
        events = await collect_events(channel, 3, within=0.2)
        assert {type(e) for e in events} == {DeliveryReceipt, Reply}
        assert [e.sender for e in events if isinstance(e, Reply)] == [fast]
        assert channel.pending_events == 1  # the late reply, dropped by stop()
    finally:
        await channel.stop()
    assert channel.pending_events == 0


async def test_time_scale_speeds_up_a_drill() -> None:
    config = SimulatorConfig.model_validate({"type": "simulator", **EAGER, "time_scale": 0.0005})
    channel = SimulatorChannel("sim", config)  # the real clock
    await channel.start()
    try:
        await channel.send(batch_of(5))
        # 1-5 s receipts and 10-120 s replies (after the receipt) become at most 63 ms.
        events = await collect_events(channel, 10, within=0.2)
    finally:
        await channel.stop()
    assert Counter(type(e) for e in events) == {DeliveryReceipt: 5, Reply: 5}


async def test_send_delay_is_simulated_on_the_clock() -> None:
    clock = VirtualClock()
    channel = make_sim(clock=clock, send_delay_s=[0.5, 0.5])
    await channel.start()
    try:
        await channel.send(batch_of(1))
    finally:
        await channel.stop()
    assert clock.now() >= T0 + timedelta(seconds=0.5)


async def test_a_large_batch_does_not_hold_the_event_loop() -> None:
    channel = make_sim(time_scale=0.0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    await channel.start()
    ticking = asyncio.create_task(ticker())
    try:
        results = await channel.send(batch_of(5000))
    finally:
        ticking.cancel()
        await asyncio.wait((ticking,))
        await channel.stop()
    assert len(results) == 5000
    assert ticks >= 5000 // 256


async def test_texts_longer_than_the_kind_allows_are_client_errors() -> None:
    assert make_sim(kind="sms").limits.max_text == 670
    assert make_sim(kind="voice").limits.max_text == 500
    assert make_sim(kind="broadcast", max_text=80).limits.max_text == 80
    channel = make_sim(kind="voice")
    await channel.start()
    try:
        ok, too_long = await channel.send(
            [
                OutboundMessage(1, "+8613800000001", "请" * 500),
                OutboundMessage(2, "+8613800000002", "请" * 501),
            ]
        )
    finally:
        await channel.stop()
    assert ok.outcome is Outcome.ACCEPTED
    assert (too_long.outcome, too_long.reason) == (Outcome.PERMANENT, Reason.CLIENT)


async def test_config_is_validated_with_key_paths() -> None:
    with pytest.raises(ChannelConfigError) as caught:
        build_channels(
            {
                "sim": {
                    "type": "simulator",
                    "receipt_delay_s": [5.0, 1.0],
                    "reply_probability": 1.5,
                    "behaviours": {"+8613800000001": "sometimes"},
                    "reply_texts": [],
                }
            }
        )
    assert caught.value.problems == (
        "channels.sim.receipt_delay_s: Value error, the first value (minimum) must not exceed "
        "the second (maximum)",
        "channels.sim.reply_probability: Input should be less than or equal to 1",
        "channels.sim.reply_texts: Tuple should have at least 1 item after validation, not 0",
        "channels.sim.behaviours.+8613800000001: Input should be 'normal', 'fast', 'late', "
        "'never' or 'fail'",
    )


async def test_built_from_its_config_table() -> None:
    channels = build_channels({"drill-voice": {"type": "simulator", "kind": "voice", "seed": 3}})
    channel = channels["drill-voice"]
    assert isinstance(channel, SimulatorChannel)
    assert channel.kind is ChannelKind.VOICE
    assert channel.config.reply_texts == ("1", "收到", "确认", "收到，马上转移群众")


async def test_a_message_that_expired_on_the_wire_is_dropped_as_expired() -> None:
    """The send delay is the simulated gateway's: an earthquake alert that expires during it is
    dropped, as a real channel holding it would."""
    clock = VirtualClock()
    channel = make_sim(clock=clock, send_delay_s=[2.0, 2.0], deliver_probability=1.0)
    await channel.start()
    try:
        soon, later = batch_of(2)
        results = await channel.send(
            [
                replace(soon, expires_at=T0 + timedelta(seconds=1)),
                replace(later, expires_at=T0 + timedelta(seconds=10)),
            ]
        )
    finally:
        await channel.stop()
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.PERMANENT, Reason.EXPIRED),
        (Outcome.ACCEPTED, None),
    ]
