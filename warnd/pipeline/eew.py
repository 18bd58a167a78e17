"""The earthquake fast path: an early-warning report to loudspeakers, schools and responders in
milliseconds, the highest-intensity villages first.

Seconds before the S-wave are the whole value of an early warning (DOMAIN §3), so nothing here
waits for the ordinary pipeline: the villages, their loudspeakers, facilities and responders are
held in memory (``QuakeRoster``, loaded at start and reloaded every few minutes), the report is
assessed on arrays (``warnd.core.eew``), and each message — its own text per village, with the
countdown and the degree — is handed straight to its channel with priority 0 (ahead of anything
a channel already holds) and an expiry (the S-wave's arrival plus the policy's grace: a channel
drops it after that rather than send it late). Loudspeakers go first, then facilities, then
responders, each in the order of the villages; the first few of each kind are handed before the
rest of the report's messages are even built (a city's 20,000 take a tenth of a second).

The durable record is written at the same time, not before: the warning (``source = 'eew'``,
one per report that raised some village's level), its villages, the messages and deliveries
(state ``sending`` under a lease, with the ids the messages were sent with), and the responders'
call-outs. Once both the channels' answers and that record are in, the outcomes are recorded by
dispatch's own ``record``. Households are the planner's: the warning is stored with its first
plan steps done, so planning goes on with the household chunks at earthquake priority.

What a crash can lose or repeat, at each instant (tests/test_eew_crash.py kills a process at
both):

- before the record commits: alerts may have reached their channels with no row saying so. The
  report's row (``eew_reports``, written at intake) has no ``recorded_at``; once a lease's time
  has passed, housekeeping in any process (``recover``) stores the report's warning for the
  ordinary planner from its first step: responders (with their call-outs), loudspeakers,
  facilities and households are sent to late rather than never — a responder may hear of the
  earthquake twice, and nobody is left without the record or the call-out;
- after the record, before the outcomes: the rows are ``sending`` under a lease; when it runs out
  they are claimed again, and by then past their expiry, so they are cancelled as expired rather
  than sent late (a duplicate only if the lease is shorter than the alert's grace);
- after the outcomes: nothing; what follows is the ordinary pipeline's.

What the event has alerted is kept in memory; a report whose predecessors this process did not
handle (after a restart, or handled by another process) replays them from their rows first, so
that only a rise alerts again.

The ordinary planner goes on after the fast path with the field tasks the level orders
(helpers' door-knocking, gongs in the blind spots: a step of their own for these warnings) and the
households of the warning's villages — for a later report, those whose level rose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

import asyncpg
import numpy as np
import structlog
from numpy.typing import NDArray

from channels.base import Channel, SendResult, WarningContext
from warnd.app.eew import load_villages
from warnd.core.clock import Clock
from warnd.core.eew import (
    CODE_LEVELS,
    EewAssessment,
    EewParameters,
    EewReport,
    EventAlerts,
    VillageArrays,
    assess,
    covering_codes,
    divisions_of,
    village_texts,
)
from warnd.core.model import Area, NormalisedWarning
from warnd.core.outcomes import Claimed
from warnd.core.vocabulary import Level, priority
from warnd.db import Conn
from warnd.db.notify import DELIVERIES_CHANNEL
from warnd.db.queries import sql
from warnd.ingest.store import store_warning
from warnd.pipeline.callouts import open_callouts
from warnd.pipeline.planner import EEW_SENDER, FIRST_STEPS
from warnd.policy.model import Policy

log = structlog.get_logger(__name__)

SOURCE = "eew"
SENDER = EEW_SENDER  # the CAP sender of the warnings the fast path stores
RELOAD = timedelta(minutes=5)  # the roster in memory is at most this old
WARNING_LASTS = timedelta(hours=1)  # the stored warning: call-outs, households, notices
ALL_LEVELS = ("city", "county", "town", "village")
# Messages of each kind handed first, before the rest of the report's are built (see __call__).
FIRST_HANDED = 200
HANDED_AT_ONCE = 1_000  # then in shares of this many, the event loop free between them
# Delivery ids kept in hand (``IdReserve``): a city-wide report takes ~20,000.
IDS_KEPT = 50_000

Record = Callable[[str, Sequence[Claimed], Sequence[SendResult]], Awaitable[None]]


@dataclass(frozen=True, eq=False)
class QuakeRoster:
    """Who an earthquake alert reaches, held in memory, indexed by village."""

    villages: VillageArrays
    speaker: NDArray[np.bool_]  # per village: a loudspeaker covers it (not a blind spot)
    facilities: dict[int, list[tuple[int, str, bool]]]  # village → (id, phone, exercise)
    # division code → (responder id, phone, division, exercise): responders for earthquakes
    responders: dict[str, list[tuple[int, str, str, bool]]]
    loaded_at: datetime
    unlocated: int = 0  # villages without coordinates: not in ``villages``, never assessed

    @classmethod
    async def load(cls, conn: Conn | asyncpg.Pool, now: datetime) -> QuakeRoster:
        villages, unlocated = await load_villages(conn)
        index = {str(code): i for i, code in enumerate(villages.codes.tolist())}
        blind = {r["code"] for r in await conn.fetch(sql("eew_blind_villages"))}
        speaker = np.array([str(c) not in blind for c in villages.codes.tolist()], dtype=np.bool_)
        facilities: dict[int, list[tuple[int, str, bool]]] = {}
        for r in await conn.fetch(sql("eew_facilities")):
            if r["village_code"] in index:
                facilities.setdefault(index[r["village_code"]], []).append(
                    (r["id"], r["phone"], r["exercise"])
                )
        responders: dict[str, list[tuple[int, str, str, bool]]] = {}
        for r in await conn.fetch(sql("eew_responders")):
            responders.setdefault(r["division_code"], []).append(
                (r["id"], r["phone"], r["division_code"], r["exercise"])
            )
        return cls(villages, speaker, facilities, responders, now, unlocated)


class IdReserve:
    """Delivery ids drawn from the deliveries' sequence before they are needed.

    A report's first loudspeaker command must not wait for a database round trip: on a server
    busy writing the last report's record (or a checkpoint) one ``nextval`` query took 20 ms
    and more now and then (bench eew, 1,000 events). The ids are taken from memory and the
    reserve is topped up in the background. Ids drawn by a process that dies are gaps, nothing
    more: a delivery's id is only its name.
    """

    def __init__(self, pool: asyncpg.Pool, kept: int = IDS_KEPT) -> None:
        self._pool = pool
        self._kept = kept
        self._ids: list[int] = []
        self._topping: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._ids)

    async def top_up(self) -> None:
        """Draw ids until ``kept`` are in hand."""
        missing = self._kept - len(self._ids)
        if missing > 0:
            await self._draw(missing)

    async def take(self, n: int) -> list[int]:
        """``n`` ids, from memory unless the reserve is short (then one round trip)."""
        if len(self._ids) < n:
            await self._draw(n - len(self._ids))
        ids, self._ids = self._ids[:n], self._ids[n:]
        if len(self._ids) < self._kept // 2 and (self._topping is None or self._topping.done()):
            self._topping = asyncio.create_task(self.top_up())
            self._topping.add_done_callback(_log_failure)
        return ids

    async def _draw(self, n: int) -> None:
        rows = await self._pool.fetch(sql("eew_delivery_ids"), n)
        self._ids.extend(r["id"] for r in rows)


def _log_failure(task: asyncio.Task[None]) -> None:
    # A failed top-up is tried again by the next ``take`` (or drawn there if it must be).
    if not task.cancelled() and task.exception() is not None:
        log.warning("eew_ids_top_up_failed", error=repr(task.exception()))


@dataclass(frozen=True)
class _Message:
    """One alert before it has an id: whom, where, what."""

    audience: str  # broadcast, facility or responder
    recipient_id: int  # the facility's or responder's id; 0 for a loudspeaker
    division_code: str  # the recipient's division (a loudspeaker's village)
    address: str
    text: str
    village: int  # the village (index) whose countdown and degree the text gives

    @property
    def kind(self) -> str:
        """The channel kind that carries it."""
        return "broadcast" if self.audience == "broadcast" else "sms"


class FastPath:
    """Hands early-warning reports to the channels; one per process (``Services.eew``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: Mapping[str, Channel],
        policy: Callable[[], Policy],
        clock: Clock,
        record: Record,
        *,
        lease_seconds: float = 120.0,
        held: Callable[[str], bool] | None = None,
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._clock = clock
        self._record = record
        self._lease = lease_seconds
        # The first channel of each kind this process holds takes the alerts (a kind with
        # several channels splits ordinary traffic by dispatch; an alert is too urgent to wait
        # for a choice). With several processes, a kind whose channels another process holds
        # is queued for it at once instead (``held``: None when every channel is this one's).
        self._held = held
        self._channels: dict[str, list[tuple[str, Channel]]] = {}
        for name, channel in channels.items():
            self._channels.setdefault(channel.kind.value, []).append((name, channel))
        self._roster: QuakeRoster | None = None
        self._roster_changed = False
        self._ids = IdReserve(pool)
        self._events: dict[str, EventAlerts] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def _sender(self, kind: str) -> Channel | None:
        """The channel of the kind that sends here; None when another process holds them."""
        for name, channel in self._channels.get(kind, ()):
            if self._held is None or self._held(name):
                return channel
        return None

    def roster_changed(self) -> None:
        """A roster was imported (NOTIFY from any process): the next ``prepare`` reloads."""
        self._roster_changed = True

    async def prepare(self) -> QuakeRoster:
        """Keep what a report needs in memory: the roster (loaded again when older than
        ``RELOAD``, or after a roster import) and the delivery ids. At start and every few
        seconds (housekeeping)."""
        now = self._clock.now()
        if self._roster is None or self._roster_changed or now - self._roster.loaded_at > RELOAD:
            self._roster_changed = False
            self._roster = await QuakeRoster.load(self._pool, now)
            self._events.clear()  # their arrays are aligned with the old villages
        await self._ids.top_up()
        return self._roster

    async def __call__(self, report: EewReport) -> EewAssessment:
        """Alert the villages whose level this report raises; returns once every message is in
        its channel's hands (their outcomes and the durable record follow in the background),
        with the report's assessment (what the feed's answer summarises)."""
        roster = self._roster if self._roster is not None else await self.prepare()
        now = self._clock.now()
        policy = self._policy()
        parameters = policy.earthquake_early_warning.parameters
        assessment = assess(report, roster.villages, parameters, now)
        alerts = self._events.get(report.event_id)
        if report.report_no > 1 and (
            alerts is None or alerts.last_report_no < report.report_no - 1
        ):
            # Reports of this event were handled before a restart, or by another process: one
            # query (only then) says what the event has alerted, so only a rise alerts again.
            alerts = await self._replay(report, roster, parameters, now)
        alerts = alerts or EventAlerts.start(report.event_id, roster.villages)
        self._events[report.event_id], decision = alerts.apply(assessment)
        if report.cancel:
            await self._cancel(report, now)
        elif not decision.stale and len(decision.rise):
            await self._alert(report, roster, assessment, decision.rise, policy, now)
        return assessment

    async def _alert(  # noqa: PLR0917 - one private call site
        self,
        report: EewReport,
        roster: QuakeRoster,
        assessment: EewAssessment,
        rise: NDArray[np.intp],
        policy: Policy,
        now: datetime,
    ) -> None:
        """Hand the alerts of the villages in ``rise`` to the channels; record in the background."""
        exercise = report.status == "Exercise"
        level = _top_level(assessment, rise)
        # The warning's id is not known before the record: the context says what a channel
        # needs (a loudspeaker interrupts for an earthquake, an exercise is marked).
        context = WarningContext(0, "earthquake", level.value, exercise, None)
        by_kind = self._messages(roster, assessment, rise, policy.signature, exercise)
        sends: list[_Send] = []
        # The first villages' messages of each kind (the highest intensity, the fewest seconds)
        # are handed before the rest are even built: building and numbering a city's 20,000
        # alerts takes a tenth of a second, which the nearest villages do not have.
        for messages in by_kind.values():  # loudspeakers first (see _messages)
            await self._hand(list(islice(messages, FIRST_HANDED)), assessment, context, sends)
        # The rest in shares, the event loop free between them: a channel's writer must put
        # the first messages on the wire while the city's last are still being built.
        for messages in by_kind.values():
            while share := list(islice(messages, HANDED_AT_ONCE)):
                await self._hand(share, assessment, context, sends)
        if not sends:
            return
        log.info(
            "eew_alerts_handed",
            event_id=report.event_id,
            report_no=report.report_no,
            villages=len(rise),
            messages=sum(len(send.messages) for send in sends),
            ms=round((self._clock.now() - now).total_seconds() * 1000, 1),
        )
        task = asyncio.create_task(self._finish(report, roster, assessment, rise, sends))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _replay(
        self, report: EewReport, roster: QuakeRoster, parameters: EewParameters, now: datetime
    ) -> EventAlerts:
        """What the event's earlier reports alerted (levels depend on the report alone)."""
        alerts = EventAlerts.start(report.event_id, roster.villages)
        for row in await self._pool.fetch(
            sql("eew_earlier_reports"), report.event_id, report.report_no
        ):
            earlier = EewReport(**dict(row))
            alerts, _ = alerts.apply(assess(earlier, roster.villages, parameters, now))
        return alerts

    async def recover(self, received_before: datetime) -> int:
        """Record the reports received before ``received_before`` whose record a crash (or a
        failed hand-off the feed never sent again) left unwritten; how many.

        Whether their alerts went out is unknown, and their moment has passed: the warning is
        stored for the ordinary planner to send from its first step — responders with their
        call-outs, loudspeakers, facilities, households — so that what was promised happens
        late rather than never (a responder may hear of the earthquake twice). Called by
        housekeeping in every process; a second process's record of the same report is a
        duplicate that ``store_warning`` ignores."""
        rows = await self._pool.fetch(sql("eew_unrecorded_reports"), received_before)
        roster = self._roster if self._roster is not None else await self.prepare()
        parameters = self._policy().earthquake_early_warning.parameters
        now = self._clock.now()
        for row in rows:
            report = EewReport(**dict(row))
            if report.cancel:
                await self._cancel(report, now)
            else:
                alerts = await self._replay(report, roster, parameters, now)
                assessment = assess(report, roster.villages, parameters, now)
                _, decision = alerts.apply(assessment)
                if len(decision.rise) and not decision.stale:
                    await self._store(report, roster, assessment, decision.rise, (), plan_from=0)
                    log.warning(
                        "eew_report_recovered",
                        event_id=report.event_id,
                        report_no=report.report_no,
                        villages=len(decision.rise),
                    )
            await self._mark_recorded(self._pool, report, now)
        return len(rows)

    async def _mark_recorded(
        self, conn: Conn | asyncpg.Pool, report: EewReport, now: datetime
    ) -> None:
        await conn.execute(sql("eew_mark_recorded"), report.event_id, report.report_no, now)

    async def _hand(
        self,
        messages: list[_Message],
        assessment: EewAssessment,
        context: WarningContext,
        sends: list[_Send],
    ) -> None:
        """Number ``messages`` (all of one kind) and hand them to their channel."""
        if not messages:
            return
        ids = await self._ids.take(len(messages))
        claimed = [
            Claimed(i, 0, m.address, 1, (), m.text, 0, context, assessment.expires_at(m.village))
            for i, m in zip(ids, messages, strict=True)
        ]
        kind = messages[0].kind
        channel = self._sender(kind)
        if channel is None:  # queued with the record, for the process that holds the kind
            sends.append(_Send(kind, None, messages, claimed, None))
            return
        sending = asyncio.create_task(channel.send([c.message() for c in claimed]))
        sends.append(_Send(kind, channel, messages, claimed, sending))
        await asyncio.sleep(0)  # the send starts: a queueing channel has its messages now

    def _messages(
        self,
        roster: QuakeRoster,
        assessment: EewAssessment,
        rise: NDArray[np.intp],
        signature: str,
        exercise: bool,
    ) -> dict[str, Iterator[_Message]]:
        """Every message for the villages in ``rise`` (highest intensity first), by kind:
        loudspeakers; and by SMS, village by village, the facilities, then the responders of
        the village and of the town, county and city above it (each once, with the text of
        their worst village).
        Built as they are taken, so the first can be handed before the last is made."""
        by_kind: dict[str, Iterator[_Message]] = {}
        codes = roster.villages.codes
        if "broadcast" in self._channels and not exercise:  # a loudspeaker reaches everyone
            heard = rise[roster.speaker[rise]]
            by_kind["broadcast"] = self._speaker_messages(assessment, heard, codes, signature)
        if "sms" in self._channels:
            by_kind["sms"] = self._sms_messages(roster, assessment, rise, signature, exercise)
        return by_kind

    @staticmethod
    def _speaker_messages(
        assessment: EewAssessment, heard: NDArray[np.intp], codes: NDArray[np.str_], signature: str
    ) -> Iterator[_Message]:
        for v, text in _texts_in_slices(assessment, heard, signature, "broadcast"):
            yield _Message("broadcast", 0, str(codes[v]), str(codes[v]), text, v)

    @staticmethod
    def _sms_messages(
        roster: QuakeRoster,
        assessment: EewAssessment,
        rise: NDArray[np.intp],
        signature: str,
        exercise: bool,
    ) -> Iterator[_Message]:
        # Village by village, the highest intensity first: its schools and care homes, then
        # its responders and those above it not told yet. Not every facility of the city before
        # the first responder: at a gateway's 2,000 messages a second that would hold the
        # nearest village's responsible person two seconds (bench eew).
        codes = roster.villages.codes
        told: set[int] = set()
        for village, text in _texts_in_slices(assessment, rise, signature, "sms"):
            for facility_id, phone, marked in roster.facilities.get(village, ()):
                if marked or not exercise:
                    yield _Message(
                        "facility", facility_id, str(codes[village]), phone, text, village
                    )
            for division in divisions_of(str(codes[village])):
                for responder_id, phone, home, marked in roster.responders.get(division, ()):
                    if responder_id not in told and (marked or not exercise):
                        told.add(responder_id)
                        yield _Message("responder", responder_id, home, phone, text, village)

    async def _finish(
        self,
        report: EewReport,
        roster: QuakeRoster,
        assessment: EewAssessment,
        rise: NDArray[np.intp],
        sends: Sequence[_Send],
    ) -> None:
        """Write the durable record while the channels work, then their outcomes."""
        try:
            await self._store(report, roster, assessment, rise, sends)
        except Exception:
            log.exception("eew_record_failed", event_id=report.event_id)
            raise
        for send in sends:
            if send.channel is None or send.sending is None:
                continue  # queued: the holder's worker sends and records it
            try:
                results = await send.sending
            except Exception:  # a plugin's failure: the lease brings the rows back, expired
                log.exception("eew_send_failed", channel=send.channel.name)
                continue
            await self._record(send.channel.name, send.claimed, results)

    async def _store(
        self,
        report: EewReport,
        roster: QuakeRoster,
        assessment: EewAssessment,
        rise: NDArray[np.intp],
        sends: Sequence[_Send],
        *,
        plan_from: int = len(FIRST_STEPS),
    ) -> None:
        """Store the report's warning with what was handed to the channels in ``sends``;
        planning goes on from step ``plan_from`` (the households, after the fast path)."""
        policy = self._policy()
        level = _top_level(assessment, rise)
        rule = policy.rule("earthquake", level)
        now = self._clock.now()
        codes = [str(c) for c in assessment.villages.codes[rise].tolist()]
        if not roster.unlocated:
            # A division's code stands for its villages only when the roster holds all of them
            # with coordinates: one without was never assessed and must not be covered.
            codes = covering_codes(roster.villages.codes.tolist(), codes)
        warning = _warning(report, level, codes)

        async def within(conn: Conn, warning_id: int) -> None:
            await self._mark_recorded(conn, report, now)
            if not plan_from:
                return
            # The plan's first steps (responders, loudspeakers, facilities) are this path's:
            # planning goes on with the households.
            await conn.execute(sql("eew_plan_households"), warning_id, plan_from)
            await open_callouts(
                conn,
                warning_id,
                rule,
                speciality="earthquake",
                levels=ALL_LEVELS,
                exercise_only=warning.status == "Exercise",
                now=now,
            )
            message_ids: dict[tuple[str, str], int] = {}
            for kind in dict.fromkeys(send.kind for send in sends):
                # A kind's messages may have been handed in several sends: one key per body.
                bodies = sorted(
                    {m.text for send in sends if send.kind == kind for m in send.messages}
                )
                for n, body in enumerate(bodies):
                    message_ids[kind, body] = await conn.fetchval(
                        sql("upsert_message"), warning_id, f"eew:{n}", kind, body
                    )
            for send in sends:
                kind = send.kind
                await conn.execute(
                    sql("eew_deliveries"),
                    warning_id,
                    [c.id for c in send.claimed],
                    [message_ids[kind, m.text] for m in send.messages],
                    [m.audience for m in send.messages],
                    [m.recipient_id for m in send.messages],
                    [m.division_code for m in send.messages],
                    [m.address for m in send.messages],
                    [c.expires_at for c in send.claimed],
                    kind,
                    send.channel.name if send.channel is not None else None,
                    priority("earthquake", level, 0),
                    now,
                    now + timedelta(seconds=self._lease),
                )
            if any(send.channel is None for send in sends):
                await conn.execute("SELECT pg_notify($1, '')", DELIVERIES_CHANNEL)

        await store_warning(self._pool, warning, source=SOURCE, now=now, within=within)

    async def _cancel(self, report: EewReport, now: datetime) -> None:
        """A cancelled event: the warnings its reports raised are ended by a Cancel, whose
        notices go, as every Cancel's, to everyone reached on the channel that reached them."""
        rows = await self._pool.fetch(sql("eew_event_warnings"), SOURCE, f"{report.event_id}#%")
        if not rows:
            await self._mark_recorded(self._pool, report, now)
            return
        refs = tuple(f"{r['sender']},{r['identifier']},{r['sent'].isoformat()}" for r in rows)
        cancel = NormalisedWarning(
            sender=SENDER,
            identifier=f"{report.event_id}#{report.report_no}",
            sent=now.replace(microsecond=0),
            status=report.status,
            msg_type="Cancel",
            hazard="earthquake",
            level=max((Level(r["level"]) for r in rows), key=lambda level: level.rank),
            headline=f"{report.place}地震预警解除（误报）",
            area=Area(codes=()),
            area_desc=report.place,
            references=refs,
        )
        await store_warning(
            self._pool,
            cancel,
            source=SOURCE,
            now=now,
            within=lambda conn, _: self._mark_recorded(conn, report, now),
        )

    async def drain(self, grace: float | None = None) -> None:
        """Wait (at most ``grace`` seconds) for the records and outcomes being written in the
        background: at shutdown, and in tests."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=grace)


@dataclass(frozen=True)
class _Send:
    """One channel's share of a report: the messages, as claimed rows, and the sending task;
    no channel nor task when another process holds the kind's channels (queued for it)."""

    kind: str
    channel: Channel | None
    messages: list[_Message]
    claimed: list[Claimed]
    sending: asyncio.Task[list[SendResult]] | None


def _texts_in_slices(
    assessment: EewAssessment, villages: NDArray[np.intp], signature: str, kind: str
) -> Iterator[tuple[int, str]]:
    """Each village's text, rendered a slice at a time: the first villages' texts without
    rendering the whole city's first (~15 ms for 6,000 villages)."""
    for start in range(0, len(villages), FIRST_HANDED):
        part = villages[start : start + FIRST_HANDED]
        texts = village_texts(assessment, part, signature=signature, kind=kind)
        yield from zip(part.tolist(), texts, strict=True)


def _top_level(assessment: EewAssessment, rise: NDArray[np.intp]) -> Level:
    return CODE_LEVELS[int(assessment.levels[rise].max())]


def _warning(report: EewReport, level: Level, codes: list[str]) -> NormalisedWarning:
    """The warning a report is stored as: the villages it raised, at their highest level. It
    stays active an hour (call-outs, households, notices); each alert expires on its own."""
    magnitude = f"{report.magnitude:.1f}"
    return NormalisedWarning(
        sender=SENDER,
        identifier=f"{report.event_id}#{report.report_no}",
        sent=report.origin_time.replace(microsecond=0),
        status=report.status,
        msg_type="Alert",
        hazard="earthquake",
        level=level,
        event="地震预警",
        headline=f"{report.place}发生{magnitude}级地震",
        description=f"{report.place}发生{magnitude}级地震，震源深度{report.depth_km:g}公里。",
        instruction="请立即避险。",
        area=Area(codes=tuple(codes)),
        area_desc=report.place,
        expires=report.origin_time + WARNING_LASTS,
    )
