"""The ``log`` channel: the shared contract, and the exact file trail it leaves."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.base import ChannelKind, OutboundMessage, Outcome, Reason
from channels.log import LogChannel, LogConfig
from channels.registry import build_channels
from tests.channel_contract import ChannelContract, ChannelFactory, batch_of

AT = datetime(2025, 7, 20, 2, 15, 30, tzinfo=UTC)


class FixedClock:
    """A clock that always says ``AT``, so the written lines can be compared exactly."""

    def now(self) -> datetime:
        return AT

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


def make_log(path: Path, **settings: object) -> LogChannel:
    config = LogConfig.model_validate({"type": "log", "path": path, **settings})
    return LogChannel("trail", config, clock=FixedClock())


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestLogContract(ChannelContract):
    expected_events = ()  # it reaches no phone, so nothing ever comes back

    @pytest.fixture
    def channel_factory(self, tmp_path: Path) -> ChannelFactory:
        return lambda: make_log(tmp_path / "sent.jsonl")


async def test_writes_one_exact_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "trail" / "sent.jsonl"  # the folder is created on start
    channel = make_log(path)
    await channel.start()
    try:
        batch = [
            OutboundMessage(1, "+8613800000001", "【济宁市应急管理局】暴雨红色预警，收到请回复1。"),
            OutboundMessage(2, "+8613800000002", 'line one\nline "two"'),
        ]
        results = await channel.send(batch)
    finally:
        await channel.stop()
    assert [(r.key, r.outcome, r.external_id) for r in results] == [
        (1, Outcome.ACCEPTED, "log-trail-1"),
        (2, Outcome.ACCEPTED, "log-trail-2"),
    ]
    assert path.read_text(encoding="utf-8") == (
        '{"key": 1, "address": "+8613800000001", '
        '"text": "【济宁市应急管理局】暴雨红色预警，收到请回复1。", '
        '"at": "2025-07-20T02:15:30+00:00", "channel": "trail"}\n'
        '{"key": 2, "address": "+8613800000002", "text": "line one\\nline \\"two\\"", '
        '"at": "2025-07-20T02:15:30+00:00", "channel": "trail"}\n'
    )


async def test_file_is_private_and_appended_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    for first_key in (1, 10):
        channel = make_log(path)
        await channel.start()
        await channel.send(batch_of(2, first_key=first_key))
        await channel.stop()
    assert [line["key"] for line in read_lines(path)] == [1, 2, 10, 11]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the trail holds phone numbers"


async def test_concurrent_batches_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    channel = make_log(path, fsync=True)
    await channel.start()
    try:
        await asyncio.gather(*(channel.send(batch_of(50, first_key=k * 50)) for k in range(20)))
    finally:
        await channel.stop()
    keys = [line["key"] for line in read_lines(path)]
    assert sorted(keys) == list(range(1000))
    # Each batch is one write: its 50 lines are contiguous.
    for start in range(0, 1000, 50):
        chunk = keys[start : start + 50]
        assert chunk == list(range(chunk[0], chunk[0] + 50))


async def test_refused_messages_are_not_written(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    channel = make_log(path, max_text=100)
    await channel.start()
    try:
        results = await channel.send(
            [
                OutboundMessage(1, "  ", "空地址"),
                OutboundMessage(2, "+8613800000002", "长" * 101),
                OutboundMessage(3, "+8613800000003", "长" * 100),
            ]
        )
    finally:
        await channel.stop()
    by_key = {r.key: r for r in results}
    assert (by_key[1].outcome, by_key[1].reason) == (Outcome.PERMANENT, Reason.CLIENT)
    assert (by_key[2].outcome, by_key[2].reason) == (Outcome.PERMANENT, Reason.CLIENT)
    assert "101" in by_key[2].detail
    assert by_key[3].outcome is Outcome.ACCEPTED
    assert [line["key"] for line in read_lines(path)] == [3]


async def test_kind_comes_from_config_and_it_is_not_simulated(tmp_path: Path) -> None:
    assert make_log(tmp_path / "a").kind is ChannelKind.SMS
    voice = make_log(tmp_path / "b", kind="voice")
    assert voice.kind is ChannelKind.VOICE
    assert "kind=voice" in repr(voice)
    assert LogChannel.simulated is False


async def test_send_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await make_log(tmp_path / "sent.jsonl").send(batch_of(1))


async def test_unwritable_path_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    channel = make_log(blocker / "sent.jsonl")
    with pytest.raises(OSError, match="not-a-folder"):
        await channel.start()
    await channel.stop()  # harmless after a failed start


async def test_built_from_its_config_table(tmp_path: Path) -> None:
    channels = build_channels(
        {"paper": {"type": "log", "kind": "broadcast", "path": str(tmp_path / "x.jsonl")}}
    )
    paper = channels["paper"]
    assert isinstance(paper, LogChannel)
    assert paper.kind is ChannelKind.BROADCAST
    assert paper.limits.max_text == 2000
    assert paper.limits.rate_per_s == 100.0
