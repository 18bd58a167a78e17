"""The seismic service's early warnings over MQTT (``[eew]``), through a real Mosquitto: each
message is taken as ``POST /api/v1/eew`` takes a body — recorded once, handed to the fast path,
refusals kept for the duty officer — and the subscription comes back by itself when the broker
restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.brokers import Mosquitto, own_mosquitto, unique_prefix
from tests.fixtures import NOW, Api
from tests.waiting import until
from warnd.core.config import AppConfig, EewSubscription
from warnd.core.eew import EewAssessment, EewReport
from warnd.pipeline.eew_subscription import EewFeed

ORIGIN = NOW.replace(microsecond=0)


def message(event_id: str = "CEA20261202193000.0001", **changes: Any) -> bytes:
    body: dict[str, Any] = {
        "event_id": event_id,
        "report_no": 1,
        "origin_time": ORIGIN.isoformat(),
        "lat": 35.40,
        "lon": 116.60,
        "depth_km": 10,
        "magnitude": 5.5,
        "place": "济宁市任城区",
        "final": False,
        "cancel": False,
        "status": "Actual",
        **changes,
    }
    return json.dumps(body, ensure_ascii=False).encode()


class Running:
    def __init__(self, app: Api, broker: Mosquitto, topic: str) -> None:
        self.app = app
        self.broker = broker
        self.topic = topic
        self.handed: list[EewReport] = []
        self.feed = EewFeed(
            app.services,
            EewSubscription(broker=f"mqtt://127.0.0.1:{broker.port}", topic=topic),
        )

    async def hook(self, report: EewReport) -> EewAssessment | None:
        self.handed.append(report)
        return None

    def up(self) -> bool:
        registry = self.app.services.metrics.registry
        url = f"mqtt://127.0.0.1:{self.broker.port}"
        return registry.get_sample_value("warnd_eew_feed_up", {"broker": url}) == 1

    async def publish(self, payload: bytes) -> None:
        async with aiomqtt.Client("127.0.0.1", self.broker.port) as client:
            await client.publish(self.topic, payload, qos=1)


@pytest.fixture
async def running(app: Api, tmp_path: Path) -> AsyncIterator[Running]:
    async with own_mosquitto(tmp_path) as broker:
        setup = Running(app, broker, f"{unique_prefix()}/eew")
        app.services.eew = setup.hook
        task = asyncio.create_task(setup.feed.run())
        try:
            await until(setup.up, 10, what="the subscription to the broker")
            yield setup
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_report_published_to_the_broker_is_recorded_once_and_handed(
    running: Running,
) -> None:
    app = running.app
    await running.publish(message())
    await until(lambda: running.feed.taken == 1, what="the report taken")
    assert [(r.event_id, r.magnitude) for r in running.handed] == [("CEA20261202193000.0001", 5.5)]
    row = await app.pool.fetchrow("SELECT feed, state, summary FROM eew_reports")
    assert row is not None and (row["feed"], row["state"]) == ("eew-mqtt", "handed")
    assert row["summary"] is not None  # the feed's answer, though nobody reads it over MQTT
    # The same report again (a republish, or a second process subscribed): recorded once.
    await running.publish(message())
    await until(lambda: running.feed.taken == 2, what="the copy taken")
    assert len(running.handed) == 1 and await app.count("eew_reports") == 1


async def test_a_refused_message_is_kept_for_the_duty_officer_and_the_next_one_goes_on(
    running: Running,
) -> None:
    app = running.app
    await running.publish(message(magnitude="5.5"))  # a string for a number
    await running.publish(b"\xff not json")
    await running.publish(message("CEA20261202193000.0002"))
    await until(lambda: running.feed.taken == 3, what="three messages taken")
    rows = await app.pool.fetch("SELECT feed, error, detail FROM rejected_messages ORDER BY id")
    assert [(r["feed"], r["error"]) for r in rows] == [
        ("eew-mqtt", "invalid_eew"),
        ("eew-mqtt", "malformed_json"),
    ]
    assert "magnitude" in rows[0]["detail"]
    assert [r.event_id for r in running.handed] == ["CEA20261202193000.0002"]


async def test_the_subscription_comes_back_after_the_broker_restarts(running: Running) -> None:
    await running.broker.restart()
    await until(lambda: running.feed.connects >= 2 and running.up(), 20, what="a reconnect")
    await running.publish(message("CEA20261202193000.0003"))
    await until(lambda: len(running.handed) == 1, what="the report after the restart")


async def test_a_failed_hand_off_is_tried_again_at_once(app: Api) -> None:
    calls: list[int] = []

    async def flaky(report: EewReport) -> EewAssessment | None:
        calls.append(report.report_no)
        if len(calls) == 1:
            raise RuntimeError("the fast path stumbled")
        return None

    app.services.eew = flaky
    feed = EewFeed(app.services, EewSubscription(broker="mqtt://127.0.0.1", topic="eew"))
    await feed.take(message())
    assert calls == [1, 1]
    assert await app.pool.fetchval("SELECT state FROM eew_reports") == "handed"


def test_the_eew_table_is_checked_and_its_errors_name_the_key() -> None:
    def problems(table: dict[str, object]) -> str:
        with pytest.raises(ValueError) as caught:
            AppConfig.model_validate({"eew": table})
        return str(caught.value)

    assert "eew.broker" in problems({"broker": "http://cea.example", "topic": "eew"})
    assert "eew.topic" in problems({"broker": "mqtt://cea.example"})
    assert "eew.topik" in problems({"broker": "mqtt://cea.example", "topic": "e", "topik": "e"})
    found = AppConfig.model_validate({"eew": {"broker": "mqtts://cea.example", "topic": "e"}}).eew
    assert found is not None and (found.host, found.port, found.tls) == ("cea.example", 8883, True)
