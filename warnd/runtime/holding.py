"""The channels a warnd process holds: started, each with its send worker and inbound listener,
and given up again (unbound) when another process holds it now.

What a held channel reports over its own connections (receipts and replies on an SMPP bind, key
presses on a SIP call) can only be received where it is held, so its listener runs here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from channels.base import Channel
from channels.registry import ChannelConfigError
from warnd.core.errors import ConfigError
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.inbound import Inbound

log = structlog.get_logger(__name__)

INBOUND_STAGE = "inbound:"  # the inbound listeners' stage names: "inbound:<channel>"
SEND_STAGE = "send:"  # the send workers' stage names
# When a channel is given up or warnd stops, how long its listener may take to record what the
# stopping channel reported.
DRAIN_SECONDS = 10.0

Supervise = Callable[[str, Callable[[], Awaitable[None]]], Coroutine[Any, Any, None]]


@dataclass
class _Held:
    channel: Channel
    sender: asyncio.Task[None]
    listener: asyncio.Task[None]


class ChannelHolder:
    """Starts and stops this process's share of the channels (see the module docstring)."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        dispatcher: Dispatcher,
        inbound: Inbound,
        supervise: Supervise,
        *,
        stop_grace: float,
    ) -> None:
        self._channels = channels
        self._dispatcher = dispatcher
        self._inbound = inbound
        self._supervise = supervise
        self._stop_grace = stop_grace
        self._held: dict[str, _Held] = {}

    @property
    def held(self) -> set[str]:
        return set(self._held)

    async def start(self, name: str) -> None:
        """Open the channel's connections; a refusal (an SMSC refusing the credentials) is a
        ConfigError naming the channel."""
        channel = self._channels[name]
        try:
            await channel.start()
        except ChannelConfigError as exc:
            raise ConfigError(f"channels.{name}: {exc}") from exc

    def run(self, name: str) -> None:
        """Send on a started channel and record what it reports, until given up."""
        channel = self._channels[name]
        self._dispatcher.resume_claiming(channel.name)
        sender = asyncio.create_task(
            self._supervise(f"{SEND_STAGE}{name}", lambda: self._dispatcher.run_worker(channel)),
            name=f"{SEND_STAGE}{name}",
        )
        listener = asyncio.create_task(
            self._supervise(f"{INBOUND_STAGE}{name}", lambda: self._inbound.run(channel)),
            name=f"{INBOUND_STAGE}{name}",
        )
        self._held[name] = _Held(channel, sender, listener)

    async def take(self, name: str) -> None:
        """Start the channel and send on it (ownership was just taken)."""
        await self.start(name)
        self.run(name)

    async def give_up(self, name: str) -> None:
        """Another process may hold the channel now: claim nothing more for it and close its
        connections at once (what the channel still held comes back unsent and is recorded for
        a retry), then let the worker record what came back and the listener what the channel
        reported as it stopped."""
        held = self._held.pop(name, None)
        if held is None:
            return
        self._dispatcher.stop_claiming(held.channel.name)
        try:
            await held.channel.stop()
        except Exception:  # the connections are closed as far as they go; the rest is logged
            log.exception("channel_stop_failed", channel=name)
        _, late = await asyncio.wait([held.sender], timeout=self._stop_grace)
        if late:
            log.warning("send_not_drained", stage=held.sender.get_name())
            held.sender.cancel()
        await asyncio.gather(held.sender, return_exceptions=True)
        await self._end_listeners([held])
        log.warning("channel_given_up", channel=name)

    async def stop_senders(self) -> None:
        """Stopping gracefully: claim nothing more, let what is on the wire finish and be
        recorded (up to the grace; the rest goes back to the queue)."""
        senders = [h.sender for h in self._held.values()]
        if not senders:
            return
        self._dispatcher.stop_claiming()
        _, late = await asyncio.wait(senders, timeout=self._stop_grace)
        for task in late:
            log.warning("send_not_drained", stage=task.get_name())
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

    async def stop_channels(self) -> None:
        """Stop every held channel, then record what they reported as they stopped (a call
        hung up comes back "stopped") before their listeners end."""
        held, self._held = list(self._held.values()), {}
        for h in held:
            try:
                await h.channel.stop()
            except Exception:  # one channel's failure to stop must not keep the others bound
                log.exception("channel_stop_failed", channel=h.channel.name)
        await self._end_listeners(held)

    async def _end_listeners(self, held: list[_Held]) -> None:
        for h in held:
            h.channel.end_events()
        listeners = [h.listener for h in held]
        if not listeners:
            return
        _, late = await asyncio.wait(listeners, timeout=DRAIN_SECONDS)
        for task in late:  # the database is gone or slow: what is left is not recorded
            log.warning("inbound_not_drained", stage=task.get_name())
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
