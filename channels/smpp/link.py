"""One SMPP link: a transceiver bind to one SMSC, kept bound by its supervisor task, sending
through ``window`` lanes at its pace and counting what it sees (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import smpp34
import structlog

from channels.base import (
    ChannelClock,
    OutboundMessage,
    Outcome,
    Reason,
    SendResult,
    expiry,
)
from channels.pacing import Pacer
from channels.registry import ChannelConfigError
from channels.smpp.config import SmppConfig, SmppLinkConfig
from channels.smpp.pdu import ESM_CLASS_UDHI, ESME_RTHROTTLED, BadInputError, classify_status
from channels.sms_codec import EncodedText, with_udh
from channels.sms_routing import national_number

log = structlog.get_logger(__name__)

# deliver_sm the library may hold for us before it answers the SMSC "queue full": a city-wide
# warning brings receipts back as fast as messages go out.
INBOUND_CAPACITY = 65_536


class SmppBindError(ChannelConfigError):
    """An SMPP link could not bind at start-up; the message names the link and what to check.

    A configuration error like any other (wrong system_id or password, or a port that does not
    speak SMPP), so the daemon reports it the way it reports a bad ``[channels]`` table.
    """


class PendingBatch:
    """One ``send`` call's messages on their way through the links' lanes: a result per message,
    and one future that completes when the last of them is settled (no task per message)."""

    def __init__(self, size: int) -> None:
        self.results: list[SendResult | None] = [None] * size
        self.left = size
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.withdrawn = False  # the caller stopped waiting: queued messages are not sent

    def settle(self, index: int, result: SendResult) -> None:
        self.results[index] = result
        self.left -= 1
        if not self.left and not self.done.done():
            self.done.set_result(None)


# A message waiting for a lane: its batch, its place in it, the message, its national number, its
# encoded text and when it was queued (time.monotonic()).
_Job = tuple[PendingBatch, int, OutboundMessage, str, EncodedText, float]
# In the queue: (the message's priority, order of arrival, the job). The most urgent goes first
# (an earthquake alert ahead of the thousands of a rainstorm fan-out already waiting), in order
# of arrival within a priority; the order number keeps jobs themselves from being compared.
_Queued = tuple[int, int, _Job]


class _Overdue:
    """Cancels the ``submit_sm`` futures still unanswered after the link's response timeout.

    One timer per link instead of an ``asyncio.timeout`` per message (a timer handle, a heap push
    and a task lookup each: a tenth of the channel's CPU at 8,000 messages/s). The timeout is the
    same for every submission, so deadlines arrive in submission order and a deque holds them.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._watched: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, future: asyncio.Future[Any]) -> None:
        loop = asyncio.get_running_loop()
        self._watched.append((loop.time() + self.timeout, future))
        if self._timer is None:
            self._timer = loop.call_at(self._watched[0][0], self._sweep)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        watched = self._watched
        while watched and (watched[0][1].done() or watched[0][0] <= now):
            future = watched.popleft()[1]
            future.cancel()  # no-op when answered
        self._timer = loop.call_at(watched[0][0], self._sweep) if watched else None


@dataclass
class LinkStats:
    """Counters of one link since the channel was built."""

    binds: int = 0
    drops: int = 0
    submitted: int = 0  # submit_sm PDUs written
    accepted: int = 0  # messages (all parts) accepted
    refused: int = 0  # messages refused with a non-zero submit_sm_resp status
    throttled: int = 0
    timeouts: int = 0
    lost: int = 0  # messages whose submit_sm_resp never came because the link dropped
    receipts: Counter[str] = field(default_factory=Counter)
    replies: int = 0
    bad_input: Counter[str] = field(default_factory=Counter)
    last_error: str = ""


class LinkOwner(Protocol):
    """What a link asks of the channel it serves."""

    name: str

    def remember(self, first: str, message_id: str, total: int) -> None:
        """Note an SMSC id the moment its part is accepted."""

    def on_deliver(self, link: Link, event: smpp34.DeliverSmEvent) -> None:
        """Take one deliver_sm; raises BadInputError with the reason it cannot be used."""


