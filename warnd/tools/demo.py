"""``warnd demo``: a whole call-and-respond (叫应) round on a fresh machine, simulated.

Starts (or reuses) the embedded PostgreSQL, generates a one-county roster in a fresh ``warnd_demo``
database, starts the daemon with simulated channels, posts a red rainstorm CAP warning for the
county through the real HTTP endpoint as a feed would, and shows the same live view as
``warnd warning watch`` while the simulated responders answer: some at once, some after their
deadline, some never, so the escalation chain fires — the call repeated, then the backup (B角),
then the parent division's responsible person, then the duty officer. It ends with a summary read
from the database: acknowledged on time / late / never, escalations by step, time to acknowledge,
field tasks done. Everything it sends is simulated and says so.

Escalation is minutes long, so once every message is out the demo fast-forwards its clock
(``--speed``, 60 by default: one minute of warning time per second). The whole daemon runs on that
clock — the escalation timers, the deadlines, the simulated phones' delays — so nothing is
shortened or faked: the policy's real deadlines and steps are what fire. The fan-out itself runs
at real speed (see ``warnd.core.clock.ScaledClock``). ``--exercise`` runs the same round as a drill:
status Exercise, every text carries 【演练】, and only people marked for exercises take part.

``--broker mqtt://host[:port]`` puts the loudspeakers on a real MQTT broker: the real
``mqtt_broadcast`` channel commands a simulated fleet of the county's speakers (real MQTT
clients, ``warnd speakers simulate``'s, under a topic prefix of this run's own, so no real speaker
listens), which fetch their audio from warnd, "play" it and acknowledge; a few stay offline and
their villages get gong tasks. Phones stay simulated. Without ``--broker`` everything is.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import asyncpg
import click
from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from channels.base import Channel
from channels.mqtt_broadcast.channel import MqttBroadcastChannel
from channels.mqtt_broadcast.config import MqttBroadcastConfig
from channels.simulator import SimulatorChannel, SimulatorConfig
from rosters.generate import generate
from warnd.app.report import ReportFormat, build_report
from warnd.app.report_files import CjkFontMissingError, cjk_font, file_name
from warnd.app.report_files import render as render_report
from warnd.app.users import add_user
from warnd.cli.watch import STEP_ZH, fetch, render
from warnd.core.clock import ScaledClock
from warnd.core.config import load_config_data
from warnd.core.escalate import ACTIONS
from warnd.db.pool import open_pool, recreate_database
from warnd.db.queries import sql
from warnd.policy.loader import load_policy
from warnd.runtime.daemon import Daemon
from warnd.runtime.settings import Settings, database_url
from warnd.tools.speakers import FleetOptions, SpeakerFleet

DEMO_DB = "warnd_demo"
DEMO_COUNTY = "370831"  # 泗水县: eastern mountains, flash floods, blind spots
DEMO_FEED = "demo-feed"
DEMO_OFFICER = "demo-officer"
DEMO_APPROVER = "demo-approver"  # a second officer, so that the console's approval can be tried

# How long a round lasts, in warning time: the red chain's last step (duty officer, 12 min), the
# latest "late" answer (LATE_S) and the sends in between all fit.
ROUND = timedelta(minutes=16)
UNCONFIRMED_SHARE = 0.02  # fast-forward once at most this share of receipts is outstanding
LATE_S = (660.0, 840.0)  # "late" responders answer 11–14 min in: past every deadline (5–10 min)
# Responders' behaviour, by share: answer at once, answer like most people (within two minutes,
# on SMS or by pressing 1), answer late, never answer.
BEHAVIOUR_MIX: tuple[tuple[str, int], ...] = (("fast", 40), ("normal", 25), ("late", 20))
# ... and the remaining 15 %: "never"

REPLY_TEXTS = ("1", "收到", "确认", "收到，马上转移群众", "收到，已完成", "收到，已通知2户")

AUDIENCE_ZH = {
    "responder": "责任人",
    "broadcast": "大喇叭",
    "facility": "重点场所",
    "helper": "包保人",
    "household": "住户",
    "escalation": "升级呼叫",
    "field_task": "现场任务",
}
LEVEL_ZH = {"city": "市", "county": "县", "town": "乡镇", "village": "村", None: "合计"}


def demo_cap(now_iso: str, expires_iso: str, identifier: str, status: str = "Actual") -> bytes:
    """A red rainstorm warning for the demo county, as the meteorological service would send it."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>jnqxt@sd.cma.cn</sender>
  <sent>{now_iso}</sent>
  <status>{status}</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨红色预警</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <expires>{expires_iso}</expires>
    <senderName>济宁市气象台</senderName>
    <headline>泗水县气象台发布暴雨红色预警信号</headline>
    <description>预计未来3小时内泗水县大部地区降雨量将达100毫米以上，山区有发生山洪的风险。</description>
    <instruction>请立即组织山洪危险区群众转移，停止户外作业，远离河道和低洼地带。</instruction>
    <area>
      <areaDesc>泗水县</areaDesc>
      <geocode><valueName>行政区划代码</valueName><value>{DEMO_COUNTY}</value></geocode>
    </area>
  </info>
