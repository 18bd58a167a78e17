"""Dispatch: per-channel workers that claim due deliveries, send them, and record the outcome.

Each configured channel instance gets one worker. A worker claims a batch of rows (``FOR UPDATE
SKIP LOCKED``, most urgent first), waits for the channel's rate, sends, and writes every outcome
back in one statement per outcome. A batch is at most the channel's window; but a channel that
keeps its own window and queues the rest (``Limits.queues``) is handed up to
:data:`AHEAD_BATCHES` batches at once, a second of its rate at most: the next batch is claimed
and the last recorded while one is on the wire.

Retrying is decided here and only here: transient failures go back to the queue with exponential
backoff and jitter, permanent ones fail over to the next channel kind the policy named, and a
worker that dies leaves leased rows that return to the queue when the lease runs out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg
import structlog
from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from channels.base import (
    CallResult,
    Channel,
    DeliveryReceipt,
    DeviceConfirmation,
    InboundEvent,
    OutboundMessage,
    Outcome,
    ReceiptStatus,
    Reply,
    SendResult,
)
from channels.pacing import Pacer
from warnd.app.metrics import Metrics
from warnd.core.clock import Clock
from warnd.db.notify import DELIVERIES_CHANNEL, Wakeup
from warnd.db.queries import columns, sql
from warnd.pipeline.callouts import CallOuts

log = structlog.get_logger(__name__)

# A queueing channel is handed up to this many batches at once, together at most a second of its
# rate and at most AHEAD_MESSAGES: a quarter of a second of a fast SMPP link (12,000 messages/s),
# enough to keep it busy through a claim and a record (~25 ms each under load), little enough that
# a red warning queued a moment later waits behind at most a second of sending at full rate (a
# throttled link takes longer; the channel gives back what waits too long, unsent).
AHEAD_BATCHES = 3
AHEAD_MESSAGES = 3_000

_BACKOFF = wait_exponential_jitter(multiplier=2, max=300, exp_base=2, jitter=2)


def backoff_seconds(attempt: int) -> float:
    """Delay before attempt ``attempt + 1``: exponential from 2 s, capped at 5 min, with jitter."""
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return float(_BACKOFF(state))


class Claimed(NamedTuple):
    """A claimed row (a tuple: built by the thousand a second on the sending path)."""

    id: int
    warning_id: int
    address: str
    attempts: int
    fallback: tuple[str, ...]
    body: str


@dataclass(frozen=True)
class Outcomes:
    """The results of one batch, grouped the way they are written back.

    Each row carries its claim's ``attempts``: the fence that stops a worker whose lease ran out
    from overwriting the outcome of the worker that claimed the row after it.
    """

    sent: list[tuple[int, int, str, int | None]]  # id, attempts, external id, SMS parts
    retry: list[tuple[int, int, float, str]]  # id, attempts, delay, reason
    give_up: list[
        tuple[int, int, str]
    ]  # permanent, or transient too many times: id, attempts, reason


def classify(
    claimed: Sequence[Claimed], results: Sequence[SendResult], max_attempts: int
) -> Outcomes:
    """Pure: what becomes of each claimed row, given the channel's results."""
    by_key = {r.key: r for r in results}
    sent, retry, give_up = [], [], []
    for row in claimed:
        result = by_key.get(row.id)
        if result is None:
            result = SendResult(row.id, Outcome.TRANSIENT, detail="channel returned no result")
        if result.outcome is Outcome.ACCEPTED:
            sent.append((row.id, row.attempts, result.external_id or "", result.parts))
            continue
        reason = f"{result.reason or 'unknown'}: {result.detail}".rstrip(": ")
        if result.outcome is Outcome.TRANSIENT and row.attempts < max_attempts:
            retry.append((row.id, row.attempts, backoff_seconds(row.attempts), reason))
        else:
            give_up.append((row.id, row.attempts, reason))
    return Outcomes(sent, retry, give_up)


