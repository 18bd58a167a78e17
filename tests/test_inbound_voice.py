"""The voice webhook end to end, through the real API application and a real PostgreSQL: a red
warning is planned, its calls are placed through the ``http_voice`` channel at a real test
gateway, and the gateway posts the calls' results back. "1" acknowledges the call-out, a call not
answered fails its delivery and leaves the call-out open, and a refused request changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from channels.base import CallResult, Channel, Outcome
from channels.http_sms.channel import HttpSmsChannel, HttpSmsConfig
from channels.http_voice.channel import HttpVoiceChannel, HttpVoiceConfig
from channels.http_voice.webhook import (
    MAX_EVENTS,
    STATUS_WORDS,
    CallStatus,
    InboundBodyError,
    parse_call_results,
)
from tests.channel_contract import events_so_far
from tests.fixtures import DAYTIME, VoiceGateway, plan, rainstorm
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

PATH = f"{API}/inbound/voice"
VOICE_TOKEN = "inbound-token-of-phone-0123456789"
OUTBOUND_TOKEN = "outbound-voice-token-0123456789"
SMS_TOKEN = "inbound-token-of-sms-gw-0123456789"
OFFICER_TOKEN = "user-token-zhang-0123456789"
NOW = DAYTIME + timedelta(minutes=1)
# Responders of 任城区 the red warning calls (tests/seed.py).
PRESSES_1 = "+8613900000004"  # 张书记
BUSY = "+8613900000001"  # 任区长
AWAY = "+8613900000006"  # 李书记: the phone rings out

CONFIG = AppConfig.model_validate(
    {"users": {"zhang": {"token": OFFICER_TOKEN, "roles": ["officer", "admin"]}}}
)


@pytest.fixture
def voice_gateway() -> Iterator[VoiceGateway]:
    peer = VoiceGateway()
    peer.start()
    yield peer
    peer.stop()


@dataclass
class Webhook:
    client: TestClient[web.Request, web.Application]
    pool: asyncpg.Pool
    phone: HttpVoiceChannel
    sms: HttpSmsChannel
    gateway: VoiceGateway
    dispatcher: Dispatcher
    metrics: Metrics
    warning_id: int

    async def post(
        self, body: object = None, *, token: str | None = VOICE_TOKEN, data: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST to the webhook from the test itself (for requests no gateway would make)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if data is not None:
            headers["Content-Type"] = "application/json"
            response = await self.client.post(PATH, data=data, headers=headers)
        else:
            response = await self.client.post(PATH, json=body, headers=headers)
        return response.status, await response.json()

    async def report(self, results: object, token: str = VOICE_TOKEN) -> tuple[int, Any]:
        """The gateway posts call results to warnd, from its own thread, as a carrier does."""
        return await self.gateway.report(str(self.client.make_url(PATH)), token, results)

    async def place_calls(self) -> dict[str, str]:
        """Dispatch's own claim, send and record for the voice channel, through the gateway:
        the call id by responder's phone."""
        claimed = await self.dispatcher.claim(self.phone, 500)
        assert claimed
        results = await self.phone.send([c.message() for c in claimed])
        await self.dispatcher.record(self.phone.name, claimed, results)
        assert all(r.outcome is Outcome.ACCEPTED for r in results)
        by_key = {r.key: r.external_id or "" for r in results}
        return {c.address: by_key[c.id] for c in claimed}

    async def callouts(self) -> dict[str, tuple[str, str | None]]:
        rows = await self.pool.fetch(
            "SELECT phone, state, ack_via FROM callouts WHERE warning_id = $1", self.warning_id
        )
        return {r["phone"]: (r["state"], r["ack_via"]) for r in rows}

    async def delivery(self, call_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT state, error, delivered_at, failed_at, channel FROM deliveries "
            "WHERE external_id = $1",
            call_id,
        )
        assert row is not None
        return row

    async def snapshot(self) -> tuple[object, ...]:
        """Everything a call result could change."""
        callouts = await self.pool.fetch("SELECT * FROM callouts ORDER BY id")
        events = await self.pool.fetch("SELECT * FROM callout_events ORDER BY id")
        deliveries = await self.pool.fetch(
            "SELECT id, state, error, delivered_at, failed_at FROM deliveries ORDER BY id"
        )
        inbound = await self.pool.fetchval("SELECT count(*) FROM inbound_events")
        return (
            [dict(r) for r in callouts],
            [dict(r) for r in events],
            [dict(r) for r in deliveries],
            inbound,
        )