class Link:
    """One transceiver bind to one SMSC, kept bound by its supervisor task."""

    def __init__(
        self,
        name: str,
        config: SmppLinkConfig,
        *,
        owner: LinkOwner,
        settings: SmppConfig,
        clock: ChannelClock,
    ) -> None:
        assert config.window is not None and config.rate is not None and config.source_addr
        self.name = name
        self.config = config
        self.window = config.window
        self._owner = owner
        self._settings = settings
        self.stats = LinkStats()
        # Up to 50 ms of the rate at once (at least one message): a sleep before every message
        # of a fast link would cost more than it smooths.
        self.pace = Pacer(
            config.rate,
            clock,
            burst=max(1.0, config.rate * 0.05),
            cooldown=settings.throttle_cooldown_s,
        )
        self._clock = clock
        self._jobs: asyncio.PriorityQueue[_Queued] = asyncio.PriorityQueue()
        self._arrivals = itertools.count()
        self._lanes: list[asyncio.Task[None]] = []
        self._overdue = _Overdue(settings.response_timeout_s)
        self.in_flight = 0
        self._client: smpp34.Client | None = None
        self._session: smpp34.Smsc | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._references = itertools.count(random.randrange(256))  # noqa: S311 - not security
        source = config.source_addr
        alphanumeric = not source.isdigit()
        self._source = source
        self._source_ton, self._source_npi = (5, 0) if alphanumeric else (0, 1)

    @property
    def bound(self) -> bool:
        return self._session is not None

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    # lifecycle

    async def bind_once(self) -> None:
        """The first bind, at start-up: a refusal is a configuration error and raises."""
        problem = await self._unreachable()
        if problem is None:
            try:
                await self._bind()
            except smpp34.SmppError as exc:
                problem = str(exc)
                if "TCP connect" not in problem:
                    raise SmppBindError(
                        f"SMPP link {self.name!r} ({self.where}, system_id "
                        f"{self.config.system_id!r}): the SMSC did not accept the bind within "
                        f"{self._settings.bind_timeout_s:g} s ({problem}); check system_id, "
                        "password and system_type with the operator, and that this port speaks "
                        "SMPP"
                    ) from exc
        if problem is not None:
            # The SMSC cannot be reached right now: the link stays down and keeps retrying.
            self.stats.last_error = problem
            log.warning("smpp_link_down", link=self.name, where=self.where, error=problem)
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"warnd-smpp-{self._owner.name}-{self.name}"
        )
        self._lanes = [asyncio.create_task(self._lane()) for _ in range(self.window)]

    async def _unreachable(self) -> str | None:
        """Why the SMSC's port cannot be reached over TCP, or None when it can.

        smpp34 reports a connection that never completes and a bind the SMSC ignores or refuses
        alike ("bind timed out"); probing TCP first tells a network outage (the link retries) from
        a refused bind (a configuration error) at start-up.
        """
        try:
            async with asyncio.timeout(self._settings.bind_timeout_s):
                _, writer = await asyncio.open_connection(self.config.host, self.config.port)
        except (OSError, TimeoutError) as exc:
            return f"TCP connect failed: {str(exc) or 'timed out'}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None

    async def close(self) -> None:
        tasks = [*self._lanes, *([self._supervisor] if self._supervisor else [])]
        self._lanes, self._supervisor = [], None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not self._jobs.empty():
            _, _, (batch, index, message, *_) = self._jobs.get_nowait()
            batch.settle(index, _stopped(message, "channel stopped, not sent"))
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(smpp34.SmppError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await session.unbind()
        await self._stop_client()

    async def _stop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(smpp34.SmppError, RuntimeError):
                await client.stop()

    async def _bind(self) -> None:
        password = self.config.password.get_secret_value()
        client = smpp34.Client(
            self.config.host,
            self.config.port,
            self.config.system_id,
            password,
            bind_type="TRX",
            system_type=self.config.system_type,
            window_size=self.window,
            inbound_capacity=INBOUND_CAPACITY,
            connect_timeout_ms=int(self._settings.bind_timeout_s * 1000),
        )
        self._client = client
        try:
            session = await client.connect()
        except BaseException:
            await self._stop_client()
            raise
        self._session = session
        self.stats.binds += 1
        self.stats.last_error = ""
        log.info("smpp_link_bound", link=self.name, where=self.where)

    async def _supervise(self) -> None:
        """Receive while bound; after a drop, re-bind with backoff until cancelled."""
        delay = 0.5
        while True:
            session = self._session
            if session is not None:
                await self._receive(session)
                self._session = None
                await self._stop_client()
                self.stats.drops += 1
                log.warning("smpp_link_dropped", link=self.name, where=self.where)
                delay = 0.5
            # Jitter keeps several warnd processes from re-binding in lockstep. Real time, not
            # the channel's clock: an SMSC recovers in real time, and a test clock whose sleep
            # returns at once would turn the backoff into a busy loop of connects.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - not security
            try:
                await self._bind()
            except (smpp34.SmppError, OSError) as exc:
                self.stats.last_error = str(exc)
                log.warning("smpp_bind_failed", link=self.name, where=self.where, error=str(exc))
                delay = min(delay * 2, self._settings.reconnect_max_s)

    async def _receive(self, session: smpp34.Smsc) -> None:
        while True:
            try:
                event = await session.next()
            except smpp34.SmppError:
                return
            if isinstance(event, smpp34.Disconnected):
                return
            try:
                self._owner.on_deliver(self, event)
            except BadInputError as exc:
                self.bad_input(str(exc), source=event.source_addr)
            except (ValueError, LookupError, UnicodeError) as exc:
                # Bytes no rule above foresaw: count them too, and keep receiving.
                self.bad_input("undecodable deliver_sm", source=event.source_addr, error=repr(exc))

    def bad_input(self, reason: str, **context: object) -> None:
        self.stats.bad_input[reason] += 1
        masked = {k: _mask(str(v)) if k == "source" else v for k, v in context.items()}
        log.warning("smpp_bad_input", link=self.name, reason=reason, **masked)

    # sending

    def enqueue(
        self,
        batch: PendingBatch,
        index: int,
        message: OutboundMessage,
        number: str,
        text: EncodedText,
    ) -> None:
        """Queue message ``index`` of ``batch`` (to national ``number``) for the next free lane."""
        job = (batch, index, message, number, text, time.monotonic())
        self._jobs.put_nowait((message.priority, next(self._arrivals), job))

    async def _lane(self) -> None:
        """One of the link's ``window`` lanes: sends queued messages one at a time.

        Long-lived lanes instead of a task and a window slot per message: the same loop as the
        fastest bare use of the library (``warnd bench sms``), so the window costs nothing extra.
        """
        while True:
            _, _, (batch, index, message, number, text, queued_at) = await self._jobs.get()
            if batch.withdrawn:
                continue
            if message.expires_at is not None and (late := expiry(message, self._clock.now())):
                batch.settle(index, late)
                continue
            waited = time.monotonic() - queued_at
            if waited > self._settings.max_queue_wait_s:
                batch.settle(
                    index,
                    SendResult(
                        message.key,
                        Outcome.TRANSIENT,
                        reason=Reason.RATE_LIMITED,
                        detail=f"waited {waited:.0f} s for the link (slow or throttled), not sent",
                    ),
                )
                continue
            try:
                result = await self.submit(batch, message, number, text)
            except asyncio.CancelledError:
                batch.settle(index, _stopped(message, "channel stopped before submit_sm_resp"))
                raise
            except Exception as exc:  # a bug here must not stop the lane or strand the batch
                log.exception("smpp_lane_error", link=self.name)
                result = SendResult(
                    message.key, Outcome.TRANSIENT, reason=Reason.SERVER, detail=repr(exc)
                )
            batch.settle(index, result)

    def destination(self, number: str) -> tuple[str, int, int]:
        """The destination address, TON and NPI for a national number."""
        if self._settings.destination_format == "national":
            return number, 0, 1
        if len(number) == 11 and number.startswith("1"):
            number = "86" + number  # a Chinese mobile number
        return number, 1, 1

    async def submit(
        self, batch: PendingBatch, message: OutboundMessage, number: str, text: EncodedText
    ) -> SendResult:
        """Send every part of one message in order; the first part's id names it. A batch given
        up meanwhile stops a long message before its next part (dispatch sends it again)."""
        destination, ton, npi = self.destination(number)
        total = len(text.parts)
        reference = next(self._references) & 0xFF
        ids: list[str] = []
        for sequence, body in enumerate(text.parts, start=1):
            # A dead link gives its queue back at once, not at its pace.
            if self._session is not None:
                await self.pace.acquire()
            session = None if batch.withdrawn else self._session
            if session is None:
                # Not written to the wire (link down, or the batch given up while this message
                # waited): sending it again later duplicates nothing.
                why = "given up" if batch.withdrawn else "link down"
                detail = f"{why}, not sent" if not ids else f"{why} after part {len(ids)}"
                return SendResult(
                    message.key, Outcome.TRANSIENT, reason=Reason.UNREACHABLE, detail=detail
                )
            payload = body if total == 1 else with_udh(body, reference, total, sequence)
            self.in_flight += 1
            self.stats.submitted += 1
            try:
                # smpp34 returns a Future (ensure_future passes it through untouched).
                answer = asyncio.ensure_future(
                    session.submit_sm(
                        destination,
                        payload,
                        source_addr=self._source,
                        source_addr_ton=self._source_ton,
                        source_addr_npi=self._source_npi,
                        dest_addr_ton=ton,
                        dest_addr_npi=npi,
                        esm_class=ESM_CLASS_UDHI if total > 1 else 0,
                        registered_delivery=1,
                        data_coding=text.data_coding,
                    )
                )
                self._overdue.watch(answer)
                response = await answer
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # stopped from outside, not overdue
                self.stats.timeouts += 1
                return SendResult(
                    message.key,
                    Outcome.TRANSIENT,
                    reason=Reason.TIMEOUT,
                    detail=f"no submit_sm_resp within {self._settings.response_timeout_s:g} s"
                    f" (part {sequence} of {total})",
                )
            except smpp34.SmppError as exc:
                # The session ended before the SMSC answered: it may or may not have the
                # message, and only such messages may reach a phone twice after the retry.
                self.stats.lost += 1
                return SendResult(
                    message.key,
                    Outcome.TRANSIENT,
                    reason=Reason.UNREACHABLE,
                    detail=f"link lost before submit_sm_resp (part {sequence} of {total}): {exc}",
                )
            finally:
                self.in_flight -= 1
            status = response.command_status
            if status != 0:
                return self._refused(message, status, sequence, total)
            ids.append(response.message_id or "")
            # Known before the next await: the receipt may overtake this coroutine.
            self._owner.remember(ids[0], ids[-1], total)
        if not all(ids):
            return SendResult(
                message.key,
                Outcome.TRANSIENT,
                reason=Reason.SERVER,
                detail="submit_sm_resp without a message id",
            )
        self.stats.accepted += 1
        return SendResult(
            message.key,
            Outcome.ACCEPTED,
            external_id=ids[0],
            detail=f"{total} part{'s' if total > 1 else ''}, {text.coding_name}",
            parts=total,
        )

    def _refused(
        self, message: OutboundMessage, status: int, sequence: int, total: int
    ) -> SendResult:
        outcome, reason, name = classify_status(status)
        self.stats.refused += 1
        if status == ESME_RTHROTTLED:
            self.stats.throttled += 1
            if self.pace.slow_down():
                log.warning("smpp_throttled", link=self.name, rate_per_s=round(self.pace.rate, 1))
        part = f" (part {sequence} of {total})" if total > 1 else ""
        return SendResult(message.key, outcome, reason=reason, detail=f"{name}{part}")

    def health(self) -> dict[str, object]:
        return {
            "bound": self.bound,
            "where": self.where,
            "in_flight": self.in_flight,
            "window": self.window,
            "rate_per_s": round(self.pace.rate, 3),
            "configured_rate_per_s": self.pace.base_rate,
            "binds": self.stats.binds,
            "drops": self.stats.drops,
            "submitted": self.stats.submitted,
            "accepted": self.stats.accepted,
            "refused": self.stats.refused,
            "throttled": self.stats.throttled,
            "timeouts": self.stats.timeouts,
            "lost": self.stats.lost,
            "receipts": dict(self.stats.receipts),
            "replies": self.stats.replies,
            "bad_input": dict(self.stats.bad_input),
            "last_error": self.stats.last_error,
        }


def _mask(address: str) -> str:
    """A phone number fit for a log line: personal data, so only its shape and last digits."""
    digits = national_number(address)
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) > 7 else "****"


def _stopped(message: OutboundMessage, detail: str) -> SendResult:
    return SendResult(message.key, Outcome.TRANSIENT, reason=Reason.UNREACHABLE, detail=detail)
