"""What the test modules share, apart from pytest fixtures (those live in tests/conftest.py).

- the HTTP API under test: a client on a real database, the users and feed it knows, builders of
  CAP and manual warnings;
- the API's small roster (任城区 with one town and two villages, and 泗水县), deliveries,
  call-outs and field tasks written by hand in every state;
- the pipeline on the seed roster (tests/seed.py): a red rainstorm planned at ``DAYTIME``, a
  channel double that records what it is given, call-outs read back and escalated on a clock;
- warnd as a child process: CAP over HTTP, a free port, waiting for what it writes;
- an HTTP SMS gateway on 127.0.0.1 that records requests and answers as scripted.
- a voice-notification gateway likewise, which also posts call results back to warnd.

Test modules import from here, never from one another.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from channels.base import (
    Channel,
    ChannelKind,
    Limits,
    OutboundMessage,
    Outcome,
    Reason,
    SendResult,
)
from tests import seed
from tests.waiting import until_while_running
from warnd.app.metrics import Metrics
from warnd.app.services import Services
from warnd.core.clock import ManualClock
from warnd.core.config import AppConfig
from warnd.core.eew import EewReport
from warnd.core.model import Area, NormalisedWarning
from warnd.core.vocabulary import Level
from warnd.db.queries import sql
from warnd.ingest.store import store_warning
from warnd.pipeline.escalation import Escalation
from warnd.pipeline.planner import Planner
from warnd.policy.loader import PolicyHolder
from warnd.policy.model import Policy
from warnd.runtime.settings import REPO_CONFIG_DIR
from warnd.web.app import build_app
from warnd.web.routing import API

# --- the HTTP API under test ------------------------------------------------------------------

NOW = datetime(2026, 7, 29, 2, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

FEED_TOKEN = "feed-token-cma-0123456789"
OFFICER_TOKEN = "user-token-zhang-0123456789"  # officer only
CHIEF_TOKEN = "user-token-li-0123456789abc"  # officer and approver
APPROVER_TOKEN = "user-token-wang-0123456789"  # approver only
ADMIN_TOKEN = "user-token-admin-0123456789"

CONFIG = AppConfig.model_validate(
    {
        "feeds": {"cma": {"token": FEED_TOKEN}},
        "users": {
            "zhang": {"token": OFFICER_TOKEN, "roles": ["officer"]},
            "li": {"token": CHIEF_TOKEN, "roles": ["officer", "approver"]},
            "wang": {"token": APPROVER_TOKEN, "roles": ["approver"]},
            "root": {"token": ADMIN_TOKEN, "roles": ["admin"]},
        },
    }
)


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    services: Services
    pool: asyncpg.Pool

    async def cap(
        self, body: bytes | str, *, token: str = FEED_TOKEN, content_type: str = "application/xml"
    ) -> tuple[int, dict[str, Any]]:
        data = body.encode() if isinstance(body, str) else body
        response = await self.client.post(
            f"{API}/cap",
            data=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        )
        return response.status, await response.json()

    async def call(
        self, method: str, path: str, token: str | None, json: object = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.request(method, path, json=json, headers=headers)
        return response.status, await response.json()

    async def count(self, table: str) -> int:
        value = await self.pool.fetchval(f"SELECT count(*) FROM {table}")
        assert isinstance(value, int)
        return value


async def serve_api(
    pool: asyncpg.Pool,
    policy: Policy,
    channels: dict[str, Channel],
    *,
    database_url: str | None = None,
) -> AsyncIterator[Api]:
    """The app on ``pool`` (whose URL is ``database_url``, for work on a connection of its own)
    with CONFIG's feed and users, its clock stopped at NOW."""
    services = Services(
        pool=pool,
        config=CONFIG,
        policy=PolicyHolder(REPO_CONFIG_DIR / "policy.toml", policy),
        clock=ManualClock(NOW),
        metrics=Metrics(),
        channels=channels,
        max_body_bytes=64 * 1024,
        database_url=database_url,
    )
    async with TestClient(TestServer(build_app(services))) as client:
        yield Api(client, services, pool)