</alert>""".encode()


def behaviour_of(phone: str) -> str:
    """A responder's simulated behaviour, fixed by their number (the same in every run)."""
    share = int.from_bytes(hashlib.blake2b(phone.encode(), digest_size=4).digest(), "big") % 100
    for behaviour, percent in BEHAVIOUR_MIX:
        if share < percent:
            return behaviour
        share -= percent
    return "never"


def demo_channels(behaviours: dict[str, str], clock: ScaledClock) -> dict[str, Channel]:
    """Simulated SMS, voice and loudspeakers on the demo's clock; responders as scripted."""
    common: dict[str, object] = {
        "type": "simulator",
        "rate_per_s": 2000,
        "window": 200,
        "receipt_delay_s": (1.0, 10.0),
        "late_delay_s": LATE_S,
        "behaviours": behaviours,
    }
    tables: dict[str, dict[str, object]] = {
        "simulated-sms": {
            **common,
            "kind": "sms",
            "seed": 1,
            "reply_delay_s": (10.0, 120.0),
            # What people write back; those given a field task also report on it (a leading
            # 收到 acknowledges, the rest is progress: all done, or two households told).
            "reply_texts": REPLY_TEXTS,
        },
        "simulated-voice": {
            **common,
            "kind": "voice",
            "seed": 2,
            "rate_per_s": 500,
            "answer_delay_s": (5.0, 40.0),
        },
        "simulated-broadcast": {**common, "kind": "broadcast", "seed": 3, "behaviours": {}},
    }
    return {
        name: SimulatorChannel(name, SimulatorConfig.model_validate(table), clock=clock)
        for name, table in tables.items()
    }


@dataclass(frozen=True)
class Outcome:
    """How one level's call-outs ended (level None: all of them)."""

    level: str | None
    total: int
    on_time: int
    late: int
    never: int
    p50_s: float | None
    p90_s: float | None


@dataclass(frozen=True)
class RoundSummary:
    """What a demo round did, read from the database when it ended."""

    warning_id: int
    status: str
    deliveries: list[dict[str, object]]
    outcomes: list[Outcome]
    steps_fired: dict[str, int]
    steps_skipped: dict[str, int]
    tasks_total: int
    tasks_done: int
    persons: int
    reached: int
    speed: float
    elapsed_s: float
    behaviours: dict[str, int] = field(default_factory=dict)

    @property
    def overall(self) -> Outcome:
        return next(o for o in self.outcomes if o.level is None)


async def summarise(
    pool: asyncpg.Pool, warning_id: int, *, speed: float = 1.0, elapsed_s: float = 0.0
) -> RoundSummary:
    """The round's figures, each from one set-based query."""
    deliveries = await pool.fetch(
        """SELECT audience,
                  -- a person per address (a household's phones apart); escalation and task
                  -- messages are keyed by their call-out or task, so by address alone
                  count(DISTINCT (CASE WHEN audience IN ('escalation', 'field_task') THEN 0
                                       ELSE recipient_id END, address)) AS recipients,
                  count(*) AS deliveries,
                  count(*) FILTER (WHERE state IN ('sent', 'delivered')) AS sent,
                  count(*) FILTER (WHERE state = 'delivered') AS delivered,
                  count(*) FILTER (WHERE state = 'failed') AS failed,
                  count(*) FILTER (WHERE state = 'cancelled') AS cancelled
             FROM deliveries WHERE warning_id = $1
            GROUP BY audience ORDER BY min(priority), audience""",
        warning_id,
    )
    outcomes = [
        Outcome(
            level=r["level"],
            total=r["total"],
            on_time=r["on_time"],
            late=r["late"],
            never=r["never"],
            p50_s=r["p50_s"],
            p90_s=r["p90_s"],
        )
        for r in await pool.fetch(sql("callout_outcomes"), warning_id)
    ]
    if not outcomes:  # ROLLUP over no rows yields no total row
        outcomes = [Outcome(None, 0, 0, 0, 0, None, None)]
    steps = await pool.fetch(sql("escalation_steps"), warning_id)
    tasks = await pool.fetchrow(sql("field_task_totals"), warning_id)
    status = await pool.fetchval("SELECT status FROM warnings WHERE id = $1", warning_id)
    assert tasks is not None
    return RoundSummary(
        warning_id=warning_id,
        status=str(status),
        deliveries=[dict(r) for r in deliveries],
        outcomes=outcomes,
        steps_fired=dict.fromkeys(ACTIONS, 0) | {r["action"]: r["fired"] for r in steps},
        steps_skipped=dict.fromkeys(ACTIONS, 0) | {r["action"]: r["skipped"] for r in steps},
        tasks_total=tasks["total"],
        tasks_done=tasks["done"],
        persons=tasks["persons"],
        reached=tasks["reached"],
        speed=speed,
        elapsed_s=elapsed_s,
    )


