"""The contract every channel plugin must pass, whatever protocol it speaks.

Use it by subclassing :class:`ChannelContract` in a ``test_channel_<name>.py`` module and
providing a ``channel_factory`` fixture that returns a callable making a fresh, not yet started
channel (configured so that, when a peer exists, it talks to a test peer)::

    class TestSmppContract(ChannelContract):
        expected_events = (DeliveryReceipt, Reply)

        @pytest.fixture
        def channel_factory(self, smsc: FakeSmsc) -> ChannelFactory:
            return lambda: SmppChannel("sms", SmppConfig(type="smpp", port=smsc.port, ...))

Override :meth:`ChannelContract.provoke_inbound` when inbound events need more than a send (a
peer that must be told to answer). The helpers :func:`collect_events`, :func:`events_so_far` and
:func:`drain_events` read a channel's event stream and are meant for channel-specific tests too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import datetime

import pytest
from pydantic import BaseModel, SecretStr

from channels.base import (
    CallResult,
    Channel,
    ChannelConfig,
    ChannelKind,
    DeliveryReceipt,
    DeviceConfirmation,
    InboundEvent,
    OutboundMessage,
    Outcome,
    Reason,
    ReceiptStatus,
    SendResult,
)

ChannelFactory = Callable[[], Channel]

# A realistic warning text (about 90 characters) and multiples of it for the long-text checks.
WARNING_TEXT = (
    "【济宁市应急管理局】泗水县气象台发布暴雨红色预警信号：预计未来3小时内泗水县大部地区"
    "降雨量将达100毫米以上，山区有发生山洪的风险。请立即组织危险区群众转移。收到请回复1。"
)


def batch_of(count: int, *, first_key: int = 1, text: str = WARNING_TEXT) -> list[OutboundMessage]:
    """``count`` messages to distinct plausible mobile numbers, keys counting from ``first_key``."""
    return [
        OutboundMessage(key=key, address=f"+86138{key:08d}", text=text)
        for key in range(first_key, first_key + count)
    ]


@contextlib.asynccontextmanager
async def _event_stream(channel: Channel) -> AsyncIterator[AsyncIterator[InboundEvent]]:
    """The channel's event stream, closed afterwards so no suspended generator is left behind."""
    stream = channel.events()
    try:
        yield stream
    finally:
        if isinstance(stream, AsyncGenerator):
            await stream.aclose()


async def collect_events(
    channel: Channel, count: int, *, within: float = 1.0
) -> list[InboundEvent]:
    """The next ``count`` inbound events; fails the test if they do not come ``within`` seconds."""
    events: list[InboundEvent] = []
    async with _event_stream(channel) as stream:
        try:
            async with asyncio.timeout(within):
                async for event in stream:
                    events.append(event)
                    if len(events) >= count:
                        break
        except TimeoutError:
            pytest.fail(f"{len(events)} of {count} inbound events arrived within {within} s")
    return events


async def events_so_far(channel: Channel) -> list[InboundEvent]:
    """Every inbound event the channel has emitted until now, without waiting for more.

    A marker is emitted behind them and the stream read up to it: the stream keeps the order of
    emission, so whatever was emitted before this call comes before the marker. What it proves
    depends on the caller knowing that the input which could emit has been handled by then (a
    webhook that has answered, a channel that has been stopped, counters that show the input
    processed); "nothing was emitted" then needs no waiting for silence.
    """
    marker = DeliveryReceipt(f"end-of-events-{uuid.uuid4()}", ReceiptStatus.DELIVERED)
    channel.emit(marker)
    events: list[InboundEvent] = []
    async with _event_stream(channel) as stream:
        async for event in stream:
            if event is marker:
                break
            events.append(event)
    return events


async def drain_events(channel: Channel, *, quiet: float = 0.02) -> list[InboundEvent]:
    """Every inbound event until none has arrived for ``quiet`` seconds.

    For gathering what a peer sends on its own time, never for proving that nothing came (see
    :func:`events_so_far`).
    """
    events: list[InboundEvent] = []
    async with _event_stream(channel) as stream:
        while True:
            try:
                async with asyncio.timeout(quiet):
                    events.append(await anext(stream))
            except TimeoutError:
                return events