@pytest.fixture
async def webhook(
    pool: asyncpg.Pool, policy: Policy, voice_gateway: VoiceGateway
) -> AsyncIterator[Webhook]:
    warning_id = await plan(pool, policy, rainstorm())
    phone = HttpVoiceChannel(
        "phone",
        HttpVoiceConfig.model_validate(
            {
                "type": "http_voice",
                "url": voice_gateway.url,
                "token": OUTBOUND_TOKEN,
                "inbound_token": VOICE_TOKEN,
                "rate_per_s": 10_000,
            }
        ),
    )
    # An SMS gateway beside it, with a token of its own: that token is no voice gateway's.
    sms = HttpSmsChannel(
        "sms-gw",
        HttpSmsConfig.model_validate(
            {
                "type": "http_sms",
                "url": "http://127.0.0.1:9/sms",
                "token": "outbound-sms-token-0123456789",
                "inbound_token": SMS_TOKEN,
            }
        ),
    )
    clock = ManualClock(NOW)
    metrics = Metrics()
    channels: dict[str, Channel] = {"phone": phone, "sms-gw": sms}
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
            yield Webhook(client, pool, phone, sms, voice_gateway, dispatcher, metrics, warning_id)
    finally:
        for channel in channels.values():
            await channel.stop()


# --- call results, end to end: the gateway posts them back -------------------------------------


async def test_pressing_1_acknowledges_the_callout_via_voice(webhook: Webhook) -> None:
    calls = await webhook.place_calls()
    before = await webhook.callouts()
    assert before[PRESSES_1] == ("notified", None)
    status, body = await webhook.report(
        {"call_id": calls[PRESSES_1], "status": "answered", "keys": "1"}
    )
    assert (status, body) == (202, {"accepted": 1, "channel": "phone"})
    # Applied and stored before the answer: nothing to wait for.
    after = await webhook.callouts()
    assert after[PRESSES_1] == ("acknowledged", "voice")
    assert {p: s for p, s in after.items() if p != PRESSES_1} == {
        p: s for p, s in before.items() if p != PRESSES_1
    }
    callout = await webhook.pool.fetchrow(
        "SELECT acknowledged_at, ack_late FROM callouts WHERE phone = $1", PRESSES_1
    )
    assert callout is not None
    assert (callout["acknowledged_at"], callout["ack_late"]) == (NOW, False)
    delivery = await webhook.delivery(calls[PRESSES_1])
    assert (delivery["state"], delivery["delivered_at"], delivery["channel"]) == (
        "delivered",
        NOW,
        "phone",
    )
    kept = await webhook.pool.fetchrow("SELECT channel, kind, matched, payload FROM inbound_events")
    assert kept is not None
    assert (kept["channel"], kept["kind"], kept["matched"]) == ("phone", "call_result", True)
    assert (kept["payload"]["external_id"], kept["payload"]["keys"]) == (calls[PRESSES_1], "1")
    assert await events_so_far(webhook.phone) == []  # nothing waits in the channel's memory
    # /metrics: one key-to-acknowledgement latency observed, as a call result
    registry = webhook.metrics.registry
    count = "warnd_answer_latency_seconds_count"
    assert registry.get_sample_value(count, {"kind": "call_result"}) == 1
    assert registry.get_sample_value(count, {"kind": "reply"}) is None


