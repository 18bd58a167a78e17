"""Answers (应): SMS replies, key presses and device confirmations applied to call-outs and
field tasks as set-based updates.

What a reply means is decided in ``warnd.core.replies``; this module matches the sender's number
and the warning's short code to open call-outs and tasks, and records the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from warnd.core.clock import Clock
from warnd.core.errors import InputError
from warnd.core.phones import normalise_phone
from warnd.core.replies import parse_reply
from warnd.db.queries import sql

log = structlog.get_logger(__name__)

REPLY_LIMIT = 10  # replies a number may send a minute; the rest are recorded, not read


@dataclass(frozen=True)
class Answer:
    """What became of one inbound answer, for metrics, logs and the officer's inbox."""

    # ack | progress | unrecognised | unknown_number | unknown_code | rate_limited | ambiguous
    # (a plain answer from a number with a live and an exercise call-out open: it names neither)
    kind: str
    callouts: tuple[int, ...] = ()
    late: bool = False
    tasks: tuple[int, ...] = ()  # field tasks whose progress it reported

    @property
    def matched(self) -> bool:
        return bool(self.callouts or self.tasks)


class Answers:
    """Applies answers to call-outs and field tasks; any number may run at once."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, *, reply_limit: int = REPLY_LIMIT) -> None:
        self._pool = pool
        self._clock = clock
        self._reply_limit = reply_limit

    async def answer_sms(self, sender: str, text: str) -> Answer:
        """One SMS reply (see ``answer_replies``)."""
        return (await self.answer_replies([(sender, text)]))[0]

    async def answer_replies(self, replies: Sequence[tuple[str, str]]) -> list[Answer]:
        """SMS replies (sender, text), in one statement: each acknowledges the sender's open
        call-outs, or only those of the warning whose short code it names."""
        now = self._clock.now()
        parsed = [(_phone(sender), parse_reply(text)) for sender, text in replies]
        by_code = await self._warnings_by_code(
            {r.code for _, r in parsed if r.kind != "unrecognised" and r.code}
        )
        allowed = await self._within_limit([phone for phone, _ in parsed], now)
        answers: list[Answer | None] = []
        asks: list[tuple[str, int | None]] = []
        reports: list[tuple[int, str, int | None, int | None, bool]] = []  # (index, …)
        for index, (phone, reply) in enumerate(parsed):
            if phone is None:
                answers.append(Answer("unknown_number"))
            elif not allowed[index]:
                answers.append(Answer("rate_limited"))
            elif reply.kind == "unrecognised":
                answers.append(Answer(reply.kind))
            elif reply.code and reply.code not in by_code:
                answers.append(Answer("unknown_code"))
            else:
                warning_id = by_code.get(reply.code) if reply.code else None
                if reply.households is not None or reply.done:
                    reports.append((index, phone, warning_id, reply.households, reply.done))
                if reply.kind == "ack":
                    answers.append(None)
                    asks.append((phone, warning_id))
                else:
                    answers.append(Answer("progress"))
        acknowledged = await self._acknowledge(asks, "sms")
        pending = iter(acknowledged[phone] for phone, _ in asks)
        result = [answer if answer is not None else next(pending) for answer in answers]
        if reports:
            tasks = await self._report_progress(reports, now)
            for index, _, _, _, _ in reports:
                if tasks.get(index):
                    result[index] = replace(result[index], tasks=tasks[index])
        return result

    async def _within_limit(self, phones: Sequence[str | None], now: datetime) -> list[bool]:
        """Per reply, whether its number is within the limit of replies a minute.

        An auto-replying phone answering our repeat calls, or a broken gateway looping, must not
        turn into a stream of database work; warnd itself never answers a reply, so it cannot
        feed such a loop. Counted in the database, so the limit is one for every process.
        """
        known = [p for p in phones if p is not None]
        if not known:
            return [False] * len(phones)
        minute = now.replace(second=0, microsecond=0)
        rows = await _fetch_retrying_deadlocks(self._pool, sql("count_replies"), known, minute)
        seen = {r["phone"]: r["before"] for r in rows}
        allowed = []
        for phone in phones:
            if phone is None:
                allowed.append(False)
                continue
            allowed.append(seen[phone] < self._reply_limit)
            seen[phone] += 1
        return allowed

    async def _warnings_by_code(self, codes: set[str]) -> dict[str, int]:
        """The open warnings the replies' short codes name."""
        if not codes:
            return {}
        rows = await self._pool.fetch(sql("warnings_by_code"), sorted(codes))
        return {r["short_code"]: r["id"] for r in rows}

    async def _report_progress(
        self, reports: Sequence[tuple[int, str, int | None, int | None, bool]], now: datetime
    ) -> dict[int, tuple[int, ...]]:
        """Apply field-task progress reports; the tasks each report changed, by its index."""
        rows = await _fetch_retrying_deadlocks(
            self._pool,
            sql("task_progress"),
            [phone for _, phone, _, _, _ in reports],
            [warning_id for _, _, warning_id, _, _ in reports],
            [households for _, _, _, households, _ in reports],
            [done for _, _, _, _, done in reports],
            now,
        )
        # A report's tasks are those changed with its number (reports from one number in one
        # batch are rare; each of them is credited with the tasks of that number).
        by_phone: dict[str, tuple[int, ...]] = {}
        for r in rows:
            by_phone[r["phone"]] = (*by_phone.get(r["phone"], ()), r["id"])
        if rows:
            log.info("field_task_progress", tasks=[r["id"] for r in rows])
        return {index: by_phone.get(phone, ()) for index, phone, _, _, _ in reports}

    async def answer_call(self, channel: str, external_id: str, keys: str) -> Answer:
        """A voice call's result: pressing 1 acknowledges the call-out the call was made for."""
        if "1" not in keys:
            return Answer("unrecognised")
        return await self._answer_delivery(channel, external_id, "voice")

    async def answer_device(self, channel: str, external_id: str, *, played: bool) -> Answer:
        """A device confirms it played the message of a call-out's delivery (a loudspeaker a
        responder triggers, a pager): that acknowledges the call-out like a key press."""
        if not played:
            return Answer("unrecognised")
        return await self._answer_delivery(channel, external_id, "device")

    async def _answer_delivery(self, channel: str, external_id: str, via: str) -> Answer:
        """Acknowledge the call-out a delivery was made for, on that delivery's evidence."""
        row = await self._pool.fetchrow(sql("delivery_for_call"), channel, external_id)
        if row is None or row["callout_id"] is None:
            return Answer("unknown_call")
        acknowledged = await self._acknowledge(
            [(row["address"], None)], via, only=[row["callout_id"]]
        )
        return acknowledged[row["address"]]

    async def _acknowledge(
        self,
        asks: Sequence[tuple[str, int | None]],
        via: str,
        *,
        only: Sequence[int] | None = None,
    ) -> dict[str, Answer]:
        """Acknowledge for (phone, warning id or None) pairs; the answer per phone."""
        result: dict[str, Answer] = {phone: Answer("ack") for phone, _ in asks}
        if not asks:
            return result
        rows = await _fetch_retrying_deadlocks(
            self._pool,
            sql("acknowledge"),
            [phone for phone, _ in asks],
            [warning_id for _, warning_id in asks],
            via,
            self._clock.now(),
            list(only) if only is not None else [None] * len(asks),
        )
        for r in rows:
            if r["id"] is None:  # a live and an exercise call-out open: it answered neither
                result[r["phone"]] = Answer("ambiguous")
                continue
            before = result[r["phone"]]
            result[r["phone"]] = Answer(
                "ack", (*before.callouts, r["id"]), late=before.late or r["ack_late"]
            )
        acknowledged = [r["id"] for r in rows if r["id"] is not None]
        if acknowledged:
            log.info("callouts_acknowledged", callouts=acknowledged, via=via)
        if len(acknowledged) < len(rows):
            log.info("answer_ambiguous", via=via, numbers=len(rows) - len(acknowledged))
        return result


async def _fetch_retrying_deadlocks(
    pool: asyncpg.Pool, query: str, *args: object, attempts: int = 3
) -> list[asyncpg.Record]:
    """Run an answer statement again if PostgreSQL broke a deadlock by aborting it.

    Answers arriving on SMS and voice at once lock the same call-outs in whatever order their
    batches hold them; locking them in order first would cost a third of the throughput, and a
    deadlock is rare and harmless to retry: the aborted statement changed nothing.
    """
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(asyncpg.DeadlockDetectedError),
        stop=stop_after_attempt(attempts),
        before_sleep=lambda state: log.warning(
            "answer_deadlock_retried", attempt=state.attempt_number
        ),
        reraise=True,
    ):
        with attempt:
            rows: list[asyncpg.Record] = await pool.fetch(query, *args)
    return rows


def _phone(sender: str) -> str | None:
    """The sender's number in the roster's form, or None if it is no phone number at all."""
    try:
        return normalise_phone(sender)
    except InputError:
        return None
