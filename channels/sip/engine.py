"""The engine: supervised worker processes (:mod:`channels.sip.worker`), each holding up to four
calls, and the asyncio side that talks to them (:mod:`channels.sip.protocol`).

Each worker has a supervisor task that starts it, reads its lines and, when it ends for any
reason (a crash, ``kill -9``, a worker silent for ``STUCK_AFTER_S``, which is killed), reports
every call it held as lost — placed calls as a :class:`CallResult` with the cause ``engine lost``,
calls not yet placed as a failed placement — and starts a new one after a growing pause (0.5 s,
doubling to 30 s, back to 0.5 s once a worker has run a minute). A call is placed on the least
busy worker that is up; one beyond every free line waits for a line to free.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from channels.base import CallResult, ChannelClock, InboundEvent
from channels.registry import ChannelConfigError
from channels.sip import causes
from channels.sip.protocol import (
    STUCK_AFTER_S,
    CallEnded,
    CallRequest,
    WorkerSettings,
    call_command,
    decode,
    encode,
    init_command,
)

log = structlog.get_logger(__name__)

# How long start() waits for every worker to come up, then for the registrar's first answers.
START_TIMEOUT_S: Final = 15.0
REGISTER_WAIT_S: Final = 10.0
# How long stop() lets workers hang up and report before they are killed.
STOP_TIMEOUT_S: Final = 10.0
_RESTART_FIRST_S: Final = 0.5
_RESTART_MAX_S: Final = 30.0
_STEADY_AFTER_S: Final = 60.0  # a worker that ran this long restarts quickly again
_OUTPUT_CHARS: Final = 500  # of one line a worker printed, in the log
_REFUSING_REGISTRATION: Final = frozenset({401, 403, 404})


class EngineStartError(ChannelConfigError):
    """The SIP engine could not start (a worker failed to set up, or the registrar refused);
    the message says what to check. Reported by the daemon like a bad channel table."""


@dataclass(frozen=True)
class Placed:
    """The call is on its way; ``call_id`` is its SIP Call-ID, the external id."""

    call_id: str


@dataclass(frozen=True)
class NotPlaced:
    """The call was never placed (or may not have been: ``lost``)."""

    detail: str
    lost: bool = False
    busy: bool = False  # every line was taken: try again soon


@dataclass
class _Call:
    ref: int
    ring_timeout: float
    placed: asyncio.Future[Placed | NotPlaced]
    external_id: str = ""
    answered: bool = False
    reported: bool = False


@dataclass
class _Registration:
    code: int
    reason: str
    expires: int

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300 and self.expires > 0


def _ended_how(returncode: int | None, index: int) -> str:
    if returncode is None:
        return f"worker {index} stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker {index} was killed ({name})"
    return f"worker {index} exited (status {returncode})"


class Worker:
    """One worker process under supervision, and the calls it holds."""

    def __init__(self, engine: Engine, index: int, capacity: int, settings: WorkerSettings):
        self.engine = engine
        self.index = index
        self.capacity = capacity
        self.settings = settings
        self.calls: dict[int, _Call] = {}
        self.process: asyncio.subprocess.Process | None = None
        self.ready = False
        self.address = ""
        self.registration: _Registration | None = None
        self.restarts = 0
        self.last_error = ""
        self.last_output = ""  # the last line the worker printed (a traceback's last line)
        self.came_up = asyncio.Event()  # set at each "ready"
        self.failed: str | None = None  # the init failure of the first start, if any
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def free(self) -> int:
        return self.capacity - len(self.calls) if self.ready else 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"sip-worker-{self.index}")

    async def stop(self) -> None:
        """Ask the worker to hang up and exit; kill it if it takes too long."""
        self._stopping = True
        self._wake.set()
        if self.process is not None and self.process.returncode is None:
            await self.send({"op": "quit"})
        task, self._task = self._task, None
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        if not done:
            self.kill()
            await task

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def send(self, message: dict[str, Any]) -> bool:
        """Write one command; False when the worker is gone (its loss is reported elsewhere)."""
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            return False
        try:
            process.stdin.write(encode(message))
            await process.stdin.drain()
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def _supervise(self) -> None:
        pause = _RESTART_FIRST_S
        while not self._stopping:
            began = time.monotonic()
            how = await self._session()
            self._lose_calls(how)
            if not self.came_up.is_set() and self.restarts == 0 and self.failed is None:
                # It died before it ever came up: a set-up problem, not worth a restart loop.
                self.failed = f"{how}: {self.last_output}" if self.last_output else how
            await self.engine.changed()
            if self._stopping or self.failed is not None:
                return
            self.restarts += 1
            if time.monotonic() - began > _STEADY_AFTER_S:
                pause = _RESTART_FIRST_S
            log.warning("sip_worker_lost", worker=self.index, how=how, restart_in_s=pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            pause = min(pause * 2, _RESTART_MAX_S)

    async def _session(self) -> str:
        """Run the worker once, until it ends; how it ended, in words."""
        self.ready = False
        self.came_up.clear()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "channels.sip.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Its own session: a Ctrl-C meant for the daemon does not kill calls under it;
                # the daemon's stop (or its death: stdin closes) ends the worker.
                start_new_session=True,
            )
        except OSError as exc:
            self.last_error = f"cannot start a worker: {exc}"
            return self.last_error
        self.process = process
        assert process.stdout is not None and process.stderr is not None
        output = asyncio.create_task(self._output(process.stderr))
        silent = False
        try:
            if await self.send(init_command(self.settings)):
                silent = await self._read(process.stdout)
        finally:
            if silent:
                self.kill()
            await process.wait()
            await output
            self.ready = False
        return _ended_how(None if silent else process.returncode, self.index)

    async def _read(self, stdout: asyncio.StreamReader) -> bool:
        """Handle the worker's lines until it closes them; True when it fell silent instead."""
        while True:
            try:
                async with asyncio.timeout(STUCK_AFTER_S):
                    line = await stdout.readline()
            except TimeoutError:
                return True
            except ValueError:  # a line longer than the stream's limit: not ours
                continue
            if not line:
                return False
            try:
                message = decode(line)
            except (ValueError, TypeError):
                log.warning("sip_worker_bad_line", worker=self.index, line=line[:_OUTPUT_CHARS])
                continue
            await self._handle(message)

    async def _output(self, stderr: asyncio.StreamReader) -> None:
        """What the worker (PJSIP, or a Python traceback) printed: into the log."""
        while line := await stderr.readline():
            text = line.decode("utf-8", errors="replace").rstrip()
            if text:
                self.last_output = text[:_OUTPUT_CHARS]
                log.info("sip_engine_output", worker=self.index, line=text[:_OUTPUT_CHARS])

    async def _handle(self, message: dict[str, Any]) -> None:
        event = message.get("ev")
        ref = message.get("ref")
        call = self.calls.get(ref) if isinstance(ref, int) else None
        if call is not None:
            self._on_call(str(event), call, message)
            if event in ("refused", "ended"):
                await self.engine.changed()  # a line is free
        elif event == "ready":
            self.ready = True
            self.address = str(message.get("address", ""))
            self.came_up.set()
            log.info(
                "sip_worker_ready",
                worker=self.index,
                pid=self.process.pid if self.process else None,
                address=self.address,
            )
            await self.engine.changed()
        elif event == "init_failed":
            self.last_error = str(message.get("error", "unknown error"))
            if not self.came_up.is_set() and self.restarts == 0:
                self.failed = self.last_error
            log.error("sip_worker_init_failed", worker=self.index, error=self.last_error)
        elif event == "registration":
            self._on_registration(message)
            await self.engine.changed()
        elif event == "log":
            log.info("sip_worker_log", worker=self.index, message=message.get("message"))

    def _on_call(self, event: str, call: _Call, message: dict[str, Any]) -> None:
        counts = self.engine.counts
        if event == "placed":
            call.external_id = str(message.get("call_id", ""))
            counts["placed"] += 1
            if not call.placed.done():
                call.placed.set_result(Placed(call.external_id))
        elif event == "refused":
            del self.calls[call.ref]
            error = str(message.get("error", ""))
            counts["refused"] += 1
            if not call.placed.done():
                call.placed.set_result(NotPlaced(error, busy=error == "no free line"))
        elif event == "answered":
            call.answered = True
            counts["answered"] += 1
        elif event == "key":
            keys = str(message.get("keys", ""))
            if "1" in keys and not call.reported:
                call.reported = True
                self.engine.report(call, causes.acknowledged(keys, int(message.get("plays", 0))))
        elif event == "ended":
            del self.calls[call.ref]
            if not call.reported:
                fields = {k: v for k, v in message.items() if k != "ev"}
                call.reported = True
                self.engine.report(call, causes.ended(CallEnded(**fields), call.ring_timeout))

    def _on_registration(self, message: dict[str, Any]) -> None:
        registration = _Registration(
            int(message.get("code", 0)),
            str(message.get("reason", "")),
            int(message.get("expires", 0)),
        )
        if registration != self.registration:
            log.info(
                "sip_registration",
                worker=self.index,
                code=registration.code,
                reason=registration.reason,
                expires=registration.expires,
            )
        self.registration = registration

    def _lose_calls(self, how: str) -> None:
        """The worker is gone: every call it held is reported, none forgotten."""
        lost = list(self.calls.values())
        self.calls.clear()
        if lost:
            log.warning("sip_calls_lost", worker=self.index, how=how, calls=len(lost))
        for call in lost:
            if not call.placed.done():
                call.placed.set_result(NotPlaced(f"engine lost: {how}", lost=True))
            elif not call.reported:
                call.reported = True
                self.engine.report(call, causes.lost(how, answered=call.answered))


