"""Hostile or odd input answered cleanly (issue 15): a clear 4xx, nothing lost, nothing leaked."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from channels.base import DeliveryReceipt, ReceiptStatus, Reply
from tests.fixtures import DAYTIME, cap_alert, plan, rainstorm
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.ingest.cap import CapError, parse_cap
from warnd.pipeline.answers import Answers
from warnd.pipeline.inbound import Inbound
from warnd.policy.model import Policy
from warnd.runtime.logs import mask_phones


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
