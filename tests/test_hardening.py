"""Hostile or odd input answered cleanly (issue 15): a clear 4xx, nothing lost, nothing leaked."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg
import pytest

from channels.base import DeliveryReceipt, ReceiptStatus, Reply
from tests.fixtures import DAYTIME, OFFICER_TOKEN, Api, cap_alert, manual, plan, rainstorm
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.ingest.cap import CapError, parse_cap
from warnd.pipeline.answers import Answers
from warnd.pipeline.inbound import Inbound
from warnd.policy.model import Policy
from warnd.runtime.logs import mask_phones
from warnd.web.routing import API


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("008613912345678", "0086139****5678"),
        ("139 1234 5678", "139****5678"),
        ("139-1234-5678", "139****5678"),
        ("+86 139 1234 5678", "+86 139****5678"),
        ("１３９１２３４５６７８", "１３９****５６７８"),
        ("＋８６１３９１２３４５６７８", "＋８６１３９****５６７８"),
        ("00442079460000", "00442*****0000"),
    ],
)
def test_phone_numbers_in_every_written_form_are_masked(text: str, masked: str) -> None:
    assert mask_phones(f"reply from {text}: 1") == f"reply from {masked}: 1"


@pytest.mark.parametrize("text", ["2026120212345678901", "371321199001011234", "1391234567"])
def test_longer_and_shorter_digit_runs_are_left_alone(text: str) -> None:
    assert mask_phones(text) == text


def test_attributes_on_cap_elements_are_refused_before_the_schema() -> None:
    """20,000 unknown attributes used to cost the schema validator 40 s of CPU."""
    attributes = " ".join(f'a{i}="x"' for i in range(20_000))
    body = cap_alert().replace("<headline>", f"<headline {attributes}>").encode()
    with pytest.raises(CapError) as refused:
        parse_cap(body)
    assert refused.value.code == "schema_invalid"
    assert refused.value.detail.startswith(
        "info[1]/headline: CAP elements carry no attributes; this one has 20000 ('a0', 'a1'"
    )


# --- the inbound stage loses nothing -----------------------------------------------------------


class Refusing:
    """The pool, but PostgreSQL refuses any statement whose arguments hold "POISON" (except the
    record of a refused event): what one malformed event from a channel used to do to a batch."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def _check(self, args: tuple[object, ...]) -> None:
        if "POISON" in repr(args) and "'refused'" not in repr(args):
            raise asyncpg.DataError("invalid input")

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        self._check(args)
        return await self._pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        self._check(args)
        return await self._pool.fetchrow(query, *args)

    async def execute(self, query: str, *args: object) -> str:
        self._check(args)
        return await self._pool.execute(query, *args)


async def test_one_bad_event_does_not_take_its_batch_with_it(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    """A receipt the database refused used to crash the inbound stage, and a genuine "1" in
    the same batch was lost with it."""
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME + timedelta(minutes=1))
    refusing = Refusing(pool)
    inbound = Inbound(refusing, clock, Metrics(), answers=Answers(refusing, clock))  # type: ignore[arg-type]
    await inbound.handle_events(
        "sms",
        [
            DeliveryReceipt("POISON", ReceiptStatus.DELIVERED),
            Reply("+8613900000001", "1"),
        ],
    )
    state = await pool.fetchval(
        "SELECT state FROM callouts WHERE warning_id = $1 AND phone = '+8613900000001'",
        warning_id,
    )
    assert state == "acknowledged"
    kinds = [r["kind"] for r in await pool.fetch("SELECT kind FROM inbound_events ORDER BY id")]
    assert kinds == ["refused", "reply"]


async def test_nul_characters_from_a_channel_are_kept_readable(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    await plan(pool, policy, rainstorm())
    inbound = Inbound(pool, ManualClock(DAYTIME), Metrics())
    await inbound.handle_events("sms", [Reply("+8613900000001", "收到\x00")])
    text = await pool.fetchval("SELECT payload->>'text' FROM inbound_events")
    assert text == "收到\ufffd"


async def test_the_reply_limit_holds_across_processes(pool: asyncpg.Pool, policy: Policy) -> None:
    """Two warnd processes used to count a looping number's replies each in its own memory."""
    await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME)
    one, other = Answers(pool, clock, reply_limit=3), Answers(pool, clock, reply_limit=3)
    kinds = [
        (await process.answer_sms("+8613900000004", "自动回复：我正在开会")).kind
        for process in (one, other, one, other)
    ]
    assert kinds == ["unrecognised", "unrecognised", "unrecognised", "rate_limited"]


# --- odd requests get a clear 4xx --------------------------------------------------------------


async def raw_request(api: Api, head: bytes) -> tuple[int, bytes]:
    """A request as bytes, for what an HTTP client library refuses to send."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


async def test_a_token_that_is_not_utf8_is_401(app: Api) -> None:
    status, body = await raw_request(
        app,
        b"GET " + API.encode() + b"/warnings HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer \xff\xfe\xe4\xb8",
    )
    assert status == 401, body
    assert json.loads(body)["error"] == "unauthorized"


async def test_route_ids_are_ascii_digits_only(app: Api) -> None:
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("blue"))
    assert body["warning_id"] == 1
    status, _ = await app.call("GET", f"{API}/warnings/1", OFFICER_TOKEN)
    assert status == 200
    status, body = await app.call("GET", f"{API}/warnings/\u0661", OFFICER_TOKEN)  # Arabic 1
    assert status == 404, body


@pytest.mark.parametrize(
    "after", ["1.99.1", "1.1.99999999999999999999", "99999999999999999999999.0.1", "x.1.1"]
)
async def test_an_audit_cursor_out_of_range_is_400(app: Api, after: str) -> None:
    status, body = await app.call("POST", f"{API}/warnings", OFFICER_TOKEN, manual("blue"))
    path = f"{API}/warnings/{body['warning_id']}/audit?after={after}"
    status, body = await app.call("GET", path, OFFICER_TOKEN)
    assert (status, body["error"]) == (400, "invalid_parameter"), body


async def test_readiness_names_no_host_when_the_database_is_down(app: Api) -> None:
    await app.services.pool.close()  # the database went away
    status, body = await app.call("GET", "/readyz", None)
    assert status == 503
    assert body["database"] == "unreachable"