def secret_values(model: BaseModel) -> list[str]:
    """Every ``SecretStr`` value anywhere in a (possibly nested) pydantic model."""
    found: list[str] = []

    def visit(value: object) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                visit(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                visit(item)

    visit(model)
    return [secret for secret in found if secret]


def assert_no_secret_leaks(channel: Channel) -> None:
    """No secret of the channel's config shows in its repr or in the config's str/repr/JSON."""
    config: ChannelConfig = channel.config
    shown = [repr(channel), str(channel), str(config), repr(config), config.model_dump_json()]
    for secret in secret_values(config):
        for text in shown:
            assert secret not in text, "a secret is visible in a repr, str or JSON dump"


def assert_one_result_each(batch: Sequence[OutboundMessage], results: list[SendResult]) -> None:
    """Exactly one well-formed result per message, matched by key."""
    assert all(isinstance(result, SendResult) for result in results)
    assert sorted(result.key for result in results) == sorted(message.key for message in batch)
    for result in results:
        if result.outcome is Outcome.ACCEPTED:
            assert result.external_id, "an accepted message needs the gateway's id"
        else:
            assert isinstance(result.reason, Reason), "a failure needs a reason"


def _tasks_besides_current() -> set[asyncio.Task[object]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current}


class ChannelContract:
    """Tests every channel must pass; subclass it as ``Test<Name>Contract``."""

    #: The inbound event types a started channel emits after ``provoke_inbound``; empty for a
    #: channel that reports nothing back.
    expected_events: tuple[type[InboundEvent], ...] = ()
    #: How long to wait for provoked inbound events.
    event_timeout: float = 1.0

    @pytest.fixture
    def channel_factory(self) -> ChannelFactory:
        raise NotImplementedError("a channel test module provides channel_factory")

    async def provoke_inbound(self, channel: Channel) -> list[SendResult]:
        """Make the channel produce inbound events (by default: send it a few messages)."""
        return await channel.send(batch_of(3, first_key=900))

    async def test_metadata_is_declared(self, channel_factory: ChannelFactory) -> None:
        channel = channel_factory()
        assert isinstance(channel.kind, ChannelKind)
        assert isinstance(type(channel).simulated, bool)
        assert issubclass(type(channel).config_model, ChannelConfig)
        assert isinstance(channel.config, type(channel).config_model)
        limits = channel.limits
        assert limits.rate_per_s > 0
        assert limits.window >= 1
        assert limits.max_text >= 70, "every channel must carry at least one SMS worth of text"
        assert channel.name in repr(channel)

    async def test_send_returns_one_result_per_message(
        self, channel_factory: ChannelFactory
    ) -> None:
        channel = channel_factory()
        await channel.start()
        try:
            batch = batch_of(25)
            results = await channel.send(batch)
            assert_one_result_each(batch, results)
            accepted = [r.external_id for r in results if r.outcome is Outcome.ACCEPTED]
            assert len(set(accepted)) == len(accepted), "gateway ids must be distinct"
        finally:
            await channel.stop()

    async def test_empty_batch(self, channel_factory: ChannelFactory) -> None:
        channel = channel_factory()
        await channel.start()
        try:
            assert await channel.send([]) == []
        finally:
            await channel.stop()

    async def test_long_texts_are_accepted_or_refused_as_client_errors(
        self, channel_factory: ChannelFactory
    ) -> None:
        channel = channel_factory()
        await channel.start()
        try:
            texts = [WARNING_TEXT * 3, WARNING_TEXT * 8, "洪" * 5000, WARNING_TEXT + "\n" * 3]
            batch = [
                OutboundMessage(key=100 + i, address=f"+8613900000{i:03d}", text=text)
                for i, text in enumerate(texts)
            ]
            results = {result.key: result for result in await channel.send(batch)}
            assert_one_result_each(batch, list(results.values()))
            for message in batch:
                result = results[message.key]
                too_long = len(message.text) > channel.limits.max_text
                if too_long or result.outcome is not Outcome.ACCEPTED:
                    assert (result.outcome, result.reason) == (Outcome.PERMANENT, Reason.CLIENT)
        finally:
            await channel.stop()

    async def test_cancelled_send_leaves_the_channel_usable(
        self, channel_factory: ChannelFactory
    ) -> None:
        channel = channel_factory()
        await channel.start()
        try:
            sending = asyncio.create_task(channel.send(batch_of(3000)))
            await asyncio.sleep(0)  # let it get into the batch
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
            batch = batch_of(5, first_key=5000)
            assert_one_result_each(batch, await channel.send(batch))
        finally:
            await channel.stop()

    async def test_secrets_never_shown(self, channel_factory: ChannelFactory) -> None:
        channel = channel_factory()
        assert_no_secret_leaks(channel)
        await channel.start()
        try:
            assert_no_secret_leaks(channel)
        finally:
            await channel.stop()

    async def test_inbound_events_are_of_the_declared_types(
        self, channel_factory: ChannelFactory
    ) -> None:
        channel = channel_factory()
        await channel.start()
        try:
            results = await self.provoke_inbound(channel)
            accepted = {r.external_id for r in results if r.outcome is Outcome.ACCEPTED}
            if not self.expected_events:
                # Stopped, the channel has no task left that could still emit something: what
                # it has emitted by now is all it ever will.
                await channel.stop()
                assert await events_so_far(channel) == []
                return
            events = await collect_events(channel, 1, within=self.event_timeout)
            events += await drain_events(channel)
            for event in events:
                assert isinstance(event, self.expected_events)
                assert isinstance(event.at, datetime)
                assert event.at.tzinfo is not None, "event times are timezone-aware"
                if isinstance(event, DeliveryReceipt | CallResult | DeviceConfirmation):
                    assert event.external_id in accepted, "an event names an id we were given"
        finally:
            await channel.stop()

    async def test_start_and_stop_are_idempotent_and_leave_no_tasks(
        self, channel_factory: ChannelFactory
    ) -> None:
        before = _tasks_besides_current()
        channel = channel_factory()
        await channel.stop()  # stopping a channel never started is harmless
        await channel.start()
        await channel.start()
        await channel.send(batch_of(10))  # leaves receipts or replies pending, if any
        await channel.stop()
        await channel.stop()
        assert _tasks_besides_current() - before == set()
        # And it can be started again after a stop, as on a daemon restart.
        await channel.start()
        batch = batch_of(2, first_key=7000)
        assert_one_result_each(batch, await channel.send(batch))
        await channel.stop()
        assert _tasks_besides_current() - before == set()

    async def test_sending_to_a_stopped_channel_is_never_a_silent_loss(
        self, channel_factory: ChannelFactory
    ) -> None:
        channel = channel_factory()
        await channel.start()
        await channel.stop()
        batch = batch_of(2)
        try:
            results = await channel.send(batch)
        except RuntimeError:
            return  # refusing loudly is one honest answer
        assert_one_result_each(batch, results)  # failing every message is the other
        assert all(result.outcome is not Outcome.ACCEPTED for result in results)