async def test_busy_and_unanswered_calls_fail_their_delivery_and_leave_the_callout_open(
    webhook: Webhook,
) -> None:
    calls = await webhook.place_calls()
    before = await webhook.callouts()
    status, body = await webhook.report(
        [
            {"call_id": calls[BUSY], "status": "BUSY", "detail": "user busy (486)"},
            {"call_id": calls[AWAY], "status": "no-answer"},
        ]
    )
    assert (status, body) == (202, {"accepted": 2, "channel": "phone"})
    busy, away = await webhook.delivery(calls[BUSY]), await webhook.delivery(calls[AWAY])
    assert (busy["state"], busy["error"], busy["failed_at"]) == (
        "failed",
        "busy user busy (486)",
        NOW,
    )
    assert (away["state"], away["error"], away["failed_at"]) == ("failed", "no_answer", NOW)
    # Still open: their escalation chain (repeat, backup, superior) carries on.
    assert await webhook.callouts() == before
    assert before[BUSY] == before[AWAY] == ("notified", None)
    kept = await webhook.pool.fetch("SELECT kind, matched FROM inbound_events")
    assert [(r["kind"], r["matched"]) for r in kept] == [("call_result", True)] * 2


async def test_only_a_1_among_the_keys_acknowledges(webhook: Webhook) -> None:
    calls = await webhook.place_calls()
    before = await webhook.callouts()
    status, body = await webhook.report(
        [
            {"call_id": calls[PRESSES_1], "status": "answered", "keys": "21"},  # again, then 1
            {"call_id": calls[BUSY], "status": "completed", "keys": "2"},  # heard it, no 1
            {"call_id": calls[AWAY], "status": "Answered"},  # hung up without a key
        ]
    )
    assert (status, body["accepted"]) == (202, 3)
    after = await webhook.callouts()
    assert after[PRESSES_1] == ("acknowledged", "voice")
    assert after[BUSY] == before[BUSY] and after[AWAY] == before[AWAY]
    for phone in (PRESSES_1, BUSY, AWAY):
        assert (await webhook.delivery(calls[phone]))["state"] == "delivered"


async def test_a_result_for_a_call_never_placed_is_kept_unmatched(webhook: Webhook) -> None:
    await webhook.place_calls()
    before = await webhook.snapshot()
    status, _ = await webhook.report({"call_id": 4242, "status": "answered", "keys": "1"})
    assert status == 202
    kept = await webhook.pool.fetchrow("SELECT channel, kind, matched FROM inbound_events")
    assert kept is not None
    assert (kept["channel"], kept["kind"], kept["matched"]) == ("phone", "call_result", False)
    callouts, events, deliveries, _ = await webhook.snapshot()
    assert (callouts, events, deliveries) == before[:3]


async def test_without_an_inbound_stage_results_go_to_the_channel(webhook: Webhook) -> None:
    assert webhook.client.app is not None
    webhook.client.app[SERVICES].inbound = None  # a process that only serves the API
    status, _ = await webhook.post({"call_id": "vc-1", "status": "busy"})
    assert status == 202
    (event,) = await events_so_far(webhook.phone)
    assert event == CallResult("vc-1", answered=False, cause="busy", at=NOW)


async def test_a_flood_is_asked_to_come_back_and_nothing_of_it_is_kept(
    webhook: Webhook,
) -> None:
    calls = await webhook.place_calls()
    assert webhook.client.app is not None
    slots = webhook.client.app[SERVICES].inbound_slots
    taken = 0
    while not slots.locked():  # every batch slot busy, as under a flood
        await slots.acquire()
        taken += 1
    result = {"call_id": calls[PRESSES_1], "status": "answered", "keys": "1"}
    try:
        before = await webhook.snapshot()
        response = await webhook.client.post(
            PATH, json=result, headers={"Authorization": f"Bearer {VOICE_TOKEN}"}
        )
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"] == "busy"
        assert await webhook.snapshot() == before
    finally:
        for _ in range(taken):
            slots.release()
    assert (await webhook.report(result))[0] == 202
    assert (await webhook.callouts())[PRESSES_1] == ("acknowledged", "voice")


async def test_an_empty_list_is_accepted_as_nothing(webhook: Webhook) -> None:
    assert await webhook.post([]) == (202, {"accepted": 0, "channel": "phone"})


