"""Planning: a published warning becomes deliveries in the outbox, responders first.

The decision of who gets what on which channel is pure (``decide``); the writing is a handful of
``INSERT … SELECT`` statements, one transaction per step, each step recorded on the warning so a
planner that dies mid-way is resumed from the next step by whichever process picks it up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
import structlog
from structlog.contextvars import bound_contextvars

from warnd.app.reads import place_of
from warnd.core.clock import Clock
from warnd.core.model import NormalisedWarning
from warnd.core.vocabulary import HAZARDS, Audience, priority
from warnd.db import Conn
from warnd.db.notify import DELIVERIES_CHANNEL
from warnd.db.queries import sql
from warnd.ingest.store import load_warning
from warnd.pipeline.callouts import open_callouts
from warnd.pipeline.field_tasks import open_field_tasks
from warnd.pipeline.notices import notice_chunks, write_notices
from warnd.policy.model import LevelRule, Policy
from warnd.policy.targeting import TASK_AUDIENCE, AudiencePlan, decide, task_kinds
from warnd.policy.texts import audience_text

log = structlog.get_logger(__name__)

VILLAGES_PER_CHUNK = 250  # about 120,000 households: one chunk is one transaction
# Delivery ids of the ended warnings an Update's or Cancel's notice step reads: at most about as
# many notices as a household chunk writes, in one transaction.
NOTICES_PER_CHUNK = 200_000

# The steps of a plan, in order; households follow, one step per chunk of villages. City and
# county responders go alone first: a few dozen rows, so the first call-out leaves within
# milliseconds even for a city-wide warning. The loudspeakers next, alone: one row a village, so
# every village hears the warning within a fraction of a second, before the ten thousand town and
# village responders' call-outs are written (measured: the first command 2.9 s after ingest when
# they shared a step, benchmarks/README.md).
# Each step lists (audience, responder levels) pairs; levels only matter for responders.
FIRST_STEPS: tuple[tuple[tuple[Audience, tuple[str, ...]], ...], ...] = (
    ((Audience.RESPONDER, ("city", "county")),),
    ((Audience.BROADCAST, ()),),
    ((Audience.RESPONDER, ("town", "village")),),
    ((Audience.FACILITY, ()), (Audience.HELPER, ())),
)
# Where the field tasks' parts go: gongs with the village responders they are given to,
# door-knocking instead of the helpers' plain text.
_VILLAGE_RESPONDERS = 2
_HELPERS = 3
# The sender of the earthquake fast path's warnings (warnd.pipeline.eew). The fast path sends
# their first steps itself but orders no field tasks: theirs are a step of their own, after the
# first steps, so that a plan resumed after the fast path and one recovered from the start
# (FastPath.recover) open each task once.
EEW_SENDER = "eew@warnd"
_AUDIENCE_SQL = {
    Audience.RESPONDER: "plan_responders",
    Audience.BROADCAST: "plan_broadcast",
    Audience.FACILITY: "plan_facilities",
    Audience.HELPER: "plan_helpers",
    Audience.HOUSEHOLD: "plan_households",
}


# Hands a channel kind's texts to its channels ahead of sending (speech rendered for calls and
# loudspeakers); returns at once, the channels work in the background.
Prepare = Callable[[str, Sequence[str]], Awaitable[None]]


@dataclass
class PlanResult:
    warning_id: int
    steps: int  # steps written in this call
    deliveries: int  # deliveries written in this call
    done: bool = False


@dataclass(frozen=True)
class _Part:
    """One audience's share of a plan step."""

    audience: Audience
    levels: tuple[str, ...] = ()  # responders: which levels
    villages: tuple[str, str] | None = None  # households: the chunk's first and last village
    task: str = ""  # a field-task kind (door_knock, gong) written for this audience instead
    # An Update's or Cancel's notices to those already reached: the range of delivery ids of
    # the ended warnings (first, last) this step covers.
    notices: tuple[int, int] | None = None


