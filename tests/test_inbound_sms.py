"""The SMS webhook through the real API application and a real PostgreSQL: replies acknowledge
call-outs, receipts mark deliveries, and nothing is applied from a request that is refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from channels.base import DeliveryReceipt, Outcome, ReceiptStatus
from channels.http_sms.channel import HttpSmsChannel, HttpSmsConfig
from channels.http_sms.webhook import MAX_EVENTS, InboundBodyError, parse_inbound
from tests.channel_contract import events_so_far
from tests.fixtures import DAYTIME, Gateway, plan, rainstorm
from tests.waiting import until
from warnd.app.metrics import Metrics
from warnd.app.services import Services
from warnd.core.clock import ManualClock
from warnd.core.config import AppConfig
from warnd.db.notify import Wakeup
from warnd.pipeline.answers import Answers
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.inbound import Inbound
from warnd.policy.loader import PolicyHolder
from warnd.policy.model import Policy
from warnd.runtime.settings import REPO_CONFIG_DIR
from warnd.web.app import build_app
from warnd.web.http import SERVICES
from warnd.web.routing import API

PATH = f"{API}/inbound/sms"
GW_TOKEN = "inbound-token-of-gw-0123456789"
OTHER_TOKEN = "inbound-token-of-other-987654"
OFFICER_TOKEN = "user-token-zhang-0123456789"
NOW = DAYTIME + timedelta(minutes=1)
RESPONDER = "+8613900000004"  # 张书记, village responder of 任城区: the red warning calls him

CONFIG = AppConfig.model_validate(
    {"users": {"zhang": {"token": OFFICER_TOKEN, "roles": ["officer", "admin"]}}}
)


@dataclass
class Webhook:
    client: TestClient[web.Request, web.Application]
    pool: asyncpg.Pool
    gw: HttpSmsChannel
    other: HttpSmsChannel
    dispatcher: Dispatcher
    inbound: Inbound
    warning_id: int

    async def post(
        self, body: object = None, *, token: str | None = GW_TOKEN, data: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if data is not None:
            headers["Content-Type"] = "application/json"
            response = await self.client.post(PATH, data=data, headers=headers)
        else:
            response = await self.client.post(PATH, json=body, headers=headers)
        return response.status, await response.json()

    async def callout_states(self) -> dict[str, tuple[str, str | None]]:
        rows = await self.pool.fetch(
            "SELECT phone, state, ack_via FROM callouts WHERE warning_id = $1", self.warning_id
        )
        return {r["phone"]: (r["state"], r["ack_via"]) for r in rows}

    async def snapshot(self) -> tuple[object, ...]:
        """Everything an inbound event could change."""
        callouts = await self.pool.fetch("SELECT * FROM callouts ORDER BY id")
        deliveries = await self.pool.fetch(
            "SELECT id, state, error, delivered_at FROM deliveries ORDER BY id"
        )
        inbound = await self.pool.fetchval("SELECT count(*) FROM inbound_events")
        return ([dict(r) for r in callouts], [dict(r) for r in deliveries], inbound)

    async def send_through_gateway(self) -> dict[str, str]:
        """Dispatch's own claim, send and record for the gw channel: address -> gateway id."""
        claimed = await self.dispatcher.claim(self.gw, 500)
        assert claimed
        results = await self.gw.send([c.message() for c in claimed])
        await self.dispatcher.record(self.gw.name, claimed, results)
        assert all(r.outcome is Outcome.ACCEPTED for r in results)
        by_key = {r.key: r.external_id or "" for r in results}
        return {c.address: by_key[c.id] for c in claimed if c.address.startswith("+86139")}

    @contextlib.asynccontextmanager
    async def inbound_running(self) -> AsyncIterator[None]:
        """Dispatch's inbound listeners for both channels, as the daemon runs them."""
        tasks = [
            asyncio.create_task(self.inbound.run(channel)) for channel in (self.gw, self.other)
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def http_sms(name: str, url: str, inbound_token: str) -> HttpSmsChannel:
    config = HttpSmsConfig.model_validate(
        {
            "type": "http_sms",
            "url": url,
            "token": "outbound-token-0123456789",
            "inbound_token": inbound_token,
            "rate_per_s": 10_000,
        }
    )
    return HttpSmsChannel(name, config)


@pytest.fixture
async def webhook(pool: asyncpg.Pool, policy: Policy, gateway: Gateway) -> AsyncIterator[Webhook]:
    warning_id = await plan(pool, policy, rainstorm())
    gw = http_sms("gw", gateway.url, GW_TOKEN)
    other = http_sms("other", gateway.url, OTHER_TOKEN)
    clock = ManualClock(NOW)
    metrics = Metrics()
    channels = {"gw": gw, "other": other}
    services = Services(
        pool=pool,
        config=CONFIG,
        policy=PolicyHolder(REPO_CONFIG_DIR / "policy.toml", policy),
        clock=clock,
        metrics=metrics,
        channels=channels,
        max_body_bytes=256 * 1024,
    )
    dispatcher = Dispatcher(pool, channels, clock, metrics, Wakeup())
    inbound = Inbound(pool, clock, metrics, answers=Answers(pool, clock))
    services.inbound = inbound.handle_events  # as the daemon wires it
    for channel in channels.values():
        await channel.start()
    try:
        async with TestClient(TestServer(build_app(services))) as client:
            yield Webhook(client, pool, gw, other, dispatcher, inbound, warning_id)
    finally:
        for channel in channels.values():
            await channel.stop()


# --- replies and receipts, end to end --------------------------------------------------------


async def test_a_reply_from_a_responder_acknowledges_their_callout(webhook: Webhook) -> None:
    before = await webhook.callout_states()
    assert before[RESPONDER] == ("pending", None)
    async with webhook.inbound_running():
        status, body = await webhook.post({"from": RESPONDER, "to": "12379", "text": "收到"})
        assert (status, body) == (202, {"accepted": 1, "channel": "gw"})

        async def recorded() -> bool:  # the reply is kept after it has acknowledged
            return bool(await webhook.pool.fetchval("SELECT count(*) FROM inbound_events"))

        await until(recorded, what="the reply to be kept")
    after = await webhook.callout_states()
    assert after[RESPONDER] == ("acknowledged", "sms")
    assert {phone: s for phone, s in after.items() if phone != RESPONDER} == {
        phone: s for phone, s in before.items() if phone != RESPONDER
    }
    reply = await webhook.pool.fetchrow("SELECT * FROM inbound_events")
    assert reply is not None
    assert (reply["channel"], reply["kind"], reply["sender"], reply["matched"]) == (
        "gw",
        "reply",
        RESPONDER,
        True,
    )


async def test_receipts_mark_their_deliveries(webhook: Webhook) -> None:
    ids = await webhook.send_through_gateway()
    delivered, lost = ids["+8613900000001"], ids["+8613900000003"]
    async with webhook.inbound_running():
        status, body = await webhook.post(
            [
                {"message_id": delivered, "status": "DELIVRD"},
                {"message_id": lost, "status": "undeliverable", "detail": "absent subscriber"},
            ]
        )
        assert (status, body) == (202, {"accepted": 2, "channel": "gw"})

        async def applied() -> bool:
            rows = await webhook.pool.fetch(
                "SELECT state FROM deliveries WHERE external_id = ANY($1::text[])",
                [delivered, lost],
            )
            return {r["state"] for r in rows} == {"delivered", "failed"}

        await until(applied, what="both receipts applied")
    rows = await webhook.pool.fetch(
        "SELECT external_id, state, error, delivered_at, channel FROM deliveries "
        "WHERE external_id = ANY($1::text[])",
        [delivered, lost],
    )
    by_id = {r["external_id"]: r for r in rows}
    assert (by_id[delivered]["state"], by_id[delivered]["delivered_at"]) == ("delivered", NOW)
    assert (by_id[lost]["state"], by_id[lost]["error"]) == (
        "failed",
        "undeliverable absent subscriber",
    )
    assert {r["channel"] for r in rows} == {"gw"}
    others = await webhook.pool.fetch(
        "SELECT DISTINCT state FROM deliveries WHERE channel = 'gw' "
        "AND NOT external_id = ANY($1::text[])",
        [delivered, lost],
    )
    assert [r["state"] for r in others] == ["sent"]


async def test_the_token_decides_which_channel_a_receipt_belongs_to(webhook: Webhook) -> None:
    ids = await webhook.send_through_gateway()
    message_id = ids["+8613900000001"]
    async with webhook.inbound_running():
        # The other gateway's token: gw's message id means nothing on that channel.
        status, body = await webhook.post(
            {"message_id": message_id, "status": "delivered"}, token=OTHER_TOKEN
        )
        assert (status, body) == (202, {"accepted": 1, "channel": "other"})

        async def kept_unmatched() -> bool:
            count = await webhook.pool.fetchval("SELECT count(*) FROM inbound_events")
            return bool(count)

        await until(kept_unmatched, what="the receipt to be kept")
    kept = await webhook.pool.fetchrow("SELECT channel, kind, matched FROM inbound_events")
    assert kept is not None
    assert (kept["channel"], kept["kind"], kept["matched"]) == ("other", "receipt", False)
    state = await webhook.pool.fetchval(
        "SELECT state FROM deliveries WHERE external_id = $1", message_id
    )
    assert state == "sent"


async def test_valid_events_are_stored_before_the_answer(webhook: Webhook) -> None:
    """A gateway told 202 never sends the batch again: what it was told is accepted is in the
    database by then, whatever happens to the process after."""
    status, body = await webhook.post(
        [
            {"from": RESPONDER, "text": "1"},
            {"message_id": 12345, "status": "Expired"},
            {"message_id": "gw-9", "status": "REJECTD", "detail": "blacklisted"},
        ]
    )
    assert (status, body["accepted"]) == (202, 3)
    rows = await webhook.pool.fetch("SELECT channel, kind, payload FROM inbound_events ORDER BY id")
    assert [(r["channel"], r["kind"]) for r in rows] == [
        ("gw", "reply"),
        ("gw", "receipt"),
        ("gw", "receipt"),
    ]
    assert [r["payload"].get("external_id") for r in rows] == [None, "12345", "gw-9"]
    assert (await webhook.callout_states())[RESPONDER][0] == "acknowledged"
    # Nothing waits in a channel's memory.
    assert await events_so_far(webhook.gw) == [] and await events_so_far(webhook.other) == []


async def test_a_flood_is_asked_to_come_back_and_nothing_of_it_is_kept(
    webhook: Webhook,
) -> None:
    slots = webhook.client.app[SERVICES].inbound_slots if webhook.client.app else None
    assert slots is not None
    taken = 0
    while not slots.locked():  # every batch slot busy, as under a flood
        await slots.acquire()
        taken += 1
    try:
        response = await webhook.client.post(
            f"{API}/inbound/sms",
            json={"from": RESPONDER, "text": "1"},
            headers={"Authorization": f"Bearer {GW_TOKEN}"},
        )
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"] == "busy"
        assert await webhook.pool.fetchval("SELECT count(*) FROM inbound_events") == 0
    finally:
        for _ in range(taken):
            slots.release()
    status, _ = await webhook.post({"from": RESPONDER, "text": "1"})
    assert status == 202


async def test_an_empty_list_is_accepted_as_nothing(webhook: Webhook) -> None:
    assert await webhook.post([]) == (202, {"accepted": 0, "channel": "gw"})
    assert await events_so_far(webhook.gw) == []


# --- refusals change nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "scheme"),
    [
        (None, "Bearer"),
        ("not-a-token-of-anyone", "Bearer"),
        (OFFICER_TOKEN, "Bearer"),  # an officer's (even an admin's) token is not a gateway's
        ("outbound-token-0123456789", "Bearer"),  # the token warnd sends with is not it either
        (GW_TOKEN, "Basic"),
        (GW_TOKEN[:-1], "Bearer"),
        (GW_TOKEN + "x", "Bearer"),
        ("令牌", "Bearer"),
    ],
)
async def test_a_wrong_token_is_401_and_changes_nothing(
    webhook: Webhook, token: str | None, scheme: str
) -> None:
    before = await webhook.snapshot()
    headers = {"Authorization": f"{scheme} {token}"} if token else {}
    with capture_logs() as logged:
        response = await webhook.client.post(
            PATH, json={"from": RESPONDER, "text": "1"}, headers=headers
        )
    assert response.status == 401
    assert [e["event"] for e in logged if e["log_level"] == "warning"] == ["gateway_unauthorized"]
    assert not token or token not in repr(logged)
    assert (await response.json())["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await events_so_far(webhook.gw) == []
    assert await events_so_far(webhook.other) == []
    assert await webhook.snapshot() == before


GOOD_REPLY = {"from": RESPONDER, "text": "1"}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"{not json", "malformed_json", "body is not JSON"),
        (b'"just a string"', "invalid_inbound", "body: must be an object"),
        ({"hello": 1}, "invalid_inbound", "body: neither a reply"),
        ({"from": 13900000004, "text": "1"}, "invalid_inbound", "from: Input should be"),
        ({"from": "", "text": "1"}, "invalid_inbound", "from: String should have at least"),
        ({"from": RESPONDER}, "invalid_inbound", "text: Field required"),
        ({**GOOD_REPLY, "sent_at": "now"}, "invalid_inbound", "sent_at: Extra inputs"),
        ({"message_id": "gw-1"}, "invalid_inbound", "status: Field required"),
        ({"message_id": "gw-1", "status": "LOST"}, "invalid_inbound", "status: Value error"),
        ({"message_id": "gw-1", "status": 2}, "invalid_inbound", "status: Value error"),
        ({"message_id": " ", "status": "delivered"}, "invalid_inbound", "message_id: Value"),
        ({"message_id": True, "status": "delivered"}, "invalid_inbound", "message_id"),
        ({"message_id": ["gw-1"], "status": "delivered"}, "invalid_inbound", "message_id"),
        ([GOOD_REPLY, 7], "invalid_inbound", "[1]: must be an object"),
        (
            # The valid reply at [0] is refused with the rest: nothing of the body is applied.
            [GOOD_REPLY, {"message_id": "gw-1", "status": "delivrd"}, {"message_id": "gw-2"}],
            "invalid_inbound",
            "[2].status: Field required",
        ),
        ([GOOD_REPLY] * (MAX_EVENTS + 1), "invalid_inbound", f"at most {MAX_EVENTS}"),
    ],
)
async def test_a_malformed_body_is_400_naming_the_field_and_changes_nothing(
    webhook: Webhook, body: object, code: str, words: str
) -> None:
    before = await webhook.snapshot()
    if isinstance(body, bytes):
        status, answer = await webhook.post(data=body)
    else:
        status, answer = await webhook.post(body)
    assert status == 400
    assert answer["error"] == code
    assert words in answer["detail"]
    assert RESPONDER not in answer["detail"]  # details name fields, never echo phone numbers
    # Emitting into the channel is the only way an event is applied: nothing was emitted.
    assert await events_so_far(webhook.gw) == []
    assert await webhook.snapshot() == before