def cap_alert(
    *,
    identifier: str = "37080041600000_20260729013000",
    codes: Sequence[str] = ("370811",),
    polygons: Sequence[str] = (),
    circles: Sequence[str] = (),
    area_desc: str = "任城区",
    event: str = "暴雨",
    severity: str = "Extreme",
    status: str = "Actual",
    colour: str = "红色",
    swap_status_and_msg_type: bool = False,
) -> str:
    """A CAP 1.2 rainstorm alert from the cma feed; its one area holds the given polygons and
    circles (CAP text) and a geocode for each division code."""
    shapes = "".join(f"<polygon>{p}</polygon>" for p in polygons) + "".join(
        f"<circle>{c}</circle>" for c in circles
    )
    geocodes = "".join(
        f"<geocode><valueName>行政区划代码</valueName><value>{c}</value></geocode>" for c in codes
    )
    head = (
        f"<msgType>Alert</msgType><status>{status}</status>"
        if swap_status_and_msg_type
        else f"<status>{status}</status><msgType>Alert</msgType>"
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>37080041600000</sender>
  <sent>2026-07-29T01:30:00+08:00</sent>
  {head}
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>{event}</event>
    <urgency>Immediate</urgency>
    <severity>{severity}</severity>
    <certainty>Likely</certainty>
    <expires>2026-07-29T13:30:00+08:00</expires>
    <headline>济宁市气象台发布暴雨{colour}预警信号</headline>
    <description>预计未来3小时任城区累计雨量可达150毫米以上。</description>
    <instruction>低洼地带群众立即转移。</instruction>
    <area><areaDesc>{area_desc}</areaDesc>{shapes}{geocodes}</area>
  </info>
</alert>
"""


def manual(level: str = "red", **changes: Any) -> dict[str, Any]:
    """A manual rainstorm warning for 任城区; ``changes`` replace its fields."""
    body: dict[str, Any] = {
        "hazard": "rainstorm",
        "level": level,
        "area": {"codes": ["370811"]},
        "headline": "任城区暴雨预警",
        "description": "预计未来3小时降雨量100毫米以上",
        "instruction": "低洼地带群众立即转移",
        "area_desc": "任城区",
    }
    body.update(changes)
    return body


async def preview(api: Api, warning_id: int) -> dict[str, Any]:
    """The officer's preview of a warning; it must be answered 200."""
    status, body = await api.call("GET", f"{API}/warnings/{warning_id}/preview", OFFICER_TOKEN)
    assert status == 200, body
    return body


# --- the API's roster: 任城区 with one town and two villages, and 泗水县 that is never warned

COUNTY = "370811000000"
TOWN = "370811001000"
VILLAGE_1 = "370811001201"
VILLAGE_2 = "370811001202"  # a blind spot: no loudspeaker
OTHER_COUNTY = "370831000000"
OTHER_VILLAGE = "370831001201"


async def seed_roster(pool: asyncpg.Pool) -> None:
    """Write the API's roster: divisions, responders, households, a school, a person in need."""
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO divisions (code, name, level, parent_code, lat, lon, blind_spot) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                ("370800000000", "济宁市", "city", None, 35.41, 116.59, False),
                (COUNTY, "任城区", "county", "370800000000", 35.41, 116.59, False),
                (TOWN, "许庄街道", "town", COUNTY, 35.42, 116.60, False),
                (VILLAGE_1, "张庄村", "village", TOWN, 35.43, 116.61, False),
                (VILLAGE_2, "李庄村", "village", TOWN, 35.44, 116.62, True),
                (OTHER_COUNTY, "泗水县", "county", "370800000000", 35.66, 117.25, False),
                ("370831001000", "泗河街道", "town", OTHER_COUNTY, 35.66, 117.26, False),
                (OTHER_VILLAGE, "王家村", "village", "370831001000", 35.67, 117.27, False),
            ],
        )
        await conn.executemany(
            "INSERT INTO responders (ref, name, phone, division_code, level, specialities) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [
                ("r-county", "任区长", "+8613900000001", COUNTY, "county", ["all"]),
                ("r-county-geo", "任地质", "+8613900000002", COUNTY, "county", ["geological"]),
                ("r-town", "许镇长", "+8613900000003", TOWN, "town", ["flood"]),
                ("r-v1", "张书记", "+8613900000004", VILLAGE_1, "village", ["all"]),
                ("r-v2", "李书记", "+8613900000005", VILLAGE_2, "village", ["all"]),
                ("s-county", "泗县长", "+8613900000011", OTHER_COUNTY, "county", ["all"]),
            ],
        )
        await conn.executemany(
            "INSERT INTO households (ref, village_code, address, head_name, phones) "
            "VALUES ($1, $2, $3, $4, $5)",
            [
                ("h-1", VILLAGE_1, "张庄村1号", "张大爷", ["+8613800000001", "+8613800000002"]),
                ("h-2", VILLAGE_1, "张庄村2号", "张大妈", ["+8613800000003"]),
                ("h-3", VILLAGE_2, "李庄村1号", "李大叔", ["+8613800000004"]),
                ("h-4", OTHER_VILLAGE, "王家村1号", "王大哥", ["+8613800000011"]),
            ],
        )
        await conn.execute(
            "INSERT INTO facilities (ref, village_code, name, kind, contact_name, contact_phone) "
            "VALUES ('f-1', $1, '张庄小学', 'school', '张校长', '+8613700000001')",
            VILLAGE_1,
        )
        await conn.execute(
            "INSERT INTO special_persons (ref, village_code, name, category, helper_id) "
            "SELECT 'p-1', $1, '张奶奶', 'elderly_alone', id FROM responders WHERE ref = 'r-v1'",
            VILLAGE_1,
        )


