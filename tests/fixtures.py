"""The HTTP API under test, shared by the API test modules: a client on a real database, the
users and feed it knows, builders of CAP and manual warnings, and the ``policy`` fixture.

A module that uses the ``policy`` fixture imports it from here and names it in ``__all__``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from channels.base import Channel
from warnd.app.metrics import Metrics
from warnd.app.services import Services
from warnd.core.clock import ManualClock
from warnd.core.config import AppConfig
from warnd.policy.loader import PolicyHolder, load_policy
from warnd.policy.model import Policy
from warnd.runtime.settings import REPO_CONFIG_DIR
from warnd.web.app import build_app
from warnd.web.routing import API

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


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO_CONFIG_DIR / "policy.toml")


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
    pool: asyncpg.Pool, policy: Policy, channels: dict[str, Channel]
) -> AsyncIterator[Api]:
    """The app on ``pool`` with CONFIG's feed and users, its clock stopped at NOW."""
    services = Services(
        pool=pool,
        config=CONFIG,
        policy=PolicyHolder(REPO_CONFIG_DIR / "policy.toml", policy),
        clock=ManualClock(NOW),
        metrics=Metrics(),
        channels=channels,
        max_body_bytes=64 * 1024,
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
