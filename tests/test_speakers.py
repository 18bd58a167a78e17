"""The loudspeakers' states for officers and the watch on silent counties, on a real database
through the real API: the list with its filters and counts, and an alarm raised once when too
many of a county's speakers are offline, and once when they are back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from channels.base import DeviceStatus
from tests.fixtures import (
    COUNTY,
    DAYTIME,
    FEED_TOKEN,
    OFFICER_TOKEN,
    OTHER_VILLAGE,
    TASKS,
    TOWN,
    VILLAGE_1,
    VILLAGE_2,
    Api,
    cap_alert,
    insert_tasks,
    preview,
)
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.core.config import SpeakersConfig
from warnd.pipeline.inbound import Inbound
from warnd.pipeline.speaker_watch import SpeakerWatch
from warnd.web.routing import API

CHANNEL = "speakers"


async def report(app: Api, *states: DeviceStatus) -> None:
    await Inbound(app.pool, ManualClock(DAYTIME), Metrics()).handle_events(CHANNEL, states)


async def speakers(app: Api, query: str = "", token: str = OFFICER_TOKEN) -> tuple[int, Any]:
    return await app.call("GET", f"{API}/speakers{query}", token)


async def test_officers_list_speakers_by_state_and_division(app: Api) -> None:
    await report(
        app,
        DeviceStatus(VILLAGE_1, False, detail="功放离线", at=DAYTIME),
        DeviceStatus(VILLAGE_2, True, heartbeat=True, battery=90, at=DAYTIME),
        DeviceStatus(OTHER_VILLAGE, True, at=DAYTIME),
        DeviceStatus("unknown-speaker", True, at=DAYTIME),
    )
    status, body = await speakers(app)
    assert status == 200, body
    assert (body["online"], body["offline"]) == (3, 1)
    assert [s["id"] for s in body["speakers"]] == sorted(
        [VILLAGE_1, VILLAGE_2, OTHER_VILLAGE, "unknown-speaker"]
    )

    status, body = await speakers(app, f"?state=offline&division={COUNTY[:6]}")
    assert status == 200, body
    assert (body["online"], body["offline"]) == (1, 1)  # the county's, whatever the state asked
    [dead] = body["speakers"]
    assert (dead["id"], dead["village"], dead["town"], dead["county"]) == (
        VILLAGE_1,
        "张庄村",
        "许庄街道",
        "任城区",
    )
    assert (dead["online"], dead["detail"], body["next_after"]) == (False, "功放离线", None)

    # Pages by id.
    status, first = await speakers(app, "?limit=2")
    last = first["speakers"][-1]
    assert status == 200 and first["next_after"] == f"{last['id']}/{CHANNEL}"
    status, rest = await speakers(app, f"?limit=2&after={first['next_after']}")
    assert status == 200
    ids = [s["id"] for s in first["speakers"] + rest["speakers"]]
    assert len(ids) == len(set(ids)) == 4


async def test_the_speaker_list_refuses_bad_queries_and_other_roles(app: Api) -> None:
    status, body = await speakers(app, "?division=37")
    assert status == 400 and "division" in body["detail"], body
    status, body = await speakers(app, "?state=broken")
    assert status == 400 and "state" in body["detail"], body
    assert (await speakers(app, token=FEED_TOKEN))[0] == 401  # a feed is no user
    response = await app.client.get(f"{API}/speakers")
    assert response.status == 401


async def test_a_county_with_too_many_speakers_offline_raises_an_alarm_once(app: Api) -> None:
    metrics = Metrics()
    watch = SpeakerWatch(
        app.pool, SpeakersConfig(offline_alarm_share=0.4, offline_alarm_min=1), metrics
    )
    await report(
        app, DeviceStatus(VILLAGE_1, True, at=DAYTIME), DeviceStatus(VILLAGE_2, True, at=DAYTIME)
    )
    await report(app, DeviceStatus(OTHER_VILLAGE, False, at=DAYTIME))  # 1 of 1: alarm
    assert await watch.check(DAYTIME) == {"370831000000"}
    # 任城区: one of two offline, more than 40 %: an alarm too.
    later = DAYTIME + timedelta(minutes=1)
    await report(app, DeviceStatus(VILLAGE_1, False, detail="Last Will", at=later))
    assert await watch.check(later) == {"370831000000", COUNTY}
    assert await watch.check(later + timedelta(seconds=5)) == {"370831000000", COUNTY}
    back = later + timedelta(minutes=1)
    await report(app, DeviceStatus(VILLAGE_1, True, heartbeat=True, at=back))
    assert await watch.check(back) == {"370831000000"}

    audit = await app.pool.fetch(
        "SELECT action, subject, detail FROM audit_log WHERE subject LIKE 'county:%' ORDER BY id"
    )
    assert [(a["action"], a["subject"]) for a in audit] == [
        ("speakers_offline", "county:370831000000"),
        ("speakers_offline", f"county:{COUNTY}"),
        ("speakers_back_online", f"county:{COUNTY}"),
    ]
    assert audit[1]["detail"] == {"county": "任城区", "offline": 1, "total": 2}
    gauge = metrics.registry.get_sample_value("warnd_speakers_offline_alarm", {"county": COUNTY})
    assert gauge == 0.0
    offline = metrics.registry.get_sample_value(
        "warnd_speakers", {"county": "370831000000", "state": "offline"}
    )
    assert offline == 1.0


def test_one_dead_speaker_of_a_few_is_not_an_alarm_by_default() -> None:
    from warnd.pipeline.speaker_watch import CountySpeakers, alarmed

    rule = SpeakersConfig()
    assert not alarmed(CountySpeakers("c", "县", total=2, offline=1), rule)
    assert not alarmed(CountySpeakers("c", "县", total=100, offline=20), rule)  # 20 %: not more
    assert alarmed(CountySpeakers("c", "县", total=100, offline=21), rule)
    assert alarmed(CountySpeakers("c", "县", total=10, offline=3), rule)


async def test_the_preview_and_the_progress_show_offline_speakers_per_division(app: Api) -> None:
    _, created = await app.cap(cap_alert())  # 任城区
    warning_id = int(created["warning_id"])
    await report(
        app,
        DeviceStatus(VILLAGE_1, False, at=DAYTIME),
        DeviceStatus(VILLAGE_2, True, at=DAYTIME),
        DeviceStatus(OTHER_VILLAGE, False, at=DAYTIME),  # not covered: counted nowhere here
    )
    shown = await preview(app, warning_id)
    covered = {d["code"]: (d["villages"], d["speakers_offline"]) for d in shown["divisions"]}
    assert covered == {COUNTY: (2, 1), TOWN: (2, 1)}

    for level, code in (("county", COUNTY), ("town", TOWN), ("village", VILLAGE_1)):
        status, body = await app.call(
            "GET", f"{API}/warnings/{warning_id}/progress?level={level}", OFFICER_TOKEN
        )
        assert status == 200, body
        rows = {d["code"]: d for d in body["divisions"]}
        expected = (1, 1) if level == "village" else (2, 1)
        assert (rows[code]["speakers"], rows[code]["speakers_offline"]) == expected, level


async def test_officers_list_a_warnings_field_tasks_and_why_each_gong(app: Api) -> None:
    _, created = await app.cap(cap_alert())
    warning_id = int(created["warning_id"])
    ids = await insert_tasks(app.pool, warning_id, TASKS)
    path = f"{API}/warnings/{warning_id}/tasks"
    status, body = await app.call("GET", path, OFFICER_TOKEN)
    assert status == 200, body
    assert [t["id"] for t in body["tasks"]] == ids and body["next_after"] is None
    gong = body["tasks"][1]
    assert (gong["kind"], gong["village"], gong["county"]) == ("gong", "张庄村", "任城区")
    assert gong["why"] == "loudspeaker_failed"  # 张庄村 is no blind spot: its speaker failed
    assert body["tasks"][0]["why"] is None  # door-knocking: no gong reason
    status, body = await app.call("GET", f"{path}?kind=door_knock&state=escalated", OFFICER_TOKEN)
    assert [t["village_code"] for t in body["tasks"]] == [VILLAGE_2]
    status, first = await app.call("GET", f"{path}?limit=2", OFFICER_TOKEN)
    assert first["next_after"] == ids[1]
    status, body = await app.call("GET", f"{path}?kind=broom", OFFICER_TOKEN)
    assert status == 400 and "kind" in body["detail"]
    status, body = await app.call("GET", f"{API}/warnings/999999/tasks", OFFICER_TOKEN)
    assert status == 404