class FakeSimulator(Channel):
    """A channel that reaches nobody, to see how the API labels simulated mode."""

    kind = ChannelKind.SMS
    simulated = True

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=1, window=1, max_text=70)

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        return []


async def insert_deliveries(pool: asyncpg.Pool, warning_id: int) -> list[int]:
    """Three deliveries by SQL: a responder sent, a household delivered, a loudspeaker queued."""
    async with pool.acquire() as conn:
        message_id = await conn.fetchval(
            "INSERT INTO messages (warning_id, audience, channel_kind, body) "
            "VALUES ($1, 'responder', 'sms', '【济宁市应急管理局】暴雨红色预警') RETURNING id",
            warning_id,
        )
        responder = await conn.fetchval("SELECT id FROM responders WHERE ref = 'r-county'")
        household = await conn.fetchval("SELECT id FROM households WHERE ref = 'h-1'")
        rows = await conn.fetch(
            """INSERT INTO deliveries (warning_id, message_id, audience, recipient_id,
                                       division_code, address, channel_kind, priority, state,
                                       channel, queued_at, sent_at, delivered_at)
               VALUES ($1, $2, 'responder', $3, $5, '+8613900000001', 'sms', 10, 'sent',
                       'sim', $6, $6, NULL),
                      ($1, $2, 'household', $4, $7, '+8613800000001', 'sms', 14, 'delivered',
                       'sim', $6, $6 + interval '1 minute', $6 + interval '2 minutes'),
                      ($1, $2, 'broadcast', 0, $7, $7, 'broadcast', 11, 'queued',
                       NULL, $6, NULL, NULL)
               RETURNING id""",
            warning_id,
            message_id,
            responder,
            household,
            COUNTY,
            NOW,
            VILLAGE_1,
        )
    return [r["id"] for r in rows]


# --- call-outs and field tasks written by hand, in every state, on the API's roster -------------


def snapshot(*steps: tuple[str, str]) -> dict[str, object]:
    """A frozen chain as the list reads it: (action, target name) per step."""
    return {"steps": [{"action": a, "target_name": n} for a, n in steps]}


@dataclass(frozen=True)
class Callout:
    """One call-out to write by hand: whose, in which state, due when (minutes from NOW)."""

    ref: str
    state: str
    deadline_min: float
    ack_late: bool | None = None
    events: tuple[str, ...] = ()  # kinds after "opened"
    cursor: int = 0


async def insert_callouts(
    pool: asyncpg.Pool, warning_id: int, callouts: list[Callout]
) -> dict[str, int]:
    """Write the call-outs and their events; return call-out id by responder ref."""
    ids: dict[str, int] = {}
    chain = snapshot(("repeat", "本人"), ("backup", "王备岗"), ("superior", "任区长"))
    async with pool.acquire() as conn:
        for c in callouts:
            row = await conn.fetchrow(
                "SELECT id, phone, level FROM responders WHERE ref = $1", c.ref
            )
            assert row is not None
            acknowledged = c.state == "acknowledged"
            callout_id = await conn.fetchval(
                """INSERT INTO callouts (warning_id, responder_id, phone, level, state, opened_at,
                                         deadline, acknowledged_at, ack_late, ack_via, ack_by,
                                         snapshot, cursor, closed_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                   RETURNING id""",
                warning_id,
                row["id"],
                row["phone"],
                row["level"],
                c.state,
                NOW - timedelta(minutes=10),
                NOW + timedelta(minutes=c.deadline_min),
                NOW - timedelta(minutes=1) if acknowledged else None,
                c.ack_late,
                "sms" if acknowledged else None,
                row["phone"] if acknowledged else None,
                chain,
                c.cursor,
                NOW if c.state == "closed" else None,
            )
            ids[c.ref] = callout_id
            for minute, kind in enumerate(("opened", *c.events)):
                await conn.execute(
                    "INSERT INTO callout_events (callout_id, at, kind, detail) "
                    "VALUES ($1, $2, $3, $4)",
                    callout_id,
                    NOW - timedelta(minutes=10 - minute),
                    kind,
                    {"step": minute - 1} if kind.startswith("step_") else {},
                )
    return ids


