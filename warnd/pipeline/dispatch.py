"""Dispatch: per-channel workers that claim due deliveries, send them, and record the outcome.

Each configured channel instance gets one worker. A worker claims a batch of rows (``FOR UPDATE
SKIP LOCKED``, most urgent first), waits for the channel's rate, sends, and writes every outcome
back in one statement per outcome. A batch is at most the channel's window; but for a channel
that keeps its own window and queues the rest (``Limits.queues``) up to :data:`AHEAD_BATCHES`
batches are claimed at once, a second of its rate at most, and handed over in shares as those
before are recorded: the window never waits for a claim, and never holds more than a window
that is not on record (what a crash could send twice).

What becomes of each row is decided once, by ``warnd.core.outcomes.classify``: transient failures
go back to the queue with backoff, permanent ones fail over to the next channel kind the policy
named. A worker that dies leaves leased rows that return to the queue when the lease runs out.
What channels report back is ``warnd.pipeline.inbound``'s job.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from datetime import timedelta

import asyncpg
import structlog
from structlog.contextvars import bind_contextvars

from channels.base import Channel, Outcome, SendResult, WarningContext
from channels.pacing import Pacer
from warnd.app.metrics import Metrics
from warnd.core.clock import Clock
from warnd.core.outcomes import Claimed, classify
from warnd.db.notify import DELIVERIES_CHANNEL, Signal, Wakeup
from warnd.db.queries import columns, sql

log = structlog.get_logger(__name__)

# A queueing channel has up to this many batches claimed at once, together at most a second of its
# rate and at most AHEAD_MESSAGES: a quarter of a second of a fast SMPP link (12,000 messages/s),
# enough to keep it busy through a claim and a record (~25 ms each under load), little enough that
# a red warning queued a moment later waits behind at most a second of sending at full rate (a
# throttled link takes longer; the channel gives back what waits too long, unsent).
AHEAD_BATCHES = 3
AHEAD_MESSAGES = 3_000
# A queueing channel's window is handed in this many shares (see Dispatcher._send_shares).
SHARES_PER_WINDOW = 4
# What a record raises while the database is unreachable (a cut cable, a restart): the outcomes
# are written again rather than lost, since the messages went out.
UNREACHABLE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


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
        recorded: Signal | None = None,
        lease_seconds: float = 120.0,
        max_attempts: int = 5,
        poll_seconds: float = 1.0,
    ) -> None:
        self._pool = pool
        self._channels = channels
        self._clock = clock
        self._metrics = metrics
        self._wakeup = wakeup
        self._lease = lease_seconds
        self._max_attempts = max_attempts
        self._poll = poll_seconds
        self._recorded = recorded  # set once sent rows carry their gateway ids (for receipts)
        self._stopping = False
        self._stopped: set[str] = set()  # channels given up (another process holds them now)
        self._records: set[asyncio.Task[None]] = set()  # records that outlive their worker
        self._credit: dict[str, _Credit] = {}  # per queueing channel: see _send_shares
        self._recorders: dict[str, _Recorder] = {}  # … and what records its shares

    def stop_claiming(self, channel: str | None = None) -> None:
        """Stopping gracefully (one channel's worker, or every one): claim nothing more, and
        return once the batches already handed to the channel have their outcomes recorded
        (within a poll)."""
        if channel is None:
            self._stopping = True
        else:
            self._stopped.add(channel)
        self._wakeup.set()

    def resume_claiming(self, channel: str) -> None:
        """A channel given up is held here again: its next worker claims."""
        self._stopped.discard(channel)

    def _stops(self, channel: Channel) -> bool:
        return self._stopping or channel.name in self._stopped

    async def run_worker(self, channel: Channel) -> None:
        """Send for one channel until cancelled, or until ``stop_claiming`` and the batches on
        the wire are recorded (see the module docstring for batch sizes). Cancelled, the batches
        on the wire hand their rows back."""
        # The worker is a task of its own: what it and its batches log names the channel.
        bind_contextvars(channel=channel.name)
        limits = channel.limits
        rate = max(1, int(limits.rate_per_s))
        if limits.queues:
            depth = AHEAD_BATCHES
            batch_size = max(1, min(rate, AHEAD_MESSAGES) // depth)
        else:
            depth, batch_size = 1, max(1, min(limits.window, rate))
        bucket = Pacer(limits.rate_per_s, self._clock)
        sending: set[asyncio.Task[None]] = set()
        failed = asyncio.Event()  # a batch's record failed: claim nothing more
        try:
            while True:
                if len(sending) >= depth:
                    await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in sending if t.done()]:
                    sending.discard(task)
                    task.result()  # a batch that failed to record stops the worker, as before
                if self._stops(channel) or failed.is_set():
                    break
                claimed = await self.claim(channel, batch_size)
                if failed.is_set():  # while the claim was on its way: these go back unsent
                    await asyncio.shield(self._release(claimed))
                    break
                if not claimed:
                    await self._wakeup.wait(self._poll)
                    continue
                sending.add(asyncio.create_task(self._send_batch(channel, bucket, claimed, failed)))
            # Stopping gracefully: what is on the wire finishes and is recorded, never handed
            # back (it may have reached its gateway).
            await asyncio.gather(*sending)
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

    async def _send_batch(
        self, channel: Channel, bucket: Pacer, claimed: list[Claimed], failed: asyncio.Event
    ) -> None:
        """Send a claimed batch and record its outcomes (a queueing channel's in shares, see
        ``_send_shares``; ``failed`` is set as soon as one of them fails to record)."""
        try:
            await bucket.acquire(len(claimed))
        except asyncio.CancelledError:
            await asyncio.shield(self._release(claimed))
            raise
        if channel.limits.queues:
            await self._send_shares(channel, claimed, failed)
            return
        try:
            results = await self._send(channel, claimed)
        except asyncio.CancelledError:
            # Stopping mid-send: hand the rows back now instead of waiting for the lease.
            await asyncio.shield(self._release(claimed))
            raise
        await asyncio.shield(self._recording(channel.name, claimed, results))
        log.debug("batch_sent", channel=channel.name, size=len(claimed))

    async def _send_shares(
        self, channel: Channel, claimed: list[Claimed], failed: asyncio.Event
    ) -> None:
        """Hand a queueing channel's batch over in shares, each recorded as soon as it comes back.

        At most a window of the channel's messages are handed and not yet recorded, whatever its
        rate (``_Credit``): a process killed mid-send leaves at most a window that a gateway may
        have accepted and that is sent again when the lease runs out; a database that goes away
        stops sending within a window. The price is the record's time in each message's round
        trip: the window is refilled when outcomes are on record, not when the gateway answers.
        Shares are a quarter of the window, so that the window keeps moving while some are
        being recorded."""
        credit = self._credit.setdefault(channel.name, _Credit(max(1, channel.limits.window)))
        recorder = self._recorders.setdefault(
            channel.name, _Recorder(functools.partial(self._record_again, channel.name))
        )
        size = max(1, credit.capacity // SHARES_PER_WINDOW)
        shares: list[asyncio.Task[None]] = []
        handed = 0
        try:
            while handed < len(claimed) and not self._stops(channel) and not failed.is_set():
                share = claimed[handed : handed + size]
                await credit.take(len(share))
                if self._stops(channel) or failed.is_set():
                    credit.give(len(share))
                    break
                shares.append(
                    asyncio.create_task(self._send_share(channel, share, credit, recorder, failed))
                )
                handed += len(share)
            # Waited for, not gathered: cancelling a gather would cancel a share that has not
            # started yet, before it could hand its rows and its credit back.
            if shares:
                done, _ = await asyncio.wait(shares, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()  # a share whose record failed raises here
        except asyncio.CancelledError:
            # Stopping: the shares still with the channel hand their rows back (each its own),
            # those being recorded are recorded; what was never handed goes back now.
            for task in shares:
                task.cancel()
            await asyncio.gather(*shares, return_exceptions=True)
            await asyncio.shield(self._release(claimed[handed:]))
            raise
        except BaseException:
            # A record failed (the database went away): nothing more is handed, the worker
            # claims nothing more, the shares on the wire finish; the rows never handed wait for
            # their lease with the others rather than go back now.
            failed.set()
            await asyncio.gather(*shares, return_exceptions=True)
            raise
        if handed < len(claimed):
            # Stopping gracefully, the channel given up, or another batch's record failed: what
            # never reached the channel goes back to the queue at once, for this process's next
            # start or the channel's new owner.
            await asyncio.shield(self._release(claimed[handed:]))
        log.debug("batch_sent", channel=channel.name, size=len(claimed))

    async def _send_share(
        self,
        channel: Channel,
        share: list[Claimed],
        credit: _Credit,
        recorder: _Recorder,
        failed: asyncio.Event,
    ) -> None:
        """Send one share and record it; its credit comes back once it is on record (or handed
        back, stopping mid-send). A record that fails sets ``failed``: nothing more is handed."""
        try:
            results = await self._send(channel, share)
        except asyncio.CancelledError:
            try:
                await asyncio.shield(self._release(share))
            finally:
                credit.give(len(share))
            raise
        recorded = recorder.record(share, results)

        def on_record(done: asyncio.Future[None]) -> None:
            credit.give(len(share))
            if not done.cancelled() and done.exception() is not None:
                failed.set()

        recorded.add_done_callback(on_record)
        await asyncio.shield(recorded)

    def _recording(
        self, channel: str, claimed: Sequence[Claimed], results: Sequence[SendResult]
    ) -> asyncio.Task[None]:
        """``_record_again`` as a task of its own, kept until done: a worker cancelled while it
        runs (stopping, or the channel given up) does not take the record down with it."""
        task = asyncio.create_task(self._record_again(channel, claimed, results))
        self._records.add(task)
        task.add_done_callback(self._records.discard)
        return task

    async def _record_again(
        self, channel: str, claimed: Sequence[Claimed], results: Sequence[SendResult]
    ) -> None:
        """``record``, tried again while the database is unreachable: these messages went out,
        and rows left ``sending`` would go out a second time when their lease runs out. Tried
        for half a lease (after that another worker may have claimed them again, and the
        record's fence would refuse it anyway); then the error is raised."""
        give_up_at = self._clock.now() + timedelta(seconds=self._lease / 2)
        pause = 0.2
        while True:
            try:
                await self.record(channel, claimed, results)
            except UNREACHABLE as exc:
                if self._clock.now() + timedelta(seconds=pause) > give_up_at:
                    raise
                log.warning(
                    "record_retrying",
                    channel=channel,
                    messages=len(claimed),
                    error=f"{type(exc).__name__}: {exc}",
                )
                await self._clock.sleep(pause)
                pause = min(2 * pause, 5.0)
            else:
                return

    async def claim(self, channel: Channel, limit: int) -> list[Claimed]:
        rows = await self._pool.fetch(
            sql("claim_deliveries"),
            channel.kind.value,
            channel.name,
            limit,
            self._clock.now(),
            self._lease,
        )
        contexts: dict[int, WarningContext] = {}  # one per warning, shared by its rows
        claimed = []
        for r in rows:
            if r["state"] != "sending":  # it belonged to an ended warning: now cancelled
                continue
            warning = contexts.get(r["warning_id"])
            if warning is None:
                warning = contexts[r["warning_id"]] = WarningContext(
                    r["warning_id"],
                    r["hazard"],
                    r["level"],
                    r["exercise"],
                    r["expires"],
                    r["msg_type"],
                )
            claimed.append(
                Claimed(
                    r["id"],
                    r["warning_id"],
                    r["address"],
                    r["attempts"],
                    tuple(r["fallback"]),
                    r["body"],
                    r["priority"],
                    warning,
                    r["expires_at"],
                )
            )
        return claimed

    async def _send(self, channel: Channel, claimed: Sequence[Claimed]) -> list[SendResult]:
        batch = [c.message() for c in claimed]
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
            if outcomes.expired:
                await conn.execute(sql("record_expired"), *columns(outcomes.expired), now)
            if failed_over:
                await conn.execute("SELECT pg_notify($1, '')", DELIVERIES_CHANNEL)
        if outcomes.sent and self._recorded is not None:
            self._recorded.set()
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
        self._metrics.deliveries.labels(channel, "expired").inc(len(outcomes.expired))

    async def _release(self, claimed: Sequence[Claimed]) -> None:
        await self._pool.execute(
            sql("release_claims"), [c.id for c in claimed], [c.attempts for c in claimed]
        )

    async def notify_skipped_callouts(self) -> int:
        """Mark notified the call-outs whose message went out while another transaction held
        them (``record_sent`` skips those rather than deadlock); how many. Called periodically."""
        rows = await self._pool.fetch(sql("notify_skipped_callouts"))
        if rows:
            log.info("callouts_notified_late", callouts=len(rows))
        return len(rows)

    async def reclaim_leases(self) -> int:
        """Return rows whose worker died mid-send to the queue; called periodically."""
        status = await self._pool.execute(sql("reclaim_expired_leases"), self._clock.now())
        count = int(status.rsplit(" ", 1)[1])
        if count:
            log.warning("leases_reclaimed", deliveries=count)
            self._wakeup.set()
        return count


class _Credit:
    """How many more messages a channel may be handed before the outcomes of those it has are
    on record: taken before a share is handed, given back once it is recorded. Takers are served
    in the order they asked, so batches go out in the order they were claimed."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, count: int) -> None:
        if not self._waiting and self._free >= count:
            self._free -= count
            return
        granted = asyncio.get_running_loop().create_future()
        entry = (count, granted)
        self._waiting.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.cancelled():  # gave up waiting: those behind may go now
                with suppress(ValueError):
                    self._waiting.remove(entry)
                self._serve()
            else:  # granted, then cancelled before it could be used
                self.give(count)
            raise

    def give(self, count: int) -> None:
        self._free += count
        self._serve()

    def _serve(self) -> None:
        while self._waiting:
            wanted, granted = self._waiting[0]
            if not granted.cancelled():
                if wanted > self._free:
                    return
                self._free -= wanted
                granted.set_result(None)
            self._waiting.popleft()


_Back = tuple[Sequence[Claimed], Sequence[SendResult], asyncio.Future[None]]


class _Recorder:
    """Records what a queueing channel's shares bring back: everything that came back while the
    last record was being written goes into the next one (group commit), so a fast link's
    shares cost one transaction per database round trip, not one each. A record's task belongs
    to no worker: a worker cancelled meanwhile does not take it down."""

    def __init__(
        self, write: Callable[[Sequence[Claimed], Sequence[SendResult]], Awaitable[None]]
    ) -> None:
        self._write = write
        # Shares back and not yet in a record: their rows, outcomes, and what says it is done.
        self._waiting: list[_Back] = []
        self._writer: asyncio.Task[None] | None = None

    def record(
        self, share: Sequence[Claimed], results: Sequence[SendResult]
    ) -> asyncio.Future[None]:
        """Done once the share's outcomes are written (or have failed to be)."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((share, results, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await self._write(
                    [c for share, _, _ in group for c in share],
                    [r for _, results, _ in group for r in results],
                )
            except asyncio.CancelledError:  # the loop is shutting down: not written
                for _, _, done in group:
                    done.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 (each share's waiter raises it)
                # What waits behind it is still tried: a record that comes after its rows' lease
                # is refused by the fence if they were claimed again, and is harmless if not.
                for _, _, done in group:
                    done.set_exception(exc)
            else:
                for _, _, done in group:
                    done.set_result(None)
