"""What the HTTP API and the background stages share in one warnd process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from channels.base import Channel, InboundEvent
from warnd.app.metrics import Metrics
from warnd.core.clock import Clock
from warnd.core.config import AppConfig
from warnd.core.eew import EewAssessment, EewReport
from warnd.db.notify import Wakeup
from warnd.policy.loader import PolicyHolder
from warnd.policy.model import Policy


@dataclass
class Services:
    pool: asyncpg.Pool
    config: AppConfig
    policy: PolicyHolder
    clock: Clock
    metrics: Metrics
    channels: Mapping[str, Channel] = field(default_factory=dict)
    plan_wakeup: Wakeup = field(default_factory=Wakeup)  # nudges the in-process planner
    send_wakeup: Wakeup = field(default_factory=Wakeup)  # nudges the in-process workers
    max_body_bytes: int = 512 * 1024
    # Where the pool connects, and as which role: work that runs on a connection of its own in
    # a worker thread (a roster uploaded in the console) connects the same way. None: no such
    # work in this process.
    database_url: str | None = None
    database_role: str | None = None
    # Applies inbound events at once (the pipeline's inbound stage); None in a process without
    # one, where a webhook hands them to its channel's listener instead.
    inbound: Callable[[str, Sequence[InboundEvent]], Awaitable[object]] | None = None
    # Webhook batches applied at once: past that a gateway is asked to retry (429).
    inbound_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    # Pool connections a console page's reads may hold at once, all officers together: the
    # rest of the pool stays free for planning and dispatch.
    console_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    # The earthquake early-warning fast path: takes each new report of a seismic feed (Actual
    # or Exercise) the moment it is recorded, before warnd computes the feed's answer. None in a
    # process without one: reports are then recorded only. It returns the report's assessment
    # on the roster it holds (the feed's answer summarises it), or None.
    eew: Callable[[EewReport], Awaitable[EewAssessment | None]] | None = None
    # Per channel: held (started, sending) by this process, and by whom as last seen; None in
    # a process that competes for no channel (without the dispatch role).
    channel_owner: Callable[[str], tuple[bool, str | None]] | None = None
    # One CAP parse at a time per feed (a thread each): a feed that sends costly messages
    # waits for itself, and the others' parses go on.
    _parse_slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        """True when any channel reaches no real phone or speaker: every view must say so."""
        return any(c.simulated for c in self.channels.values())

    def parse_slot(self, feed: str) -> asyncio.Semaphore:
        """The one CAP parse a feed may have running at a time."""
        return self._parse_slots.setdefault(feed, asyncio.Semaphore(1))

    def current_policy(self) -> Policy:
        return self.policy.current

    @property
    def max_chars(self) -> dict[str, int]:
        """Per channel kind, the longest text every channel of that kind can carry."""
        return max_chars(self.channels)


def max_chars(channels: Mapping[str, Channel]) -> dict[str, int]:
    """Per channel kind, the longest text every channel of that kind can carry."""
    limits: dict[str, int] = {}
    for channel in channels.values():
        kind = channel.kind.value
        limits[kind] = min(limits.get(kind, channel.limits.max_text), channel.limits.max_text)
    return limits