@dataclass(frozen=True)
class Task:
    kind: str
    village: str
    assignee_ref: str
    targets: int
    done: int
    state: str
    deadline_min: float


async def insert_tasks(pool: asyncpg.Pool, warning_id: int, tasks: list[Task]) -> list[int]:
    """Write field tasks with an "opened" event each (and "done" for finished ones)."""
    ids = []
    async with pool.acquire() as conn:
        for t in tasks:
            task_id = await conn.fetchval(
                """INSERT INTO field_tasks (warning_id, kind, village_code, assignee_id, phone,
                                            targets, done, state, opened_at, deadline, snapshot)
                   SELECT $1, $2, $3, r.id, r.phone, $5, $6, $7, $8, $9, '{}'::jsonb
                     FROM responders r WHERE r.ref = $4
                   RETURNING id""",
                warning_id,
                t.kind,
                t.village,
                t.assignee_ref,
                t.targets,
                t.done,
                t.state,
                NOW - timedelta(minutes=10),
                NOW + timedelta(minutes=t.deadline_min),
            )
            assert task_id is not None
            ids.append(task_id)
            kinds = ["opened"] + (["done"] if t.state == "done" else [])
            for minute, kind in enumerate(kinds):
                await conn.execute(
                    "INSERT INTO field_task_events (task_id, at, kind, actor, detail) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    task_id,
                    NOW - timedelta(minutes=9 - minute),
                    kind,
                    "system" if kind == "opened" else "+8613900000004",
                    {"done": t.done} if kind == "done" else {},
                )
    return ids


# Every state a call-out can be in, across two counties, one town and two villages.
CALLOUTS = [
    Callout("r-county", "acknowledged", 5, ack_late=False),
    Callout("r-county-geo", "notified", -1, events=("step_fired",), cursor=1),
    Callout("r-town", "acknowledged", -2, ack_late=True, events=("step_fired", "acknowledged")),
    Callout("r-v1", "pending", 5, events=("step_skipped",), cursor=1),  # skipped: not escalated
    Callout("r-v2", "escalated", -3, events=("step_fired", "step_fired"), cursor=2),
    Callout("s-county", "closed", -4, events=("closed",)),
]
TASKS = [
    Task("door_knock", VILLAGE_1, "r-v1", 5, 5, "done", 10),
    Task("gong", VILLAGE_1, "r-v1", 1, 0, "open", -1),
    Task("door_knock", VILLAGE_2, "r-v2", 3, 2, "escalated", 10),
]


# --- the pipeline on the seed roster (tests/seed.py) --------------------------------------------

DAYTIME = datetime(2026, 7, 29, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
LIMITS = {"sms": 335, "voice": 500, "broadcast": 500}


def rainstorm(
    level: Level = Level.RED, *, status: str = "Actual", codes: tuple[str, ...] = (seed.RENCHENG,)
) -> NormalisedWarning:
    """A rainstorm warning from the meteorological office, sent at ``DAYTIME`` (任城区 unless
    ``codes`` say otherwise)."""
    return NormalisedWarning(
        sender="jnqxt@sd.cma.cn",
        identifier=f"test-{level}-{status}-{'-'.join(codes)}",
        sent=DAYTIME,
        status=status,
        msg_type="Alert",
        hazard="rainstorm",
        level=level,
        area=Area(codes=codes),
        event=f"暴雨{level.zh}预警",
        headline="任城区气象台发布暴雨预警信号",
        description="预计未来3小时降雨量将达100毫米以上。",
        instruction="请立即转移低洼地带群众。",
    )


class RecordingChannel(Channel):
    """A test double of a gateway: accepts everything and remembers the order it was given."""

    def __init__(self, name: str, kind: ChannelKind, fail_prefix: str = "") -> None:
        super().__init__(name, self.config_model(type="recording"))
        self.kind = kind
        self.sent: list[OutboundMessage] = []
        self.fail_prefix = fail_prefix

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=10_000, window=50, max_text=500)

    async def send(self, batch: list[OutboundMessage]) -> list[SendResult]:  # type: ignore[override]
        results = []
        for m in batch:
            if self.fail_prefix and m.address.startswith(self.fail_prefix):
                results.append(SendResult(m.key, Outcome.PERMANENT, reason=Reason.CLIENT))
            else:
                self.sent.append(m)
                results.append(SendResult(m.key, Outcome.ACCEPTED, external_id=f"x-{m.key}"))
        return results