@dataclass(frozen=True)
class _Context:
    """What every step of one warning's plan needs, computed once per planner."""

    warning: NormalisedWarning
    rule: LevelRule
    speciality: str | None
    plans: dict[Audience, AudiencePlan]
    place: str
    short_code: str | None  # named in responders' texts: "收到请回复1A7"
    steps: list[list[_Part]]
    tasks: dict[str, tuple[str, ...]]  # field-task kinds opened, with their messages' kinds
    prepared: set[int] = field(default_factory=set)  # messages handed to their channels


class Planner:
    """Turns published warnings into deliveries; any number of planners may run at once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: Callable[[], Policy],
        clock: Clock,
        max_chars: Mapping[str, int],
        *,
        villages_per_chunk: int = VILLAGES_PER_CHUNK,
        notices_per_chunk: int = NOTICES_PER_CHUNK,
        retry_seconds: float = 30.0,
        prepare: Prepare | None = None,
    ) -> None:
        self._pool = pool
        self._prepare = prepare
        self._policy = policy
        self._clock = clock
        self._max_chars = max_chars
        self._chunk = villages_per_chunk
        self._notice_chunk = notices_per_chunk
        self._retry = retry_seconds
        self._contexts: dict[int, _Context] = {}
        self._without_gongs: set[int] = set()  # warnings the policy orders no gongs for

    async def plan_pending(self) -> list[PlanResult]:
        """Plan waiting warnings one step at a time, the most urgent first, until none waits.

        Choosing again after every step means an earthquake or red warning that arrives during
        a city-wide household fan-out goes next, not after the last household chunk.
        """
        results: dict[int, PlanResult] = {}
        async with self._pool.acquire() as conn:
            while (step := await self._next_step(conn)) is not None:
                total = results.setdefault(step.warning_id, PlanResult(step.warning_id, 0, 0))
                total.steps += step.steps
                total.deliveries += step.deliveries
                total.done = step.done
                if step.done:
                    self._contexts.pop(step.warning_id, None)
                    log.info(
                        "warning_planned",
                        warning_id=step.warning_id,
                        deliveries=total.deliveries,
                    )
        return list(results.values())

    async def _next_step(self, conn: Conn) -> PlanResult | None:
        for row in await conn.fetch(sql("plan_candidates"), self._clock.now()):
            warning_id: int = row["id"]
            if not await conn.fetchval(sql("lock_plan"), warning_id):
                continue  # another planner holds it
            try:
                with bound_contextvars(warning_id=warning_id):
                    return await self._step(conn, warning_id)
            except (asyncpg.PostgresConnectionError, OSError):
                raise  # the connection is gone: the supervisor reconnects
            except Exception as exc:  # one broken warning must not block every other one
                log.exception("planning_failed", warning_id=warning_id)
                self._contexts.pop(warning_id, None)
                await conn.execute(
                    sql("plan_failed"),
                    warning_id,
                    f"{type(exc).__name__}: {exc}"[:1000],
                    self._clock.now() + timedelta(seconds=self._retry),
                )
                return PlanResult(warning_id, 0, 0)
            finally:
                await conn.fetchval(sql("unlock_plan"), warning_id)
        return None

    async def _context(self, conn: Conn, warning_id: int) -> _Context:
        context = self._contexts.get(warning_id)
        if context is None:
            warning = await load_warning(conn, warning_id)
            plans = decide(self._policy(), warning, self._clock.now(), self._max_chars.keys())
            place = await place_of(conn, warning_id, warning)
            chunks = await conn.fetch(sql("village_chunks"), warning_id, self._chunk)
            steps = [[_Part(a, levels) for a, levels in step] for step in FIRST_STEPS]
            steps += [[_Part(Audience.HOUSEHOLD, villages=(c["first"], c["last"]))] for c in chunks]
            tasks = task_kinds(self._policy(), warning, self._clock.now(), plans, self._max_chars)
            if warning.sender == EEW_SENDER:
                if tasks:
                    field = [_Part(TASK_AUDIENCE[kind], task=kind) for kind in tasks]
                    steps.insert(len(FIRST_STEPS), field)
            else:
                if "gong" in tasks:  # with the village responders it is given to
                    steps[_VILLAGE_RESPONDERS].append(_Part(Audience.RESPONDER, task="gong"))
                if "door_knock" in tasks:  # the task message replaces the helper's plain text
                    helpers = [p for p in steps[_HELPERS] if p.audience is not Audience.HELPER]
                    steps[_HELPERS] = [*helpers, _Part(Audience.HELPER, task="door_knock")]
            if warning.msg_type in ("Cancel", "Update"):
                ranges = await notice_chunks(conn, warning_id, self._notice_chunk)
                notices = [[_Part(Audience.RESPONDER, notices=ids)] for ids in ranges]
                steps = notices if warning.msg_type == "Cancel" else [*notices, *steps]
            context = self._contexts[warning_id] = _Context(
                warning,
                self._policy().rule(warning.hazard, warning.level),
                HAZARDS[warning.hazard].speciality,
                plans,
                place,
                await conn.fetchval("SELECT short_code FROM warnings WHERE id = $1", warning_id),
                steps,
                tasks,
            )
        return context

    async def _step(self, conn: Conn, warning_id: int) -> PlanResult:
        """Write the next step of one warning's plan, in one transaction with its cursor."""
        context = await self._context(conn, warning_id)
        now = self._clock.now()
        written = 0
        async with conn.transaction():
            # FOR SHARE: a Cancel or Update ending this warning waits for the step to commit,
            # then cancels what it wrote; a step never starts for an ended warning.
            row = await conn.fetchrow(sql("lock_warning_for_plan"), warning_id)
            assert row is not None  # warnings are never deleted
            number = row["plan_cursor"] + 1
            if not row["live"] or number > len(context.steps):
                await conn.execute(sql("plan_step_done"), warning_id, row["plan_cursor"], True, now)
                return PlanResult(warning_id, 0, 0, done=True)
            exercise_only = context.warning.status == "Exercise"
            for part in context.steps[number - 1]:
                if part.notices is not None or part.task:
                    written += await self._special(conn, warning_id, context, part, now)
                    continue
                audience = part.audience
                plan = context.plans.get(audience)
                if plan is None:
                    continue
                extra: tuple[object, ...] = ()
                if audience is Audience.RESPONDER:
                    extra = (context.speciality, list(part.levels))
                elif part.villages is not None:
                    extra = part.villages
                message_ids = {
                    kind: await self._message(conn, warning_id, context, audience, kind)
                    for kind in dict.fromkeys([*plan.kinds, *plan.fallbacks[0]])
                }
                if audience is Audience.RESPONDER:
                    await open_callouts(
                        conn,
                        warning_id,
                        context.rule,
                        speciality=context.speciality,
                        levels=part.levels,
                        exercise_only=exercise_only,
                        now=now,
                    )
                status = await conn.execute(
                    sql(_AUDIENCE_SQL[audience]),
                    warning_id,
                    list(plan.kinds),
                    [message_ids[kind] for kind in plan.kinds],
                    [",".join(f) for f in plan.fallbacks],
                    plan.priority,
                    exercise_only,
                    now,
                    *extra,
                )
                written += int(status.rsplit(" ", 1)[1])
            done = number == len(context.steps)
            await conn.execute(sql("plan_step_done"), warning_id, number, done, now)
            await conn.execute("SELECT pg_notify($1, $2)", DELIVERIES_CHANNEL, str(warning_id))
        log.debug("plan_step_written", warning_id=warning_id, step=number, deliveries=written)
        await self._prepare_texts(conn, warning_id, context)
        return PlanResult(warning_id, 1, written, done=done)

    async def _prepare_texts(self, conn: Conn, warning_id: int, context: _Context) -> None:
        """Hand the texts this step stored to the channels that send them (speech is rendered
        when a warning is planned, never while a callee waits)."""
        if self._prepare is None:
            return
        rows = await conn.fetch(sql("texts_to_prepare"), warning_id, sorted(context.prepared))
        by_kind: dict[str, list[str]] = {}
        for row in rows:
            context.prepared.add(row["id"])
            by_kind.setdefault(row["channel_kind"], []).append(row["body"])
        for kind, texts in by_kind.items():
            await self._prepare(kind, texts)

    async def _special(
        self, conn: Conn, warning_id: int, context: _Context, part: _Part, now: datetime
    ) -> int:
        """Write a step part that is not a plain audience: notices, or one kind of field task."""
        policy = self._policy()
        warning = context.warning
        urgency = priority(warning.hazard, warning.level, context.rule.rank(part.audience))
        if part.notices is not None:
            return await write_notices(
                conn,
                policy,
                warning_id,
                warning,
                place=context.place,
                short_code=context.short_code,
                max_chars=self._max_chars,
                priority=urgency,
                now=now,
                ids=part.notices,
            )
        return await open_field_tasks(
            conn,
            warning_id,
            warning,
            kind=part.task,
            task_rule=getattr(policy.field_tasks, part.task),
            level_rule=context.rule,
            signature=policy.signature,
            place=context.place,
            channel_kinds=context.tasks[part.task],
            max_chars=self._max_chars,
            speciality=context.speciality,
            priority=urgency,
            now=now,
        )

    async def gongs_for_silent_speakers(self) -> int:
        """Open gong tasks (鸣锣吹哨) in the villages of live warnings whose loudspeaker command
        failed for good (the speaker is offline, stale or refused it): the broadcast audience's
        fallback, for the village's responsible person. How many were opened."""
        opened = 0
        async with self._pool.acquire() as conn:
            for row in await conn.fetch(sql("silent_speaker_villages")):
                warning_id: int = row["warning_id"]
                if warning_id in self._without_gongs:
                    continue
                warning = await load_warning(conn, warning_id)
                policy, now = self._policy(), self._clock.now()
                plans = decide(policy, warning, now, self._max_chars.keys())
                kinds = task_kinds(policy, warning, now, plans, self._max_chars).get("gong")
                if not kinds:  # the policy orders no gongs at this level: asked once
                    self._without_gongs.add(warning_id)
                    continue
                rule = policy.rule(warning.hazard, warning.level)
                async with conn.transaction():
                    opened += await open_field_tasks(
                        conn,
                        warning_id,
                        warning,
                        kind="gong",
                        task_rule=policy.field_tasks.gong,
                        level_rule=rule,
                        signature=policy.signature,
                        place=await place_of(conn, warning_id, warning),
                        channel_kinds=kinds,
                        max_chars=self._max_chars,
                        speciality=HAZARDS[warning.hazard].speciality,
                        priority=priority(
                            warning.hazard, warning.level, rule.rank(Audience.RESPONDER)
                        ),
                        now=now,
                        villages=row["villages"],
                    )
                    await conn.execute(
                        "SELECT pg_notify($1, $2)", DELIVERIES_CHANNEL, str(warning_id)
                    )
        if opened:
            log.info("gongs_for_silent_speakers", tasks=opened)
        return opened

    async def _message(
        self, conn: Conn, warning_id: int, context: _Context, audience: Audience, kind: str
    ) -> int:
        text = audience_text(
            self._policy(),
            context.warning,
            audience,
            kind,
            place=context.place,
            short_code=context.short_code,
            max_chars=self._max_chars,
        )
        # An approved warning's texts are stored already: the upsert keeps them.
        message_id: int = await conn.fetchval(
            sql("upsert_message"), warning_id, text.key, kind, text.body
        )
        return message_id