class Engine:
    """``len(capacities)`` workers; places calls on them and reports how each call ended."""

    def __init__(
        self,
        settings: Callable[[int, int], WorkerSettings],
        capacities: list[int],
        emit: Callable[[InboundEvent], None],
        clock: ChannelClock,
        *,
        registering: bool,
    ) -> None:
        """``settings(index, capacity)`` is each worker's set-up; ``emit`` takes call results."""
        self.workers = [
            Worker(self, index, capacity, settings(index, capacity))
            for index, capacity in enumerate(capacities)
        ]
        self.counts: Counter[str] = Counter()
        self.waiting = 0  # callers waiting for a free line
        self._emit = emit
        self._clock = clock
        self._registering = registering
        self._refs = itertools.count(1)
        self._changed = asyncio.Condition()

    # lifecycle

    async def start(self) -> None:
        """Start every worker; raises EngineStartError (after stopping them) when one cannot
        set up, or the registrar refuses us. A registrar that does not answer in time is no
        reason to stay down: the workers go on trying, and health() shows it."""
        for worker in self.workers:
            worker.start()
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await self._until(self._up)
        except TimeoutError:
            await self.stop()
            raise EngineStartError(
                f"the SIP engine did not come up within {START_TIMEOUT_S:g} s{self._errors()}"
            ) from None
        except EngineStartError:
            await self.stop()
            raise
        if not self._registering:
            return
        try:
            async with asyncio.timeout(REGISTER_WAIT_S):
                await self._until(self._registered_or_refused)
        except TimeoutError:
            log.warning("sip_registration_pending", waited_s=REGISTER_WAIT_S)
        except EngineStartError:
            await self.stop()
            raise
        for worker in self.workers:
            if worker.registration is not None and not worker.registration.ok:
                log.warning(
                    "sip_not_registered",
                    worker=worker.index,
                    code=worker.registration.code,
                    reason=worker.registration.reason,
                )

    async def _until(self, done: Callable[[], bool]) -> None:
        async with self._changed:
            while not done():
                await self._changed.wait()

    def _up(self) -> bool:
        failed = next((w.failed for w in self.workers if w.failed is not None), None)
        if failed is not None:
            raise EngineStartError(f"the SIP engine cannot start: {failed}")
        return all(w.ready for w in self.workers)

    def _registered_or_refused(self) -> bool:
        for worker in self.workers:
            registration = worker.registration
            if registration is not None and registration.code in _REFUSING_REGISTRATION:
                raise EngineStartError(
                    f"the registrar refused us ({registration.code} {registration.reason}): "
                    "check registrar, username and password"
                )
        return all(w.registration is not None for w in self.workers)

    def _errors(self) -> str:
        errors = [w.last_error for w in self.workers if w.last_error]
        return f": {errors[0]}" if errors else ""

    async def stop(self) -> None:
        """Hang up every call (reported as stopped) and end every worker."""
        await asyncio.gather(*(worker.stop() for worker in self.workers))

    async def changed(self) -> None:
        """Wake whoever waits for a free line or for the workers to come up."""
        async with self._changed:
            self._changed.notify_all()

    # calls

    async def place(self, request: Callable[[int], CallRequest], wait: float) -> Placed | NotPlaced:
        """Place one call on the least busy worker with a free line, waiting up to ``wait``
        seconds for one. ``request(ref)`` makes the call's request."""
        worker = await self._line(wait)
        if isinstance(worker, NotPlaced):
            return worker
        made = request(next(self._refs))
        call = _Call(made.ref, made.ring_timeout, asyncio.get_running_loop().create_future())
        worker.calls[made.ref] = call
        if not await worker.send(call_command(made)):
            worker.calls.pop(made.ref, None)
            return NotPlaced(f"engine lost: worker {worker.index} is gone", lost=True)
        # The worker answers within milliseconds, or dies and _lose_calls answers for it.
        return await call.placed

    async def _line(self, wait: float) -> Worker | NotPlaced:
        self.waiting += 1
        try:
            async with asyncio.timeout(wait), self._changed:
                while True:
                    worker = max(self.workers, key=lambda w: w.free)
                    if worker.free > 0:
                        return worker
                    await self._changed.wait()
        except TimeoutError:
            if any(w.ready for w in self.workers):
                lines = sum(w.capacity for w in self.workers)
                return NotPlaced(f"all {lines} lines busy", busy=True)
            return NotPlaced(f"no SIP engine worker up{self._errors()}")
        finally:
            self.waiting -= 1

    def report(self, call: _Call, outcome: causes.Outcome) -> None:
        self.counts[outcome.ending.value] += 1
        self._emit(
            CallResult(
                external_id=call.external_id,
                answered=outcome.answered,
                keys=outcome.keys,
                cause=outcome.cause,
                at=self._clock.now(),
            )
        )

    # state

    @property
    def in_progress(self) -> int:
        return sum(len(w.calls) for w in self.workers)

    def registered(self) -> bool | None:
        """True when every worker that is up holds a registration; None without a registrar."""
        if not self._registering:
            return None
        up = [w for w in self.workers if w.ready]
        return bool(up) and all(w.registration is not None and w.registration.ok for w in up)

    def registration_status(self) -> str:
        """The last registration answer, in words ("200 OK"), or "" when there is none."""
        for worker in self.workers:
            if worker.registration is not None:
                return f"{worker.registration.code} {worker.registration.reason}".strip()
        return ""

    def pids(self) -> list[int]:
        """The worker processes' ids (for operations, and for tests that kill one)."""
        return [
            w.process.pid
            for w in self.workers
            if w.process is not None and w.process.returncode is None
        ]

    def last_error(self) -> str:
        return next((w.last_error for w in self.workers if w.last_error), "")

    def workers_up(self) -> int:
        return sum(1 for w in self.workers if w.ready)

    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)
