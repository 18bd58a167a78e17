"""The escalation decision for a call-out: what, if anything, happens now.

When a call-out opens, ``freeze`` resolves the policy's escalation steps into a ``Snapshot``: each
step with its absolute due time and the person it will call (the callee again, the backup B角,
the parent division's responsible person) or the reason it cannot be done. The snapshot is stored
as JSON on the call-out row, so a policy reload or a roster edit during the warning never changes
a chain that is already running, and the audit log can say exactly who was due to be called.

``next_step(snapshot, state, now)`` is the whole decision: a pure function of plain data, with
time as a parameter. The scanner locks a due row, asks ``next_step``, records the step it fires
or skips and advances the cursor by one (``advance`` is the reference for that update), in one
transaction. Because a decision names the step index it acts on, and the cursor only moves one
step per decision, a restart or a second scanner can never fire a step twice or skip over one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, get_args

Action = Literal["repeat", "backup", "superior", "duty_officer"]
ACTIONS: tuple[Action, ...] = get_args(Action)


class StepRule(Protocol):
    """A step of the policy's escalation chain: what to do, how long after the call-out opened.

    The policy's ``EscalationStep`` has this shape; a protocol keeps core free of the policy.
    """

    @property
    def action(self) -> Action: ...

    @property
    def after(self) -> timedelta: ...


@dataclass(frozen=True)
class ChainStep:
    """A step of a chain derived from the policy's (a field task's, moved in time)."""

    action: Action
    after: timedelta


DecisionKind = Literal["wait", "fire", "skip", "finished"]

Reason = Literal[
    "acknowledged",  # the callee answered: nothing more to do
    "warning_closed",  # the warning was cancelled or expired
    "chain_exhausted",  # every step has been fired or skipped
    "not_due",  # the next step's time has not come
    "due",  # the step's time has come (see Decision.late_by for how late)
    "no_target",  # the step's time has come but nobody can be called (Step.skip_reason says why)
]

# The version of the JSON written by ``Snapshot.to_json``. Raise it when the shape changes, so an
# older warnd reading a newer snapshot refuses it instead of misreading a live chain.
SNAPSHOT_FORMAT = 1


class EscalationError(ValueError):
    """Escalation data is malformed; the message starts with the key at fault.

    A naive time, a stored snapshot that does not parse, a stale decision. A ``ValueError``, so
    callers that only know "bad value" still catch it.
    """


NO_BACKUP = "no backup (B角) on the roster"
BACKUP_IS_CALLEE = "the backup (B角) on the roster is the callee, already called"
NO_SUPERIOR = "no responsible person of the parent division on the roster"
SUPERIOR_IS_CALLEE = "the parent division's responsible person is the callee, already called"


def _aware_utc(value: object, key: str) -> datetime:
    """``value`` as an aware UTC datetime; naive or non-datetime values are refused by ``key``."""
    if not isinstance(value, datetime):
        raise EscalationError(f"{key}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise EscalationError(f"{key}: naive datetime {value.isoformat()}; give a time zone")
    # One canonical zone: the same instant always serialises to the same text, so a snapshot
    # read back from JSON is field-for-field identical to the one written.
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Step:
    """One frozen escalation step: what to do, when, and to whom (or why it cannot be done)."""

    action: Action
    due_at: datetime
    """Absolute: the call-out's opening time plus the policy's ``after``."""
    target_id: int | None
    """The responder to call; ``None`` for the duty officer's board, or when skipped."""
    target_name: str = ""
    """For message texts and the duty officer's board."""
    skip_reason: str = ""
    """Set when the step cannot be done; the scanner records it and moves on."""

    def __post_init__(self) -> None:
        # Messages name the key within the step; Snapshot.from_json prefixes the step's path.
        if self.action not in ACTIONS:
            raise EscalationError(f"action: {self.action!r} is not one of {', '.join(ACTIONS)}")
        object.__setattr__(self, "due_at", _aware_utc(self.due_at, "due_at"))
        if self.target_id is not None and (
            isinstance(self.target_id, bool) or not isinstance(self.target_id, int)
        ):
            raise EscalationError("target_id: expected an integer or null")
        if self.action == "duty_officer" and self.target_id is not None:
            raise EscalationError("target_id: the duty officer's board has no target person")
        # A step that would call nobody without saying why is a bug upstream; refusing it here
        # keeps a silent gap out of a chain that someone's safety depends on.
        if self.action != "duty_officer" and self.target_id is None and not self.skip_reason:
            raise EscalationError(
                f"target_id: a {self.action} step needs a target or a skip reason"
            )

    @property
    def skipped(self) -> bool:
        """Whether this step is recorded as skipped rather than carried out when it is due."""
        return bool(self.skip_reason)

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "due_at": self.due_at.isoformat(),
            "target_id": self.target_id,
            "target_name": self.target_name,
            "skip_reason": self.skip_reason,
        }