async def test_every_bad_event_of_a_list_is_named(webhook: Webhook) -> None:
    status, answer = await webhook.post(
        [{"message_id": "a", "status": "LOST"}, GOOD_REPLY, {"from": RESPONDER, "txt": "1"}]
    )
    assert status == 400
    detail = answer["detail"]
    assert "[0].status" in detail and "[2].text: Field required" in detail
    assert "[2].txt: Extra inputs" in detail and "[1]" not in detail


async def test_the_body_must_be_declared_json(webhook: Webhook) -> None:
    response = await webhook.client.post(
        PATH,
        data=b'{"from": "+8613900000004", "text": "1"}',
        headers={"Authorization": f"Bearer {GW_TOKEN}", "Content-Type": "text/plain"},
    )
    assert response.status == 415
    assert (await response.json())["error"] == "unsupported_media_type"
    assert await events_so_far(webhook.gw) == []


async def test_a_token_two_channels_share_is_refused(webhook: Webhook) -> None:
    webhook.other.config.inbound_token = webhook.gw.config.inbound_token
    status, answer = await webhook.post(GOOD_REPLY)
    assert (status, answer["error"]) == (500, "misconfigured")
    assert GW_TOKEN not in answer["detail"]
    assert await events_so_far(webhook.gw) == [] and await events_so_far(webhook.other) == []


