"""The ``smpp`` channel against an independent SMSC (tests/smsc.py: aiosmpplib's codec).

Every assertion about what was sent reads what the SMSC received on the wire; every assertion
about what came back reads the channel's events or counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import structlog
from aiosmpplib import Unbind  # type: ignore[import-untyped]

from channels.base import (
    DeliveryReceipt,
    OutboundMessage,
    Outcome,
    Reason,
    ReceiptStatus,
    Reply,
)
from channels.registry import ChannelConfigError, build_channels
from channels.smpp.channel import SmppChannel
from channels.smpp.config import SmppConfig
from channels.smpp.link import SmppBindError
from channels.smpp.pdu import BadInputError, ParsedReceipt, classify_status, parse_receipt
from channels.sms_codec import DATA_CODING_GSM, DATA_CODING_UCS2, decode_text, encode_text
from channels.sms_routing import DEFAULT_ROUTES, PrefixRoutes, national_number
from tests.channel_contract import (
    WARNING_TEXT,
    ChannelContract,
    ChannelFactory,
    batch_of,
    collect_events,
    events_so_far,
)
from tests.fixtures import DAYTIME, plan, rainstorm
from tests.smsc import TestSmsc
from tests.waiting import until
from warnd.app.metrics import Metrics
from warnd.core.clock import ManualClock
from warnd.db.notify import Wakeup
from warnd.pipeline.answers import Answers
from warnd.pipeline.dispatch import Dispatcher
from warnd.pipeline.inbound import Inbound
from warnd.policy.model import Policy

SOURCE = "1065737000"
SHORT = "【济宁市应急管理局】暴雨红色预警，收到请回复1。"  # one UCS-2 message


@pytest.fixture
async def smsc() -> AsyncIterator[TestSmsc]:
    server = TestSmsc()
    await server.start()
    yield server
    await server.stop()


def make_channel(port: int, name: str = "sms", **settings: object) -> SmppChannel:
    table: dict[str, object] = {
        "type": "smpp",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "warnd",
        "password": "secret",
        "source_addr": SOURCE,
        "window": 20,
        "rate": 100_000,
        "response_timeout_s": 2.0,
        "bind_timeout_s": 1.0,
        **settings,
    }
    return SmppChannel(name, SmppConfig.model_validate(table))


@contextlib.asynccontextmanager
async def started(channel: SmppChannel) -> AsyncIterator[SmppChannel]:
    await channel.start()
    try:
        yield channel
    finally:
        await channel.stop()


def link_health(channel: SmppChannel, link: str = "default") -> dict[str, object]:
    links = channel.health()["links"]
    assert isinstance(links, dict)
    health = links[link]
    assert isinstance(health, dict)
    return health


def udh(reference: int, total: int, sequence: int) -> bytes:
    return bytes((0x05, 0x00, 0x03, reference, total, sequence))


# --- the shared contract -------------------------------------------------------------------------


class TestSmppContract(ChannelContract):
    expected_events = (DeliveryReceipt, Reply)
    event_timeout = 5.0

    @pytest.fixture
    def channel_factory(self, smsc: TestSmsc) -> ChannelFactory:
        smsc.receipt = "DELIVRD"
        return lambda: make_channel(smsc.port)


# --- pure decisions ------------------------------------------------------------------------------


def test_ucs2_fits_70_characters_in_one_message_and_67_per_part() -> None:
    assert encode_text("洪" * 70).parts == ("洪".encode("utf-16-be") * 70,)
    two = encode_text("洪" * 71)
    assert two.data_coding == DATA_CODING_UCS2
    assert [len(p) // 2 for p in two.parts] == [67, 4]
    assert [len(p) // 2 for p in encode_text("洪" * 134).parts] == [67, 67]


def test_a_split_never_breaks_a_surrogate_pair() -> None:
    text = "洪" * 66 + "🌧" + "雨" * 10  # the emoji would straddle units 67 and 68
    parts = encode_text(text).parts
    assert parts[0] == ("洪" * 66).encode("utf-16-be")
    assert parts[1] == ("🌧" + "雨" * 10).encode("utf-16-be")
    assert b"".join(parts).decode("utf-16-be") == text


def test_gsm_for_ascii_160_in_one_153_per_part_escapes_never_split() -> None:
    assert encode_text("a" * 160).parts == (b"a" * 160,)
    text = encode_text("a" * 161)
    assert text.data_coding == DATA_CODING_GSM
    assert [len(p) for p in text.parts] == [153, 8]
    # '{' is ESC 0x28 in GSM 03.38: two septets that must stay in one part.
    escaped = encode_text("a" * 152 + "{" + "b" * 10)
    assert escaped.parts[0] == b"a" * 152
    assert escaped.parts[1].startswith(b"\x1b\x28")
    assert encode_text("@£$").parts == (b"\x00\x01\x02",)
    assert encode_text("Rain 暴雨").data_coding == DATA_CODING_UCS2


def test_reply_codings() -> None:
    assert decode_text("收到".encode("utf-16-be"), 0x08) == ("收到", True)
    assert decode_text("收到".encode("gbk"), 0x0F) == ("收到", True)  # Chinese SMSCs' GBK
    assert decode_text(b"1", 0x01) == ("1", True)
    assert decode_text(b"\x1b\x65 5", 0x00) == ("€ 5", True)  # GSM escape to the euro sign
    assert decode_text(b"\x00\x31\x00", 0x08) == ("1\ufffd", False)
    with pytest.raises(LookupError):
        decode_text(b"1", 0x0E)


def test_submit_statuses_are_classified_once() -> None:
    assert classify_status(0x58) == (Outcome.TRANSIENT, Reason.RATE_LIMITED, "ESME_RTHROTTLED 0x58")
    assert classify_status(0x14)[:2] == (Outcome.TRANSIENT, Reason.SERVER)
    assert classify_status(0x08)[:2] == (Outcome.TRANSIENT, Reason.SERVER)
    assert classify_status(0x0B) == (Outcome.PERMANENT, Reason.CLIENT, "ESME_RINVDSTADR 0x0B")
    assert classify_status(0x0A)[:2] == (Outcome.PERMANENT, Reason.CLIENT)
    assert classify_status(0x99)[:2] == (Outcome.PERMANENT, Reason.CLIENT)


def test_receipts_are_read_from_tlvs_first_then_text() -> None:
    text = b"id:abc123 sub:001 dlvrd:001 submit date:2507200200 stat:UNDELIV err:034 Text:x"
    assert parse_receipt(text, {}) == ParsedReceipt("abc123", "UNDELIV", "034")
    assert parse_receipt(b"", {0x001E: b"ff01\x00", 0x0427: b"\x02"}).state == "DELIVRD"
    assert parse_receipt(text, {0x001E: b"tlv-id\x00"}).message_id == "tlv-id"
    with pytest.raises(BadInputError, match="without message id"):
        parse_receipt(b"stat:DELIVRD", {})
    with pytest.raises(BadInputError, match="unknown state"):
        parse_receipt(b"id:1 stat:WHATEVER", {})


def test_default_operator_routes() -> None:
    routes = PrefixRoutes(DEFAULT_ROUTES)
    assert routes.route("+8613800000001") == "mobile"
    assert routes.route("8619800000001") == "mobile"
    assert routes.route("0086 130-0000-0001") == "unicom"
    assert routes.route("18900000001") == "telecom"
    assert routes.route("+8617000000001") is None  # 170: virtual operators, no default
    assert national_number("+86 138 0000 0001") == "13800000001"
    assert PrefixRoutes({"a": ["138"], "b": ["1380"]}).route("13800000001") == "b"  # longest
    with pytest.raises(ValueError, match="routed to both"):
        PrefixRoutes({"a": ["138"], "b": ["138"]})


def test_config_shapes_and_errors() -> None:
    channels = build_channels(
        {
            "sms": {
                "type": "smpp",
                "source_addr": SOURCE,
                "rate": 50,
                "fallback": "mobile",
                "links": {
                    "mobile": {"host": "10.0.0.1", "system_id": "a", "password": "pw1"},
                    "unicom": {"host": "10.0.0.2", "system_id": "b", "password": "pw2", "rate": 20},
                },
            }
        }
    )
    sms = channels["sms"]
    assert isinstance(sms, SmppChannel)
    assert sms.limits.rate_per_s == 70.0  # 50 (channel default) + 20
    assert sms.limits.window == 20
    assert sms.limits.max_text == 670
    assert set(sms.config.resolved_routes()) == {"mobile", "unicom"}
    with pytest.raises(ChannelConfigError) as caught:
        build_channels(
            {
                "bad": {
                    "type": "smpp",
                    "source_addr": SOURCE,
                    "fallback": "nowhere",
                    "links": {"mobile": {"host": "h", "system_id": "a"}},
                },
                "worse": {"type": "smpp", "source_addr": SOURCE},
            }
        )
    problems = "\n".join(caught.value.problems)
    assert "fallback 'nowhere' is not a link" in problems
    assert "no SMSC" in problems


# --- against the SMSC ----------------------------------------------------------------------------


async def test_a_refused_bind_is_a_clear_error(smsc: TestSmsc) -> None:
    channel = make_channel(smsc.port, password="wrong")
    with pytest.raises(SmppBindError) as caught:
        await channel.start()
    message = str(caught.value)
    assert "'default'" in message and "system_id 'warnd'" in message and "password" in message
    assert "wrong" not in message
    assert smsc.bind_refusals == 1
    await channel.stop()


async def test_an_unreachable_smsc_leaves_the_link_down_until_it_comes_up() -> None:
    probe = TestSmsc()
    await probe.start()
    port = probe.port
    await probe.stop()
    channel = make_channel(port)
    async with started(channel):
        assert channel.health()["ready"] is False
        assert "TCP connect failed" in str(link_health(channel)["last_error"])
        [result] = await channel.send(batch_of(1, text=SHORT))
        assert (result.outcome, result.reason) == (Outcome.TRANSIENT, Reason.UNREACHABLE)
        assert "not sent" in result.detail
        smsc = TestSmsc()
        await smsc.start(port)
        try:
            await until(lambda: channel.health()["ready"] is True, what="the link to be ready")
            [result] = await channel.send(batch_of(1, text=SHORT))
            assert result.outcome is Outcome.ACCEPTED
            assert [s.message_id for s in smsc.submits] == [result.external_id]
        finally:
            await smsc.stop()


async def test_long_chinese_text_is_reassembled_intact_at_the_smsc(smsc: TestSmsc) -> None:
    text = WARNING_TEXT  # 91 characters with the signature: two UCS-2 parts
    async with started(make_channel(smsc.port)) as channel:
        [result] = await channel.send([OutboundMessage(1, "+8613800000001", text)])
    assert result.outcome is Outcome.ACCEPTED
    assert result.detail == "2 parts, ucs2"
    parts = smsc.submits
    assert len(parts) == 2
    assert result.external_id == parts[0].message_id
    reference = parts[0].udh[0] if parts[0].udh else -1
    for sequence, part in enumerate(parts, start=1):
        assert part.esm_class == 0x40
        assert part.data_coding == 8
        assert part.registered_delivery == 1
        assert part.source == SOURCE
        assert part.destination == "8613800000001"
        assert part.udh == (reference, 2, sequence)
    assert "".join(p.text for p in parts) == text
    # The bytes on the wire: UDH then UTF-16BE, 67 characters in the first part.
    assert udh(reference, 2, 1) + text[:67].encode("utf-16-be") in parts[0].raw
    assert udh(reference, 2, 2) + text[67:].encode("utf-16-be") in parts[1].raw


async def test_70_chinese_characters_go_as_one_plain_message(smsc: TestSmsc) -> None:
    async with started(make_channel(smsc.port)) as channel:
        [result] = await channel.send([OutboundMessage(1, "+8613800000001", "雨" * 70)])
    assert result.detail == "1 part, ucs2"
    [part] = smsc.submits
    assert (part.esm_class, part.data_coding, part.text) == (0, 8, "雨" * 70)


async def test_ascii_goes_as_gsm(smsc: TestSmsc) -> None:
    text = "Flood warning @ Jining: move to high ground {now}"
    async with started(make_channel(smsc.port)) as channel:
        [result] = await channel.send([OutboundMessage(1, "+8613800000001", text)])
    assert result.detail == "1 part, gsm"
    [part] = smsc.submits
    assert part.data_coding == 0
    assert part.text == text  # decoded by the SMSC's own GSM 03.38 codec
    assert b"warning \x00 Jining" in part.raw and b"\x1b\x28now\x1b\x29" in part.raw


async def test_national_destination_format(smsc: TestSmsc) -> None:
    async with started(make_channel(smsc.port, destination_format="national")) as channel:
        await channel.send([OutboundMessage(1, "+86 138-0000-0001", "预警")])
    [part] = smsc.submits
    assert part.destination == "13800000001"


async def test_receipts_are_reported_by_the_ids_the_smsc_gave(smsc: TestSmsc) -> None:
    async with started(make_channel(smsc.port)) as channel:
        batch = [*batch_of(4, text=SHORT), OutboundMessage(5, "+8613800000005", WARNING_TEXT)]
        results = {r.key: r for r in await channel.send(batch)}
        ids = {key: r.external_id or "" for key, r in results.items()}
        await smsc.push_receipt(ids[1], "DELIVRD")  # text and TLVs
        await smsc.push_receipt(ids[2], "UNDELIV", tlvs=False)  # text only
        await smsc.push_receipt(ids[3], "EXPIRED", text=False)  # TLVs only
        await smsc.push_receipt(ids[4], "REJECTD")
        # The two-part message: delivered only once both parts are.
        second_part = next(s.message_id for s in smsc.submits if s.udh and s.udh[2] == 2)
        await smsc.push_receipt(second_part, "DELIVRD")
        await smsc.push_receipt(ids[5], "DELIVRD")
        events = await collect_events(channel, 5, within=5.0)
        health = link_health(channel)
    receipts = {(e.external_id, e.status) for e in events if isinstance(e, DeliveryReceipt)}
    assert len(receipts) == 5
    assert receipts == {
        (ids[1], ReceiptStatus.DELIVERED),
        (ids[2], ReceiptStatus.UNDELIVERABLE),
        (ids[3], ReceiptStatus.EXPIRED),
        (ids[4], ReceiptStatus.REJECTED),
        (ids[5], ReceiptStatus.DELIVERED),
    }
    assert health["receipts"] == {"delivered": 3, "undeliverable": 1, "expired": 1, "rejected": 1}
    assert health["bad_input"] == {}


async def test_mo_replies_become_reply_events(smsc: TestSmsc) -> None:
    async with started(make_channel(smsc.port)) as channel:
        await smsc.push_mo("8613900000001", "收到", encoding="ucs2")
        await smsc.push_mo("8613900000002", "1", encoding="gsm0338")
        text = "收到，马上转移群众。" * 8  # 80 characters: sent back in two parts
        data = text.encode("utf-16-be")
        await smsc.push_mo("8613900000003", raw=udh(7, 2, 2) + data[134:], esm_class=0x40)
        await smsc.push_mo("8613900000003", raw=udh(7, 2, 1) + data[:134], esm_class=0x40)
        events = await collect_events(channel, 3, within=5.0)
        assert link_health(channel)["replies"] == 3
    assert {(e.sender, e.text, e.to) for e in events if isinstance(e, Reply)} == {
        ("+8613900000001", "收到", "10657"),
        ("+8613900000002", "1", "10657"),
        ("+8613900000003", text, "10657"),
    }


async def test_sar_and_gsm_replies_are_reassembled_and_decoded(smsc: TestSmsc) -> None:
    async with started(make_channel(smsc.port)) as channel:
        await smsc.push_mo("8613900000001", "收到，", encoding="ucs2", sar=(300, 2, 1))
        await smsc.push_mo("8613900000001", "正在转移", encoding="ucs2", sar=(300, 2, 2))
        await smsc.push_mo("8613900000002", "OK [1] {done}", encoding="gsm0338")
        events = await collect_events(channel, 2, within=5.0)
    assert {(e.sender, e.text) for e in events if isinstance(e, Reply)} == {
        ("+8613900000001", "收到，正在转移"),
        ("+8613900000002", "OK [1] {done}"),
    }


async def test_a_failed_part_fails_the_whole_message(smsc: TestSmsc) -> None:
    async with started(make_channel(smsc.port)) as channel:
        [result] = await channel.send([OutboundMessage(1, "+8613800000001", WARNING_TEXT)])
        first, second = (part.message_id for part in smsc.submits)
        await smsc.push_receipt(first, "DELIVRD")
        await smsc.push_receipt(second, "UNDELIV")
        [event] = await collect_events(channel, 1, within=5.0)
        # Both receipts handled (smpp34 may hand them over in either order), one event only.
        handled = {"delivered": 1, "undeliverable": 1}
        await until(lambda: link_health(channel)["receipts"] == handled, what="both receipts")
        assert await events_so_far(channel) == []
    assert isinstance(event, DeliveryReceipt)
    assert (event.external_id, event.status) == (result.external_id, ReceiptStatus.UNDELIVERABLE)


async def test_the_password_never_reaches_a_log_line(smsc: TestSmsc) -> None:
    with structlog.testing.capture_logs() as logs:
        channel = make_channel(smsc.port, password="s3cret!")
        with pytest.raises(SmppBindError) as caught:
            await channel.start()
        await channel.stop()
        channel = make_channel(smsc.port)
        async with started(channel):
            await smsc.drop()
            await until(lambda: link_health(channel)["binds"] == 2, what="a re-bind")
    assert logs, "link events are logged"
    assert "s3cret!" not in str(caught.value)
    assert all("s3cret!" not in str(entry) and "secret" not in str(entry) for entry in logs)
    assert {entry["event"] for entry in logs} >= {"smpp_link_bound", "smpp_link_dropped"}


def test_health_has_the_shape_operations_wire_up() -> None:
    channel = make_channel(1)
    health = channel.health()
    assert health["ready"] is False
    links = health["links"]
    assert isinstance(links, dict)
    assert set(links["default"]) == {
        "bound", "where", "in_flight", "window", "rate_per_s", "configured_rate_per_s", "binds",
        "drops", "submitted", "accepted", "refused", "throttled", "timeouts", "lost", "receipts",
        "replies", "bad_input", "last_error",
    }  # fmt: skip


async def test_throttling_is_transient_and_slows_the_link(smsc: TestSmsc) -> None:
    smsc.statuses.extend([0x58] * 5)
    async with started(make_channel(smsc.port, window=1, rate=1000)) as channel:
        results = await channel.send(batch_of(10, text=SHORT))
        health = link_health(channel)
    throttled = [r for r in results if r.outcome is Outcome.TRANSIENT]
    assert len(throttled) == 5
    assert {(r.reason, r.detail) for r in throttled} == {
        (Reason.RATE_LIMITED, "ESME_RTHROTTLED 0x58")
    }
    assert sum(r.outcome is Outcome.ACCEPTED for r in results) == 5
    assert health["throttled"] == 5
    rate, configured = health["rate_per_s"], health["configured_rate_per_s"]
    assert isinstance(rate, float) and isinstance(configured, float)
    assert rate < configured == 1000


async def test_permanent_refusals_carry_the_status(smsc: TestSmsc) -> None:
    smsc.statuses.append(0x0B)
    async with started(make_channel(smsc.port)) as channel:
        [result] = await channel.send(batch_of(1, text=SHORT))
    assert (result.outcome, result.reason, result.detail) == (
        Outcome.PERMANENT,
        Reason.CLIENT,
        "ESME_RINVDSTADR 0x0B",
    )


async def test_a_dropped_link_loses_nothing_and_duplicates_only_unanswered(
    smsc: TestSmsc,
) -> None:
    smsc.drop_after = 8  # cut the TCP connection when the 8th submit arrives, unanswered
    async with started(make_channel(smsc.port, window=3)) as channel:
        batch = batch_of(30, text=SHORT)
        first = {r.key: r for r in await channel.send(batch)}
        assert len(first) == 30
        accepted = {k for k, r in first.items() if r.outcome is Outcome.ACCEPTED}
        retry = {k for k, r in first.items() if r.outcome is Outcome.TRANSIENT}
        assert accepted | retry == set(first)  # nothing else, nothing missing
        assert {first[k].reason for k in retry} == {Reason.UNREACHABLE}
        before_drop = list(smsc.submits)
        # As dispatch would: send the transient ones again once the link is back.
        await until(lambda: channel.health()["ready"] is True, what="the link to be ready")
        again = await channel.send([m for m in batch if m.key in retry])
        assert all(r.outcome is Outcome.ACCEPTED for r in again)
        health = link_health(channel)
    assert (health["drops"], health["binds"]) == (1, 2)
    by_address = {m.address.lstrip("+"): m.key for m in batch}
    arrivals = Counter(by_address[s.destination] for s in smsc.submits)
    assert set(arrivals) == set(first), "every message reached the SMSC"
    twice = {key for key, count in arrivals.items() if count > 1}
    lost = {k for k in retry if first[k].detail.startswith("link lost before submit_sm_resp")}
    assert twice <= lost, "only messages whose response never came may arrive twice"
    assert max(arrivals.values()) == 2
    not_sent = retry - lost
    sent_before = {by_address[s.destination] for s in before_drop}
    assert not (not_sent & sent_before), "a message reported 'not sent' was not sent"
    assert accepted <= sent_before


async def test_an_unbind_from_the_smsc_is_followed_by_a_rebind(smsc: TestSmsc) -> None:
    async with started(make_channel(smsc.port)) as channel:
        await smsc.push(Unbind())
        await until(
            lambda: link_health(channel)["binds"] == 2 and smsc.bound_sessions == 1,
            what="a re-bind",
        )
        [result] = await channel.send(batch_of(1, text=SHORT))
        assert result.outcome is Outcome.ACCEPTED


async def test_slow_responses_time_out_as_transient(smsc: TestSmsc) -> None:
    smsc.response_delay = 1.0
    async with started(make_channel(smsc.port, response_timeout_s=0.2)) as channel:
        results = await channel.send(batch_of(3, text=SHORT))
        assert {(r.outcome, r.reason) for r in results} == {(Outcome.TRANSIENT, Reason.TIMEOUT)}
        assert link_health(channel)["timeouts"] == 3
        smsc.response_delay = 0.0
        [result] = await channel.send(batch_of(1, first_key=10, text=SHORT))
        assert result.outcome is Outcome.ACCEPTED
        assert channel.health()["ready"] is True


async def test_bad_input_is_counted_and_never_stops_the_link(smsc: TestSmsc) -> None:
    async with started(make_channel(smsc.port)) as channel:
        [sent] = await channel.send(batch_of(1, text=SHORT))
        # An unknown command and a deliver_sm whose body is cut short.
        await smsc.push_raw(struct.pack("!IIII", 16, 0x00000777, 0, 9001))
        await smsc.push_raw(struct.pack("!IIII", 18, 0x00000005, 0, 9002) + b"\x01\x02")
        await smsc.push_receipt("deadbeef", "DELIVRD")  # an id this channel never got
        await smsc.push_receipt(sent.external_id or "", "LOST", tlvs=False)  # unknown state
        await smsc.push_mo("8613900000001", "1", encoding="ucs2", data_coding=0x0E)  # KS C 5601
        await smsc.push_mo("8613900000001", raw=b"\x00\x31\x00", encoding="ucs2")  # odd UCS-2
        await smsc.push_mo("8613900000001", raw=b"\x09\x00\x03", esm_class=0x40)  # broken UDH
        await smsc.push_mo("8613900000002", "收到", encoding="ucs2")  # and a good one after it
        events = await collect_events(channel, 3, within=5.0)
        # Every deliver_sm that reached the channel has been handled once its counters show
        # them all: what it emitted by then is all it will.
        bad_input = {
            "receipt for an unknown message id": 1,
            "receipt with unknown state": 1,
            "reply in an unknown encoding": 1,
            "reply bytes do not fit their data_coding": 1,
            "UDH longer than the message": 1,
        }

        def handled() -> bool:
            health = link_health(channel)
            return health["bad_input"] == bad_input and health["replies"] == 2

        await until(handled, what="every deliver_sm handled")
        events += await events_so_far(channel)
        await smsc.wait_for(lambda: len(smsc.responses) >= 8)
        health = link_health(channel)
        [after] = await channel.send(batch_of(1, first_key=2, text=SHORT))
    assert after.outcome is Outcome.ACCEPTED
    assert health["bound"] is True and health["drops"] == 0
    assert health["bad_input"] == bad_input
    # smpp34 hands deliver_sm over from two worker threads: arrival order is not kept.
    replies = {(e.sender, e.text) for e in events if isinstance(e, Reply)}
    assert replies == {("+8613900000001", "1\ufffd"), ("+8613900000002", "收到")}
    assert [e.external_id for e in events if isinstance(e, DeliveryReceipt)] == ["deadbeef"]
    # The library answered what it could not parse, as SMPP requires: generic_nack for the
    # unknown command, an error status for the broken deliver_sm.
    assert (0x80000000, 0x03) in smsc.responses
    # (smpp34 1.5.0 sends that one with submit_sm_resp's command id; the status is right.)
    assert 0xC2 in {status for _, status in smsc.responses}  # ESME_RINVPARLEN


async def test_routes_by_operator_and_fails_over_to_the_fallback() -> None:
    mobile, unicom = TestSmsc(), TestSmsc()
    await mobile.start()
    await unicom.start()
    link = {"host": "127.0.0.1", "system_id": "warnd", "password": "secret"}
    channel = SmppChannel(
        "sms",
        SmppConfig.model_validate(
            {
                "type": "smpp",
                "source_addr": SOURCE,
                "fallback": "mobile",
                "bind_timeout_s": 1.0,
                "links": {
                    "mobile": {**link, "port": mobile.port},
                    "unicom": {**link, "port": unicom.port},
                },
            }
        ),
    )
    try:
        async with started(channel):
            results = await channel.send(
                [
                    OutboundMessage(1, "+8613800000001", "预警"),  # 138: Mobile
                    OutboundMessage(2, "+8613000000002", "预警"),  # 130: Unicom
                    OutboundMessage(3, "+8617000000003", "预警"),  # 170: no route, fallback
                ]
            )
            assert all(r.outcome is Outcome.ACCEPTED for r in results)
            # A batch's messages are in flight together: their order on the wire is not fixed.
            assert {s.destination for s in mobile.submits} == {"8613800000001", "8617000000003"}
            assert [s.destination for s in unicom.submits] == ["8613000000002"]
            await unicom.stop()
            await until(
                lambda: link_health(channel, "unicom")["bound"] is False,
                what="the unicom link to drop",
            )
            [result] = await channel.send([OutboundMessage(4, "+8613000000004", "预警")])
            assert result.outcome is Outcome.ACCEPTED
            assert mobile.submits[-1].destination == "8613000000004"
            health = channel.health()
            assert health["ready"] is True
    finally:
        await mobile.stop()
        await unicom.stop()


async def test_a_number_no_link_serves_fails_permanently() -> None:
    mobile = TestSmsc()
    await mobile.start()
    table = {
        "type": "smpp",
        "source_addr": SOURCE,
        "links": {
            "mobile": {"host": "127.0.0.1", "port": mobile.port, "system_id": "warnd"},
            "unicom": {"host": "127.0.0.1", "port": mobile.port, "system_id": "warnd"},
        },
    }
    mobile.password = ""
    channel = SmppChannel("sms", SmppConfig.model_validate(table))
    try:
        async with started(channel):
            [result] = await channel.send([OutboundMessage(1, "+8618900000001", "预警")])
        assert (result.outcome, result.reason) == (Outcome.PERMANENT, Reason.CLIENT)
        assert "no fallback" in result.detail
        assert mobile.submits == []
    finally:
        await mobile.stop()


async def test_send_waits_for_the_window_and_never_exceeds_it(smsc: TestSmsc) -> None:
    smsc.response_delay = 0.01
    peak = 0
    async with started(make_channel(smsc.port, window=4)) as channel:

        async def watch() -> None:
            nonlocal peak
            while True:
                in_flight = link_health(channel)["in_flight"]
                assert isinstance(in_flight, int)
                peak = max(peak, in_flight)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        try:
            results = await channel.send(batch_of(40, text=SHORT))
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert peak == 4  # full, never over


async def test_concurrent_batches_share_the_window_in_order(smsc: TestSmsc) -> None:
    smsc.response_delay = 0.01
    async with started(make_channel(smsc.port, window=3)) as channel:
        first, second = await asyncio.gather(
            channel.send(batch_of(10, text=SHORT)),
            channel.send(batch_of(10, first_key=100, text=SHORT)),
        )
        assert link_health(channel)["submitted"] == 20
    assert [r.key for r in first] == list(range(1, 11))  # a result per message, in batch order
    assert [r.key for r in second] == list(range(100, 110))
    assert all(r.outcome is Outcome.ACCEPTED for r in [*first, *second])
    # The first batch was queued first, so the SMSC saw all of it before any of the second.
    assert {s.destination[-3:] for s in smsc.submits[:10]} == {f"{k:03d}" for k in range(1, 11)}


async def test_a_long_message_stops_before_its_next_part_when_its_batch_is_given_up(
    smsc: TestSmsc,
) -> None:
    smsc.response_delay = 0.2
    async with started(make_channel(smsc.port, window=1)) as channel:
        sending = asyncio.create_task(channel.send(batch_of(1, text=WARNING_TEXT * 2)))
        await smsc.wait_for(lambda: len(smsc.submits) == 1)
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        # The only lane finishes a message before it takes the next: once the next is accepted,
        # any further part of the long one would have been on the wire before it.
        [after] = await channel.send(batch_of(1, first_key=50, text=SHORT))
        assert after.outcome is Outcome.ACCEPTED
    # Only its first part went; dispatch hands the row back and it goes again, whole.
    assert len(smsc.submits) == 2
    first, then = smsc.submits
    assert first.udh is not None and first.udh[2] == 1
    assert then.udh is None and then.destination.endswith("00000050")


async def test_a_message_that_waits_too_long_for_a_lane_goes_back_unsent(smsc: TestSmsc) -> None:
    smsc.response_delay = 0.3
    async with started(make_channel(smsc.port, window=1, max_queue_wait_s=0.1)) as channel:
        first, *later = await channel.send(batch_of(3, text=SHORT))
    assert first.outcome is Outcome.ACCEPTED
    assert [(r.outcome, r.reason) for r in later] == [(Outcome.TRANSIENT, Reason.RATE_LIMITED)] * 2
    assert all("not sent" in r.detail for r in later)
    assert len(smsc.submits) == 1


async def test_a_batch_given_up_is_not_sent_after_all(smsc: TestSmsc) -> None:
    """A worker stopping mid-batch hands its rows back: what was not on the wire stays unsent."""
    smsc.response_delay = 0.2
    async with started(make_channel(smsc.port, window=1)) as channel:
        sending = asyncio.create_task(channel.send(batch_of(5, text=SHORT)))
        await smsc.wait_for(lambda: len(smsc.submits) == 1)
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        # The only lane takes messages in order: what was queued of the batch comes up before
        # the next message, so were any of it sent, it would be on the wire before that one.
        [result] = await channel.send(batch_of(1, first_key=50, text=SHORT))
        assert result.outcome is Outcome.ACCEPTED
    assert len(smsc.submits) == 2
    assert smsc.submits[0].destination.endswith("00000001")
    assert smsc.submits[1].destination.endswith("00000050")


async def test_an_urgent_message_overtakes_those_already_waiting_for_a_lane(
    smsc: TestSmsc,
) -> None:
    """An earthquake alert (priority 0) handed over while a rainstorm's messages wait for the
    link's window goes on the wire next, before them."""
    smsc.response_delay = 0.2
    async with started(make_channel(smsc.port, window=1)) as channel:
        rainstorm = [replace(m, priority=20) for m in batch_of(5, text=SHORT)]
        ordinary = asyncio.create_task(channel.send(rainstorm))
        await smsc.wait_for(lambda: len(smsc.submits) == 1)
        [alert] = [replace(m, priority=0) for m in batch_of(1, first_key=90, text=SHORT)]
        [result] = await channel.send([alert])
        assert result.outcome is Outcome.ACCEPTED
        assert all(r.outcome is Outcome.ACCEPTED for r in await ordinary)
    order = [int(s.destination[-8:]) for s in smsc.submits]
    assert order == [1, 90, 2, 3, 4, 5]