async def plan(pool: asyncpg.Pool, policy: Policy, warning: NormalisedWarning) -> int:
    """Seed the roster, store ``warning`` and plan it to the end (a village a step); its id."""
    async with pool.acquire() as conn:
        await seed.seed(conn)
    stored = await store_warning(pool, warning, source="test", now=DAYTIME)
    planner = Planner(pool, lambda: policy, ManualClock(DAYTIME), LIMITS, villages_per_chunk=1)
    await planner.plan_pending()
    return stored.warning_id


def cancel_of(original: NormalisedWarning) -> NormalisedWarning:
    """The Cancel of ``original``, five minutes after ``DAYTIME``."""
    return NormalisedWarning(
        **{
            **original.__dict__,
            "identifier": f"cancel-{original.identifier}",
            "msg_type": "Cancel",
            "sent": DAYTIME + timedelta(minutes=5),
            "references": (f"{original.sender},{original.identifier},{original.sent.isoformat()}",),
        }
    )


async def callouts(pool: asyncpg.Pool, warning_id: int) -> dict[str, asyncpg.Record]:
    """The call-outs of a warning, by phone."""
    rows = await pool.fetch("SELECT * FROM callouts WHERE warning_id = $1", warning_id)
    return {r["phone"]: r for r in rows}


async def escalate_until(scanner: Escalation, clock: ManualClock, minutes: int) -> None:
    """Run the escalation scanner through ``minutes`` of ``clock``, a scan every 10 s."""
    for _ in range(minutes * 6):  # every 10 s of simulated time
        while await scanner.scan():
            pass
        clock.advance(10)


# --- warnd as a child process ------------------------------------------------------------------