# --- refusals change nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "scheme"),
    [
        (None, "Bearer"),
        ("not-a-token-of-anyone", "Bearer"),
        (OFFICER_TOKEN, "Bearer"),  # an officer's (even an admin's) token is not a gateway's
        (OUTBOUND_TOKEN, "Bearer"),  # the token warnd calls with is not it either
        (SMS_TOKEN, "Bearer"),  # an SMS gateway's: its channel placed no call
        (VOICE_TOKEN, "Basic"),
        (VOICE_TOKEN[:-1], "Bearer"),
        (VOICE_TOKEN + "x", "Bearer"),
        ("令牌", "Bearer"),
    ],
)
async def test_a_wrong_token_is_401_and_changes_nothing(
    webhook: Webhook, token: str | None, scheme: str
) -> None:
    calls = await webhook.place_calls()
    before = await webhook.snapshot()
    headers = {"Authorization": f"{scheme} {token}"} if token else {}
    with capture_logs() as logged:
        response = await webhook.client.post(
            PATH,
            json={"call_id": calls[PRESSES_1], "status": "answered", "keys": "1"},
            headers=headers,
        )
    assert response.status == 401
    assert [e["event"] for e in logged if e["log_level"] == "warning"] == ["gateway_unauthorized"]
    assert not token or token not in repr(logged)
    answer = await response.json()
    assert answer["error"] == "unauthorized"
    assert "voice channel" in answer["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await events_so_far(webhook.phone) == [] and await events_so_far(webhook.sms) == []
    assert await webhook.snapshot() == before


def _good(call_id: str) -> dict[str, object]:
    return {"call_id": call_id, "status": "answered", "keys": "1"}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (lambda c: b"{not json", "malformed_json", "body is not JSON"),
        (lambda c: b'"just a string"', "invalid_inbound", "body: must be an object"),
        (lambda c: {"call_id": c}, "invalid_inbound", "status: Field required"),
        (lambda c: {"status": "answered"}, "invalid_inbound", "call_id: Field required"),
        (
            lambda c: {"call_id": c, "status": "ringing"},  # not how a call ends
            "invalid_inbound",
            "status: Value error, 'ringing' is not how a call ends",
        ),
        (lambda c: {"call_id": c, "status": 3}, "invalid_inbound", "status: Value error"),
        (lambda c: {"call_id": " ", "status": "busy"}, "invalid_inbound", "call_id: Value"),
        (lambda c: {"call_id": True, "status": "busy"}, "invalid_inbound", "call_id"),
        (lambda c: {"call_id": [c], "status": "busy"}, "invalid_inbound", "call_id"),
        (
            lambda c: {"call_id": c, "status": "busy", "keys": "1"},
            "invalid_inbound",
            "keys: Value error, a call that ended busy has no keys",
        ),
        (lambda c: {**_good(c), "keys": 1}, "invalid_inbound", "keys: Input should be"),
        (lambda c: {**_good(c), "keys": "1x"}, "invalid_inbound", "keys: String should match"),
        (lambda c: {**_good(c), "duration": 12}, "invalid_inbound", "duration: Extra inputs"),
        (lambda c: [_good(c), 7], "invalid_inbound", "[1]: must be an object"),
        (
            # The valid "1" at [0] is refused with the rest: nothing of the body is applied.
            lambda c: [_good(c), {"call_id": "vc-x", "status": "busy"}, {"call_id": "vc-y"}],
            "invalid_inbound",
            "[2].status: Field required",
        ),
        (lambda c: [_good(c)] * (MAX_EVENTS + 1), "invalid_inbound", f"at most {MAX_EVENTS}"),
    ],
)
async def test_a_malformed_body_is_400_naming_the_field_and_changes_nothing(
    webhook: Webhook, body: Any, code: str, words: str
) -> None:
    calls = await webhook.place_calls()
    before = await webhook.snapshot()
    content = body(calls[PRESSES_1])
    if isinstance(content, bytes):
        status, answer = await webhook.post(data=content)
    else:
        status, answer = await webhook.post(content)
    assert status == 400
    assert answer["error"] == code
    assert words in answer["detail"]
    assert calls[PRESSES_1] not in answer["detail"]  # details name fields, never echo values
    assert await events_so_far(webhook.phone) == []
    assert await webhook.snapshot() == before


