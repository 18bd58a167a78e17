"""The ``log`` channel: every message appended as one JSON line to a file, for a paper trail.

This is a real output, not a simulation (``simulated = False``): operators use it to keep a file
record of exactly what warnd sent, or as the only channel of a dry run. It reaches no phone and no
speaker, and it never reports receipts or replies, so nothing sent here counts as delivered.

Configuration (``[channels.<name>]``, ``type = "log"``)::

    kind = "sms"            # "sms" | "voice" | "broadcast": which traffic dispatch gives it
    path = "/var/lib/warnd/sent.jsonl"
    max_text = 2000         # longer texts are refused (permanent, client)
    fsync = false           # true: each batch is on disk before it counts as accepted
    rate_per_s = 100.0
    window = 100

Each line is ``{"key", "address", "text", "at", "channel"}`` with ``at`` in ISO 8601 UTC. The
file holds phone numbers (personal data): it is created readable by its owner only.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import Field

from channels.base import (
    Channel,
    ChannelClock,
    ChannelConfig,
    ChannelKind,
    Limits,
    OutboundMessage,
    Outcome,
    SendResult,
    WallClock,
    refusal,
)


class LogConfig(ChannelConfig):
    """Settings of a ``log`` channel."""

    kind: Literal["sms", "voice", "broadcast"] = "sms"
    path: Path
    max_text: int = Field(default=2000, ge=1)
    fsync: bool = False


class LogChannel(Channel):
    """Appends each message as a JSON line to ``path``; accepts what it has written.

    Writes happen on one dedicated thread, not on the event loop: a disk stall (a full or network
    file system, an fsync) would otherwise freeze every channel and the API with it. One thread,
    rather than the shared default executor, keeps batches in send order and never lets two
    batches interleave. Each batch is a single ``os.write`` on an ``O_APPEND`` descriptor, so
    lines stay whole even if two warnd processes share the file, and a message is reported
    ACCEPTED only after its line reached the operating system.
    """

    kind = ChannelKind.SMS
    config_model = LogConfig
    simulated = False
    config: LogConfig

    def __init__(self, name: str, config: LogConfig, *, clock: ChannelClock | None = None) -> None:
        super().__init__(name, config)
        self.kind = ChannelKind(config.kind)
        self._clock: ChannelClock = clock if clock is not None else WallClock()
        self._writer: ThreadPoolExecutor | None = None
        self._fd: int | None = None

    @property
    def limits(self) -> Limits:
        return Limits(
            rate_per_s=self.config.rate_per_s,
            window=self.config.window,
            max_text=self.config.max_text,
        )

    async def start(self) -> None:
        """Open (creating if needed) the file, so a bad path fails at start-up, not mid-warning."""
        if self._writer is not None:
            return
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"warnd-log-{self.name}")
        try:
            self._fd = await asyncio.get_running_loop().run_in_executor(writer, self._open)
        except BaseException:
            writer.shutdown(wait=False)
            raise
        self._writer = writer

    async def stop(self) -> None:
        """Close the file once the writes already handed to the thread are done."""
        writer, fd = self._writer, self._fd
        if writer is None:
            return
        self._writer = self._fd = None
        try:
            if fd is not None:
                await asyncio.get_running_loop().run_in_executor(writer, os.close, fd)
        finally:
            # The queue is empty now, so the thread exits at once; no need to block on it.
            writer.shutdown(wait=False)

    def _open(self) -> int:
        path = self.config.path
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _append(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:  # os.write may write less than asked (signals, some file systems)
            view = view[os.write(fd, view) :]
        if self.config.fsync:
            os.fsync(fd)

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """Write the batch's lines; ACCEPTED with id ``log-<channel>-<key>`` once written."""
        if self._writer is None or self._fd is None:
            raise RuntimeError(f"log channel {self.name!r} is not started")
        results: list[SendResult] = []
        lines: list[str] = []
        at = self._clock.now().isoformat()
        for message in batch:
            refused = refusal(message, self.config.max_text)
            if refused is not None:
                results.append(refused)
                continue
            record = {
                "key": message.key,
                "address": message.address,
                "text": message.text,
                "at": at,
                "channel": self.name,
            }
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            results.append(
                SendResult(
                    message.key, Outcome.ACCEPTED, external_id=f"log-{self.name}-{message.key}"
                )
            )
        if lines:
            # If this await is cancelled the thread still finishes the write; the caller then
            # re-queues the batch and the lines appear twice, which is the at-least-once promise.
            data = "".join(lines).encode("utf-8")
            await asyncio.get_running_loop().run_in_executor(
                self._writer, self._append, self._fd, data
            )
        return results
