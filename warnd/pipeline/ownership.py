"""Channel ownership: each channel is held by one warnd process at a time, whatever their number.

A channel that holds connections (SMPP binds, a SIP trunk, an MQTT session) must be bound once,
and the rate an operator contracted is the channel's, not each process's. So every process that
dispatches competes for each channel through a PostgreSQL **session advisory lock** (one per
channel) on a connection of its own; the holder starts the channel and sends on it, the others
leave it unstarted and try again every ``check`` seconds.

Why a lock, not a lease row with an expiry: a lock lives exactly as long as its session. A process
killed with SIGKILL has its socket closed by the kernel, PostgreSQL ends the session and the lock
is free at once; a lease row would keep a dead owner's claim until it expired, be renewed by
writes every few seconds, and depend on the processes' clocks agreeing. What a lock alone does
not cover, and what is done about it:

- **A host that vanishes** without closing its socket: the server notices only through TCP
  keepalives, so this connection asks for short ones (``keepalive`` seconds idle, two probes).
- **An owner that lives but lost its connection** (a cut cable, PostgreSQL restarted): the
  server may hand the lock to another process while the old owner still holds its binds. So an
  owner checks its connection every ``check`` seconds and, when a check fails or takes longer
  than ``ping_timeout``, gives every channel up at once (unbinds), and only then reconnects and
  competes again.
- **The window between the two**: a process that takes a channel over (it saw the lock held
  before) waits ``fence`` seconds before starting it, longer than an old owner can go on
  unaware of its loss. A process that gets a lock at its first try (nobody held it) starts at
  once.

With ``takeover_seconds`` T (``WARND_TAKEOVER_SECONDS``, default 5), check = T/6: an owner killed
on a live host is replaced within about T/2 (next try + fence); a vanished host within T
(keepalive 3·check + next try + fence 2·check); an owner that loses its connection stops sending
within ping_timeout + check = 3·check, before the server can free the lock (3·check) and a
standby's fence (2·check) runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import zlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import asyncpg
import structlog

from warnd.core.clock import Clock
from warnd.core.errors import DatabaseError
from warnd.db.pool import connect
from warnd.db.queries import sql

log = structlog.get_logger(__name__)

# A channel that failed to start here (a refused bind) is left to others this long: an SMSC is
# not asked to bind every second by every process.
START_RETRY_SECONDS = 30.0

# What a broken ownership connection raises. A session the server ended (pg_terminate_backend, a
# restart) can leave asyncpg's protocol mid-operation: the next query raises InternalClientError.
CONNECTION_FAILED = (
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
# A channel taken over is started this many checks after its lock was taken.
FENCE_ROUNDS = 2

Hand = Callable[[str], Awaitable[None]]  # take or give up one channel, by name


def channel_key(name: str) -> int:
    """The second key of a channel's advisory lock: a stable 32-bit hash of its name, signed
    as PostgreSQL's ``int`` (the same in every process and every Python)."""
    value = zlib.crc32(name.encode("utf-8"))
    return value - (1 << 32) if value >= (1 << 31) else value


def process_name() -> str:
    """How this process appears as a holder (the ownership session's application name)."""
    return f"warnd {socket.gethostname()} pid {os.getpid()}"[:63]


@dataclass(frozen=True)
class Timing:
    """The ownership's intervals, from the takeover bound (see the module docstring)."""

    takeover_seconds: float

    @property
    def check(self) -> float:
        return self.takeover_seconds / 6

    @property
    def ping_timeout(self) -> float:
        return 2 * self.check

    @property
    def fence(self) -> float:
        return FENCE_ROUNDS * self.check

    @property
    def keepalive(self) -> int:
        return max(1, math.ceil(self.check))