class Dispatcher:
    """Runs one send worker and one inbound listener per channel."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: Mapping[str, Channel],
        clock: Clock,
        metrics: Metrics,
        wakeup: Wakeup,
        *,
        lease_seconds: float = 120.0,
        max_attempts: int = 5,
        poll_seconds: float = 1.0,
        answers: CallOuts | None = None,
    ) -> None:
        self._pool = pool
        self._channels = channels
        self._clock = clock
        self._metrics = metrics
        self._wakeup = wakeup
        self._lease = lease_seconds
        self._max_attempts = max_attempts
        self._poll = poll_seconds
        self._answers = answers

    async def run_worker(self, channel: Channel) -> None:
        """Send for one channel until cancelled (see the module docstring for batch sizes)."""
        limits = channel.limits
        rate = max(1, int(limits.rate_per_s))
        if limits.queues:
            depth = AHEAD_BATCHES
            batch_size = max(1, min(rate, AHEAD_MESSAGES) // depth)
        else:
            depth, batch_size = 1, max(1, min(limits.window, rate))
        bucket = Pacer(limits.rate_per_s, self._clock)
        sending: set[asyncio.Task[None]] = set()
        try:
            while True:
                if len(sending) >= depth:
                    await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in sending if t.done()]:
                    sending.discard(task)
                    task.result()  # a batch that failed to record stops the worker, as before
                claimed = await self.claim(channel, batch_size)
                if not claimed:
                    await self._wakeup.wait(self._poll)
                    continue
                sending.add(asyncio.create_task(self._send_batch(channel, bucket, claimed)))
        except asyncio.CancelledError:
            # Stopping: the batches on the wire hand their rows back (see _send_batch).
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
            raise
        except BaseException:
            # A claim or a batch's record failed (the database went away): the batches on the
            # wire finish and record (or, failing too, wait for their lease) rather than hand
            # back rows that may already have reached a phone.
            await asyncio.gather(*sending, return_exceptions=True)
            raise

    async def _send_batch(self, channel: Channel, bucket: Pacer, claimed: list[Claimed]) -> None:
        try:
            await bucket.acquire(len(claimed))
            results = await self._send(channel, claimed)
        except asyncio.CancelledError:
            # Stopping mid-send: hand the rows back now instead of waiting for the lease.
            await asyncio.shield(self._release(claimed))
            raise
        await asyncio.shield(self.record(channel.name, claimed, results))
        log.debug("batch_sent", channel=channel.name, size=len(claimed))

    async def claim(self, channel: Channel, limit: int) -> list[Claimed]:
        rows = await self._pool.fetch(
            sql("claim_deliveries"),
            channel.kind.value,
            channel.name,
            limit,
            self._clock.now(),
            self._lease,
        )
        return [
            Claimed(
                r["id"],
                r["warning_id"],
                r["address"],
                r["attempts"],
                tuple(r["fallback"]),
                r["body"],
            )
            for r in rows
            if r["state"] == "sending"  # the others belonged to ended warnings: now cancelled
        ]

    async def _send(self, channel: Channel, claimed: Sequence[Claimed]) -> list[SendResult]:
        batch = [OutboundMessage(c.id, c.address, c.body) for c in claimed]
        try:
            return await channel.send(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a plugin's bug must not kill dispatch; it is logged, retried
            log.exception("channel_send_crashed", channel=channel.name)
            return [
                SendResult(c.id, Outcome.TRANSIENT, detail=f"channel error: {exc!r}")
                for c in claimed
            ]

    async def record(
        self, channel: str, claimed: Sequence[Claimed], results: Sequence[SendResult]
    ) -> None:
        """Write a batch's outcomes back in a few set-based statements."""
        outcomes = classify(claimed, results, self._max_attempts)
        now = self._clock.now()
        failed_over: list[int] = []
        async with self._pool.acquire() as conn, conn.transaction():
            if outcomes.sent:
                await conn.execute(sql("record_sent"), *columns(outcomes.sent), now)
            if outcomes.retry:
                await conn.execute(sql("record_retry"), *columns(outcomes.retry), now)
            if outcomes.give_up:
                given_up = columns(outcomes.give_up)
                failed_over = [
                    r["id"] for r in await conn.fetch(sql("record_failover"), *given_up, now)
                ]
                await conn.execute(sql("record_failed"), *given_up, now)
            if failed_over:
                await conn.execute("SELECT pg_notify($1, '')", DELIVERIES_CHANNEL)
        for result in results:
            if result.outcome is not Outcome.ACCEPTED:
                self._metrics.send_failures.labels(
                    channel, result.outcome.value, str(result.reason or "unknown")
                ).inc()
        self._metrics.deliveries.labels(channel, "sent").inc(len(outcomes.sent))
        self._metrics.deliveries.labels(channel, "queued").inc(
            len(outcomes.retry) + len(failed_over)
        )
        self._metrics.deliveries.labels(channel, "failed").inc(
            len(outcomes.give_up) - len(failed_over)
        )

    async def _release(self, claimed: Sequence[Claimed]) -> None:
        await self._pool.execute(
            sql("release_claims"), [c.id for c in claimed], [c.attempts for c in claimed]
        )

    async def reclaim_leases(self) -> int:
        """Return rows whose worker died mid-send to the queue; called periodically."""
        status = await self._pool.execute(sql("reclaim_expired_leases"), self._clock.now())
        count = int(status.rsplit(" ", 1)[1])
        if count:
            log.warning("leases_reclaimed", deliveries=count)
            self._wakeup.set()
        return count

    async def run_inbound(self, channel: Channel, batch_size: int = 1000) -> None:
        """Record what one channel reports back, in batches, until cancelled."""
        queue: asyncio.Queue[InboundEvent] = asyncio.Queue()

        async def pump() -> None:
            async for event in channel.events():
                queue.put_nowait(event)

        pump_task = asyncio.create_task(pump())
        try:
            while True:
                batch = [await queue.get()]
                while len(batch) < batch_size and not queue.empty():
                    batch.append(queue.get_nowait())
                unmatched = await self.handle_events(channel.name, batch)
                if unmatched:
                    # A fast network can report before the send's own outcome is written: try
                    # those once more a moment later, then keep them as unmatched.
                    await asyncio.sleep(0.5)
                    await self.handle_events(channel.name, unmatched, final=True)
        finally:
            pump_task.cancel()
            await asyncio.gather(pump_task, return_exceptions=True)

    async def handle_events(
        self, channel: str, events: Sequence[InboundEvent], *, final: bool = False
    ) -> list[InboundEvent]:
        """Apply inbound events; return receipts that matched no delivery yet (unless final).

        Matched delivery receipts live on their delivery row only; replies, call results,
        device confirmations and unmatched receipts are kept in ``inbound_events`` too.
        """
        receipts = [(e, fact) for e in events if (fact := _receipt(e)) is not None]
        matched: set[str] = set()
        if receipts:
            rows = await self._pool.fetch(
                sql("record_receipts"),
                channel,
                [fact[0] for _, fact in receipts],
                [fact[1] for _, fact in receipts],
                [fact[2] for _, fact in receipts],
                self._clock.now(),
            )
            matched = {r["external_id"] for r in rows}
            for _, (external_id, ok, _) in receipts:
                if external_id in matched:
                    self._metrics.deliveries.labels(channel, "delivered" if ok else "failed").inc()
        retry = [] if final else [e for e, fact in receipts if fact[0] not in matched]
        skip = {id(e) for e in retry} | {
            id(e) for e in events if isinstance(e, DeliveryReceipt) and e.external_id in matched
        }
        keep = [e for e in events if id(e) not in skip]
        answered = await self._answer(channel, keep)
        if keep:
            hits = [
                id(e) in answered or (not isinstance(e, Reply) and e.external_id in matched)
                for e in keep
            ]
            kinds = [_KIND[type(e)] for e in keep]
            await self._pool.execute(
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
        return retry

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
        for event in events:
            if isinstance(event, CallResult) and event.keys:
                answer = await self._answers.answer_call(channel, event.external_id, event.keys)
            elif isinstance(event, DeviceConfirmation) and event.played:
                answer = await self._answers.answer_device(channel, event.external_id, played=True)
            else:
                continue
            if answer.matched:
                answered.add(id(event))
        return answered


_KIND: dict[type, str] = {
    DeliveryReceipt: "receipt",
    CallResult: "call_result",
    DeviceConfirmation: "device_confirmation",
    Reply: "reply",
}


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
