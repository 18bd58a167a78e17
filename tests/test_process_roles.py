"""``warnd run --roles``: the roles are checked, and a warning goes through three processes that
each do one part — the API takes it, a planner plans it, a dispatcher sends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from click.testing import CliRunner

from channels.base import ChannelKind
from tests import seed
from tests.fixtures import FEED_TOKEN, RecordingChannel, post_cap, rainstorm_cap
from tests.waiting import until
from warnd.cli.main import main
from warnd.core.config import load_config_data
from warnd.core.errors import ConfigError
from warnd.runtime.daemon import Daemon
from warnd.runtime.roles import ALL_ROLES, Role, parse_roles
from warnd.runtime.settings import Settings

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_roles_are_parsed() -> None:
    assert parse_roles("all") == ALL_ROLES
    assert parse_roles(" API , Dispatch ") == {Role.API, Role.DISPATCH}
    assert parse_roles("escalate,inbound,plan") == {Role.ESCALATE, Role.INBOUND, Role.PLAN}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("api,dispach", "'dispach'"),
        ("api,foo,bar", "'bar', 'foo'"),
        (" , ", "no role given"),
    ],
)
def test_unknown_roles_are_named(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_roles(text)
    assert named in str(refused.value)
    assert "api, plan, dispatch, escalate, inbound" in str(refused.value)


def test_the_command_refuses_an_unknown_role_in_one_line() -> None:
    result = CliRunner().invoke(main, ["run", "--simulate", "--roles", "api,planner"])
    assert result.exit_code == 2
    assert "--roles: unknown role 'planner'" in result.output
    assert "Traceback" not in result.output


class Counted(RecordingChannel):
    """A recording channel that counts its starts: only a dispatcher starts channels."""

    def __init__(self, name: str, kind: ChannelKind) -> None:
        super().__init__(name, kind)
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1


def channels() -> dict[str, Counted]:
    return {
        "sms": Counted("sms", ChannelKind.SMS),
        "voice": Counted("voice", ChannelKind.VOICE),
        "speakers": Counted("speakers", ChannelKind.BROADCAST),
    }


async def test_api_plan_and_dispatch_in_three_processes(seeded: str) -> None:
    config = load_config_data({"feeds": {"met": {"token": FEED_TOKEN}}}, source=Path("<test>"))
    front, planner, sender = channels(), channels(), channels()
    api = Daemon(Settings(http_port=0), config=config, channels=front, roles={Role.API})
    plan = Daemon(Settings(http_port=0), config=config, channels=planner, roles={Role.PLAN})
    dispatch = Daemon(Settings(http_port=0), config=config, channels=sender, roles={Role.DISPATCH})
    async with api.running(seeded) as services, aiohttp.ClientSession() as http:
        assert api.port is not None
        async with http.get(f"http://127.0.0.1:{api.port}/readyz") as response:
            ready = await response.json()
        # No dispatcher here: no channel is held, nor competed for.
        assert {c["name"]: c["held"] for c in ready["channels"]} == dict.fromkeys(front)
        status, body = await post_cap(api.port, rainstorm_cap("roles-1", datetime.now(SHANGHAI)))
        assert status == 201, body
        warning = body["warning_id"]
        async with plan.running(seeded):
            planned = "SELECT plan_state = 'done' FROM warnings WHERE id = $1"
            await until(lambda: services.pool.fetchval(planned, warning), 30, what="the plan")
        # Planned, not sent: nothing here dispatches.
        states = await services.pool.fetch("SELECT DISTINCT state FROM deliveries")
        assert {r["state"] for r in states} == {"queued"}
        async with dispatch.running(seeded):
            sent = "SELECT bool_and(state = 'sent') FROM deliveries"
            await until(lambda: services.pool.fetchval(sent), 30, what="every message sent")
        rows = await services.pool.fetch("SELECT audience, address FROM deliveries")
    assert plan.port is None and dispatch.port is None  # only the api role serves HTTP
    assert [c.starts for c in (*front.values(), *planner.values())] == [0] * 6
    assert [c.starts for c in sender.values()] == [1, 1, 1]
    reached: dict[str, set[str]] = {}
    for r in rows:
        reached.setdefault(r["audience"], set()).add(r["address"])
    assert reached == seed.RED_RAINSTORM_RENCHENG_BY_AUDIENCE
    assert len(rows) == sum(len(c.sent) for c in sender.values())


async def test_an_earthquake_report_taken_by_the_api_is_sent_by_the_dispatcher(
    seeded: str,
) -> None:
    """The fast path of a process that holds no channel queues the alerts at once for the one
    that does (no alert waits for a plan, none is dropped)."""
    config = load_config_data({"feeds": {"seismic": {"token": FEED_TOKEN}}}, source=Path("<t>"))
    front, sender = channels(), channels()
    api = Daemon(Settings(http_port=0), config=config, channels=front, roles={Role.API})
    dispatch = Daemon(Settings(http_port=0), config=config, channels=sender, roles={Role.DISPATCH})
    body = {
        "event_id": "CEA-ROLES",
        "report_no": 1,
        "origin_time": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        "lat": 35.40,
        "lon": 116.60,
        "depth_km": 10,
        "magnitude": 5.5,
        "place": "济宁市任城区",
        "final": False,
        "cancel": False,
        "status": "Actual",
    }
    async with (
        dispatch.running(seeded),
        api.running(seeded) as services,
        aiohttp.ClientSession() as http,
    ):
        assert api.port is not None
        async with http.post(
            f"http://127.0.0.1:{api.port}/api/v1/eew",
            json=body,
            headers={"Authorization": f"Bearer {FEED_TOKEN}"},
        ) as response:
            answer = await response.json()
            assert response.status == 202, answer
        sent = (
            "SELECT count(*) > 0 AND bool_and(d.state = 'sent') FROM deliveries d "
            "JOIN warnings w ON w.id = d.warning_id WHERE w.source = 'eew' AND d.priority = 0"
        )
        await until(lambda: services.pool.fetchval(sent), 30, what="the alerts sent")
        alerts = await services.pool.fetch(
            "SELECT d.channel, d.address FROM deliveries d JOIN warnings w ON w.id = d.warning_id"
            " WHERE w.source = 'eew' AND d.priority = 0"
        )
    assert not any(c.sent for c in front.values())  # the front holds no channel
    handed = sorted(m.address for c in sender.values() for m in c.sent)
    assert sorted(a["address"] for a in alerts) == handed
    assert {a["channel"] for a in alerts} <= set(sender)
