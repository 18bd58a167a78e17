"""The HTTP API against a real PostgreSQL: what each request leaves in the database (conftest's
``app``, on the small roster of tests/fixtures.py)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from tests.fixtures import (
    ADMIN_TOKEN,
    APPROVER_TOKEN,
    CHIEF_TOKEN,
    COUNTY,
    FEED_TOKEN,
    NOW,
    OFFICER_TOKEN,
    TOWN,
    VILLAGE_1,
    VILLAGE_2,
    Api,
    cap_alert,
    insert_deliveries,
    manual,
    preview,
    seed_roster,
)
from tests.waiting import until
from warnd.app import warnings as warning_use_cases
from warnd.app.views import DELIVERY_CSV_COLUMNS
from warnd.core.clock import ManualClock
from warnd.pipeline.planner import Planner
from warnd.policy.model import Policy
from warnd.web import http as web_http
from warnd.web.routes import ROUTES
from warnd.web.routing import API


def ingest_count(api: Api, source: str, result: str, reason: str) -> float:
    value = api.services.metrics.registry.get_sample_value(
        "warnd_ingest_total", {"source": source, "result": result, "reason": reason}
    )
    return value or 0.0


# --- CAP from feeds ----------------------------------------------------------------------------


async def test_cap_is_stored_once_and_a_duplicate_answers_200(app: Api) -> None:
    status, body = await app.cap(cap_alert())
    assert status == 201, body
    assert body["status"] == "active"
    assert body["created"] is True
    assert body["unknown_codes"] == []
    warning_id = body["warning_id"]

    status, again = await app.cap(cap_alert())
    assert status == 200
    assert again["warning_id"] == warning_id
    assert again["status"] == "active"
    assert again["created"] is False

    rows = await app.pool.fetch("SELECT id, source, state, level, hazard FROM warnings")
    assert [tuple(r) for r in rows] == [(warning_id, "cma", "active", "red", "rainstorm")]
    villages = await app.pool.fetch(
        "SELECT village_code FROM warning_villages WHERE warning_id = $1 ORDER BY 1", warning_id
    )
    assert [r["village_code"] for r in villages] == [VILLAGE_1, VILLAGE_2]
    assert ingest_count(app, "cma", "accepted", "active") == 1
    assert ingest_count(app, "cma", "duplicate", "active") == 1


async def test_cap_reports_codes_the_roster_does_not_know(app: Api) -> None:
    status, body = await app.cap(cap_alert(codes=("370811", "370899")))
    assert status == 201
    assert body["unknown_codes"] == ["370899000000"]


@pytest.mark.parametrize(
    ("token", "expected"),
    [(None, "send 'Authorization"), ("not-a-token", "not the token of any configured feed")],
)
async def test_cap_without_a_feed_token_is_refused_and_stores_nothing(
    app: Api, token: str | None, expected: str
) -> None:
    headers = {"Content-Type": "application/xml"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await app.client.post(f"{API}/cap", data=cap_alert().encode(), headers=headers)
    body = await response.json()
    assert response.status == 401
    assert body["error"] == "unauthorized"
    assert expected in body["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await app.count("warnings") == 0
    assert await app.count("rejected_messages") == 0


async def test_an_officer_token_is_not_a_feed_token(app: Api) -> None:
    status, body = await app.cap(cap_alert(), token=CHIEF_TOKEN)
    assert status == 401
    assert body["error"] == "unauthorized"
    assert await app.count("warnings") == 0


async def test_cap_must_be_xml(app: Api) -> None:
    status, body = await app.cap(cap_alert(), content_type="application/json")
    assert status == 415
    assert body["error"] == "unsupported_media_type"
    assert "application/json" in body["detail"]
    assert await app.count("warnings") == 0
    row = await app.pool.fetchrow("SELECT feed, error FROM rejected_messages")
    assert row is not None
    assert tuple(row) == ("cma", "unsupported_media_type")


async def test_an_oversized_body_is_refused_from_its_length(app: Api) -> None:
    huge = cap_alert().replace("<scope>", "<!--" + "x" * 70_000 + "--><scope>")
    status, body = await app.cap(huge)
    assert status == 413
    assert body["error"] == "too_large"
    assert str(64 * 1024) in body["detail"]
    assert await app.count("warnings") == 0
    assert await app.pool.fetchval("SELECT error FROM rejected_messages") == "too_large"


async def test_an_oversized_chunked_body_is_refused_while_reading(app: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):  # 100 × 8 KiB, no Content-Length: the cap applies while reading
            yield b"<!--" + b"x" * 8000 + b"-->"

    response = await app.client.post(
        f"{API}/cap",
        data=chunks(),
        headers={"Authorization": f"Bearer {FEED_TOKEN}", "Content-Type": "application/xml"},
    )
    assert response.status == 413
    assert (await response.json())["error"] == "too_large"
    assert await app.count("warnings") == 0
    assert ingest_count(app, "cma", "rejected", "too_large") == 1


async def test_a_stalled_body_is_refused_in_time(app: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_http, "BODY_TIMEOUT_S", 0.2)

    async def refused() -> bool:
        return bool(await app.count("rejected_messages"))

    async def stalls() -> AsyncIterator[bytes]:
        yield b"<?xml version='1.0'?><alert"
        # The rest comes only once the server has given up on it and recorded why.
        await until(refused, what="the stalled body to be refused")
        yield b"/>"

    response = await app.client.post(
        f"{API}/cap",
        data=stalls(),
        headers={"Authorization": f"Bearer {FEED_TOKEN}", "Content-Type": "application/xml"},
    )
    assert response.status == 408
    assert (await response.json())["error"] == "request_timeout"
    row = await app.pool.fetchrow("SELECT error, body FROM rejected_messages")
    assert row is not None
    assert tuple(row) == ("request_timeout", "<?xml version='1.0'?><alert")


async def test_a_schema_invalid_cap_is_422_and_kept_for_the_officer(app: Api) -> None:
    document = cap_alert(swap_status_and_msg_type=True)
    status, body = await app.cap(document)
    assert status == 422
    assert body["error"] == "schema_invalid"
    assert body["detail"]
    assert await app.count("warnings") == 0
    row = await app.pool.fetchrow("SELECT feed, error, detail, body FROM rejected_messages")
    assert row is not None
    assert (row["feed"], row["error"], row["detail"]) == ("cma", "schema_invalid", body["detail"])
    assert row["body"] == document
    assert ingest_count(app, "cma", "rejected", "schema_invalid") == 1


async def test_a_test_cancel_cannot_end_a_live_warning(app: Api) -> None:
    status, created = await app.cap(cap_alert())
    assert status == 201
    cancel = (
        cap_alert(identifier="37080041600000_20260729020000", status="Test")
        .replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>")
        .replace(
            "<scope>Public</scope>",
            "<scope>Public</scope><references>"
            "37080041600000,37080041600000_20260729013000,2026-07-29T01:30:00+08:00"
            "</references>",
        )
    )
    status, body = await app.cap(cancel)
    assert status == 422, body
    assert body["error"] == "rule_violation" and "cannot end it" in body["detail"]
    assert await app.count("warnings") == 1
    state = await app.pool.fetchval(
        "SELECT state FROM warnings WHERE id = $1", created["warning_id"]
    )
    assert state == "active"
    assert await app.pool.fetchval("SELECT error FROM rejected_messages") == "rule_violation"


async def test_hostile_bytes_are_a_400_and_are_stored_without_nul(app: Api) -> None:
    status, body = await app.cap(b"\x00\xff<alert>not xml")
    assert status == 400
    assert body["error"] == "malformed_xml"
    stored = await app.pool.fetchval("SELECT body FROM rejected_messages")
    assert stored == "\ufffd\ufffd<alert>not xml"


async def test_an_unexpected_failure_is_a_500_without_a_traceback(
    app: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(warning_use_cases, "store_warning", broken)
    status, body = await app.cap(cap_alert())
    assert status == 500
    assert body["error"] == "internal"
    assert "fire" not in body["detail"]
    assert "Traceback" not in body["detail"]
    # The daemon still answers.
    status, _ = await app.call("GET", "/healthz", None)
    assert status == 200


# --- manual warnings and approval --------------------------------------------------------------


async def test_a_manual_red_warning_waits_for_a_second_officer(app: Api) -> None:
    status, body = await app.call("POST", f"{API}/warnings", CHIEF_TOKEN, manual("red"))
    assert status == 201, body
    assert body["status"] == "pending_approval"
    warning_id = body["warning_id"]
    row = await app.pool.fetchrow(
        "SELECT source, sender, author, state, plan_state FROM warnings WHERE id = $1", warning_id
    )
    assert row is not None
    assert tuple(row) == ("officer", "officer:li", "li", "pending_approval", "none")

    # The author cannot approve their own warning, even holding the approver role.
    read = {"texts_sha256": (await preview(app, warning_id))["texts_sha256"]}
    status, body = await app.call("POST", f"{API}/warnings/{warning_id}/approve", CHIEF_TOKEN, read)
    assert status == 403
    assert body["error"] == "self_approval"
    assert "second officer" in body["detail"]

    # An officer without the approver role cannot approve at all.
    status, body = await app.call(
        "POST", f"{API}/warnings/{warning_id}/approve", OFFICER_TOKEN, read
    )
    assert status == 403
    assert body["error"] == "forbidden"
    assert await app.pool.fetchval("SELECT state FROM warnings") == "pending_approval"

    status, body = await app.call(
        "POST", f"{API}/warnings/{warning_id}/approve", APPROVER_TOKEN, read
    )
    assert status == 200, body
    assert body == {
        "warning_id": warning_id,
        "status": "active",
        "created": False,
        "unknown_codes": [],
        "simulated": False,
    }
    row = await app.pool.fetchrow(
        "SELECT state, plan_state, approver, approved_at FROM warnings WHERE id = $1", warning_id
    )
    assert row is not None
    assert tuple(row) == ("active", "pending", "wang", NOW)
    audit = await app.pool.fetch("SELECT actor, action, subject FROM audit_log ORDER BY id")
    assert [tuple(a) for a in audit] == [
        ("li", "warning_received", f"warning:{warning_id}"),
        ("wang", "warning_approved", f"warning:{warning_id}"),
    ]

    status, body = await app.call("POST", f"{API}/warnings/{warning_id}/approve", ADMIN_TOKEN, read)
    assert status == 409
    assert body["error"] == "not_pending"
    assert await app.count("audit_log") == 2


async def test_a_manual_yellow_warning_is_published_at_once(app: Api) -> None:
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("yellow"))
    assert status == 201
    assert body["status"] == "active"
    row = await app.pool.fetchrow("SELECT state, plan_state, author, event FROM warnings")
    assert row is not None
    assert tuple(row) == ("active", "pending", "zhang", "暴雨黄色预警")


async def test_an_approver_only_user_cannot_issue(app: Api) -> None:
    status, body = await app.call("POST", f"{API}/warnings", APPROVER_TOKEN, manual("blue"))
    assert status == 403
    assert body["error"] == "forbidden"
    assert await app.count("warnings") == 0


async def test_approving_what_does_not_exist_is_404(app: Api) -> None:
    status, body = await app.call(
        "POST", f"{API}/warnings/999/approve", APPROVER_TOKEN, {"texts_sha256": "0" * 64}
    )
    assert status == 404
    assert body == {"error": "not_found", "detail": "warning 999 does not exist"}


async def test_an_invalid_manual_warning_names_the_field(app: Api) -> None:
    bad = manual(area={"codes": ["370811", "3708"]})
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, bad)
    assert status == 422
    assert body["error"] == "invalid_warning"
    assert body["detail"] == "area.codes[1]: '3708' is not a 6-, 9- or 12-digit division code"
    assert await app.count("warnings") == 0


async def test_a_manual_warning_that_has_already_expired_is_refused(app: Api) -> None:
    bad = manual(expires="2026-07-29T01:00:00+08:00")
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, bad)
    assert status == 422
    assert body["detail"].startswith("expires:")
    assert await app.count("warnings") == 0


async def test_a_manual_warning_must_be_json(app: Api) -> None:
    headers = {"Authorization": f"Bearer {OFFICER_TOKEN}"}
    response = await app.client.post(
        f"{API}/warnings",
        data="hazard=rainstorm",
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert response.status == 415
    response = await app.client.post(
        f"{API}/warnings", data="{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["error"] == "malformed_json"
    assert await app.count("warnings") == 0


# --- reading: preview, detail, progress, deliveries --------------------------------------------


async def test_preview_of_a_red_warning_counts_what_will_be_sent(app: Api) -> None:
    bad_code = manual(area={"codes": ["370811", "370899"]})
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, bad_code)
    assert status == 201
    assert body["unknown_codes"] == ["370899000000"]
    warning_id = body["warning_id"]

    shown = await preview(app, warning_id)
    # Rainstorm calls on flood responders: the county head (all), the town head (flood) and both
    # village heads; not the geological specialist, not 泗水县.
    assert shown["recipients"] == {
        "responder": 4,
        "broadcast": 1,  # village 2 is a blind spot
        "facility": 1,
        # the helper's door-knocking task and the blind-spot village's gong task
        "field_task": 2,
        "household": 3,
    }
    assert shown["total_recipients"] == 11
    # 02:00 is inside the night window: red responders and helpers are called before the SMS.
    assert shown["channels"] == {
        "responder": ["voice", "sms"],
        "broadcast": ["broadcast"],
        "facility": ["sms", "voice"],
        "field_task": ["sms", "voice"],
        "household": ["sms"],
    }
    assert shown["deliveries"] == {
        "responder": 8,
        "broadcast": 1,
        "facility": 2,
        "field_task": 4,
        "household": 4,  # 张大爷's household has two phones
    }
    assert shown["total_deliveries"] == 19
    assert shown["not_reached"] == {}
    assert shown["not_reached_reasons"] == {}
    assert shown["villages"] == 2
    assert shown["divisions"] == [
        {"code": COUNTY, "name": "任城区", "level": "county", "villages": 2, "speakers_offline": 0},
        {"code": TOWN, "name": "许庄街道", "level": "town", "villages": 2, "speakers_offline": 0},
    ]
    assert shown["unknown_codes"] == ["370899000000"]
    assert (shown["state"], shown["level"], shown["hazard"]) == (
        "pending_approval",
        "red",
        "rainstorm",
    )
    assert shown["reaches_people"] is True
    assert shown["simulated"] is False
    assert (shown["night"], shown["night_window"]) == (True, "22:00–06:00")


async def test_preview_by_day_is_not_night_and_keeps_the_sms_first(app: Api) -> None:
    clock = app.services.clock
    assert isinstance(clock, ManualClock)
    clock.advance(8 * 3600)  # 10:00
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual())
    assert status == 201, body
    shown = await preview(app, body["warning_id"])
    assert shown["night"] is False
    assert shown["channels"]["responder"] == ["sms", "voice"]


async def test_preview_of_a_blue_warning_reaches_responders_by_sms_only(app: Api) -> None:
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("blue"))
    assert status == 201, body

    shown = await preview(app, body["warning_id"])
    assert shown["level"] == "blue"
    # 02:00 is night: helpers knock on doors at every level, by a task sent by SMS.
    assert shown["recipients"] == {"responder": 4, "field_task": 1}
    assert shown["total_recipients"] == 5
    assert shown["channels"] == {"responder": ["sms"], "field_task": ["sms"]}
    assert shown["deliveries"] == {"responder": 4, "field_task": 1}
    assert shown["total_deliveries"] == 5
    # The area holds them; the default policy does not send to them at blue.
    assert shown["not_reached"] == {"broadcast": 1, "facility": 1, "household": 3}
    assert shown["not_reached_reasons"]["household"] == (
        "the policy does not send to household at blue level"
    )
    assert set(shown["not_reached_reasons"]) == set(shown["not_reached"])


async def test_preview_of_a_test_message_reaches_nobody_and_says_so(app: Api) -> None:
    status, created = await app.cap(cap_alert(status="Test"))
    assert status == 201, created

    shown = await preview(app, created["warning_id"])
    assert shown["reaches_people"] is False
    assert shown["recipients"] == {}
    assert (shown["total_recipients"], shown["total_deliveries"]) == (0, 0)
    assert shown["not_reached"] == {
        "responder": 4,
        "broadcast": 1,
        "facility": 1,
        "helper": 1,
        "household": 3,
    }
    assert set(shown["not_reached_reasons"].values()) == {
        "status Test: recorded, never sent to a person"
    }


async def test_preview_uses_only_the_configured_channel_kinds(simulated_app: Api) -> None:
    await seed_roster(simulated_app.pool)  # the only channel is one SMS simulator
    status, body = await simulated_app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("red"))
    assert status == 201, body

    shown = await preview(simulated_app, body["warning_id"])
    assert shown["channels"] == {
        "responder": ["sms"],
        "facility": ["sms"],
        "field_task": ["sms"],
        "household": ["sms"],
    }
    assert shown["deliveries"] == {"responder": 4, "facility": 1, "field_task": 2, "household": 4}
    assert shown["total_deliveries"] == 11
    assert shown["not_reached"] == {"broadcast": 1}
    assert shown["not_reached_reasons"] == {
        "broadcast": "the policy sends broadcast, and no channel of that kind is configured"
    }


@pytest.mark.parametrize("level", ["red", "blue"])
async def test_preview_matches_what_planning_writes(app: Api, policy: Policy, level: str) -> None:
    colour, severity = {"red": ("红色", "Extreme"), "blue": ("蓝色", "Minor")}[level]
    _, created = await app.cap(cap_alert(severity=severity, colour=colour))
    warning_id = created["warning_id"]
    shown = await preview(app, warning_id)
    assert (shown["level"], shown["state"]) == (level, "active")

    limits = {"sms": 335, "voice": 500, "broadcast": 500}
    await Planner(app.pool, lambda: policy, ManualClock(NOW), limits).plan_pending()
    rows = await app.pool.fetch(
        "SELECT audience, count(*) AS n, count(DISTINCT recipient_id) AS people,"
        "       array_agg(DISTINCT channel_kind) AS kinds"
        "  FROM deliveries WHERE warning_id = $1 GROUP BY audience",
        warning_id,
    )
    written = {r["audience"]: r["n"] for r in rows}
    assert written == shown["deliveries"]
    assert sum(written.values()) == shown["total_deliveries"]
    assert {r["audience"]: sorted(r["kinds"]) for r in rows} == {
        audience: sorted(kinds) for audience, kinds in shown["channels"].items()
    }
    people = {r["audience"]: r["people"] for r in rows if r["audience"] != "broadcast"}
    assert people == {a: n for a, n in shown["recipients"].items() if a != "broadcast"}


async def test_a_warning_with_its_progress(app: Api) -> None:
    _, created = await app.cap(cap_alert())
    warning_id = created["warning_id"]
    await insert_deliveries(app.pool, warning_id)

    status, body = await app.call("GET", f"{API}/warnings/{warning_id}", OFFICER_TOKEN)
    assert status == 200, body
    assert body["state"] == "active"
    assert body["source"] == "cma"
    assert body["warning"]["level"] == "red"
    assert body["warning"]["area"]["codes"] == [COUNTY]
    sent = datetime.fromisoformat(body["warning"]["sent"])
    assert sent == datetime(2026, 7, 29, 1, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    progress = body["progress"]
    assert progress["total"] == 3
    assert progress["by_state"] == {"sent": 1, "delivered": 1, "queued": 1}
    assert progress["by_audience"] == {
        "responder": {"sent": 1},
        "household": {"delivered": 1},
        "broadcast": {"queued": 1},
    }
    assert datetime.fromisoformat(progress["first_sent_at"]) == NOW
    assert datetime.fromisoformat(progress["last_sent_at"]) == NOW.replace(minute=1)

    status, missing = await app.call("GET", f"{API}/warnings/12345", OFFICER_TOKEN)
    assert status == 404
    assert missing["error"] == "not_found"


async def test_progress_rolls_up_per_division(app: Api) -> None:
    _, created = await app.cap(cap_alert())
    warning_id = created["warning_id"]
    await insert_deliveries(app.pool, warning_id)
    path = f"{API}/warnings/{warning_id}/progress"

    status, county = await app.call("GET", f"{path}?level=county", OFFICER_TOKEN)
    assert status == 200
    assert county["divisions"] == [
        {
            "code": COUNTY,
            "name": "任城区",
            "total": 3,
            "queued": 1,
            "sending": 0,
            "sent": 1,
            "delivered": 1,
            "failed": 0,
            "cancelled": 0,
            # call-outs and field tasks: tests/test_api_progress.py
            "callouts": {
                "total": 0,
                "acknowledged_on_time": 0,
                "acknowledged_late": 0,
                "open": 0,
                "overdue": 0,
                "escalated": 0,
                "closed": 0,
            },
            "field_tasks": {
                "total": 0,
                "done": 0,
                "open": 0,
                "overdue": 0,
                "persons": 0,
                "reached": 0,
            },
            "speakers": 0,
            "speakers_offline": 0,
        }
    ]
    # The county head is above the village level: only village 1's two deliveries remain.
    _, village = await app.call("GET", f"{path}?level=village", OFFICER_TOKEN)
    assert [(d["code"], d["name"], d["total"]) for d in village["divisions"]] == [
        (VILLAGE_1, "张庄村", 2)
    ]
    _, town = await app.call("GET", path, OFFICER_TOKEN)
    assert town["level"] == "town"
    assert [(d["code"], d["total"]) for d in town["divisions"]] == [(TOWN, 2)]

    status, bad = await app.call("GET", f"{path}?level=province", OFFICER_TOKEN)
    assert status == 400
    assert bad["error"] == "invalid_parameter"
    assert bad["detail"].startswith("level:")


async def test_deliveries_page_by_page_and_filtered(app: Api) -> None:
    _, created = await app.cap(cap_alert())
    warning_id = created["warning_id"]
    ids = await insert_deliveries(app.pool, warning_id)
    path = f"{API}/warnings/{warning_id}/deliveries"

    _, first = await app.call("GET", f"{path}?limit=2", OFFICER_TOKEN)
    assert [d["id"] for d in first["deliveries"]] == ids[:2]
    assert first["next_after"] == ids[1]
    responder = first["deliveries"][0]
    assert responder["name"] == "任区长"
    assert responder["recipient_kind"] == "responder"
    assert responder["address"] == "+8613900000001"  # in full: officers call people back

    _, second = await app.call("GET", f"{path}?limit=2&after={ids[1]}", OFFICER_TOKEN)
    assert [d["id"] for d in second["deliveries"]] == ids[2:]
    assert second["next_after"] is None
    assert second["deliveries"][0]["recipient_kind"] == "loudspeaker"
    assert second["deliveries"][0]["name"] == "张庄村"

    _, households = await app.call("GET", f"{path}?audience=household", OFFICER_TOKEN)
    assert [d["name"] for d in households["deliveries"]] == ["张大爷"]
    _, queued = await app.call("GET", f"{path}?state=queued", OFFICER_TOKEN)
    assert [d["id"] for d in queued["deliveries"]] == [ids[2]]

    status, bad = await app.call("GET", f"{path}?limit=0", OFFICER_TOKEN)
    assert status == 400
    assert bad["detail"].startswith("limit: '0' is not valid: ")


async def test_deliveries_as_csv(app: Api) -> None:
    _, created = await app.cap(cap_alert())
    warning_id = created["warning_id"]
    ids = await insert_deliveries(app.pool, warning_id)
    response = await app.client.get(
        f"{API}/warnings/{warning_id}/deliveries?format=csv",
        headers={"Authorization": f"Bearer {OFFICER_TOKEN}"},
    )
    assert response.status == 200
    assert response.content_type == "text/csv"
    text = (await response.read()).decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert tuple(rows[0]) == DELIVERY_CSV_COLUMNS
    assert [
        (r["delivery_id"], r["recipient_kind"], r["name"], r["address"], r["state"]) for r in rows
    ] == [
        # Phone numbers are marked as text: a spreadsheet would read +86… as a number.
        (str(ids[0]), "responder", "任区长", "'+8613900000001", "sent"),
        (str(ids[1]), "household", "张大爷", "'+8613800000001", "delivered"),
        (str(ids[2]), "loudspeaker", "张庄村", VILLAGE_1, "queued"),
    ]
    assert rows[0]["division_code"] == COUNTY
    assert rows[1]["delivered_at"] == "2026-07-29T02:02:00+08:00"  # the city's time
    assert rows[2]["sent_at"] == ""


async def test_warnings_are_listed_newest_first(app: Api) -> None:
    _, red = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("red"))
    _, blue = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("blue"))
    _, page = await app.call("GET", f"{API}/warnings", APPROVER_TOKEN)
    assert [w["id"] for w in page["warnings"]] == [blue["warning_id"], red["warning_id"]]
    _, pending = await app.call("GET", f"{API}/warnings?state=pending_approval", OFFICER_TOKEN)
    assert [w["id"] for w in pending["warnings"]] == [red["warning_id"]]
    _, older = await app.call("GET", f"{API}/warnings?limit=1", OFFICER_TOKEN)
    assert older["next_before"] == blue["warning_id"]


async def test_rejected_messages_are_listed_for_the_officer(app: Api) -> None:
    await app.cap(cap_alert(swap_status_and_msg_type=True))
    await app.cap(b"<not-xml")
    status, body = await app.call("GET", f"{API}/rejected", OFFICER_TOKEN)
    assert status == 200
    assert [r["error"] for r in body["rejected"]] == ["malformed_xml", "schema_invalid"]
    assert body["rejected"][1]["feed"] == "cma"
    assert body["rejected"][1]["truncated"] is False
    rejected_id = body["rejected"][0]["id"]
    status, one = await app.call("GET", f"{API}/rejected/{rejected_id}", OFFICER_TOKEN)
    assert status == 200
    assert one["body"] == "<not-xml"


# --- probes, metrics, the document -------------------------------------------------------------


async def test_probes_and_metrics_need_no_token(app: Api) -> None:
    status, health = await app.call("GET", "/healthz", None)
    assert (status, health) == (200, {"status": "ok"})
    status, ready = await app.call("GET", "/readyz", None)
    assert status == 200
    assert ready == {"status": "ready", "database": "ok", "mode": "live", "channels": []}

    _, created = await app.cap(cap_alert())
    await insert_deliveries(app.pool, created["warning_id"])
    response = await app.client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert 'warnd_queue_depth{channel_kind="broadcast"} 1.0' in text
    assert 'warnd_ingest_total{reason="active",result="accepted",source="cma"} 1.0' in text


async def test_simulated_mode_is_said_everywhere(simulated_app: Api) -> None:
    api = simulated_app
    _, ready = await api.call("GET", "/readyz", None)
    assert ready["mode"] == "simulated"
    # No dispatcher in this app: nobody competes for the channel here (held and holder null).
    assert ready["channels"] == [
        {
            "name": "sim",
            "kind": "sms",
            "simulated": True,
            "ready": None,
            "links": None,
            "held": None,
            "holder": None,
        }
    ]
    status, created = await api.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("blue"))
    assert status == 201
    assert created["simulated"] is True
    _, detail = await api.call("GET", f"{API}/warnings/{created['warning_id']}", OFFICER_TOKEN)
    assert detail["simulated"] is True
    _, listed = await api.call("GET", f"{API}/warnings", OFFICER_TOKEN)
    assert listed["simulated"] is True


async def test_unknown_paths_answer_in_the_error_shape(app: Api) -> None:
    status, body = await app.call("GET", f"{API}/nothing-here", OFFICER_TOKEN)
    assert status == 404
    assert body["error"] == "not_found"
    status, body = await app.call("DELETE", f"{API}/warnings", OFFICER_TOKEN)
    assert status == 405
    assert body["error"] == "method_not_allowed"


def _routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


async def test_every_api_route_needs_a_token_except_the_document(app: Api) -> None:
    assert app.client.app is not None
    for method, path in sorted(_routes(app.client.app)):
        if not path.startswith(API) or path == f"{API}/openapi.json":
            continue
        concrete = re.sub(r"\{\w+\}", "1", path)
        response = await app.client.request(method, concrete)
        assert response.status == 401, (method, path)
        assert (await response.json())["error"] == "unauthorized"


async def test_the_openapi_document_matches_the_router(app: Api) -> None:
    response = await app.client.get(f"{API}/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert app.client.app is not None
    routed = _routes(app.client.app)
    api_routes = {r for r in routed if r[1].startswith(API)}
    assert api_routes <= documented, api_routes - documented
    assert documented <= routed, documented - routed

    schemas = document["components"]["schemas"]
    manual_schema = schemas["ManualWarning"]
    assert set(manual_schema["required"]) == {"hazard", "level", "area", "headline", "area_desc"}
    assert manual_schema["additionalProperties"] is False
    assert set(schemas["ErrorBody"]["required"]) == {"error", "detail"}
    assert set(document["components"]["securitySchemes"]) == {
        "feedToken",
        "gatewayToken",
        "userToken",
    }
    for route in ROUTES:
        method, path, roles = route.method, route.path, route.roles
        operation = document["paths"][path][method.lower()]
        assert operation["x-roles"] == list(roles or [])
        assert bool(operation["security"]) == (roles is not None)
        for code, answer in operation["responses"].items():
            if code.startswith("4"):
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}
        for ref in re.findall(r'"#/components/schemas/(\w+)"', str(operation).replace("'", '"')):
            assert ref in schemas, ref