@dataclass(frozen=True)
class Snapshot:
    """A call-out's escalation chain, resolved once when it opened and stored with it."""

    callout_id: int
    responder_id: int
    opened_at: datetime
    deadline: datetime
    """The answer is expected by then; an answer after it is recorded as late."""
    steps: tuple[Step, ...]
    """In order of ``due_at``, strictly increasing."""

    def __post_init__(self) -> None:
        for key in ("callout_id", "responder_id"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise EscalationError(f"{key}: expected an integer")
        opened_at = _aware_utc(self.opened_at, "opened_at")
        deadline = _aware_utc(self.deadline, "deadline")
        if deadline < opened_at:
            raise EscalationError("deadline: earlier than opened_at")
        object.__setattr__(self, "opened_at", opened_at)
        object.__setattr__(self, "deadline", deadline)
        steps = tuple(self.steps)
        object.__setattr__(self, "steps", steps)
        previous: datetime | None = None
        for index, step in enumerate(steps):
            key = f"steps[{index}]"
            if not isinstance(step, Step):
                raise EscalationError(f"{key}: expected a Step")
            if step.due_at < opened_at:
                raise EscalationError(f"{key}.due_at: earlier than opened_at")
            # Strictly increasing due times make "the step at the cursor" the only one that can be
            # due next, which is what lets a single cursor stand for the whole chain's progress.
            if previous is not None and step.due_at <= previous:
                raise EscalationError(f"{key}.due_at: not later than the previous step")
            if step.action == "repeat" and step.target_id not in (None, self.responder_id):
                raise EscalationError(f"{key}.target_id: a repeat calls the callee again")
            previous = step.due_at

    def is_late(self, answered_at: datetime) -> bool:
        """Whether an answer at ``answered_at`` is late (after the deadline; at it is on time)."""
        return _aware_utc(answered_at, "answered_at") > self.deadline

    def to_json(self) -> dict[str, object]:
        """The snapshot as JSON-safe data (ISO 8601 times in UTC), for the call-out row."""
        return {
            "format": SNAPSHOT_FORMAT,
            "callout_id": self.callout_id,
            "responder_id": self.responder_id,
            "opened_at": self.opened_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "steps": [step.to_json() for step in self.steps],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Snapshot:
        """The snapshot ``to_json`` wrote; malformed data raises ``EscalationError`` (by key)."""
        reader = _Reader(data, "snapshot")
        version = reader.integer("format")
        if version != SNAPSHOT_FORMAT:
            raise EscalationError(
                f"format: snapshot format {version} is not {SNAPSHOT_FORMAT} "
                "(written by a different warnd version)"
            )
        raw_steps = reader.take("steps")
        if not isinstance(raw_steps, list | tuple):
            raise EscalationError("steps: expected a list")
        steps = tuple(_step_from_json(raw, f"steps[{i}]") for i, raw in enumerate(raw_steps))
        snapshot = cls(
            callout_id=reader.integer("callout_id"),
            responder_id=reader.integer("responder_id"),
            opened_at=reader.time("opened_at"),
            deadline=reader.time("deadline"),
            steps=steps,
        )
        reader.finish()
        return snapshot


class _Reader:
    """Takes typed values out of one JSON object, naming the key of anything wrong."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise EscalationError(f"{where}: expected an object")
        self._data: Mapping[object, object] = data
        self._prefix = "" if where == "snapshot" else f"{where}."
        self._seen: set[str] = set()

    def take(self, key: str) -> object:
        if key not in self._data:
            raise EscalationError(f"{self._prefix}{key}: missing")
        self._seen.add(key)
        return self._data[key]

    def integer(self, key: str) -> int:
        value = self.take(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise EscalationError(f"{self._prefix}{key}: expected an integer")
        return value

    def optional_integer(self, key: str) -> int | None:
        value = self.take(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise EscalationError(f"{self._prefix}{key}: expected an integer or null")
        return value

    def text(self, key: str) -> str:
        value = self.take(key)
        if not isinstance(value, str):
            raise EscalationError(f"{self._prefix}{key}: expected a string")
        return value

    def time(self, key: str) -> datetime:
        value = self.text(key)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise EscalationError(
                f"{self._prefix}{key}: {value!r} is not an ISO 8601 time"
            ) from None
        return _aware_utc(parsed, f"{self._prefix}{key}")

    def finish(self) -> None:
        # Unknown keys are refused, like unknown keys in the policy: a misspelt field would
        # otherwise be dropped silently and the chain rebuilt without it.
        unknown = sorted(str(key) for key in self._data if key not in self._seen)
        if unknown:
            raise EscalationError(f"{self._prefix}{unknown[0]}: unknown key")


def _step_from_json(data: object, where: str) -> Step:
    reader = _Reader(data, where)
    action = reader.text("action")
    if action not in ACTIONS:
        raise EscalationError(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS)}")
    due_at = reader.time("due_at")
    target_id = reader.optional_integer("target_id")
    target_name = reader.text("target_name")
    skip_reason = reader.text("skip_reason")
    try:
        step = Step(action, due_at, target_id, target_name, skip_reason)
    except EscalationError as exc:
        raise EscalationError(f"{where}.{exc}") from None
    reader.finish()
    return step


def freeze(
    callout_id: int,
    responder_id: int,
    opened_at: datetime,
    deadline: datetime,
    policy_steps: Sequence[StepRule],
    *,
    backup: tuple[int, str] | None,
    superior: tuple[int, str] | None,
    responder_name: str = "",
) -> Snapshot:
    """The call-out's chain, resolved now: each policy step with its due time and its target.

    ``backup`` and ``superior`` are (responder id, name) as the roster stands when the call-out
    opens, or ``None`` when there is nobody; such a step is kept, with a skip reason, so the audit
    log shows that the chain reached it and why nobody was called.
    """
    opened_at = _aware_utc(opened_at, "opened_at")
    steps: list[Step] = []
    for policy_step in policy_steps:
        due_at = opened_at + policy_step.after
        action: Action = policy_step.action
        if action == "repeat":
            steps.append(Step(action, due_at, responder_id, responder_name))
        elif action == "duty_officer":
            steps.append(Step(action, due_at, None, "duty officer (值班员)"))
        else:
            person = backup if action == "backup" else superior
            missing, is_callee = (
                (NO_BACKUP, BACKUP_IS_CALLEE)
                if action == "backup"
                else (NO_SUPERIOR, SUPERIOR_IS_CALLEE)
            )
            if person is None:
                steps.append(Step(action, due_at, None, skip_reason=missing))
            elif person[0] == responder_id:
                # Rosters do list a person as their own B角 (or a county head as the parent's
                # responsible person); calling them "as someone else" would only repeat the call.
                steps.append(Step(action, due_at, None, person[1], skip_reason=is_callee))
            else:
                steps.append(Step(action, due_at, person[0], person[1]))
    return Snapshot(callout_id, responder_id, opened_at, deadline, tuple(steps))


def task_chain(policy_steps: Sequence[StepRule], within: timedelta) -> list[ChainStep]:
    """A field task's escalation: the level's steps, moved so that the first is due when the
    task's time (``within``) is up and the rest keep their spacing after it."""
    if not policy_steps:
        return []
    shift = within - policy_steps[0].after
    return [ChainStep(step.action, step.after + shift) for step in policy_steps]


def deadline_for(level: str, within: Mapping[str, timedelta], opened_at: datetime) -> datetime:
    """When the responder must have answered: ``opened_at`` plus the policy's ``within[level]``.

    A level the table does not name (a division type the policy has not caught up with, a
    roster typo) gets the shortest configured deadline: too short a deadline costs an early
    repeat call, too long a one leaves someone unwarned while the water rises. ``EscalationError``
    for an empty table or a deadline that is not positive.
    """
    opened_at = _aware_utc(opened_at, "opened_at")
    if not within:
        raise EscalationError("within: no answer deadline configured for any responder level")
    for name, value in within.items():
        if value <= timedelta(0):
            raise EscalationError(f"within.{name}: the answer deadline must be positive")
    return opened_at + within.get(level, min(within.values()))


@dataclass(frozen=True)
class State:
    """The call-out's progress as stored on its row."""

    cursor: int
    """Steps already fired or skipped; 0 when just opened."""
    acknowledged: bool
    closed: bool
    """The warning was cancelled or expired."""

    def __post_init__(self) -> None:
        if isinstance(self.cursor, bool) or not isinstance(self.cursor, int) or self.cursor < 0:
            raise EscalationError(f"cursor: expected a non-negative integer, got {self.cursor!r}")


@dataclass(frozen=True)
class Decision:
    """What the scanner does with the call-out now, and when to look at it again."""

    kind: DecisionKind
    step_index: int | None
    """The step to fire or skip, always the state's cursor; for ``wait`` the step awaited."""
    step: Step | None
    next_check_at: datetime | None
    """When to look at this call-out again; ``None``: never (the chain is finished)."""
    reason: Reason
    late_by: timedelta = timedelta(0)
    """For ``fire`` and ``skip``: how long after its due time the step is acted on."""


def next_step(snapshot: Snapshot, state: State, now: datetime) -> Decision:
    """The escalation decision for this call-out at ``now``.

    At most one step per decision, always the one at the cursor: after an outage the overdue
    steps come out one call at a time, in order, so each is recorded with its own lateness.
    ``EscalationError`` for a naive ``now`` or a cursor past the end of the chain.
    """
    now = _aware_utc(now, "now")
    steps = snapshot.steps
    if state.cursor > len(steps):
        # Not "finished": a cursor beyond the chain means the row was written wrongly, and
        # hiding that could hide lost escalations on other rows too.
        raise EscalationError(
            f"cursor: {state.cursor} is past the end of call-out {snapshot.callout_id}'s "
            f"chain of {len(steps)} steps"
        )
    if state.acknowledged:
        return Decision("finished", None, None, None, "acknowledged")
    if state.closed:
        return Decision("finished", None, None, None, "warning_closed")
    if state.cursor == len(steps):
        return Decision("finished", None, None, None, "chain_exhausted")
    index = state.cursor
    step = steps[index]
    if now < step.due_at:
        return Decision("wait", index, step, step.due_at, "not_due")
    late_by = now - step.due_at
    if step.skipped:
        # Look again at once: the following step may already be due too.
        return Decision("skip", index, step, now, "no_target", late_by)
    following = steps[index + 1].due_at if index + 1 < len(steps) else None
    return Decision("fire", index, step, following, "due", late_by)


def advance(state: State, decision: Decision) -> State:
    """The state after the scanner has recorded ``decision`` (the reference for its UPDATE).

    ``fire`` and ``skip`` move the cursor by one; ``wait`` and ``finished`` change nothing. A
    decision made for another cursor is refused: it is stale, and applying it would skip a step
    or act on one twice (the database does the same with ``WHERE cursor = $expected``).
    """
    if decision.kind not in ("fire", "skip"):
        return state
    if decision.step_index != state.cursor:
        raise EscalationError(
            f"decision for step {decision.step_index} is stale: the cursor is at {state.cursor}"
        )
    return replace(state, cursor=state.cursor + 1)
