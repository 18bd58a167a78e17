"""Inbound: what channels report back — delivery receipts, replies, call results, device
confirmations, loudspeakers' states — recorded in batches, and answers handed to
``warnd.pipeline.answers``.

A fast network can report a message delivered (or a call answered) before the worker that sent
it has recorded the gateway's id. Such a report is kept at once as an unmatched event, and tried
again as soon as this process's dispatcher records a batch; receipts another process received or
a restart left behind are matched by housekeeping (``match_early_receipts``). No report waits on
a timer, and none is lost to the race.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
import structlog
from structlog.contextvars import bind_contextvars

from channels.base import (
    CallResult,
    Channel,
    DeliveryReceipt,
    DeviceConfirmation,
    DeviceStatus,
    InboundEvent,
    ReceiptStatus,
    Reply,
)
from warnd.app.metrics import Metrics
from warnd.core.clock import Clock
from warnd.db.notify import Signal, Wakeup
from warnd.db.queries import sql
from warnd.pipeline.answers import Answers

log = structlog.get_logger(__name__)

# How long a receipt may wait for its send to be recorded: far longer than any record takes.
EARLY_RECEIPT_WINDOW = timedelta(minutes=10)
EARLY_RECEIPT_BATCH = 5000  # receipts matched per statement; junk must not make one unbounded


class _Ended:
    """The end of a channel's events, in the listener's queue."""


ENDED: Final = _Ended()


@dataclass(frozen=True)
class Early:
    """A report on a send not yet recorded when it came: its stored row, and since when."""

    event: DeliveryReceipt | CallResult | DeviceConfirmation | Reply
    row_id: int
    since: datetime


class Inbound:
    """Records one channel's inbound events until cancelled; any number may run at once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        metrics: Metrics,
        *,
        answers: Answers | None = None,
        recorded: Signal | None = None,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._metrics = metrics
        self._answers = answers
        self._recorded = recorded  # the dispatcher's: sent rows now carry their gateway ids

    async def run(self, channel: Channel, batch_size: int = 1000) -> None:
        """Record what one channel reports back, in batches, until cancelled or until the
        channel's events end (``Channel.end_events``, when warnd stops): then everything the
        channel reported has been recorded."""
        bind_contextvars(channel=channel.name)  # the listener is a task of its own
        queue: asyncio.Queue[InboundEvent | _Ended] = asyncio.Queue()

        async def pump() -> None:
            async for event in channel.events():
                queue.put_nowait(event)
            queue.put_nowait(ENDED)

        pump_task = asyncio.create_task(pump())
        early: list[Early] = []  # reports on sends not yet recorded: tried again after a record
        recorded = self._recorded.listen() if self._recorded is not None else None
        try:
            ended = False
            while not ended:
                first, woken = await self._next(queue, recorded if early else None)
                if first is not None:
                    batch: list[InboundEvent] = []
                    item: InboundEvent | _Ended = first
                    while True:
                        if isinstance(item, _Ended):
                            ended = True
                            break
                        batch.append(item)
                        if len(batch) == batch_size or queue.empty():
                            break
                        item = queue.get_nowait()
                    if batch:
                        early += await self.handle_events(channel.name, batch)
                if woken:
                    oldest = self._clock.now() - EARLY_RECEIPT_WINDOW
                    early = await self.retry(channel.name, [e for e in early if e.since >= oldest])
        finally:
            if recorded is not None and self._recorded is not None:
                self._recorded.forget(recorded)
            pump_task.cancel()
            await asyncio.gather(pump_task, return_exceptions=True)

    async def _next(
        self, queue: asyncio.Queue[InboundEvent | _Ended], recorded: Wakeup | None
    ) -> tuple[InboundEvent | _Ended | None, bool]:
        """The next event, and whether a batch of sends was recorded meanwhile (only looked
        for while reports wait for their sends, ``recorded`` given); at least one of the two,
        or neither when the reports' window passed without either."""
        if recorded is None:
            return await queue.get(), False
        event = None
        if queue.empty() and not recorded.is_set():
            getter = asyncio.ensure_future(queue.get())
            waiter = asyncio.ensure_future(recorded.until_set())
            try:
                await asyncio.wait(
                    {getter, waiter},
                    timeout=EARLY_RECEIPT_WINDOW.total_seconds(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                event = getter.result()
        elif not queue.empty():
            event = queue.get_nowait()
        return event, recorded.take() or event is None

    async def handle_events(self, channel: str, events: Sequence[InboundEvent]) -> list[Early]:
        """Apply inbound events; return the reports (receipts, call results, device
        confirmations) that matched no delivery yet, to try again once more sends are recorded.

        Matched delivery receipts live on their delivery row only, devices' states on their
        ``speakers`` row (heartbeats are many and say nothing an officer must read later);
        replies, call results, device confirmations and unmatched receipts are kept in
        ``inbound_events`` too, at once: nothing a channel reported waits in memory alone. An
        event the database refuses is set aside with its reason and does not take the rest of
        its batch with it.
        """
        events = [_clean(e) for e in events]
        try:
            return await self._handle(channel, events)
        except (asyncpg.PostgresConnectionError, OSError):
            raise  # the database is gone: the supervisor restarts the stage
        except asyncpg.PostgresError as exc:
            if len(events) == 1:
                await self._set_aside(channel, events[0], exc)
                return []
            log.exception("inbound_batch_failed", events=len(events))
        early: list[Early] = []
        for event in events:  # one at a time, so that only the bad one is set aside
            early += await self.handle_events(channel, [event])
        return early

    async def _set_aside(self, channel: str, event: InboundEvent, why: Exception) -> None:
        """Keep an event the database refused, as what was received and why, for an officer."""
        reason = f"{type(why).__name__}: {why}"[:500]
        log.error("inbound_event_refused", kind=_KIND[type(event)], reason=reason)
        try:
            await self._pool.execute(
                sql("record_inbound"),
                channel,
                ["refused"],
                [None],
                [
                    {
                        "type": type(event).__name__,
                        "received": repr(event)[:4000],
                        "refused": reason,
                    }
                ],
                [False],
                self._clock.now(),
            )
        except asyncpg.PostgresError:
            log.exception("inbound_event_lost", kind=_KIND[type(event)])
        self._metrics.inbound.labels(channel, "refused", "false").inc()

    async def _handle(self, channel: str, events: Sequence[InboundEvent]) -> list[Early]:
        await self._record_states(channel, [e for e in events if isinstance(e, DeviceStatus)])
        reports = [e for e in events if not isinstance(e, DeviceStatus)]
        matched = await self._record_reports(channel, reports)
        keep = [
            e for e in reports if not (isinstance(e, DeliveryReceipt) and e.external_id in matched)
        ]
        answered = await self._answer(channel, keep)
        if not keep:
            return []
        hits = [
            id(e) in answered or (not isinstance(e, Reply) and e.external_id in matched)
            for e in keep
        ]
        kinds = [_KIND[type(e)] for e in keep]
        ids = await self._pool.fetch(
            sql("record_inbound"),
            channel,
            kinds,
            [e.sender if isinstance(e, Reply) else None for e in keep],
            [_payload(e) for e in keep],
            hits,
            self._clock.now(),
        )
        for kind, hit in zip(kinds, hits, strict=True):
            self._metrics.inbound.labels(channel, kind, str(hit).lower()).inc()
        now = self._clock.now()
        # A report whose delivery was not found is tried again, even when an answer it carried
        # was applied meanwhile: the delivery must still learn it was delivered.
        return [
            Early(e, row["id"], now)
            for e, row in zip(keep, ids, strict=True)
            if not isinstance(e, Reply) and e.external_id not in matched
        ]

    async def retry(self, channel: str, early: Sequence[Early]) -> list[Early]:
        """Try reports again whose sends were not recorded when they came; the ones still
        unmatched. A report that matches now is marked matched on its stored row."""
        if not early:
            return []
        events = [e.event for e in early]
        matched = await self._record_reports(channel, events)
        await self._answer(channel, events)  # a key press its call's record now lets count
        done = [
            e for e in early if not isinstance(e.event, Reply) and e.event.external_id in matched
        ]
        if done:
            await self._pool.execute(sql("mark_inbound_matched"), [e.row_id for e in done])
            log.info("early_reports_matched", reports=len(done))
        return [e for e in early if e not in done]

    async def _record_reports(self, channel: str, events: Sequence[InboundEvent]) -> set[str]:
        """Mark the deliveries these reports are about; the external ids that matched one."""
        receipts = [fact for e in events if (fact := _receipt(e)) is not None]
        if not receipts:
            return set()
        rows = await self._pool.fetch(
            sql("record_receipts"),
            channel,
            [fact[0] for fact in receipts],
            [fact[1] for fact in receipts],
            [fact[2] for fact in receipts],
            self._clock.now(),
        )
        matched = {r["external_id"] for r in rows}
        plays = [e for e in events if isinstance(e, DeviceConfirmation)]
        if plays:
            await self._pool.execute(
                sql("record_speaker_plays"),
                channel,
                [e.external_id for e in plays],
                [e.played for e in plays],
                [e.detail for e in plays],
                [e.at for e in plays],
            )
        for external_id, ok, _ in receipts:
            if external_id in matched:
                self._metrics.deliveries.labels(channel, "delivered" if ok else "failed").inc()
        return matched

    async def _record_states(self, channel: str, states: Sequence[DeviceStatus]) -> None:
        """Keep what devices said of themselves on their ``speakers`` rows."""
        if not states:
            return
        await self._pool.execute(
            sql("record_speaker_states"),
            channel,
            [e.device_id for e in states],
            [e.online for e in states],
            [e.heartbeat for e in states],
            [e.power for e in states],
            [_percent(e.battery) for e in states],
            [_percent(e.volume) for e in states],
            [e.detail[:500] for e in states],
            [e.at for e in states],
        )
        self._metrics.inbound.labels(channel, "device_status", "true").inc(len(states))

    async def match_early_receipts(self) -> int:
        """Apply receipts kept unmatched whose delivery has since been recorded as sent; how
        many. Receipts older than ``EARLY_RECEIPT_WINDOW`` are left as they are: their message
        was never ours or was lost, and an officer sees them among the unmatched events."""
        now = self._clock.now()
        rows = await self._pool.fetch(
            sql("match_early_receipts"), now - EARLY_RECEIPT_WINDOW, EARLY_RECEIPT_BATCH, now
        )
        for r in rows:
            self._metrics.deliveries.labels(
                r["channel"], "delivered" if r["ok"] else "failed"
            ).inc()
        if rows:
            log.info("early_receipts_matched", receipts=len(rows))
        return len(rows)

    async def _answer(self, channel: str, events: Sequence[InboundEvent]) -> set[int]:
        """Replies, key presses and device confirmations that acknowledge call-outs or report
        field-task progress; returns the ids of those that did."""
        answered: set[int] = set()
        if self._answers is None:
            return answered
        replies = [e for e in events if isinstance(e, Reply)]
        if replies:
            answers = await self._answers.answer_replies([(e.sender, e.text) for e in replies])
            answered |= {id(e) for e, a in zip(replies, answers, strict=True) if a.matched}
            self._observe_latency([e for e, a in zip(replies, answers, strict=True) if a.matched])
        for event in events:
            if isinstance(event, CallResult) and event.keys:
                answer = await self._answers.answer_call(channel, event.external_id, event.keys)
            elif isinstance(event, DeviceConfirmation) and event.played:
                answer = await self._answers.answer_device(channel, event.external_id, played=True)
            else:
                continue
            if answer.matched:
                answered.add(id(event))
                self._observe_latency([event])
        return answered

    def _observe_latency(self, events: Sequence[InboundEvent]) -> None:
        """Key (or reply) to acknowledgement committed: the event's time is the channel's, on the
        same injected clock as ours."""
        now = self._clock.now()
        for event in events:
            seconds = max((now - event.at).total_seconds(), 0.0)
            self._metrics.answer_latency.labels(_KIND[type(event)]).observe(seconds)


_KIND: dict[type, str] = {
    DeliveryReceipt: "receipt",
    CallResult: "call_result",
    DeviceConfirmation: "device_confirmation",
    DeviceStatus: "device_status",
    Reply: "reply",
}


def _percent(value: int | None) -> int | None:
    """A reading in percent, or None when the device sent none that makes sense."""
    return value if value is not None and 0 <= value <= 100 else None


def _receipt(event: InboundEvent) -> tuple[str, bool, str] | None:
    """What an event says of an accepted message: (external id, reached, detail), if anything."""
    if isinstance(event, DeliveryReceipt):
        ok = event.status is ReceiptStatus.DELIVERED
        return event.external_id, ok, f"{event.status.value} {event.detail}".strip()
    if isinstance(event, CallResult):
        return event.external_id, event.answered, event.cause or "not answered"
    if isinstance(event, DeviceConfirmation):
        return event.external_id, event.played, event.detail or "not played"
    return None


def _payload(event: InboundEvent) -> dict[str, object]:
    data: dict[str, object] = {"type": type(event).__name__}
    for name, value in vars(event).items():
        data[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return data


def _clean(event: InboundEvent) -> InboundEvent:
    """The event with NUL characters replaced: PostgreSQL's text and jsonb hold none, and a
    gateway or a phone may send them."""
    changes: dict[str, Any] = {
        name: value.replace("\x00", "\ufffd")
        for name, value in vars(event).items()
        if isinstance(value, str) and "\x00" in value
    }
    return replace(event, **changes) if changes else event