async def test_a_message_past_its_expiry_is_dropped_not_sent_late(smsc: TestSmsc) -> None:
    async with started(make_channel(smsc.port)) as channel:
        fresh, stale = batch_of(2, text=SHORT)
        past = datetime.now(UTC) - timedelta(seconds=3)
        results = await channel.send([fresh, replace(stale, expires_at=past)])
    by_key = {r.key: r for r in results}
    assert by_key[fresh.key].outcome is Outcome.ACCEPTED
    late = by_key[stale.key]
    assert (late.outcome, late.reason) == (Outcome.PERMANENT, Reason.EXPIRED)
    assert "not sent late" in late.detail
    assert [s.destination[-8:] for s in smsc.submits] == [f"{fresh.key:08d}"]


# --- end to end through warnd ------------------------------------------------------------------


async def test_a_red_warning_over_smpp_is_delivered_and_answered(
    pool: asyncpg.Pool, policy: Policy, smsc: TestSmsc
) -> None:
    """Issue 4's "done when": every responder of the county gets a correctly encoded, signed SMS
    through the SMSC, a link drop mid-way loses nothing, receipts mark the deliveries, and the
    replies of half of the responders acknowledge their call-outs."""
    warning_id = await plan(pool, policy, rainstorm())
    clock = ManualClock(DAYTIME + timedelta(minutes=1))
    channel = make_channel(smsc.port, window=4)
    dispatcher = Dispatcher(pool, {"sms": channel}, clock, Metrics(), Wakeup())
    receiver = Inbound(pool, clock, Metrics(), answers=Answers(pool, clock))
    smsc.receipt = "DELIVRD"
    smsc.drop_after = 5  # the link drops under the first batch
    async with started(channel):
        inbound = asyncio.create_task(receiver.run(channel))
        try:
            for _ in range(50):
                claimed = await dispatcher.claim(channel, 10)
                if claimed:
                    batch = [c.message() for c in claimed]
                    await dispatcher.record("sms", claimed, await channel.send(batch))
                    continue
                waiting = await pool.fetchval(
                    "SELECT count(*) FROM deliveries WHERE warning_id = $1 "
                    "AND channel_kind = 'sms' AND state IN ('queued', 'sending')",
                    warning_id,
                )
                if not waiting:
                    break
                clock.advance(600)  # let the retries of the transient failures come due
                await until(lambda: channel.health()["ready"] is True, what="the link to be ready")
            rows = await pool.fetch(
                """SELECT d.id, d.address, d.audience, d.external_id, d.parts, m.body
                     FROM deliveries d JOIN messages m ON m.id = d.message_id
                    WHERE d.warning_id = $1 AND d.channel_kind = 'sms'""",
                warning_id,
            )
            # The part count of every text is recorded on its delivery: 70 UCS-2 characters
            # fit one message, a longer text takes one part per 67.
            for row in rows:
                length = len(row["body"].encode("utf-16-le")) // 2
                assert row["parts"] == (1 if length <= 70 else -(-length // 67)), dict(row)

            async def all_delivered() -> bool:
                # Receipts the SMSC sent before a batch was recorded wait to be matched, as
                # housekeeping does in the daemon.
                await receiver.match_early_receipts()
                return not await pool.fetchval(
                    "SELECT count(*) FROM deliveries WHERE warning_id = $1 "
                    "AND channel_kind = 'sms' AND state <> 'delivered'",
                    warning_id,
                )

            await until(all_delivered, what="every sms delivered")
            # Half of the responders answer "1" from their phones.
            opened = await pool.fetch(
                "SELECT phone FROM callouts WHERE warning_id = $1 ORDER BY phone", warning_id
            )
            phones = [r["phone"] for r in opened]
            answering = phones[: len(phones) // 2]
            for phone in answering:
                await smsc.push_mo(phone.lstrip("+"), "1", encoding="gsm0338")

            async def acknowledged() -> bool:
                count: int = await pool.fetchval(
                    "SELECT count(*) FROM callouts WHERE warning_id = $1 "
                    "AND state = 'acknowledged'",
                    warning_id,
                )
                return count == len(answering)

            await until(acknowledged, what="the answers to acknowledge")
        finally:
            inbound.cancel()
            await asyncio.gather(inbound, return_exceptions=True)
    assert len(phones) >= 4
    states = await pool.fetch(
        "SELECT phone, state, ack_via FROM callouts WHERE warning_id = $1", warning_id
    )
    acknowledged_by = {r["phone"]: r["ack_via"] for r in states if r["state"] == "acknowledged"}
    assert acknowledged_by == dict.fromkeys(answering, "sms")
    # Every SMS reached the SMSC whole: parts reassembled by UDH equal the planned text.
    responders = {r["address"] for r in rows if r["audience"] == "responder"}
    assert set(phones) <= responders
    groups: dict[tuple[str, int], dict[int, str]] = {}
    for number, part in enumerate(smsc.submits):
        reference, _, sequence = part.udh or (-number, 1, 1)
        groups.setdefault((part.destination, reference), {})[sequence] = part.text
    received: dict[str, set[str]] = {}
    for (destination, _), parts in groups.items():
        received.setdefault(destination, set()).add("".join(parts[i] for i in sorted(parts)))
    for row in rows:
        assert row["body"] in received["86" + national_number(row["address"])]
        assert row["body"].startswith("【济宁市应急管理局】"), "texts carry the signature"
    assert link_health(channel)["drops"] == 1