def rainstorm_cap(identifier: str, sent: datetime, code: str = "370811") -> bytes:
    """A CAP red rainstorm alert for the division ``code``, sent at ``sent``, for 6 hours."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>jnqxt@sd.cma.cn</sender>
  <sent>{sent.isoformat(timespec="seconds")}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Met</category>
    <event>暴雨红色预警</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <expires>{(sent + timedelta(hours=6)).isoformat(timespec="seconds")}</expires>
    <headline>任城区气象台发布暴雨红色预警信号</headline>
    <instruction>请立即转移低洼地带群众。</instruction>
    <area>
      <areaDesc>任城区</areaDesc>
      <geocode><valueName>行政区划代码</valueName><value>{code}</value></geocode>
    </area>
  </info>
</alert>""".encode()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (for a child warnd's HTTP API)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def post_cap(port: int, body: bytes) -> tuple[int, dict[str, object]]:
    """POST a CAP document with ``FEED_TOKEN`` to a warnd on ``port``; status and JSON body."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{port}/api/v1/cap",
            data=body,
            headers={"Authorization": f"Bearer {FEED_TOKEN}", "Content-Type": "application/xml"},
        ) as response,
    ):
        return response.status, await response.json()


async def start_worker(
    env: dict[str, str], log: Path, *, simulate: bool = True
) -> asyncio.subprocess.Process:
    """Start ``warnd run --simulate`` (``warnd run`` when not ``simulate``: the config has a real
    channel) as its own process and wait until it answers /healthz."""
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "warnd",
            "run",
            *(("--simulate",) if simulate else ()),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    healthz = f"http://127.0.0.1:{env['WARND_HTTP_PORT']}/healthz"
    async with aiohttp.ClientSession() as http:

        async def answering() -> bool:
            try:
                async with http.get(healthz) as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        # A loaded CI machine starts Python slowly.
        await until_while_running(process, log, answering, within=60, what="warnd to start")
    return process


# --- an HTTP SMS gateway -------------------------------------------------------------------------

Body = dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """One scripted answer; ``body`` may be computed from the request's JSON."""

    status: int = 200
    body: object | Callable[[Body], object] = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer (until the gateway stops): the client times out
    raw: bytes | None = None  # send these bytes instead of JSON


@dataclass(frozen=True)
class Received:
    authorization: str | None
    content_type: str
    body: Body


def accept_all(body: Body) -> object:
    """A well-behaved gateway: an id for the message, or for each message of a batch."""
    if "messages" in body:
        return {
            "results": [{"ref": m["ref"], "message_id": f"gw-{m['ref']}"} for m in body["messages"]]
        }
    return {"message_id": f"gw-{body['ref']}"}


class Gateway:
    """An HTTP SMS gateway on 127.0.0.1, a random port, in its own thread."""

    # What the gateway answers when no answer is scripted.
    default: Callable[[Body], object] = staticmethod(accept_all)

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: deque[Answer] = deque()
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms/send"

    def answer(self, *answers: Answer) -> None:
        """Answer the next requests so, in order; after them, accept everything."""
        with self._lock:
            self.script.extend(answers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.received.append(
                Received(request.headers.get("Authorization"), request.content_type, body)
            )
            answer = self.script.popleft() if self.script else Answer(body=self.default)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            # Let other requests of the same send arrive, so the window is really exercised.
            await asyncio.sleep(0.001)
            if answer.hang:
                assert self._release is not None
                await self._release.wait()
            if answer.raw is not None:
                return web.Response(body=answer.raw, status=answer.status, headers=answer.headers)
            content = answer.body(body) if callable(answer.body) else answer.body
            return web.json_response(content, status=answer.status, headers=answer.headers)
        finally:
            with self._lock:
                self.in_flight -= 1

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            try:
                serve()
            # Any failure to start is handed to start(), which raises it in the test's thread.
            except Exception as exc:  # noqa: BLE001
                self._failure = exc
                ready.set()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/sms/send", self._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)

            async def up() -> None:
                self._release = asyncio.Event()
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                self.port = int(runner.addresses[0][1])

            loop.run_until_complete(up())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="test-gateway", daemon=True)
        self._thread.start()
        ready.wait()
        if self._failure is not None:
            raise RuntimeError("the test gateway did not start") from self._failure

    def stop(self) -> None:
        loop, release = self._loop, self._release
        assert loop is not None and release is not None and self._thread is not None
        loop.call_soon_threadsafe(release.set)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join()


# --- an HTTP voice-notification gateway ----------------------------------------------------------


def accept_calls(body: Body) -> object:
    """A well-behaved voice gateway: a call id for the call, or for each call of a batch."""
    if "calls" in body:
        return {"results": [{"ref": c["ref"], "call_id": f"vc-{c['ref']}"} for c in body["calls"]]}
    return {"call_id": f"vc-{body['ref']}"}


class VoiceGateway(Gateway):
    """A carrier's voice-notification API on 127.0.0.1: the SMS gateway's recording, scripting
    and threading, answering what is not scripted with call ids, and posting call results back
    to warnd from its own event loop, as a carrier's platform does."""

    default = staticmethod(accept_calls)

    async def report(self, url: str, token: str, results: object) -> tuple[int, dict[str, Any]]:
        """POST call results to ``url`` with ``token`` from the gateway's thread; the status and
        JSON body warnd answered with."""
        loop = self._loop
        assert loop is not None

        async def post() -> tuple[int, dict[str, Any]]:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    url, json=results, headers={"Authorization": f"Bearer {token}"}
                ) as response,
            ):
                return response.status, await response.json()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(post(), loop))


async def insert_eew_report(
    conn: asyncpg.Pool | asyncpg.Connection, report: EewReport, received_at: datetime
) -> None:
    """The report's row, as the API writes it before the hand to the fast path."""
    await conn.execute(
        sql("insert_eew_report"),
        "seismic",
        report.event_id,
        report.report_no,
        report.origin_time,
        report.lat,
        report.lon,
        report.depth_km,
        report.magnitude,
        report.place,
        report.final,
        report.cancel,
        report.status,
        "received",
        received_at,
        "{}",
    )