class ChannelOwnership:
    """Competes for channels on a connection of its own; ``take`` and ``give_up`` start and stop
    a channel's sending in this process. ``run`` until cancelled, then ``close``."""

    def __init__(
        self,
        url: str,
        names: Collection[str],
        clock: Clock,
        *,
        take: Hand,
        give_up: Hand,
        takeover_seconds: float = 5.0,
        name: str | None = None,
    ) -> None:
        self._url = url
        self._keys = {name: channel_key(name) for name in sorted(names)}
        self._clock = clock
        self._take = take
        self._give_up = give_up
        self.timing = Timing(takeover_seconds)
        self.name = name or process_name()
        self._conn: asyncpg.Connection | None = None
        self.held: set[str] = set()  # started here, sending
        self._fenced: dict[str, int] = {}  # locked here, started from that round on
        self._seen_held: set[str] = set()  # another process held it when last tried
        self.holders: dict[str, str] = {}  # channel -> who holds it, as last seen
        self._rounds = 0  # checks run: fences and retries are counted in rounds
        self._failed: dict[str, int] = {}  # could not start here: not tried before that round

    def owner_of(self, name: str) -> tuple[bool, str | None]:
        """Whether the channel is held (started, sending) here, and who holds it as last seen
        (this process's name when here; None when nobody or unknown)."""
        if name in self.held:
            return True, self.name
        return False, self.holders.get(name)

    async def first_round(self) -> set[str]:
        """At start-up: connect and take what nobody holds, without a fence (nobody held it);
        the channels are not started, the caller starts them. Raises DatabaseError."""
        await self._connect()
        taken = await self._try(set(self._keys))
        self.held |= taken
        await self._read_holders()
        return taken

    async def run(self) -> None:
        """Check the connection and compete every ``check`` seconds until cancelled."""
        while True:
            await self.round()
            await self._clock.sleep(self.timing.check)

    async def round(self) -> None:
        """One check: the connection still answers (or every channel is given up), the fenced
        channels whose fence has passed are started, the others tried again."""
        self._rounds += 1
        if self._conn is None:
            try:
                await self._connect()
            except DatabaseError as exc:
                log.warning("ownership_connect_failed", error=str(exc))
                return
        starting: list[str] = []
        try:
            async with asyncio.timeout(self.timing.ping_timeout):
                await self._conn_or_raise().fetchval("SELECT 1")
                for name in [n for n, at in self._fenced.items() if at <= self._rounds]:
                    del self._fenced[name]
                    starting.append(name)
                wanted = {
                    n
                    for n in set(self._keys) - self.held - set(self._fenced) - set(starting)
                    if self._failed.get(n, 0) <= self._rounds
                }
                taken = await self._try(wanted)
                for name in sorted(taken):
                    if name in self._seen_held:
                        # Taking over: the old owner may not know yet that it lost the lock.
                        log.warning("channel_taking_over", channel=name, fence=self.timing.fence)
                        self._fenced[name] = self._rounds + FENCE_ROUNDS
                    else:
                        starting.append(name)
                self._seen_held = wanted - taken
                await self._read_holders()
        except CONNECTION_FAILED as exc:
            await self.lose(f"{type(exc).__name__}: {exc}")
            return
        # Outside the check's timeout: a bind may take longer than a check.
        for name in starting:
            await self._start(name)

    async def lose(self, reason: str) -> None:
        """The connection failed: give every channel up (they may be another's already), then
        drop the connection; the next round reconnects and competes again."""
        if self.held or self._fenced:
            log.error("channel_ownership_lost", channels=sorted(self.held), reason=reason)
        held, self.held = sorted(self.held), set()
        self._fenced.clear()
        self._seen_held = set(self._keys)  # a later take is a takeover: fenced
        self.holders.clear()
        await asyncio.gather(*(self._give_up(name) for name in held), return_exceptions=True)
        await self.close()

    async def close(self) -> None:
        """Drop the connection, and with it every lock; give the channels up first."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _start(self, name: str) -> None:
        self.held.add(name)
        log.info("channel_owned", channel=name)
        try:
            await self._take(name)
        except Exception:  # e.g. the SMSC refuses the bind: let another process try
            log.exception("channel_start_failed", channel=name, retry_in=START_RETRY_SECONDS)
            self.held.discard(name)
            self._failed[name] = self._rounds + math.ceil(START_RETRY_SECONDS / self.timing.check)
            try:
                await self._conn_or_raise().execute(
                    "SELECT pg_advisory_unlock(2052, $1::int)", self._keys[name]
                )
            except CONNECTION_FAILED as exc:
                await self.lose(f"{type(exc).__name__}: {exc}")  # unlocked with the session

    async def _try(self, names: set[str]) -> set[str]:
        if not names:
            return set()
        by_key = {self._keys[n]: n for n in names}
        rows = await self._conn_or_raise().fetch(sql("try_own_channels"), list(by_key))
        return {by_key[r["key"]] for r in rows}

    async def _read_holders(self) -> None:
        names = {key: name for name, key in self._keys.items()}
        rows = await self._conn_or_raise().fetch(sql("channel_holders"))
        self.holders = {names[r["key"]]: r["holder"] for r in rows if r["key"] in names}

    async def _connect(self) -> None:
        conn = await connect(self._url, application_name=self.name)
        try:
            await conn.fetchrow(sql("ownership_keepalives"), str(self.timing.keepalive))
        except (asyncpg.PostgresError, OSError) as exc:
            with contextlib.suppress(Exception):
                conn.terminate()
            raise DatabaseError(f"cannot set up the ownership connection: {exc}") from exc
        self._conn = conn

    def _conn_or_raise(self) -> asyncpg.Connection:
        if self._conn is None:
            raise asyncpg.InterfaceError("the ownership connection is closed")
        return self._conn