async def test_every_bad_result_of_a_list_is_named(webhook: Webhook) -> None:
    status, answer = await webhook.post(
        [
            {"call_id": "a", "status": "lost"},
            _good("b"),
            {"call_id": "c", "status": "answered", "key": "1"},
        ]
    )
    assert status == 400
    detail = answer["detail"]
    assert "[0].status: Value error" in detail and "[2].key: Extra inputs" in detail
    assert "[1]" not in detail


async def test_the_body_must_be_declared_json(webhook: Webhook) -> None:
    response = await webhook.client.post(
        PATH,
        data=b'{"call_id": "vc-1", "status": "busy"}',
        headers={"Authorization": f"Bearer {VOICE_TOKEN}", "Content-Type": "text/plain"},
    )
    assert response.status == 415
    assert (await response.json())["error"] == "unsupported_media_type"
    assert await events_so_far(webhook.phone) == []


async def test_a_token_two_channels_share_is_refused(webhook: Webhook) -> None:
    # Even though only one of the two is a voice channel: a shared token is a mistake to fix.
    webhook.sms.config.inbound_token = webhook.phone.config.inbound_token
    before = await webhook.snapshot()
    status, answer = await webhook.post({"call_id": "vc-1", "status": "busy"})
    assert (status, answer["error"]) == (500, "misconfigured")
    assert VOICE_TOKEN not in answer["detail"]
    assert await events_so_far(webhook.phone) == [] and await events_so_far(webhook.sms) == []
    assert await webhook.snapshot() == before


async def test_the_webhook_is_in_the_openapi_document(webhook: Webhook) -> None:
    response = await webhook.client.get(f"{API}/openapi.json")
    document = await response.json()
    operation = document["paths"][PATH]["post"]
    assert operation["security"] == [{"gatewayToken": []}]
    assert operation["x-roles"] == ["gateway"]
    assert set(operation["responses"]) >= {"202", "400", "401", "415"}
    single, listed = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert single == {"$ref": "#/components/schemas/InboundCallResult"}
    assert listed["maxItems"] == MAX_EVENTS
    schema = document["components"]["schemas"]["InboundCallResult"]
    assert set(schema["required"]) == {"call_id", "status"}
    assert set(schema["properties"]) == {"call_id", "status", "keys", "detail"}


# --- the body's rules, without a server ------------------------------------------------------


@pytest.mark.parametrize(("word", "status"), sorted(STATUS_WORDS.items()))
def test_every_status_word_is_read_whatever_its_case_hyphens_and_spaces(
    word: str, status: CallStatus
) -> None:
    written = f" {word.upper().replace('_', '-')} "
    (result,) = parse_call_results({"call_id": " vc-1 ", "status": written}, NOW)
    answered = status is CallStatus.ANSWERED
    assert result == CallResult("vc-1", answered=answered, cause=status.value, at=NOW)
    (spaced,) = parse_call_results({"call_id": 1, "status": word.replace("_", " ")}, NOW)
    assert spaced.cause == status.value


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("no-answer", CallStatus.NO_ANSWER),
        ("timeout", CallStatus.NO_ANSWER),
        ("User Busy", CallStatus.BUSY),
        ("REJECTED", CallStatus.DECLINED),
        ("powered-off", CallStatus.UNREACHABLE),
        ("error", CallStatus.FAILED),
        ("completed", CallStatus.ANSWERED),
    ],
)
def test_common_synonyms(word: str, status: CallStatus) -> None:
    (result,) = parse_call_results({"call_id": "vc-1", "status": word, "detail": "运营商"}, NOW)
    assert result.cause == f"{status.value} 运营商"
    assert result.answered is (status is CallStatus.ANSWERED)


@pytest.mark.parametrize("word", ["ringing", "queued", "in-progress", "initiated", "", "answered!"])
def test_statuses_that_are_not_an_end_or_not_known_are_refused(word: str) -> None:
    with pytest.raises(InboundBodyError, match=r"^status: Value error"):
        parse_call_results({"call_id": "vc-1", "status": word}, NOW)


def test_keys_are_kept_in_order_and_upper_case() -> None:
    (result,) = parse_call_results({"call_id": 7, "status": "answered", "keys": "2a#1"}, NOW)
    assert result == CallResult("7", answered=True, keys="2A#1", cause="answered", at=NOW)
