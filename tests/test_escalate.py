"""The escalation decision: freezing a chain, each branch of next_step, an hour in milliseconds."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from warnd.core.escalate import (
    BACKUP_IS_CALLEE,
    NO_BACKUP,
    NO_SUPERIOR,
    SUPERIOR_IS_CALLEE,
    Action,
    Decision,
    EscalationError,
    Snapshot,
    State,
    Step,
    advance,
    deadline_for,
    freeze,
    next_step,
)
from warnd.core.vocabulary import Level
from warnd.policy.loader import load_policy
from warnd.policy.model import DEFAULT_ACK_WITHIN, EscalationStep
from warnd.runtime.settings import REPO_CONFIG_DIR

T0 = datetime(2026, 7, 29, 2, 0, tzinfo=UTC)
CST = timezone(timedelta(hours=8))
CALLEE = 101
BACKUP = (202, "李四")
SUPERIOR = (303, "王五")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def chain(*steps: tuple[Action, float]) -> list[EscalationStep]:
    """Policy steps from (action, minutes after opening)."""
    return [EscalationStep(action=action, after=minutes(after)) for action, after in steps]


# The default orange chain of config/policy.toml.
ORANGE = chain(("repeat", 3), ("backup", 6), ("superior", 10), ("duty_officer", 15))


def orange(
    *,
    backup: tuple[int, str] | None = BACKUP,
    superior: tuple[int, str] | None = SUPERIOR,
) -> Snapshot:
    return freeze(
        1,
        CALLEE,
        T0,
        T0 + minutes(10),
        ORANGE,
        backup=backup,
        superior=superior,
        responder_name="张三",
    )


OPEN = State(cursor=0, acknowledged=False, closed=False)


# --- freeze ---------------------------------------------------------------------------------------


def test_freeze_resolves_each_step_to_its_time_and_person() -> None:
    snapshot = orange()
    assert snapshot.callout_id == 1
    assert snapshot.responder_id == CALLEE
    assert snapshot.opened_at == T0
    assert snapshot.deadline == T0 + minutes(10)
    assert snapshot.steps == (
        Step("repeat", T0 + minutes(3), CALLEE, "张三"),
        Step("backup", T0 + minutes(6), 202, "李四"),
        Step("superior", T0 + minutes(10), 303, "王五"),
        Step("duty_officer", T0 + minutes(15), None, "duty officer (值班员)"),
    )
    assert not any(step.skipped for step in snapshot.steps)


def test_freeze_keeps_steps_nobody_can_take_with_the_reason() -> None:
    snapshot = orange(backup=None, superior=None)
    backup, superior = snapshot.steps[1], snapshot.steps[2]
    assert (backup.action, backup.target_id, backup.skip_reason) == ("backup", None, NO_BACKUP)
    assert (superior.action, superior.target_id, superior.skip_reason) == (
        "superior",
        None,
        NO_SUPERIOR,
    )
    assert backup.skipped
    assert superior.skipped
    assert backup.due_at == T0 + minutes(6)


def test_freeze_skips_a_backup_or_superior_who_is_the_callee() -> None:
    snapshot = orange(backup=(CALLEE, "张三"), superior=(CALLEE, "张三"))
    assert snapshot.steps[1].skip_reason == BACKUP_IS_CALLEE
    assert snapshot.steps[2].skip_reason == SUPERIOR_IS_CALLEE
    assert snapshot.steps[1].target_id is None
    assert snapshot.steps[1].target_name == "张三"


def test_freeze_an_empty_chain() -> None:
    snapshot = freeze(1, CALLEE, T0, T0, [], backup=None, superior=None)
    assert snapshot.steps == ()
    assert next_step(snapshot, OPEN, T0).reason == "chain_exhausted"


def test_freeze_stores_times_in_utc() -> None:
    local = T0.astimezone(CST)
    snapshot = freeze(1, CALLEE, local, local + minutes(5), ORANGE, backup=None, superior=None)
    assert snapshot.opened_at == T0
    assert snapshot.opened_at.tzinfo is UTC
    assert snapshot.steps[0].due_at.tzinfo is UTC
    assert snapshot.to_json()["opened_at"] == "2026-07-29T02:00:00+00:00"


def test_freeze_refuses_naive_times() -> None:
    naive = T0.replace(tzinfo=None)
    with pytest.raises(ValueError, match=r"^opened_at: naive"):
        freeze(1, CALLEE, naive, T0, ORANGE, backup=None, superior=None)
    with pytest.raises(ValueError, match=r"^deadline: naive"):
        freeze(1, CALLEE, T0, naive, ORANGE, backup=None, superior=None)


def test_freeze_the_default_policy_chain() -> None:
    rule = load_policy(REPO_CONFIG_DIR / "policy.toml").rule("rainstorm", Level.RED)
    opened = T0
    deadline = deadline_for("county", rule.ack.within, opened)
    snapshot = freeze(7, CALLEE, opened, deadline, rule.escalation, backup=BACKUP, superior=None)
    assert deadline == T0 + minutes(5)
    assert [(s.action, s.due_at - T0) for s in snapshot.steps] == [
        (step.action, step.after) for step in rule.escalation
    ]
    assert [s.skipped for s in snapshot.steps] == [False, False, True, False]


# --- the snapshot and its steps refuse what cannot be right --------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Step("call", T0, 1), "^action: 'call' is not one of"),  # type: ignore[arg-type]
        (lambda: Step("repeat", T0.replace(tzinfo=None), 1), "^due_at: naive"),
        (lambda: Step("repeat", "2026-07-29", 1), "^due_at: expected a datetime"),  # type: ignore[arg-type]
        (lambda: Step("backup", T0, True), "^target_id: expected an integer"),
        (lambda: Step("duty_officer", T0, 5), "^target_id: the duty officer's board"),
        (lambda: Step("backup", T0, None), "^target_id: a backup step needs a target"),
        (lambda: State(cursor=-1, acknowledged=False, closed=False), "^cursor:"),
    ],
)
def test_steps_and_states_refuse_bad_values(make: Callable[[], object], message: str) -> None:
    with pytest.raises(EscalationError, match=message):
        make()


def snapshot_of(*steps: Step, deadline: datetime = T0) -> Snapshot:
    return Snapshot(1, CALLEE, T0, deadline, steps)


@pytest.mark.parametrize(
    ("steps", "deadline", "message"),
    [
        (
            (Step("repeat", T0 + minutes(3), CALLEE), Step("backup", T0 + minutes(3), 2)),
            T0,
            r"^steps\[1\]\.due_at: not later than the previous step",
        ),
        (
            (Step("repeat", T0 + minutes(3), CALLEE), Step("backup", T0 + minutes(2), 2)),
            T0,
            r"^steps\[1\]\.due_at: not later",
        ),
        ((Step("repeat", T0 - minutes(1), CALLEE),), T0, r"^steps\[0\]\.due_at: earlier"),
        ((Step("repeat", T0 + minutes(3), 999),), T0, r"^steps\[0\]\.target_id: a repeat"),
        ((), T0 - minutes(1), "^deadline: earlier than opened_at"),
    ],
)
def test_snapshot_refuses_an_impossible_chain(
    steps: tuple[Step, ...], deadline: datetime, message: str
) -> None:
    with pytest.raises(EscalationError, match=message):
        snapshot_of(*steps, deadline=deadline)


def test_snapshot_refuses_bad_ids_and_non_steps() -> None:
    with pytest.raises(EscalationError, match=r"^callout_id: expected an integer"):
        Snapshot(True, CALLEE, T0, T0, ())
    with pytest.raises(EscalationError, match=r"^steps\[0\]: expected a Step"):
        Snapshot(1, CALLEE, T0, T0, ("repeat",))  # type: ignore[arg-type]


def test_snapshot_says_whether_an_answer_is_late() -> None:
    snapshot = orange()
    assert not snapshot.is_late(T0 + minutes(10))
    assert snapshot.is_late(T0 + minutes(10) + timedelta(microseconds=1))
    assert not snapshot.is_late((T0 + minutes(9)).astimezone(CST))
    with pytest.raises(EscalationError, match=r"^answered_at: naive"):
        snapshot.is_late(T0.replace(tzinfo=None))


# --- deadline_for ---------------------------------------------------------------------------------


def test_deadline_per_responder_level() -> None:
    within = {"county": minutes(5), "town": minutes(10), "village": minutes(12)}
    assert deadline_for("county", within, T0) == T0 + minutes(5)
    assert deadline_for("town", within, T0) == T0 + minutes(10)
    assert deadline_for("village", within, T0) == T0 + minutes(12)
    assert deadline_for("village", DEFAULT_ACK_WITHIN, T0) == T0 + minutes(10)


def test_deadline_of_an_unknown_level_is_the_shortest() -> None:
    within = {"town": minutes(10), "county": minutes(5), "village": minutes(12)}
    assert deadline_for("street", within, T0) == T0 + minutes(5)
    assert deadline_for("", {"village": minutes(12)}, T0) == T0 + minutes(12)


def test_deadline_refuses_an_empty_table_a_bad_deadline_and_naive_times() -> None:
    with pytest.raises(EscalationError, match=r"^within: no answer deadline"):
        deadline_for("county", {}, T0)
    with pytest.raises(
        EscalationError, match=r"^within.town: the answer deadline must be positive"
    ):
        deadline_for("county", {"county": minutes(5), "town": timedelta(0)}, T0)
    with pytest.raises(EscalationError, match=r"^opened_at: naive"):
        deadline_for("county", DEFAULT_ACK_WITHIN, T0.replace(tzinfo=None))


# --- next_step, branch by branch ------------------------------------------------------------------


def test_acknowledged_finishes_whatever_else() -> None:
    snapshot = orange()
    for state in (
        State(0, acknowledged=True, closed=False),
        State(2, acknowledged=True, closed=True),
        State(4, acknowledged=True, closed=False),
    ):
        decision = next_step(snapshot, state, T0 + minutes(60))
        assert decision == Decision("finished", None, None, None, "acknowledged")


def test_closed_finishes_even_with_steps_overdue() -> None:
    decision = next_step(orange(), State(1, acknowledged=False, closed=True), T0 + minutes(60))
    assert decision == Decision("finished", None, None, None, "warning_closed")


def test_chain_exhausted() -> None:
    decision = next_step(orange(), State(4, False, False), T0 + minutes(60))
    assert decision == Decision("finished", None, None, None, "chain_exhausted")


def test_waits_for_the_step_at_the_cursor() -> None:
    snapshot = orange()
    decision = next_step(snapshot, OPEN, T0 + minutes(2))
    assert decision == Decision("wait", 0, snapshot.steps[0], T0 + minutes(3), "not_due")
    decision = next_step(
        snapshot,
        State(1, False, False),
        T0
        + minutes(
            5,
        ),
    )
    assert (decision.kind, decision.step_index, decision.next_check_at) == (
        "wait",
        1,
        T0 + minutes(6),
    )


def test_fires_at_its_due_time_and_names_the_next_check() -> None:
    snapshot = orange()
    decision = next_step(snapshot, OPEN, T0 + minutes(3))
    assert decision == Decision("fire", 0, snapshot.steps[0], T0 + minutes(6), "due", timedelta(0))


def test_the_last_step_fires_with_no_next_check() -> None:
    snapshot = orange()
    decision = next_step(
        snapshot,
        State(3, False, False),
        T0
        + minutes(
            15,
        )
        + timedelta(seconds=2),
    )
    assert decision.kind == "fire"
    assert decision.step == Step("duty_officer", T0 + minutes(15), None, "duty officer (值班员)")
    assert decision.next_check_at is None
    assert decision.late_by == timedelta(seconds=2)


def test_a_step_without_target_is_skipped_and_looked_at_again_at_once() -> None:
    snapshot = orange(backup=None)
    now = T0 + minutes(6) + timedelta(seconds=1)
    decision = next_step(snapshot, State(1, False, False), now)
    assert decision == Decision(
        "skip", 1, snapshot.steps[1], now, "no_target", timedelta(seconds=1)
    )
    assert decision.step is not None
    assert decision.step.skip_reason == NO_BACKUP


def test_overdue_steps_come_one_at_a_time_in_order_with_their_lateness() -> None:
    snapshot = orange(superior=None)
    now = T0 + minutes(20)
    state = OPEN
    seen: list[tuple[str, int | None, timedelta, datetime | None]] = []
    while (decision := next_step(snapshot, state, now)).kind in ("fire", "skip"):
        seen.append((decision.kind, decision.step_index, decision.late_by, decision.next_check_at))
        state = advance(state, decision)
    assert seen == [
        ("fire", 0, minutes(17), T0 + minutes(6)),
        ("fire", 1, minutes(14), T0 + minutes(10)),
        ("skip", 2, minutes(10), now),
        ("fire", 3, minutes(5), None),
    ]
    assert decision.reason == "chain_exhausted"


def test_now_in_any_zone_is_the_same_instant() -> None:
    snapshot = orange()
    decision = next_step(snapshot, OPEN, (T0 + minutes(3)).astimezone(CST))
    assert decision.kind == "fire"
    assert decision.late_by == timedelta(0)


def test_next_step_refuses_a_naive_now_and_a_cursor_past_the_chain() -> None:
    with pytest.raises(EscalationError, match=r"^now: naive"):
        next_step(orange(), OPEN, T0.replace(tzinfo=None))
    with pytest.raises(EscalationError, match=r"^cursor: 5 is past the end"):
        next_step(orange(), State(5, False, False), T0)


def test_advance_moves_the_cursor_only_for_fire_and_skip() -> None:
    snapshot = orange(backup=None)
    fire = next_step(snapshot, OPEN, T0 + minutes(3))
    assert advance(OPEN, fire) == State(1, False, False)
    skip = next_step(snapshot, State(1, False, False), T0 + minutes(6))
    assert advance(State(1, False, False), skip) == State(2, False, False)
    wait = next_step(snapshot, OPEN, T0)
    assert advance(OPEN, wait) is OPEN
    done = State(0, acknowledged=True, closed=False)
    assert advance(done, next_step(snapshot, done, T0)) is done


def test_advance_refuses_a_stale_decision() -> None:
    fire = next_step(orange(), OPEN, T0 + minutes(3))
    with pytest.raises(EscalationError, match="decision for step 0 is stale: the cursor is at 1"):
        advance(State(1, False, False), fire)


def test_next_step_is_pure() -> None:
    snapshot = orange(backup=None)
    for seconds in range(0, 1200, 7):
        for cursor in range(len(snapshot.steps) + 1):
            state = State(cursor, False, False)
            now = T0 + timedelta(seconds=seconds)
            assert next_step(snapshot, state, now) == next_step(snapshot, state, now)


# --- the JSON stored on the call-out row ----------------------------------------------------------


def test_json_round_trip_is_exact() -> None:
    snapshot = freeze(
        9,
        CALLEE,
        (T0 + timedelta(microseconds=123)).astimezone(CST),
        T0 + minutes(10),
        ORANGE,
        backup=None,
        superior=SUPERIOR,
        responder_name="张三",
    )
    stored = json.loads(json.dumps(snapshot.to_json(), ensure_ascii=False))
    back = Snapshot.from_json(stored)
    assert back == snapshot
    assert back.to_json() == snapshot.to_json()
    assert repr(back) == repr(snapshot)
    assert stored["format"] == 1
    assert stored["steps"][1] == {
        "action": "backup",
        "due_at": "2026-07-29T02:06:00.000123+00:00",
        "target_id": None,
        "target_name": "",
        "skip_reason": NO_BACKUP,
    }


def test_json_accepts_times_written_in_another_zone() -> None:
    data = orange().to_json()
    data["opened_at"] = "2026-07-29T10:00:00+08:00"
    assert Snapshot.from_json(data) == orange()


def mutated(path: tuple[str | int, ...], value: object) -> dict[str, object]:
    """The orange snapshot's JSON with the value at ``path`` replaced (or removed: ``...``)."""
    data = json.loads(json.dumps(orange().to_json()))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("format",), 2, "^format: snapshot format 2 is not 1"),
        (("format",), ..., "^format: missing"),
        (("callout_id",), "1", "^callout_id: expected an integer"),
        (("callout_id",), True, "^callout_id: expected an integer"),
        (("responder_id",), ..., "^responder_id: missing"),
        (("opened_at",), "2026-07-29T02:00:00", "^opened_at: naive"),
        (("opened_at",), "yesterday", "^opened_at: 'yesterday' is not an ISO 8601 time"),
        (("deadline",), 1785290400, "^deadline: expected a string"),
        (("steps",), {"0": {}}, "^steps: expected a list"),
        (("extra",), 1, "^extra: unknown key"),
        (("steps", 0), "repeat", r"^steps\[0\]: expected an object"),
        (("steps", 1, "action"), "call", r"^steps\[1\]\.action: 'call' is not one of"),
        (("steps", 1, "due_at"), "2026-07-29 02:06", r"^steps\[1\]\.due_at: naive"),
        (("steps", 1, "due_at"), ..., r"^steps\[1\]\.due_at: missing"),
        (("steps", 1, "target_id"), "202", r"^steps\[1\]\.target_id: expected an integer or null"),
        (("steps", 1, "target_id"), None, r"^steps\[1\]\.target_id: a backup step needs a target"),
        (("steps", 3, "target_id"), 7, r"^steps\[3\]\.target_id: the duty officer's board"),
        (("steps", 1, "target_name"), None, r"^steps\[1\]\.target_name: expected a string"),
        (("steps", 1, "skip_reason"), ..., r"^steps\[1\]\.skip_reason: missing"),
        (("steps", 2, "note"), "x", r"^steps\[2\]\.note: unknown key"),
        (
            ("steps", 2, "due_at"),
            "2026-07-29T02:06:00+00:00",
            r"^steps\[2\]\.due_at: not later than the previous step",
        ),
    ],
)
def test_json_refuses_malformed_data_naming_the_key(
    path: tuple[str | int, ...], value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Snapshot.from_json(mutated(path, value))


def test_json_refuses_what_is_not_an_object() -> None:
    with pytest.raises(ValueError, match=r"^snapshot: expected an object"):
        Snapshot.from_json([])  # type: ignore[arg-type]


# --- the scanner's view: time runs, decisions are applied ---------------------------------------


@dataclass
class Scanner:
    """Applies decisions the way the database scanner does: one step per decision, in order."""

    snapshot: Snapshot
    state: State = OPEN
    log: list[tuple[int, str, datetime, str]] = field(default_factory=list)
    """(step index, kind, when, action) for every step fired or skipped."""

    def tick(self, now: datetime) -> Decision:
        """Handle everything due at ``now``; the decision that made it stop."""
        while True:
            decision = next_step(self.snapshot, self.state, now)
            if decision.kind not in ("fire", "skip"):
                return decision
            assert decision.step is not None
            assert decision.step_index is not None
            self.log.append((decision.step_index, decision.kind, now, decision.step.action))
            self.state = advance(self.state, decision)

    def acknowledge(self) -> None:
        self.state = replace(self.state, acknowledged=True)

    def close(self) -> None:
        self.state = replace(self.state, closed=True)


def run_hour(scanner: Scanner, events: dict[int, str] | None = None) -> Decision:
    """An hour of the scanner looking every second; ``events`` by second: "ack" or "close"."""
    decision = scanner.tick(T0)
    for second in range(1, 3601):
        event = (events or {}).get(second)
        if event == "ack":
            scanner.acknowledge()
        elif event == "close":
            scanner.close()
        decision = scanner.tick(T0 + timedelta(seconds=second))
    return decision


def test_an_hour_of_escalation_fires_each_step_once_at_its_time() -> None:
    scanner = Scanner(orange())
    last = run_hour(scanner)
    assert scanner.log == [
        (0, "fire", T0 + minutes(3), "repeat"),
        (1, "fire", T0 + minutes(6), "backup"),
        (2, "fire", T0 + minutes(10), "superior"),
        (3, "fire", T0 + minutes(15), "duty_officer"),
    ]
    assert last.reason == "chain_exhausted"
    assert last.next_check_at is None


def test_an_hour_without_backup_or_superior_skips_them_at_their_time() -> None:
    scanner = Scanner(orange(backup=None, superior=None))
    run_hour(scanner)
    assert scanner.log == [
        (0, "fire", T0 + minutes(3), "repeat"),
        (1, "skip", T0 + minutes(6), "backup"),
        (2, "skip", T0 + minutes(10), "superior"),
        (3, "fire", T0 + minutes(15), "duty_officer"),
    ]


def test_acknowledgement_mid_chain_stops_it() -> None:
    scanner = Scanner(orange())
    last = run_hour(scanner, {7 * 60: "ack"})
    assert [entry[3] for entry in scanner.log] == ["repeat", "backup"]
    assert last.reason == "acknowledged"
    assert last.next_check_at is None


def test_acknowledgement_in_the_same_second_a_step_falls_due_wins() -> None:
    scanner = Scanner(orange())
    run_hour(scanner, {6 * 60: "ack"})
    assert [entry[3] for entry in scanner.log] == ["repeat"]


def test_a_closed_warning_stops_the_chain() -> None:
    scanner = Scanner(orange())
    last = run_hour(scanner, {4 * 60: "close"})
    assert [entry[3] for entry in scanner.log] == ["repeat"]
    assert last.reason == "warning_closed"


def test_after_an_outage_the_overdue_steps_fire_in_order_once() -> None:
    scanner = Scanner(orange())
    scanner.tick(T0 + minutes(1))
    scanner.tick(T0 + minutes(20))  # the scanner was down from minute 1 to minute 20
    scanner.tick(T0 + minutes(21))
    assert [(index, when) for index, _, when, _ in scanner.log] == [
        (0, T0 + minutes(20)),
        (1, T0 + minutes(20)),
        (2, T0 + minutes(20)),
        (3, T0 + minutes(20)),
    ]


def test_a_scanner_that_sleeps_until_next_check_at_fires_on_time() -> None:
    snapshot = orange(superior=None)
    state = OPEN
    now = T0
    calls = 0
    fired: list[tuple[int | None, timedelta]] = []
    while True:
        calls += 1
        decision = next_step(snapshot, state, now)
        if decision.kind in ("fire", "skip"):
            fired.append((decision.step_index, decision.late_by))
            state = advance(state, decision)
        if decision.next_check_at is None:
            break
        now = max(now, decision.next_check_at)
    assert fired == [(index, timedelta(0)) for index in range(4)]
    # No busy loop: one wait and one action per step, and one last look.
    assert calls <= 2 * len(snapshot.steps) + 1


# --- property: random chains, random clocks, crashes between decide and record -------------------


def random_snapshot(rng: random.Random, callout_id: int) -> Snapshot:
    opened = T0 + timedelta(seconds=rng.randrange(0, 86_400))
    after = 0
    steps: list[EscalationStep] = []
    for _ in range(rng.randrange(0, 7)):
        after += rng.randrange(1, 900)
        action: Action = rng.choice(("repeat", "backup", "superior", "duty_officer"))
        steps.append(EscalationStep(action=action, after=timedelta(seconds=after)))
    return freeze(
        callout_id,
        CALLEE,
        opened,
        opened + timedelta(seconds=rng.randrange(60, 900)),
        steps,
        backup=rng.choice((None, BACKUP, (CALLEE, "张三"))),
        superior=rng.choice((None, SUPERIOR)),
    )


def random_times(rng: random.Random, start: datetime) -> list[datetime]:
    """A scanner's look times: mostly short gaps, some repeats, some long outages."""
    times = [start - timedelta(seconds=rng.randrange(0, 5))]
    while times[-1] < start + timedelta(hours=2):
        gap = rng.choice((0, 0.3, 1, 1, 5, 30, 120, 1800))
        times.append(times[-1] + timedelta(seconds=gap))
    return times


def test_random_chains_fire_each_step_at_most_once_in_order_never_early() -> None:
    rng = random.Random(20260729)
    for callout_id in range(600):
        snapshot = random_snapshot(rng, callout_id)
        state = OPEN
        stop_at = rng.choice((None, rng.randrange(0, 7200)))
        stop = rng.choice(("ack", "close"))
        handled: list[int] = []
        times = random_times(rng, snapshot.opened_at)
        for now in times:
            if stop_at is not None and now >= snapshot.opened_at + timedelta(seconds=stop_at):
                if stop == "ack":
                    state = replace(state, acknowledged=True)
                else:
                    state = replace(state, closed=True)
            # The last look never crashes, so that a chain nobody stopped must be complete.
            may_crash = now != times[-1]
            for _ in range(len(snapshot.steps) + 2):
                decision = next_step(snapshot, state, now)
                assert decision == next_step(snapshot, state, now)  # pure
                if decision.kind == "wait":
                    assert decision.next_check_at is not None
                    assert decision.next_check_at > now
                if decision.kind == "finished":
                    assert decision.next_check_at is None
                if decision.kind not in ("fire", "skip"):
                    break
                step = decision.step
                assert step is not None
                assert decision.step_index == state.cursor
                assert step.due_at <= now
                assert decision.late_by == now - step.due_at
                assert (decision.kind == "skip") == step.skipped
                assert not state.acknowledged
                assert not state.closed
                if may_crash and rng.random() < 0.1:
                    # The scanner crashed after deciding and before recording: nothing moved,
                    # and the same step must come out again on the next look.
                    break
                handled.append(decision.step_index)
                state = advance(state, decision)
            else:
                pytest.fail("next_step kept acting beyond the chain's length")
        assert handled == list(range(len(handled))), "fired or skipped out of order or twice"
        if stop_at is None:
            # Nothing stopped the chain and the clock ran past its end: every step was handled.
            assert handled == list(range(len(snapshot.steps)))
            assert next_step(snapshot, state, times[-1]).reason == "chain_exhausted"