async def _settled(pool: asyncpg.Pool, warning_id: int) -> bool:
    """Planned, nothing waiting to be sent, and no call-out with an escalation step still due."""
    row = await pool.fetchrow(
        """SELECT w.plan_state,
                  (SELECT count(*) FROM deliveries d
                    WHERE d.warning_id = w.id AND d.state IN ('queued', 'sending')) AS waiting,
                  (SELECT count(*) FROM callouts c
                    WHERE c.warning_id = w.id AND c.next_check_at IS NOT NULL) AS timers
             FROM warnings w WHERE w.id = $1""",
        warning_id,
    )
    assert row is not None
    return bool(row["plan_state"] == "done" and not row["waiting"] and not row["timers"])


async def _fanned_out(pool: asyncpg.Pool, warning_id: int) -> bool:
    """Every message has been handed to its channel (or given up), and nearly every receipt of
    the public's messages is in: what is left to wait for is answers and escalations.

    Receipts and replies are processed at the database's real pace; fast-forwarding while tens
    of thousands of household receipts are still coming back would queue the responders'
    answers behind them, and every one would look minutes late.
    """
    row = await pool.fetchrow(
        """SELECT w.plan_state,
                  count(*) FILTER (WHERE d.state IN ('queued', 'sending')) AS waiting,
                  count(*) FILTER (WHERE d.audience IN ('household', 'facility', 'broadcast'))
                      AS public,
                  count(*) FILTER (WHERE d.audience IN ('household', 'facility', 'broadcast')
                                     AND d.state = 'sent') AS unconfirmed
             FROM warnings w LEFT JOIN deliveries d ON d.warning_id = w.id
            WHERE w.id = $1
            GROUP BY w.plan_state""",
        warning_id,
    )
    assert row is not None
    return bool(
        row["plan_state"] == "done"
        and not row["waiting"]
        and row["unconfirmed"] <= row["public"] * UNCONFIRMED_SHARE
    )