async def test_the_webhook_is_in_the_openapi_document(webhook: Webhook) -> None:
    response = await webhook.client.get(f"{API}/openapi.json")
    document = await response.json()
    operation = document["paths"][PATH]["post"]
    assert operation["security"] == [{"gatewayToken": []}]
    assert operation["x-roles"] == ["gateway"]
    assert set(operation["responses"]) >= {"202", "400", "401"}
    assert "gatewayToken" in document["components"]["securitySchemes"]


# --- the body's rules, without a server ------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("delivered", ReceiptStatus.DELIVERED),
        (" DELIVRD ", ReceiptStatus.DELIVERED),
        ("Undeliverable", ReceiptStatus.UNDELIVERABLE),
        ("UNDELIV", ReceiptStatus.UNDELIVERABLE),
        ("failed", ReceiptStatus.UNDELIVERABLE),
        ("DELETED", ReceiptStatus.UNDELIVERABLE),
        ("EXPIRED", ReceiptStatus.EXPIRED),
        ("REJECTD", ReceiptStatus.REJECTED),
        ("rejected", ReceiptStatus.REJECTED),
    ],
)
def test_receipt_status_synonyms(word: str, status: ReceiptStatus) -> None:
    (event,) = parse_inbound({"message_id": " gw-1 ", "status": word}, NOW)
    assert event == DeliveryReceipt("gw-1", status, at=NOW)


@pytest.mark.parametrize("word", ["ACCEPTD", "UNKNOWN", "enroute", "", "delivered!"])
def test_statuses_that_are_not_final_or_not_known_are_refused(word: str) -> None:
    with pytest.raises(InboundBodyError, match=r"^status: Value error"):
        parse_inbound({"message_id": "gw-1", "status": word}, NOW)
