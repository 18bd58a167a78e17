"""The warnd process: HTTP API, planner, dispatch workers and housekeeping, on one pool.

Every stage reads and writes PostgreSQL, so any number of these processes can share one database:
planners hold a warning by advisory lock, workers claim deliveries with SKIP LOCKED, each
channel is held by one process at a time (``warnd.pipeline.ownership``), and housekeeping is
safe to run twice. A process runs the loops of its roles (``warnd.runtime.roles``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from channels.base import Channel
from channels.registry import ChannelConfigError, build_channels
from warnd.app.board import fold_tallies
from warnd.app.metrics import ChannelHealth, Metrics
from warnd.app.services import Services, max_chars
from warnd.core.clock import Clock, ScaledClock, SystemClock
from warnd.core.config import AppConfig, HttpConfig
from warnd.core.errors import ConfigError
from warnd.db import Conn
from warnd.db.migrate import migrate
from warnd.db.notify import DELIVERIES_CHANNEL, PLAN_CHANNEL, ROSTER_CHANNEL, Signal
from warnd.db.pool import connect, open_pool
from warnd.db.queries import sql
from warnd.db.roles import RUNTIME_LOGIN, RUNTIME_ROLE, as_user, ensure_runtime_login
from warnd.pipeline.answers import Answers
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.drills import DrillScanner
from warnd.pipeline.eew import FastPath
from warnd.pipeline.eew_subscription import EewFeed
from warnd.pipeline.escalation import Escalation
from warnd.pipeline.heartbeat import HeartbeatWatch
from warnd.pipeline.inbound import Inbound
from warnd.pipeline.ownership import ChannelOwnership
from warnd.pipeline.planner import Planner
from warnd.pipeline.speaker_watch import SpeakerWatch
from warnd.policy.loader import PolicyHolder
from warnd.runtime.config import load_config
from warnd.runtime.holding import ChannelHolder
from warnd.runtime.roles import ALL_ROLES, Role
from warnd.runtime.settings import Settings, database_url

log = structlog.get_logger(__name__)

OWNERSHIP_STAGE = "ownership"  # the loop competing for channels

SIMULATED_CHANNELS: dict[str, dict[str, object]] = {
    "simulated-sms": {"type": "simulator", "kind": "sms"},
    "simulated-voice": {"type": "simulator", "kind": "voice"},
    "simulated-broadcast": {"type": "simulator", "kind": "broadcast"},
}


def make_channels(
    tables: Mapping[str, Mapping[str, object]], *, simulate: bool
) -> dict[str, Channel]:
    """The configured channels; with ``simulate`` and none configured, simulated ones.

    Without ``simulate`` at least one real channel must exist: warnd never pretends to warn.
    With ``simulate`` none may be real (``check_mode``).
    """
    try:
        channels = build_channels(tables or (SIMULATED_CHANNELS if simulate else {}))
    except ChannelConfigError as exc:
        raise ConfigError(str(exc)) from exc
    check_mode(channels, simulate=simulate)
    return channels


def check_mode(channels: Mapping[str, Channel], *, simulate: bool) -> None:
    """Live needs a real channel; simulated allows none: a drill on a fast clock
    (``WARND_TIME_SCALE``) must never ring a real phone, nor a "simulated" run send real SMS."""
    real = sorted(name for name, channel in channels.items() if not channel.simulated)
    if simulate and real:
        raise ConfigError(
            f"--simulate uses simulated phones only, but the config has real channels: "
            f"{', '.join(real)}; remove them from WARND_CONFIG for a simulation, or run "
            "without --simulate to send for real"
        )
    if not simulate and not real:
        raise ConfigError(
            "no real channel is configured: add a [channels.<name>] table with a real type "
            "to the config file (WARND_CONFIG), or run with --simulate to use simulated phones"
        )


async def supervised(name: str, loop: Callable[[], Awaitable[None]], clock: Clock) -> None:
    """Run a background loop until it returns; a crash is logged and the loop restarted after
    a pause. (Only an inbound listener returns: when its channel's events end, at shutdown.)"""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception:  # a stage must outlive a database blip; the error is logged, not hidden
            log.exception("stage_crashed", stage=name)
            await clock.sleep(1.0)
        else:
            return


def _clock(settings: Settings, *, simulate: bool) -> Clock:
    """The wall clock, or for a simulated drill a faster one (WARND_TIME_SCALE)."""
    if settings.time_scale == 1.0:
        return SystemClock()
    if not simulate:
        # Deadlines and escalations on a fast clock would chase real people within seconds.
        raise ConfigError("WARND_TIME_SCALE is for drills: it needs --simulate")
    return ScaledClock(settings.time_scale, settings.time_epoch)


def tune_gc() -> None:
    """Collect garbage the way a long-running sender needs; call once the process is built
    (config, policy and channels loaded), before it starts serving.

    CPython looks for reference cycles every 700 new container objects; sending 12,000 SMS a
    second allocates a few hundred thousand (futures, rows, results), and the collections, full
    ones walking every object the process holds, cost 8 % of the SMS throughput (measured,
    ``warnd bench sms``). What exists at start-up (modules, config, policy) lives as long as the
    process, so it is moved out of the collector's sight, and young objects are examined every
    10,000 allocations instead; cycles are still found, a little later.
    """
    gc.collect()  # what is garbage now must not be frozen with the rest
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class Daemon:
    """One warnd process. ``run`` serves until cancelled or signalled."""

    def __init__(
        self,
        settings: Settings,
        *,
        simulate: bool = False,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        config: AppConfig | None = None,
        channels: Mapping[str, Channel] | None = None,
        roles: Collection[Role] = ALL_ROLES,
    ) -> None:
        self.settings = settings
        self.roles = frozenset(roles)
        self.clock = clock or _clock(settings, simulate=simulate)
        self.metrics = metrics or Metrics()
        self.config = config or load_config(settings.config)
        self.policy = PolicyHolder(settings.policy)
        self.channels = (
            dict(channels)
            if channels is not None
            else make_channels(self.config.channels, simulate=simulate)
        )
        if simulate:
            check_mode(self.channels, simulate=True)
        self.services: Services | None = None
        self.port: int | None = None
        self._where: str | None = None  # the HTTP server's address, with role api
        self._holder: ChannelHolder | None = None
        self.metrics.registry.register(ChannelHealth(self.channels, owner=self._owner_of))
        self._preparing: set[asyncio.Task[None]] = set()  # channels rendering texts ahead
        self._dispatcher: Dispatcher | None = None
        self._fast_path: FastPath | None = None

    @asynccontextmanager
    async def running(self, url: str | None = None) -> AsyncIterator[Services]:
        """Start this process's roles: the channels it holds, its loops and (role ``api``) the
        HTTP server; stop them all on exit."""
        embedded = url is None and self.settings.database_url is None
        url = url or database_url(self.settings)
        url = await self._prepare_database(url, embedded=embedded)
        async with open_pool(
            url, min_size=2, max_size=12, run_migrations=False, role=RUNTIME_ROLE
        ) as pool:
            services = Services(
                pool=pool,
                config=self.config,
                policy=self.policy,
                clock=self.clock,
                metrics=self.metrics,
                channels=self.channels,
                database_url=url,
                database_role=RUNTIME_ROLE,
            )
            self.services = services
            stages = self._build_stages(services)
            held = await self._take_channels(url, services, stages)
            runner = await self._serve_http(services) if Role.API in self.roles else None
            tasks = self._start_loops(url, services, stages)
            for name in sorted(held):
                stages.holder.run(name)
            log.info(
                "warnd_started",
                roles=sorted(role.value for role in self.roles),
                http=self._where,
                channels=sorted(self.channels),
                held=sorted(held),
                simulated=services.simulated,
            )
            try:
                yield services
            finally:
                await self._stop(tasks, runner, stages)

    async def _take_channels(self, url: str, services: Services, stages: _Stages) -> set[str]:
        """Role ``dispatch``: compete for the channels and start those nobody holds (a refused
        bind is a ConfigError, before warnd serves); the others are tried again by the
        ownership loop. Without the role no channel is started here."""
        if Role.DISPATCH not in self.roles or not self.channels:
            return set()
        ownership = ChannelOwnership(
            url,
            self.channels,
            SystemClock(),  # connection health is wall-clock time, even in a fast-clock drill
            take=stages.holder.take,
            give_up=stages.holder.give_up,
            takeover_seconds=self.settings.takeover_seconds,
        )
        stages.ownership = ownership
        services.channel_owner = ownership.owner_of
        held = await ownership.first_round()
        started: list[str] = []
        try:
            for name in sorted(held):
                await stages.holder.start(name)
                started.append(name)
        except BaseException:
            for name in started:  # a later one was refused: the others unbind before exit
                with contextlib.suppress(Exception):
                    await self.channels[name].stop()
            await ownership.close()
            raise
        return held

    async def _serve_http(self, services: Services) -> web.AppRunner:
        from warnd.web.app import build_app

        runner = web.AppRunner(build_app(services), access_log=None)
        await runner.setup()
        host = self.config.http.host or self.settings.http_host
        port = self.config.http.port or self.settings.http_port
        tls = tls_context(self.config.http)
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()
        self.port = _bound_port(runner)
        self._where = f"{'https' if tls else 'http'}://{host}:{self.port}"
        return runner

    async def _stop(
        self, tasks: list[asyncio.Task[None]], runner: web.AppRunner | None, stages: _Stages
    ) -> None:
        """Stop gracefully: take and give up no channel any more; claim nothing more and let
        what is on the wire finish and be recorded (up to ``stop_grace``; then the rest goes
        back to the queue); stop the other loops and serving, then the held channels, and
        record what they report as they stop (a call hung up comes back "stopped") before
        their listeners end. The channels' locks go last, once nothing of them is bound."""
        competing = [t for t in tasks if t.get_name() == OWNERSHIP_STAGE]
        for task in competing:
            task.cancel()
        await asyncio.gather(*competing, return_exceptions=True)
        await stages.holder.stop_senders()
        others = [t for t in tasks if t not in competing]
        for task in [*others, *self._preparing]:
            task.cancel()
        await asyncio.gather(*others, *self._preparing, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()
        if self._fast_path is not None:  # early warnings' records and outcomes
            await self._fast_path.drain(self.settings.stop_grace)
        await stages.holder.stop_channels()
        if stages.ownership is not None:
            await stages.ownership.close()
        log.info("warnd_stopped")

    def _owner_of(self, name: str) -> tuple[bool, str | None] | None:
        """Held here, and by whom; None in a process that holds no channel (no dispatch)."""
        owner = self.services.channel_owner if self.services is not None else None
        return owner(name) if owner is not None else None

    async def _prepare_database(self, owner_url: str, *, embedded: bool) -> str:
        """Migrate as the owner; the URL to serve with, as a role that owns nothing.

        The embedded server gets its own runtime login; a configured server is served through
        ``WARND_RUNTIME_DATABASE_URL``, else through the owner's login acting as ``warnd_app``.
        """
        conn = await connect(owner_url)
        try:
            await migrate(conn)
            if embedded:
                await ensure_runtime_login(conn)
        finally:
            await conn.close()
        if self.settings.runtime_database_url:
            return self.settings.runtime_database_url
        return as_user(owner_url, RUNTIME_LOGIN) if embedded else owner_url

    def _build_stages(self, services: Services) -> _Stages:
        """The stages' objects; which of them run is the roles' choice (``_start_loops``)."""
        pool = services.pool
        lease = self.settings.lease_seconds
        recorded = Signal()  # a dispatcher recorded sends: early reports can be matched
        answers = Answers(pool, self.clock)
        inbound = Inbound(pool, self.clock, self.metrics, answers=answers, recorded=recorded)
        # Webhooks (role api) apply what gateways post here, whoever holds their channel.
        services.inbound = inbound.handle_events
        dispatcher = Dispatcher(
            pool,
            self.channels,
            self.clock,
            self.metrics,
            services.send_wakeup,
            recorded=recorded,
            lease_seconds=lease,
        )
        self._dispatcher = dispatcher
        holder = ChannelHolder(
            self.channels,
            dispatcher,
            inbound,
            lambda name, loop: supervised(name, loop, self.clock),
            stop_grace=self.settings.stop_grace,
        )
        self._holder = holder
        if Role.API in self.roles:
            self._fast_path = FastPath(
                pool,
                self.channels,
                services.current_policy,
                self.clock,
                dispatcher.record,
                lease_seconds=lease,
                held=lambda name: name in holder.held,
            )
            services.eew = self._fast_path
        return _Stages(dispatcher, inbound, holder)

    def _start_loops(
        self, url: str, services: Services, stages: _Stages
    ) -> list[asyncio.Task[None]]:
        """Start the loops of this process's roles (README, "Several processes")."""
        pool = services.pool
        roles = self.roles
        dispatcher, inbound = stages.dispatcher, stages.inbound
        planner = Planner(
            pool,
            services.current_policy,
            self.clock,
            max_chars(self.channels),
            prepare=self._prepare,
        )
        lease = self.settings.lease_seconds

        async def plan_loop() -> None:
            while True:
                for result in await planner.plan_pending():
                    if result.steps:
                        services.send_wakeup.set()
                if await planner.gongs_for_silent_speakers():
                    services.send_wakeup.set()
                await services.plan_wakeup.wait(2.0)

        heartbeats = HeartbeatWatch(
            pool,
            {
                name: feed.expected_heartbeat
                for name, feed in self.config.feeds.items()
                if feed.expected_heartbeat is not None
            },
            self.metrics,
            self.clock.now(),
        )
        speakers = SpeakerWatch(pool, self.config.speakers, self.metrics)
        fast_path = self._fast_path

        # Each role's share of housekeeping; every step is safe with any number of processes
        # (a conditional upsert, SKIP LOCKED, or an UPDATE whose WHERE a second run no longer
        # matches).
        chores: list[Callable[[], Awaitable[object]]] = []
        if Role.ESCALATE in roles:
            chores += [
                lambda: heartbeats.check(self.clock.now()),
                lambda: speakers.check(self.clock.now()),
                lambda: pool.execute(sql("expire_warnings"), self.clock.now()),
                lambda: fold_tallies(pool),  # keeps what the board's reads add up short
            ]
        if fast_path is not None:
            chores += [
                fast_path.prepare,  # an early warning never waits for roster or ids
                # A report whose record a crash interrupted, once its alerts' lease is over.
                lambda: fast_path.recover(self.clock.now() - timedelta(seconds=lease)),
            ]
        if Role.DISPATCH in roles:
            chores += [dispatcher.reclaim_leases, dispatcher.notify_skipped_callouts]
        if Role.INBOUND in roles:
            chores += [
                inbound.match_early_receipts,
                lambda: pool.execute(
                    sql("prune_reply_counts"), self.clock.now() - timedelta(minutes=10)
                ),
            ]

        async def housekeeping() -> None:
            while True:
                for chore in chores:
                    await chore()
                await self.clock.sleep(min(5.0, lease / 2))

        loops: dict[str, Callable[[], Awaitable[None]]] = {}
        if roles & {Role.API, Role.PLAN, Role.DISPATCH}:  # NOTIFY wakes stages, reloads rosters
            loops["listen"] = lambda: self._listen(url, services)
        if Role.PLAN in roles:
            loops["plan"] = plan_loop
        if chores:
            loops["housekeeping"] = housekeeping
        if Role.ESCALATE in roles:
            loops["escalate"] = Escalation(pool, self.clock).run
            loops["drills"] = DrillScanner(pool, self.clock, services.plan_wakeup.set).run
        if self.config.eew is not None and Role.API in roles:
            # The seismic service's reports over MQTT, handed to this process's fast path.
            loops["eew_feed"] = EewFeed(services, self.config.eew).run
        if stages.ownership is not None:
            loops[OWNERSHIP_STAGE] = stages.ownership.run
        return [
            asyncio.create_task(supervised(name, loop, self.clock), name=name)
            for name, loop in loops.items()
        ]

    async def _prepare(self, kind: str, texts: Sequence[str]) -> None:
        """Hand a warning's texts to the channels of their kind, to work on in the background
        (speech rendered before any call needs it); a failure is logged, and the channel tries
        again when it sends."""

        async def prepare(channel: Channel) -> None:
            try:
                await channel.prepare(texts)
            except Exception:  # a plugin's failure here must not stop planning; it is logged
                log.exception("channel_prepare_failed", channel=channel.name, texts=len(texts))

        held = self._holder.held if self._holder is not None else set()
        for name, channel in self.channels.items():
            if channel.kind.value == kind and name in held:  # a channel held elsewhere
                task = asyncio.create_task(prepare(channel))  # prepares there
                self._preparing.add(task)
                task.add_done_callback(self._preparing.discard)

    async def _listen(self, url: str, services: Services) -> None:
        """Turn NOTIFY from any warnd process into wake-ups of this one's stages."""
        conn = await connect(url)
        wakeups = {PLAN_CHANNEL: services.plan_wakeup, DELIVERIES_CHANNEL: services.send_wakeup}

        def on_notify(_c: Conn, _pid: int, channel: str, _payload: object) -> None:
            wakeups[channel].set()

        def on_roster(_c: Conn, _pid: int, _channel: str, _payload: object) -> None:
            if self._fast_path is not None:
                self._fast_path.roster_changed()

        try:
            for channel in wakeups:
                await conn.add_listener(channel, on_notify)
            await conn.add_listener(ROSTER_CHANNEL, on_roster)
            while True:
                await asyncio.sleep(30)
                await conn.execute("SELECT 1")  # a dead connection raises; supervised reconnects
        finally:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await conn.close()

    async def reload_policy(self) -> bool:
        """SIGHUP: load the policy file again; an invalid file leaves the old policy in force.

        Either way the outcome is written to the audit log.
        """
        try:
            self.policy.reload()
        except ConfigError as exc:
            log.warning("policy_reload_refused", reason=str(exc))
            await self._audit("policy_reload_refused", {"reason": str(exc)})
            return False
        log.info("policy_reloaded", path=str(self.settings.policy))
        await self._audit("policy_reloaded", {"path": str(self.settings.policy)})
        return True

    async def _audit(self, action: str, detail: dict[str, object]) -> None:
        if self.services is not None:
            await self.services.pool.execute(
                sql("audit"), "system", action, "policy", detail, self.clock.now()
            )

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads the policy."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        reloads: set[asyncio.Task[bool]] = set()

        def on_hangup() -> None:
            task = loop.create_task(self.reload_policy())
            reloads.add(task)  # keep a reference until it is done
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        async with self.running():
            await stop.wait()


def tls_context(http: HttpConfig) -> ssl.SSLContext | None:
    """The server's TLS context from ``[http] tls_cert`` and ``tls_key``; None for plain HTTP.

    TLS 1.2 at least, Python's default ciphers. A file that cannot be read or does not hold a
    certificate and its key is a ``ConfigError`` naming the key, before warnd listens.
    """
    if http.tls_cert is None or http.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(http.tls_cert, http.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"http.tls_cert / http.tls_key: cannot load {http.tls_cert} with {http.tls_key}: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None
    return context


@dataclass
class _Stages:
    """The stage objects the loops of a process share."""

    dispatcher: Dispatcher
    inbound: Inbound
    holder: ChannelHolder
    ownership: ChannelOwnership | None = None


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        port: Any = address[1] if isinstance(address, tuple) else None
        if isinstance(port, int):
            return port
    raise RuntimeError("the HTTP server is not listening")