async def _county(
    url: str, households: int, console: Console
) -> tuple[list[str], list[str], list[str]]:
    """Generate the demo county; its responders' phones, households' phones and speakers."""
    async with open_pool(url, min_size=1, max_size=2) as pool:
        with Progress(
            TextColumn("[cyan]Generating roster for 泗水县"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("roster", total=None)

            def tick(_what: str, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            async with pool.acquire() as conn:
                roster = await generate(
                    conn, households=households, counties=[DEMO_COUNTY], seed=7, progress=tick
                )
            phones = [r["phone"] for r in await pool.fetch("SELECT phone FROM responders")]
            # Households have nothing to answer: their phones only report delivery.
            silent = [
                r["phone"]
                for r in await pool.fetch("SELECT unnest(phones) AS phone FROM households")
            ]
            speakers = [
                r["code"]
                for r in await pool.fetch(
                    "SELECT code FROM divisions WHERE level = 'village' AND NOT blind_spot"
                )
            ]
        console.print(f"[green]✓[/] roster: {roster}")
    return phones, silent, speakers


async def run_round(
    url: str,
    console: Console,
    *,
    households: int = 20_000,
    speed: float = 60.0,
    exercise: bool = False,
    limit_s: float = 600.0,
    broker: Broker | None = None,
) -> RoundSummary:
    """Generate the county in the (empty, migrated) database at ``url`` and run one round
    (with the loudspeakers on ``broker``, when given)."""
    phones, silent, speaker_ids = await _county(url, households, console)
    behaviours = {phone: behaviour_of(phone) for phone in phones}
    mix = {b: list(behaviours.values()).count(b) for b in ("fast", "normal", "late", "never")}
    behaviours = dict.fromkeys(silent, "never") | behaviours
    console.print(
        "simulated responders (模拟责任人): "
        f"{mix['fast']} answer at once, {mix['normal']} within minutes, "
        f"{mix['late']} after their deadline, {mix['never']} never"
    )
    clock = ScaledClock(1.0)
    feed_token, officer_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    config = load_config_data(
        {
            "feeds": {DEMO_FEED: {"token": feed_token}},
            "users": {DEMO_OFFICER: {"token": officer_token, "roles": ["officer"]}},
        },
        source=Path("<demo>"),
    )
    # Leases are counted on the demo's clock: ten real seconds once it runs fast, so a batch a
    # crashed worker left claimed comes back within the round.
    port = free_port()
    settings = Settings(http_port=port, lease_seconds=10.0 * speed)
    channels = demo_channels(behaviours, clock)
    fleet = None
    if broker is not None:
        fleet, speakers = await start_fleet(broker, speaker_ids, port, console)
        channels = {n: c for n, c in channels.items() if c.kind.value != "broadcast"}
        channels[speakers.name] = speakers
    daemon = Daemon(
        settings,
        # A real channel on a fast clock: the demo's own (a simulation refuses real channels,
        # and these loudspeakers are real MQTT, though the fleet they command is simulated).
        simulate=broker is None,
        config=config,
        channels=channels,
        clock=clock,
    )
    try:
        async with daemon.running(url) as services:
            # The console (值班台): the round can be watched live in a browser while it runs.
            password = secrets.token_urlsafe(9)
            for name, roles in ((DEMO_OFFICER, ["officer"]), (DEMO_APPROVER, ["approver"])):
                await add_user(services.pool, name, roles, password, now=clock.now())
            console.print(
                f"[green]✓[/] console (值班台): http://127.0.0.1:{daemon.port}/console/ — "
                f"user [bold]{DEMO_OFFICER}[/] (approver: {DEMO_APPROVER}), "
                f"password [bold]{password}[/]"
            )
            warning_id = await _post_warning(daemon, services.clock.now(), feed_token, exercise)
            console.print(
                f"[green]✓[/] CAP red rainstorm warning accepted: #{warning_id}"
                + (" [magenta]【演练】 exercise[/]" if exercise else "")
            )
            started = time.monotonic()
            ends_at = clock.now() + ROUND
            server = f"http://127.0.0.1:{daemon.port}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                frame = await fetch(http, server, officer_token, warning_id, 15)
                with Live(render(frame), console=console, auto_refresh=False) as live:
                    while time.monotonic() - started < limit_s:
                        await asyncio.sleep(0.5)
                        if clock.speed == 1.0 and await _fanned_out(services.pool, warning_id):
                            clock.set_speed(speed)
                            live.console.print(
                                f"[cyan]⏩ every message is out: fast-forward ×{speed:g} while "
                                "the call-outs are answered and escalated[/]"
                            )
                        frame = await fetch(http, server, officer_token, warning_id, 15)
                        live.update(render(frame), refresh=True)
                        if clock.now() >= ends_at and await _settled(services.pool, warning_id):
                            break
                console.print()
            elapsed_s = time.monotonic() - started
        # Summarised once the daemon has stopped: a late reply can no longer change the figures
        # between the summary and what the database holds.
        async with open_pool(url, min_size=1, max_size=1) as pool:
            summary = await summarise(pool, warning_id, speed=speed, elapsed_s=elapsed_s)
        return replace(summary, behaviours=mix)
    finally:
        if fleet is not None:
            await fleet.stop()


@dataclass(frozen=True)
class Broker:
    """``--broker mqtt://host[:port]``."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Broker:
        parsed = urlsplit(url)
        if parsed.scheme != "mqtt" or not parsed.hostname:
            raise click.BadParameter(f"{url!r}: give mqtt://host or mqtt://host:port")
        try:
            port = parsed.port or 1883
        except ValueError:
            raise click.BadParameter(f"{url!r}: the port must be 1-65535") from None
        return cls(parsed.hostname, port)


async def start_fleet(
    broker: Broker, speaker_ids: list[str], port: int, console: Console
) -> tuple[SpeakerFleet, MqttBroadcastChannel]:
    """The county's simulated speakers on the broker, and the channel that commands them."""
    prefix = f"warnd-demo/{secrets.token_hex(4)}"  # this run's own: no real speaker listens
    fleet = SpeakerFleet(
        FleetOptions(
            broker=broker.host,
            port=broker.port,
            ids=speaker_ids,
            prefix=prefix,
            offline=0.05,
            fail=0.02,
            speed=10.0,
            seed=7,
            clear_on_stop=True,
        )
    )
    with console.status(f"Connecting {len(speaker_ids)} simulated loudspeakers to the broker…"):
        try:
            await fleet.start()
        except (OSError, aiomqtt.MqttError) as exc:
            raise DemoError(
                f"the broker at {broker.host}:{broker.port} did not take the speakers: {exc}"
            ) from exc
    console.print(
        f"[green]✓[/] loudspeakers: {len(fleet.online_ids)} simulated speakers online, "
        f"{len(fleet.offline_ids)} offline, on {broker.host}:{broker.port} under {prefix}/"
    )
    config = MqttBroadcastConfig.model_validate(
        {
            "type": "mqtt_broadcast",
            "broker": broker.host,
            "port": broker.port,
            "client_id": f"warnd-demo-{prefix.rsplit('/', 1)[1]}",
            "topic_prefix": prefix,
            "media_url": f"http://127.0.0.1:{port}/media",
            "media_key": secrets.token_urlsafe(32),
        }
    )
    return fleet, MqttBroadcastChannel("loudspeakers", config)


def free_port() -> int:
    """A port for warnd's HTTP API known before it starts: the speakers' audio URLs name it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _post_warning(daemon: Daemon, now: datetime, token: str, exercise: bool) -> int:
    """Send the warning through the real CAP endpoint, as the meteorological feed would."""
    local = now.astimezone()
    cap = demo_cap(
        local.isoformat(timespec="seconds"),
        (local + timedelta(hours=6)).isoformat(timespec="seconds"),
        f"37083141600000_{local:%Y%m%d%H%M%S}",
        "Exercise" if exercise else "Actual",
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{daemon.port}/api/v1/cap",
            data=cap,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
        ) as response,
    ):
        body = await response.json()
    if response.status != 201:
        raise DemoError(f"the warning was refused: {response.status} {body}")
    return int(body["warning_id"])


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def print_summary(summary: RoundSummary, console: Console) -> None:
    """The round in three tables and a few lines, for the person watching the demo."""
    drill = "【演练】" if summary.status == "Exercise" else ""
    table = Table(title=f"{drill}预警 #{summary.warning_id}: 泗水县 暴雨红色预警 — SIMULATED")
    for column in ("audience", "people", "messages", "sent", "delivered", "failed", "cancelled"):
        table.add_column(column, justify="left" if column == "audience" else "right")
    for r in summary.deliveries:
        table.add_row(
            f"{AUDIENCE_ZH.get(str(r['audience']), '')} {r['audience']}",
            *(f"{r[k]:,}" for k in ("recipients", "deliveries", "sent", "delivered", "failed")),
            f"{r['cancelled']:,}",
        )
    console.print(table)

    answers = Table(title="叫应 call-outs: who answered, and how fast")
    for column in ("level", "call-outs", "on time 按时", "late 迟到", "never 未应", "p50", "p90"):
        answers.add_column(column, justify="left" if column == "level" else "right")
    for o in summary.outcomes:
        answers.add_row(
            f"{LEVEL_ZH.get(o.level, o.level or '')} {o.level or 'all'}",
            f"{o.total:,}",
            f"[green]{o.on_time:,}[/]",
            f"[yellow]{o.late:,}[/]",
            f"[red]{o.never:,}[/]",
            _duration(o.p50_s),
            _duration(o.p90_s),
            style="bold" if o.level is None else "",
        )
    console.print(answers)

    steps = Table(title="升级 escalation steps")
    for column in ("step", "fired", "skipped (nobody to call)"):
        steps.add_column(column, justify="left" if column == "step" else "right")
    for action in ACTIONS:
        steps.add_row(
            f"{STEP_ZH.get(action, action)} {action}",
            f"{summary.steps_fired.get(action, 0):,}",
            f"{summary.steps_skipped.get(action, 0):,}",
        )
    console.print(steps)
    console.print(
        f"现场任务 field tasks: {summary.tasks_done:,}/{summary.tasks_total:,} done, "
        f"{summary.reached:,}/{summary.persons:,} people reached"
    )
    console.print(
        "Times to answer are warning time (from the call-out opening to the answer); the round "
        f"ran at {summary.speed:g}× speed, {summary.elapsed_s:.1f} s of real time. "
        "[yellow]Phones were simulated; loudspeakers too, or a simulated fleet on a broker.[/]"
    )


class DemoError(Exception):
    """The demo could not run its round; the message says why."""


async def write_round_report(url: str, warning_id: int, policy_path: Path) -> Path:
    """The round's evaluation report, as of its last event (the round ran on a fast clock, so
    wall-clock now would be minutes behind it), in this directory: the PDF, or the XLSX when
    this machine has no CJK font to embed."""
    policy = load_policy(policy_path)
    async with open_pool(url, min_size=1, max_size=1) as pool, pool.acquire() as conn:
        last = await conn.fetchval(
            """SELECT max(at) FROM (
                   SELECT e.at FROM callout_events e JOIN callouts c ON c.id = e.callout_id
                    WHERE c.warning_id = $1
                   UNION ALL
                   SELECT e.at FROM field_task_events e JOIN field_tasks t ON t.id = e.task_id
                    WHERE t.warning_id = $1) AS events""",
            warning_id,
        )
        report = await build_report(
            conn,
            warning_id,
            now=last or datetime.now().astimezone(),
            scoring=policy.drill_scoring,
            timezone=policy.night.timezone,
        )
    try:
        cjk_font()
        fmt: ReportFormat = "pdf"
    except CjkFontMissingError:
        fmt = "xlsx"
    path = Path.cwd() / file_name(report, fmt)
    path.write_bytes(await asyncio.to_thread(render_report, report, fmt))
    return path


async def run_demo(
    households: int,
    console: Console,
    *,
    speed: float = 60.0,
    exercise: bool = False,
    broker: Broker | None = None,
) -> int:
    """The whole demo in a fresh ``warnd_demo`` database; the exit status."""
    console.print(
        Panel.fit(
            "[bold]warnd demo[/] — 济宁市应急管理局 预警发布与叫应"
            + ("  [bold magenta]【演练】EXERCISE[/]" if exercise else "")
            + (
                "\n[yellow]SIMULATED: no real phone or loudspeaker is reached (模拟演示)[/]\n"
                if broker is None
                else "\n[yellow]SIMULATED phones; loudspeakers over MQTT to a simulated fleet at "
                f"{broker.host}:{broker.port} (模拟演示)[/]\n"
            )
            + f"fast clock: {speed:g}× (one minute of warning time every {60 / speed:.1f} s)",
            border_style="magenta" if exercise else "cyan",
        )
    )
    settings = Settings(http_port=0)
    with console.status("Starting PostgreSQL…"):
        url = await recreate_database(database_url(settings), DEMO_DB)
    try:
        summary = await run_round(
            url, console, households=households, speed=speed, exercise=exercise, broker=broker
        )
    except DemoError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    print_summary(summary, console)
    path = await write_round_report(url, summary.warning_id, settings.policy)
    console.print(f"[green]✓[/] 评估报告 evaluation report: [bold]{path}[/]")
    return 0


@click.command()
@click.option("--households", default=20_000, show_default=True, help="Households in the county.")
@click.option(
    "--speed",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1.0, max=600.0),
    help="How many times faster than real time the warning runs.",
)
@click.option("--exercise", is_flag=True, help="Run the round as an exercise drill (【演练】).")
@click.option(
    "--broker",
    metavar="mqtt://HOST[:PORT]",
    help="Loudspeakers over this MQTT broker, commanding a simulated fleet (else simulated).",
)
def demo(households: int, speed: float, exercise: bool, broker: str | None) -> None:
    """Generate a county and run a red rainstorm warning's call-and-respond round, simulated."""
    from warnd.cli.errors import friendly_errors
    from warnd.runtime.logs import configure

    configure("warning")  # the demo's own output tells the story; logs only when things go wrong
    console = Console()
    code = friendly_errors(
        lambda: asyncio.run(
            run_demo(
                households,
                console,
                speed=speed,
                exercise=exercise,
                broker=Broker.parse(broker) if broker else None,
            )
        )
    )()
    raise SystemExit(code)
