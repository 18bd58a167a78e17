"""Call-outs over the HTTP API on a real database: an officer's acknowledgement and what it
leaves behind, the call-out list with its filters and CSV, and the summary in a warning."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests import seed
from tests.fixtures import (
    APPROVER_TOKEN,
    CHIEF_TOKEN,
    CONFIG,
    DAYTIME,
    OFFICER_TOKEN,
    Api,
    cancel_of,
    escalate_until,
    plan,
    rainstorm,
)
from warnd.app.metrics import Metrics
from warnd.app.services import Services
from warnd.app.views import CALLOUT_CSV_COLUMNS
from warnd.core.clock import ManualClock
from warnd.core.spreadsheet import restore
from warnd.ingest.store import store_warning
from warnd.pipeline.answers import Answers
from warnd.pipeline.escalation import Escalation
from warnd.policy.loader import PolicyHolder
from warnd.policy.model import Policy
from warnd.runtime.settings import REPO_CONFIG_DIR
from warnd.web.app import build_app
from warnd.web.routing import API

CITY_ZONE = ZoneInfo("Asia/Shanghai")
VILLAGE_HEAD = "+8613900000004"  # 张书记, 张庄村: deadline 10 min
COUNTY_HEAD = "+8613900000001"  # 任区长: deadline 5 min
OPEN = ("pending", "notified", "escalated")


@dataclass
class Warned:
    """A red rainstorm on 任城区 planned at DAYTIME, its call-outs open, and the API on it."""

    api: Api
    clock: ManualClock
    warning_id: int

    async def callouts(self) -> dict[str, asyncpg.Record]:
        rows = await self.api.pool.fetch(
            "SELECT * FROM callouts WHERE warning_id = $1", self.warning_id
        )
        return {r["phone"]: r for r in rows}

    async def callout_id(self, phone: str) -> int:
        return int((await self.callouts())[phone]["id"])

    async def acks_audited(self) -> int:
        return int(
            await self.api.pool.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'callout_acknowledged'"
            )
        )

    def at(self, minutes: float) -> None:
        self.clock.advance(
            (DAYTIME + timedelta(minutes=minutes) - self.clock.now()).total_seconds()
        )

    async def ack(
        self, callout_id: int, body: object, token: str = OFFICER_TOKEN
    ) -> tuple[int, dict[str, Any]]:
        return await self.api.call("POST", f"{API}/callouts/{callout_id}/ack", token, body)

    async def list(self, query: str = "") -> tuple[int, dict[str, Any]]:
        return await self.api.call(
            "GET", f"{API}/warnings/{self.warning_id}/callouts{query}", OFFICER_TOKEN
        )


@pytest.fixture
async def warned(pool: asyncpg.Pool, policy: Policy) -> AsyncIterator[Warned]:
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    services = Services(
        pool=pool,
        config=CONFIG,
        policy=PolicyHolder(REPO_CONFIG_DIR / "policy.toml", policy),
        clock=clock,
        metrics=Metrics(),
        max_body_bytes=64 * 1024,
    )
    async with TestClient(TestServer(build_app(services))) as client:
        yield Warned(Api(client, services, pool), clock, warning_id)


# --- an officer's acknowledgement --------------------------------------------------------------


async def test_an_officer_acknowledges_with_a_reason_and_it_is_recorded_everywhere(
    warned: Warned,
) -> None:
    pool = warned.api.pool
    callout_id = await warned.callout_id(VILLAGE_HEAD)
    queued_before = await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE callout_id = $1 AND state = 'queued'", callout_id
    )
    assert queued_before > 0
    warned.at(2)

    status, body = await warned.ack(callout_id, {"reason": " 电话联系本人确认已收到 "})
    assert status == 200, body
    assert (body["id"], body["state"], body["ack_via"], body["ack_by"], body["ack_late"]) == (
        callout_id,
        "acknowledged",
        "officer",
        "zhang",
        False,
    )
    assert body["last_event"] == "acknowledged" and body["last_event_actor"] == "zhang"

    row = (await warned.callouts())[VILLAGE_HEAD]
    assert (row["state"], row["ack_via"], row["ack_by"], row["ack_late"]) == (
        "acknowledged",
        "officer",
        "zhang",
        False,
    )
    assert row["acknowledged_at"] == DAYTIME + timedelta(minutes=2)
    assert row["next_check_at"] is None
    # every queued attempt of this call-out, on every channel, is stopped; others keep theirs
    left = await pool.fetch("SELECT state, error FROM deliveries WHERE callout_id = $1", callout_id)
    assert [(r["state"], r["error"]) for r in left] == [("cancelled", "answered")] * queued_before
    others = await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE warning_id = $1 AND callout_id <> $2 "
        "AND state = 'queued'",
        warned.warning_id,
        callout_id,
    )
    assert others > 0
    event = await pool.fetchrow(
        "SELECT kind, actor, detail FROM callout_events WHERE callout_id = $1 ORDER BY id DESC "
        "LIMIT 1",
        callout_id,
    )
    assert event is not None
    assert (event["kind"], event["actor"]) == ("acknowledged", "zhang")
    assert event["detail"] == {"via": "officer", "reason": "电话联系本人确认已收到", "late": False}
    audit = await pool.fetch(
        "SELECT actor, action, subject, detail FROM audit_log WHERE subject LIKE 'callout:%'"
    )
    assert [(a["actor"], a["action"], a["subject"]) for a in audit] == [
        ("zhang", "callout_acknowledged", f"callout:{callout_id}")
    ]
    assert audit[0]["detail"]["reason"] == "电话联系本人确认已收到"
    assert audit[0]["detail"]["warning_id"] == warned.warning_id
    assert audit[0]["detail"]["cancelled_deliveries"] == queued_before


async def test_acknowledging_twice_is_409_saying_when_and_by_whom_and_changes_nothing(
    warned: Warned,
) -> None:
    callout_id = await warned.callout_id(VILLAGE_HEAD)
    warned.at(2)
    assert (await warned.ack(callout_id, {"reason": "电话确认"}))[0] == 200
    warned.at(4)
    status, body = await warned.ack(callout_id, {"reason": "又确认一次"}, token=CHIEF_TOKEN)
    assert status == 409
    assert body["error"] == "already_acknowledged"
    assert "2026-07-29T10:02:00+08:00" in body["detail"] and "zhang" in body["detail"]
    row = (await warned.callouts())[VILLAGE_HEAD]
    assert (row["ack_by"], row["acknowledged_at"]) == ("zhang", DAYTIME + timedelta(minutes=2))
    assert await warned.acks_audited() == 1
    kinds = await warned.api.pool.fetch(
        "SELECT kind FROM callout_events WHERE callout_id = $1", callout_id
    )
    assert [k["kind"] for k in kinds] == ["opened", "acknowledged"]


async def test_an_sms_answer_first_makes_the_officer_get_409(warned: Warned) -> None:
    warned.at(1)
    await Answers(warned.api.pool, warned.clock).answer_sms(VILLAGE_HEAD, "收到")
    status, body = await warned.ack(await warned.callout_id(VILLAGE_HEAD), {"reason": "电话确认"})
    assert status == 409
    assert "via sms" in body["detail"]
    assert (await warned.callouts())[VILLAGE_HEAD]["ack_via"] == "sms"


async def test_an_acknowledgement_past_the_deadline_is_late(warned: Warned) -> None:
    warned.at(11)
    status, body = await warned.ack(await warned.callout_id(VILLAGE_HEAD), {"reason": "上门确认"})
    assert status == 200
    assert body["ack_late"] is True
    row = (await warned.callouts())[VILLAGE_HEAD]
    assert (row["state"], row["ack_late"]) == ("acknowledged", True)


async def test_a_closed_callout_cannot_be_acknowledged(warned: Warned) -> None:
    pool = warned.api.pool
    await store_warning(pool, cancel_of(rainstorm()), source="test", now=DAYTIME)
    await escalate_until(Escalation(pool, warned.clock), warned.clock, 4)
    row = (await warned.callouts())[VILLAGE_HEAD]
    assert row["state"] == "closed"
    status, body = await warned.ack(row["id"], {"reason": "电话确认"})
    assert status == 409
    assert body["error"] == "callout_closed"
    assert row["closed_at"].astimezone(CITY_ZONE).isoformat() in body["detail"]
    assert (await warned.callouts())[VILLAGE_HEAD]["state"] == "closed"
    assert await warned.acks_audited() == 0


@pytest.mark.parametrize(
    "body",
    [None, {}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": 5}, ["x"]],
)
async def test_an_acknowledgement_needs_a_reason(warned: Warned, body: object) -> None:
    status, answer = await warned.ack(await warned.callout_id(VILLAGE_HEAD), body)
    assert status == 422, answer
    assert answer["error"] == "invalid_ack"
    assert (await warned.callouts())[VILLAGE_HEAD]["state"] == "pending"
    assert await warned.acks_audited() == 0


async def test_a_reason_of_500_characters_is_enough(warned: Warned) -> None:
    status, _ = await warned.ack(await warned.callout_id(VILLAGE_HEAD), {"reason": "确" * 500})
    assert status == 200


async def test_unknown_callouts_and_other_roles_are_refused(warned: Warned) -> None:
    status, body = await warned.ack(987654, {"reason": "电话确认"})
    assert (status, body["error"]) == (404, "not_found")
    assert "987654" in body["detail"]
    callout_id = await warned.callout_id(VILLAGE_HEAD)
    status, body = await warned.ack(callout_id, {"reason": "电话确认"}, token=APPROVER_TOKEN)
    assert (status, body["error"]) == (403, "forbidden")
    response = await warned.api.client.post(
        f"{API}/callouts/{callout_id}/ack",
        data="reason=电话确认",
        headers={
            "Authorization": f"Bearer {OFFICER_TOKEN}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status == 415
    assert (await warned.callouts())[VILLAGE_HEAD]["state"] == "pending"


# --- the list ----------------------------------------------------------------------------------


async def test_the_callout_list_shows_who_to_call_and_where_each_stands(warned: Warned) -> None:
    village_id = await warned.callout_id(VILLAGE_HEAD)
    warned.at(2)
    await warned.ack(village_id, {"reason": "电话确认"})

    status, page = await warned.list()
    assert status == 200, page
    rows = await warned.callouts()
    assert [c["id"] for c in page["callouts"]] == sorted(r["id"] for r in rows.values())
    assert page["next_after"] is None
    village = next(c for c in page["callouts"] if c["id"] == village_id)
    assert (
        village["name"],
        village["phone"],
        village["division_code"],
        village["division_name"],
        village["level"],
    ) == ("张书记", VILLAGE_HEAD, seed.VILLAGE_R1, "张庄村", "village")
    assert (village["state"], village["ack_via"], village["ack_late"]) == (
        "acknowledged",
        "officer",
        False,
    )
    county = next(c for c in page["callouts"] if c["phone"] == COUNTY_HEAD)
    assert (county["state"], county["acknowledged_at"], county["last_event"]) == (
        "pending",
        None,
        "opened",
    )
    assert county["cursor"] == 0 and county["escalation_steps"] > 0
    assert county["deadline"] is not None

    status, missing = await warned.api.call("GET", f"{API}/warnings/424242/callouts", CHIEF_TOKEN)
    assert (status, missing["error"]) == (404, "not_found")


async def test_the_callout_list_filters(warned: Warned) -> None:
    await warned.ack(await warned.callout_id(VILLAGE_HEAD), {"reason": "电话确认"})

    def phones(page: dict[str, Any]) -> set[str]:
        return {c["phone"] for c in page["callouts"]}

    everyone = set(await warned.callouts())
    assert phones((await warned.list("?state=acknowledged"))[1]) == {VILLAGE_HEAD}
    assert phones((await warned.list("?state=open"))[1]) == everyone - {VILLAGE_HEAD}
    assert phones((await warned.list("?state=pending"))[1]) == everyone - {VILLAGE_HEAD}
    assert phones((await warned.list("?state=closed"))[1]) == set()
    assert phones((await warned.list("?level=village"))[1]) == {
        "+8613900000004",
        "+8613900000005",
        "+8613900000006",
    }
    assert phones((await warned.list("?division=370811"))[1]) == everyone - {"+8613900000000"}
    assert phones((await warned.list("?division=370811002"))[1]) == {
        "+8613900000003",
        "+8613900000004",
        "+8613900000005",
        "+8613900000006",
    }
    assert phones((await warned.list(f"?division={seed.VILLAGE_R1}&state=open"))[1]) == {
        "+8613900000005"
    }
    for bad in ("?division=3708", "?division=37081100200a", "?state=late", "?overdue=yes"):
        status, body = await warned.list(bad)
        assert (status, body["error"]) == (400, "invalid_parameter"), bad


async def test_the_overdue_list_is_the_open_callouts_past_their_deadline(warned: Warned) -> None:
    await warned.ack(await warned.callout_id(VILLAGE_HEAD), {"reason": "电话确认"})
    warned.at(6)
    rows = await warned.callouts()
    now = warned.clock.now()
    expected = {p for p, r in rows.items() if r["state"] in OPEN and r["deadline"] < now}
    assert COUNTY_HEAD in expected and VILLAGE_HEAD not in expected
    assert expected != set(rows)  # the village heads still have time
    _, page = await warned.list("?overdue=true")
    assert {c["phone"] for c in page["callouts"]} == expected
    _, village = await warned.list("?overdue=true&level=village")
    assert village["callouts"] == []
    warned.at(30)  # every deadline has passed; the one answered is still not on the list
    _, later = await warned.list("?overdue=true")
    assert {c["phone"] for c in later["callouts"]} == set(rows) - {VILLAGE_HEAD}


async def test_the_callout_list_pages_without_gaps_or_repeats(warned: Warned) -> None:
    seen: list[int] = []
    after = 0
    while True:
        status, page = await warned.list(f"?limit=4&after={after}")
        assert status == 200
        seen += [c["id"] for c in page["callouts"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == sorted(r["id"] for r in (await warned.callouts()).values())
    assert len(seen) == 6


async def test_the_overdue_list_as_csv(warned: Warned) -> None:
    warned.at(6)
    response = await warned.api.client.get(
        f"{API}/warnings/{warned.warning_id}/callouts?overdue=true&format=csv",
        headers={"Authorization": f"Bearer {OFFICER_TOKEN}"},
    )
    assert response.status == 200
    assert response.content_type == "text/csv"
    text = (await response.read()).decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows and tuple(rows[0]) == CALLOUT_CSV_COLUMNS
    stored = await warned.callouts()
    now = warned.clock.now()
    # Phone numbers are marked as text: a spreadsheet would read +86… as a number.
    assert all(r["phone"].startswith("'+86") for r in rows)
    assert {restore(r["phone"]) for r in rows} == {
        p for p, r in stored.items() if r["state"] in OPEN and r["deadline"] < now
    }
    county = next(r for r in rows if restore(r["phone"]) == COUNTY_HEAD)
    assert (county["name"], county["division_name"], county["state"]) == (
        "任区长",
        "任城区",
        "pending",
    )
    assert county["deadline"] == stored[COUNTY_HEAD]["deadline"].astimezone(CITY_ZONE).isoformat()
    assert county["deadline"].endswith("+08:00")
    assert (county["acknowledged_at"], county["ack_late"]) == ("", "")


# --- the warning's summary ---------------------------------------------------------------------


async def test_the_warning_shows_its_callouts_at_a_glance(warned: Warned) -> None:
    pool = warned.api.pool
    await escalate_until(Escalation(pool, warned.clock), warned.clock, 4)  # the repeat has fired
    await warned.ack(await warned.callout_id(VILLAGE_HEAD), {"reason": "电话确认"})
    warned.at(11)
    await warned.ack(await warned.callout_id("+8613900000006"), {"reason": "上门确认"})

    status, body = await warned.api.call("GET", f"{API}/warnings/{warned.warning_id}", CHIEF_TOKEN)
    assert status == 200, body
    escalated = await pool.fetchval(
        "SELECT count(DISTINCT e.callout_id) FROM callout_events e "
        "JOIN callouts c ON c.id = e.callout_id WHERE c.warning_id = $1 AND e.kind = 'step_fired'",
        warned.warning_id,
    )
    assert escalated == 6  # nobody had answered when the repeat fired
    assert body["callouts"] == {
        "total": 6,
        "acknowledged_on_time": 1,
        "acknowledged_late": 1,
        "open": 4,
        "overdue": 4,  # every deadline (5 and 10 min) has passed at 11 min
        "escalated": escalated,
        "closed": 0,
    }


async def test_a_warning_without_callouts_says_zero(pool: asyncpg.Pool, policy: Policy) -> None:
    from warnd.core.vocabulary import Level

    warning_id = await plan(pool, policy, rainstorm(Level.YELLOW))
    services = Services(
        pool=pool,
        config=CONFIG,
        policy=PolicyHolder(REPO_CONFIG_DIR / "policy.toml", policy),
        clock=ManualClock(DAYTIME),
        metrics=Metrics(),
    )
    async with TestClient(TestServer(build_app(services))) as client:
        api = Api(client, services, pool)
        status, body = await api.call("GET", f"{API}/warnings/{warning_id}", OFFICER_TOKEN)
    assert status == 200
    assert set(body["callouts"].values()) == {0}
