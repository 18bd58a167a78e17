"""Where work happens, its log lines name what it works on: the warning a plan step writes and
the channel a worker sends on — also the lines of code that does not know them (a channel)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import structlog
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from channels.base import (
    Channel,
    ChannelConfig,
    ChannelKind,
    Limits,
    OutboundMessage,
    Outcome,
    SendResult,
)
from tests import seed
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.core.model import Area, NormalisedWarning
from warnd.core.vocabulary import Level
from warnd.db.notify import Wakeup
from warnd.ingest.store import store_warning
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.planner import Planner
from warnd.policy.loader import load_policy
from warnd.runtime.settings import REPO_CONFIG_DIR

DAYTIME = datetime(2026, 7, 15, 3, 0, tzinfo=UTC)  # 11:00 in Jining
channel_log = structlog.get_logger("tests.channel")


class Telling(Channel):
    """Accepts everything and logs one line per batch, as a channel plugin would."""

    config_model = ChannelConfig
    kind = ChannelKind.SMS

    def __init__(self, name: str) -> None:
        super().__init__(name, ChannelConfig(type="telling"))
        self.sent = asyncio.Event()

    @property
    def limits(self) -> Limits:
        return Limits(rate_per_s=10_000, window=100, max_text=1000)

    async def send(self, batch: list[OutboundMessage]) -> list[SendResult]:  # type: ignore[override]
        channel_log.info("gateway_accepted", messages=len(batch))
        self.sent.set()
        return [SendResult(m.key, Outcome.ACCEPTED, external_id=f"t-{m.key}") for m in batch]


async def test_plan_steps_and_send_batches_name_their_warning_and_channel(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        await seed.seed(conn)
    warning = NormalisedWarning(
        sender="log-context@test",
        identifier="log-context-1",
        sent=DAYTIME,
        status="Actual",
        msg_type="Alert",
        hazard="rainstorm",
        level=Level.RED,
        area=Area(codes=(seed.RENCHENG,)),
        headline="任城区暴雨红色预警",
        area_desc="任城区",
    )
    stored = await store_warning(pool, warning, source="test", now=DAYTIME)
    policy = load_policy(REPO_CONFIG_DIR / "policy.toml")
    clock = ManualClock(DAYTIME)
    # No broadcast channel: the policy's decision logs that loudspeakers cannot be reached, a
    # line that knows nothing of the warning it is about but for the context.
    planner = Planner(pool, lambda: policy, clock, {"sms": 500})
    with capture_logs(processors=[merge_contextvars]) as planned:
        await planner.plan_pending()
    # Every line written while a step ran names the warning, not only those that pass it.
    during = [e for e in planned if e["event"] != "warning_planned"]
    assert "audience_without_channel" in {e["event"] for e in during}
    assert {e.get("warning_id") for e in during} == {stored.warning_id}

    channel = Telling("sms-1")
    dispatcher = Dispatcher(pool, {"sms-1": channel}, clock, Metrics(), Wakeup())
    with capture_logs(processors=[merge_contextvars]) as sent:
        # The worker runs as its own task, as in the daemon, so what it binds stays with it.
        worker = asyncio.create_task(dispatcher.run_worker(channel))
        try:
            await asyncio.wait_for(channel.sent.wait(), 10)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    accepted = [e for e in sent if e["event"] == "gateway_accepted"]
    assert accepted and all(e.get("channel") == "sms-1" for e in accepted)
    assert "channel" not in structlog.contextvars.get_contextvars()  # the test's own task
