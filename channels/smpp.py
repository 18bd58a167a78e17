"""The ``smpp`` channel: SMS through operators' SMS centres (SMSCs) over SMPP 3.4.

Library: ``smpp34`` (Rust-backed asyncio client), chosen over ``aiosmpplib`` after trying both
against the same peers. ``smpp34`` gives one awaitable per ``submit_sm`` that resolves to its
``submit_sm_resp`` (each message's outcome read straight off the wire; the window is a set of
lanes around it), keeps ``enquire_link`` (at its default timers, which Python cannot set) and
sequence windowing in its core, answers an unknown command
with ``generic_nack`` and a malformed PDU with an error response without dropping the session,
and ships type stubs. ``aiosmpplib`` is pure Python and readable, but its ESME sends through a
queue-and-hooks design with no window (outcomes come back through callbacks keyed by our ids),
re-splits texts itself, tears the connection down on an unknown command id (losing every message
in flight), and on a fast SMSC fails to correlate responses that arrive before it has stored the
request ("Could not correlate SMPP response"). The price of ``smpp34`` 1.5.0: its Python client
does not surface a refused bind's status (a refusal shows as "bind timed out"), nor the PDUs its
core rejected, nor (on this 2-core machine) more than about 17,000 ``submit_sm``/s per
process, most of it spent handing each response from its threads to the event loop, below the
25,000/s its documentation reports on a 24-core machine; inbound
``deliver_sm`` events may reach Python out of order (SMPP promises no order either); when its
inbound queue is full it answers "queue full" with a ``deliver_sm_resp`` whose framing our test
peer could not follow (hence the large ``inbound_capacity`` below); and it does not appear to set
TCP_NODELAY: with receipts flowing, each write can wait for the SMSC's delayed ACK (~40 ms), so a
link carries about ``window`` / 40 ms (window 10: ~250 messages/s; window 100: ~3,000/s).
Configure a window of 20 or more where the operator allows it.

Configuration (``[channels.<name>]``, ``type = "smpp"``). One link::

    type = "smpp"
    host = "smsc.example.net"
    port = 2775
    system_id = "jnyj"
    password = "…"                  # SecretStr: never logged, never in a repr
    source_addr = "106573700001"     # the sender number shown on the phone
    window = 10                      # submit_sm in flight per link
    rate = 100                       # submit_sm per second per link (alias of rate_per_s)

Several links, one per operator, with routing by number prefix and a fallback::

    type = "smpp"
    source_addr = "106573700001"
    fallback = "mobile"              # numbers no prefix matches, and links that are down
    [channels.sms.links.mobile]
    host = "…"  port = 7890  system_id = "…"  password = "…"  window = 16  rate = 200
    [channels.sms.links.unicom]
    …
    [channels.sms.links.telecom]
    …
    [channels.sms.routes]            # optional; these are the defaults (channels.sms_routing)
    mobile = ["134", "135", …]

Links named ``mobile``, ``unicom`` and ``telecom`` get the operators' prefixes by default; a
``routes`` table replaces the defaults entirely. A number goes to the link of its longest
matching prefix, else to ``fallback``, else (one link) to the only link, else nowhere: a
PERMANENT failure (``client``) that dispatch fails over to another channel. If that link is not
bound the message goes to the fallback link; if that is down too the message is reported
TRANSIENT (reason ``unreachable``, never sent) and dispatch retries it later. Other settings:
``destination_format`` ("international" 8613…, TON 1, or "national" 13…), ``max_text`` (670:
ten UCS-2 parts), ``response_timeout_s``, ``max_queue_wait_s``, ``bind_timeout_s``,
``reconnect_max_s``, ``throttle_cooldown_s``.

Sending. Text that fits the GSM 03.38 alphabet goes as GSM (``data_coding`` 0, unpacked, 160
characters, 153 per part); anything else as UCS-2 (``data_coding`` 8, 70 characters, 67 per part;
characters outside the BMP travel as UTF-16 surrogate pairs that a split never separates). Longer
texts become concatenated parts with the 6-byte UDH ``05 00 03 ref total seq`` and ``esm_class``
0x40, sent in order on one link. ``registered_delivery`` is always 1. Each link sends through
``window`` lanes that take the queued messages in order: a message holds its lane while its parts
are in flight and waits for the link's pace (a GCRA schedule at the link's rate). Messages beyond
the window wait in the link's queue (``Limits.queues``), so dispatch can hand over the next batch
while one is on the wire. A message is ACCEPTED with the SMSC's id of its first part, and ``detail``
says ``"<n> part(s), gsm|ucs2"``. ``submit_sm_resp`` statuses map to TRANSIENT (throttled 0x58 ->
``rate_limited``; queue full 0x14, system error 0x08, submit failed 0x45, temporary application
error 0x64 -> ``server``) or PERMANENT (invalid destination 0x0B, source 0x0A, length, TON/NPI, … ->
``client``), the status named in ``detail``. A throttled link halves its rate (at most once a
second, down to 1/16) and doubles it back after each quiet ``throttle_cooldown_s``.

Links and failure. Each link binds as a transceiver and is kept bound by one supervisor task:
after a drop or an unbind it re-binds with exponential backoff (0.5 s doubling to
``reconnect_max_s``, with jitter). When the caller gives a batch up (dispatch stopping), what is
still queued is never sent and a long message stops before its next part; a message that waited
``max_queue_wait_s`` for a lane goes back TRANSIENT (``rate_limited``), unsent. A message whose
``submit_sm_resp`` never came (link dropped, or no answer within ``response_timeout_s``) is
TRANSIENT (``unreachable`` / ``timeout``) and dispatch sends it again, so only those can arrive
twice; a message not yet submitted when its link went down is never sent on it (fallback link or
TRANSIENT). ``start()`` binds every link once: a refused or unanswered bind raises
:class:`SmppBindError` naming the link and what to check, while an SMSC that cannot be reached
at all only leaves its link down and reconnecting (the daemon starts; ``health()`` shows it).

Inbound. ``deliver_sm`` with ``esm_class`` 0x04 is a receipt: the message id comes from the
``receipted_message_id`` TLV or the ``id:`` text, the state from the ``message_state`` TLV or
``stat:`` (DELIVRD delivered, UNDELIV/DELETED/UNKNOWN undeliverable, EXPIRED expired, REJECTD
rejected; ENROUTE/ACCEPTD are intermediate and not reported). A multi-part message is delivered
when every part is; the first failed part fails it. ``esm_class`` 0 is a reply (MO), decoded from
GSM 03.38, IA5/ASCII, Latin-1, UCS-2 or GBK (``data_coding`` 15, used by Chinese SMSCs) and
reassembled from UDH or SAR parts. Bad input — a receipt without id or with an unknown state, a
receipt for an id this process never issued (still passed on: dispatch keeps unmatched receipts),
an unknown ``data_coding``, broken UDH or text bytes, an unexpected ``esm_class`` — is logged
(``smpp_bad_input`` with a reason) and counted per link; none stops the link. An unknown command
or a malformed PDU never reaches this module: smpp34's core answers it (``generic_nack``, or an
error status) and keeps the session, so the channel cannot count those.

Operations: :meth:`SmppChannel.health` returns per-link counters and state (see its docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import re
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import smpp34
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from channels.base import (
    Channel,
    ChannelClock,
    ChannelConfig,
    ChannelKind,
    DeliveryReceipt,
    Limits,
    OutboundMessage,
    Outcome,
    Reason,
    ReceiptStatus,
    Reply,
    SendResult,
    WallClock,
)
from channels.registry import ChannelConfigError
from channels.sms_routing import DEFAULT_ROUTES, PrefixRoutes, national_number

log = structlog.get_logger(__name__)

# --- SMPP 3.4 facts ---------------------------------------------------------------------------

DATA_CODING_GSM = 0x00
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_MESSAGE_PAYLOAD = 0x0424

# submit_sm_resp command_status values (SMPP 3.4 §5.1.3) and how a send that got them ends.
_STATUS_NAMES = {
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP",
    0x33: "ESME_RINVNUMDESTS",
    0x40: "ESME_RINVDESTFLAG",
    0x42: "ESME_RINVSUBREP",
    0x43: "ESME_RINVESMCLASS",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0x66: "ESME_RX_R_APPN",
    0xC0: "ESME_RINVOPTPARSTREAM",
    0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN",
    0xC3: "ESME_RMISSINGOPTPARAM",
    0xC4: "ESME_RINVOPTPARAMVAL",
    0xFF: "ESME_RUNKNOWNERR",
}
ESME_RTHROTTLED = 0x58
# The SMSC is busy or broken right now: the same message may go through later.
_TRANSIENT_STATUSES = {
    0x04: Reason.UNREACHABLE,  # not bound (yet): the session is being re-established
    0x08: Reason.SERVER,
    0x14: Reason.SERVER,
    0x45: Reason.SERVER,
    0x58: Reason.RATE_LIMITED,
    0x64: Reason.SERVER,
    0xFF: Reason.SERVER,
}


def classify_status(status: int) -> tuple[Outcome, Reason, str]:
    """Pure: what a non-zero ``submit_sm_resp`` status means for the message, and its name.

    Unknown statuses count as permanent client errors: retrying a refusal we do not understand
    would only repeat it, while a permanent failure lets dispatch fail over to another channel.
    """
    name = f"{_STATUS_NAMES.get(status, 'status')} 0x{status:02X}"
    transient = _TRANSIENT_STATUSES.get(status)
    if transient is not None:
        return Outcome.TRANSIENT, transient, name
    return Outcome.PERMANENT, Reason.CLIENT, name


# --- text: GSM 03.38 or UCS-2, split into parts -------------------------------------------------

# GSM 03.38 default alphabet, position = septet value; 0x1B is the escape to the extension table.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_GSM_ENCODE: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_GSM_BASIC) if i != 0x1B}
_GSM_ENCODE.update({ch: bytes([0x1B, code]) for code, ch in _GSM_EXTENSION.items()})
_GSM_DECODE_BASIC = dict(enumerate(_GSM_BASIC))

GSM_SINGLE, GSM_PART = 160, 153  # septets: one message, one part after the 6-octet UDH
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units


@dataclass(frozen=True)
class EncodedText:
    """A text ready for ``submit_sm``: its coding and the bytes of each part (UDH not yet added)."""

    data_coding: int
    parts: tuple[bytes, ...]

    @property
    def coding_name(self) -> str:
        return "gsm" if self.data_coding == DATA_CODING_GSM else "ucs2"


@functools.lru_cache(maxsize=256)
def encode_text(text: str) -> EncodedText:
    """Pure: GSM 03.38 when every character has a GSM code, else UCS-2; split into parts.

    Cached: one warning sends the same text to thousands of phones.
    """
    if all(ch in _GSM_ENCODE for ch in text):
        septets = [_GSM_ENCODE[ch] for ch in text]
        if sum(len(s) for s in septets) <= GSM_SINGLE:
            return EncodedText(DATA_CODING_GSM, (b"".join(septets),))
        return EncodedText(DATA_CODING_GSM, _pack(septets, GSM_PART))
    units = text.encode("utf-16-be")
    if len(units) <= UCS2_SINGLE * 2:
        return EncodedText(DATA_CODING_UCS2, (units,))
    # One "character" per BMP code point, two units for one outside it: never split a pair.
    chars = [ch.encode("utf-16-be") for ch in text]
    return EncodedText(DATA_CODING_UCS2, _pack(chars, UCS2_PART * 2))


def _pack(pieces: Sequence[bytes], capacity: int) -> tuple[bytes, ...]:
    """Greedy: consecutive indivisible pieces into parts of at most ``capacity`` bytes."""
    parts: list[bytes] = []
    current = bytearray()
    for piece in pieces:
        if len(current) + len(piece) > capacity:
            parts.append(bytes(current))
            current = bytearray()
        current += piece
    if current:
        parts.append(bytes(current))
    return tuple(parts)


def with_udh(part: bytes, reference: int, total: int, sequence: int) -> bytes:
    """A part prefixed with the concatenation UDH (IEI 0x00, 8-bit reference)."""
    return bytes((0x05, 0x00, 0x03, reference & 0xFF, total, sequence)) + part


def decode_gsm(data: bytes) -> tuple[str, bool]:
    """Unpacked GSM 03.38 septets to text; the flag says whether any byte was not valid."""
    out: list[str] = []
    clean = True
    escape = False
    for byte in data:
        if escape:
            escape = False
            ch = _GSM_EXTENSION.get(byte)
            if ch is None:
                clean = False
                ch = _GSM_DECODE_BASIC.get(byte, "\ufffd")
            out.append(ch)
        elif byte == 0x1B:
            escape = True
        elif byte < 0x80:
            out.append(_GSM_DECODE_BASIC[byte])
        else:
            clean = False
            out.append("\ufffd")
    return "".join(out), clean and not escape


_TEXT_CODINGS = {0x01: "ascii", 0x03: "latin-1", 0x08: "utf-16-be", 0x0F: "gbk"}


def decode_text(data: bytes, data_coding: int) -> tuple[str, bool]:
    """Pure: a short message's text; the flag is False when bytes did not fit the coding.

    Raises LookupError for a ``data_coding`` this channel cannot read.
    """
    if data_coding == DATA_CODING_GSM:
        return decode_gsm(data)
    codec = _TEXT_CODINGS.get(data_coding)
    if codec is None:
        raise LookupError(f"data_coding 0x{data_coding:02X}")
    try:
        return data.decode(codec), True
    except UnicodeDecodeError:
        return data.decode(codec, errors="replace"), False


# --- receipts ------------------------------------------------------------------------------------

_RECEIPT_ID = re.compile(r"\bid:(\S+)", re.IGNORECASE)
_RECEIPT_STAT = re.compile(r"\bstat:(\w+)", re.IGNORECASE)
_RECEIPT_ERR = re.compile(r"\berr:(\w+)", re.IGNORECASE)
# message_state TLV values (SMPP 3.4 §5.2.28) to the receipt text's stat words.
_STATE_WORDS = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
_FINAL_STATES = {
    "DELIVRD": ReceiptStatus.DELIVERED,
    "UNDELIV": ReceiptStatus.UNDELIVERABLE,
    "DELETED": ReceiptStatus.UNDELIVERABLE,
    "UNKNOWN": ReceiptStatus.UNDELIVERABLE,
    "EXPIRED": ReceiptStatus.EXPIRED,
    "REJECTD": ReceiptStatus.REJECTED,
}
_INTERMEDIATE_STATES = {"ENROUTE", "ACCEPTD"}


@dataclass(frozen=True)
class ParsedReceipt:
    message_id: str
    state: str  # the stat word: DELIVRD, UNDELIV …
    error: str = ""


class BadInputError(ValueError):
    """Something the SMSC sent cannot be used; the message is the reason that gets counted."""


def parse_receipt(short_message: bytes, tlvs: Mapping[int, bytes]) -> ParsedReceipt:
    """Pure: the id and state a receipt reports, TLVs first, then the ``id:… stat:…`` text."""
    text = short_message.decode("latin-1")
    message_id = tlvs.get(TLV_RECEIPTED_MESSAGE_ID, b"").rstrip(b"\x00").decode("latin-1")
    if not message_id and (found := _RECEIPT_ID.search(text)):
        message_id = found.group(1)
    if not message_id:
        raise BadInputError("receipt without message id")
    state_tlv = tlvs.get(TLV_MESSAGE_STATE)
    state = _STATE_WORDS.get(state_tlv[0], "") if state_tlv else ""
    if not state and (found := _RECEIPT_STAT.search(text)):
        state = found.group(1).upper()
    if state not in _FINAL_STATES and state not in _INTERMEDIATE_STATES:
        raise BadInputError("receipt with unknown state")
    error = found.group(1) if (found := _RECEIPT_ERR.search(text)) else ""
    return ParsedReceipt(message_id, state, error)


@dataclass(frozen=True)
class Segment:
    """Where one part of a concatenated MO message belongs."""

    reference: int
    total: int
    sequence: int


def split_udh(short_message: bytes) -> tuple[Segment | None, bytes]:
    """Pure: the concatenation info of a UDH, and the text bytes after it."""
    if not short_message:
        raise BadInputError("empty message with a UDH flag")
    length = short_message[0]
    header, body = short_message[1 : 1 + length], short_message[1 + length :]
    if len(header) != length:
        raise BadInputError("UDH longer than the message")
    at = 0
    while at + 2 <= len(header):
        iei, size = header[at], header[at + 1]
        value = header[at + 2 : at + 2 + size]
        if len(value) != size:
            raise BadInputError("truncated UDH element")
        if iei == 0x00 and size == 3:
            return Segment(value[0], value[1], value[2]), body
        if iei == 0x08 and size == 4:
            return Segment(int.from_bytes(value[:2], "big"), value[2], value[3]), body
        at += 2 + size
    return None, body


def _mask(address: str) -> str:
    """A phone number fit for a log line: personal data, so only its shape and last digits."""
    digits = national_number(address)
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) > 7 else "****"


# --- configuration -------------------------------------------------------------------------------


class SmppLinkConfig(BaseModel):
    """One bind to one SMSC (``[channels.<name>.links.<link>]``)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(default=2775, ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    password: SecretStr = Field(default=SecretStr(""))
    system_type: str = Field(default="", max_length=12)
    source_addr: str | None = Field(default=None, min_length=1, max_length=20)
    window: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, gt=0)


SINGLE_LINK = "default"
# deliver_sm the library may hold for us before it answers the SMSC "queue full": a city-wide
# warning brings receipts back as fast as messages go out.
INBOUND_CAPACITY = 65_536


class SmppConfig(ChannelConfig):
    """Settings of an ``smpp`` channel (see the module docstring)."""

    host: str | None = None
    port: int = Field(default=2775, ge=1, le=65535)
    system_id: str = Field(default="", max_length=15)
    password: SecretStr = Field(default=SecretStr(""))
    system_type: str = Field(default="", max_length=12)
    source_addr: str = Field(min_length=1, max_length=20)
    window: int = Field(default=10, ge=1)
    links: dict[str, SmppLinkConfig] = Field(default_factory=dict)
    routes: dict[str, list[str]] | None = None
    fallback: str | None = None
    destination_format: Literal["international", "national"] = "international"
    max_text: int = Field(default=670, ge=70)
    response_timeout_s: float = Field(default=10.0, gt=0)
    # A message that waited this long for a lane (a slow or throttled link) goes back unsent,
    # well inside dispatch's lease, so that the lease never hands out a row still queued here.
    max_queue_wait_s: float = Field(default=30.0, gt=0)
    bind_timeout_s: float = Field(default=10.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    throttle_cooldown_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _rate_alias(cls, data: Any) -> Any:
        """``rate`` is the SMPP-flavoured name of ``rate_per_s`` (per link)."""
        if isinstance(data, dict) and "rate" in data:
            if "rate_per_s" in data:
                raise ValueError("give rate or rate_per_s, not both")
            data = dict(data)
            data["rate_per_s"] = data.pop("rate")
        return data

    @model_validator(mode="after")
    def _one_shape(self) -> SmppConfig:
        if self.host is not None and self.links:
            raise ValueError("give host/port/system_id for one link or a links table, not both")
        if self.host is None and not self.links:
            raise ValueError("no SMSC: give host, port, system_id and password, or a links table")
        if self.host is not None and not self.system_id:
            raise ValueError("system_id is required with host")
        names = set(self.resolved_links())
        if self.fallback is not None and self.fallback not in names:
            raise ValueError(f"fallback {self.fallback!r} is not a link ({', '.join(names)})")
        for link in self.routes or {}:
            if link not in names:
                raise ValueError(f"routes name {link!r}, which is not a link")
        PrefixRoutes(self.resolved_routes())  # rejects a prefix routed to two links
        return self

    def resolved_links(self) -> dict[str, SmppLinkConfig]:
        """Every link with the channel-wide defaults filled in."""
        if self.host is not None:
            links = {
                SINGLE_LINK: SmppLinkConfig(
                    host=self.host,
                    port=self.port,
                    system_id=self.system_id,
                    password=self.password,
                    system_type=self.system_type,
                )
            }
        else:
            links = self.links
        return {
            name: link.model_copy(
                update={
                    "source_addr": link.source_addr or self.source_addr,
                    "window": link.window or self.window,
                    "rate": link.rate or self.rate_per_s,
                }
            )
            for name, link in links.items()
        }

    def resolved_routes(self) -> dict[str, list[str]]:
        """The routing table in force: the configured one, or the operators' defaults."""
        if self.routes is not None:
            return self.routes
        return {name: list(DEFAULT_ROUTES[name]) for name in self.links if name in DEFAULT_ROUTES}


# --- one link ----------------------------------------------------------------------------------


class SmppBindError(ChannelConfigError):
    """An SMPP link could not bind at start-up; the message names the link and what to check.

    A configuration error like any other (wrong system_id or password, or a port that does not
    speak SMPP), so the daemon reports it the way it reports a bad ``[channels]`` table.
    """


class _Batch:
    """One ``send`` call's messages on their way through the links' lanes: a result per message,
    and one future that completes when the last of them is settled (no task per message)."""

    def __init__(self, size: int) -> None:
        self.results: list[SendResult | None] = [None] * size
        self.left = size
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.withdrawn = False  # the caller stopped waiting: queued messages are not sent

    def settle(self, index: int, result: SendResult) -> None:
        self.results[index] = result
        self.left -= 1
        if not self.left and not self.done.done():
            self.done.set_result(None)


# A message waiting for a lane: its batch, its place in it, the message, its national number, its
# encoded text and when it was queued (time.monotonic()).
_Job = tuple[_Batch, int, OutboundMessage, str, EncodedText, float]


class _Overdue:
    """Cancels the ``submit_sm`` futures still unanswered after the link's response timeout.

    One timer per link instead of an ``asyncio.timeout`` per message (a timer handle, a heap push
    and a task lookup each: a tenth of the channel's CPU at 8,000 messages/s). The timeout is the
    same for every submission, so deadlines arrive in submission order and a deque holds them.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._watched: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, future: asyncio.Future[Any]) -> None:
        loop = asyncio.get_running_loop()
        self._watched.append((loop.time() + self.timeout, future))
        if self._timer is None:
            self._timer = loop.call_at(self._watched[0][0], self._sweep)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        watched = self._watched
        while watched and (watched[0][1].done() or watched[0][0] <= now):
            future = watched.popleft()[1]
            future.cancel()  # no-op when answered
        self._timer = loop.call_at(watched[0][0], self._sweep) if watched else None


class _Pace:
    """A link's send schedule (GCRA) at its rate, slowed down while the SMSC throttles."""

    MIN_FACTOR = 1 / 16

    def __init__(self, rate: float, cooldown: float) -> None:
        self.base = rate
        self.factor = 1.0
        self._cooldown = cooldown
        self._due = 0.0  # theoretical arrival time of the next send
        self._slowed_at = -1e9
        self._quiet_since = 0.0

    @property
    def rate(self) -> float:
        return self.base * self.factor

    def _recover(self, now: float) -> None:
        if self.factor < 1.0 and now - self._quiet_since >= self._cooldown:
            self.factor = min(1.0, self.factor * 2)
            self._quiet_since = now

    def reserve(self) -> float:
        """Take the next send slot; returns how long to sleep before using it (usually 0)."""
        now = time.monotonic()
        self._recover(now)
        interval = 1.0 / self.rate
        # A burst of up to 50 ms worth (at least one message) passes without sleeping.
        tolerance = max(interval, 0.05)
        due = max(self._due, now)
        self._due = due + interval
        return max(0.0, due - tolerance - now)

    def slow_down(self) -> bool:
        """Halve the rate (once a second at most); True when it was lowered now."""
        now = time.monotonic()
        self._quiet_since = now
        if now - self._slowed_at < 1.0 or self.factor <= self.MIN_FACTOR:
            return False
        self._slowed_at = now
        self.factor = max(self.MIN_FACTOR, self.factor / 2)
        return True


@dataclass
class LinkStats:
    """Counters of one link since the channel was built."""

    binds: int = 0
    drops: int = 0
    submitted: int = 0  # submit_sm PDUs written
    accepted: int = 0  # messages (all parts) accepted
    refused: int = 0  # messages refused with a non-zero submit_sm_resp status
    throttled: int = 0
    timeouts: int = 0
    lost: int = 0  # messages whose submit_sm_resp never came because the link dropped
    receipts: Counter[str] = field(default_factory=Counter)
    replies: int = 0
    bad_input: Counter[str] = field(default_factory=Counter)
    last_error: str = ""


class _Link:
    """One transceiver bind to one SMSC, kept bound by its supervisor task."""

    def __init__(self, name: str, config: SmppLinkConfig, channel: SmppChannel) -> None:
        assert config.window is not None and config.rate is not None and config.source_addr
        self.name = name
        self.config = config
        self.window = config.window
        self._channel = channel
        self._settings = channel.config
        self.stats = LinkStats()
        self.pace = _Pace(config.rate, channel.config.throttle_cooldown_s)
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._lanes: list[asyncio.Task[None]] = []
        self._overdue = _Overdue(channel.config.response_timeout_s)
        self.in_flight = 0
        self._client: smpp34.Client | None = None
        self._session: smpp34.Smsc | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._references = itertools.count(random.randrange(256))  # noqa: S311 - not security
        source = config.source_addr
        alphanumeric = not source.isdigit()
        self._source = source
        self._source_ton, self._source_npi = (5, 0) if alphanumeric else (0, 1)

    @property
    def bound(self) -> bool:
        return self._session is not None

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    # lifecycle

    async def bind_once(self) -> None:
        """The first bind, at start-up: a refusal is a configuration error and raises."""
        problem = await self._unreachable()
        if problem is None:
            try:
                await self._bind()
            except smpp34.SmppError as exc:
                problem = str(exc)
                if "TCP connect" not in problem:
                    raise SmppBindError(
                        f"SMPP link {self.name!r} ({self.where}, system_id "
                        f"{self.config.system_id!r}): the SMSC did not accept the bind within "
                        f"{self._settings.bind_timeout_s:g} s ({problem}); check system_id, "
                        "password and system_type with the operator, and that this port speaks "
                        "SMPP"
                    ) from exc
        if problem is not None:
            # The SMSC cannot be reached right now: the link stays down and keeps retrying.
            self.stats.last_error = problem
            log.warning("smpp_link_down", link=self.name, where=self.where, error=problem)
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"warnd-smpp-{self._channel.name}-{self.name}"
        )
        self._lanes = [asyncio.create_task(self._lane()) for _ in range(self.window)]

    async def _unreachable(self) -> str | None:
        """Why the SMSC's port cannot be reached over TCP, or None when it can.

        smpp34 reports a connection that never completes and a bind the SMSC ignores or refuses
        alike ("bind timed out"); probing TCP first tells a network outage (the link retries) from
        a refused bind (a configuration error) at start-up.
        """
        try:
            async with asyncio.timeout(self._settings.bind_timeout_s):
                _, writer = await asyncio.open_connection(self.config.host, self.config.port)
        except (OSError, TimeoutError) as exc:
            return f"TCP connect failed: {str(exc) or 'timed out'}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None

    async def close(self) -> None:
        tasks = [*self._lanes, *([self._supervisor] if self._supervisor else [])]
        self._lanes, self._supervisor = [], None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not self._jobs.empty():
            batch, index, message, *_ = self._jobs.get_nowait()
            batch.settle(index, _stopped(message, "channel stopped, not sent"))
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(smpp34.SmppError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await session.unbind()
        await self._stop_client()

    async def _stop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(smpp34.SmppError, RuntimeError):
                await client.stop()

    async def _bind(self) -> None:
        password = self.config.password.get_secret_value()
        client = smpp34.Client(
            self.config.host,
            self.config.port,
            self.config.system_id,
            password,
            bind_type="TRX",
            system_type=self.config.system_type,
            window_size=self.window,
            inbound_capacity=INBOUND_CAPACITY,
            connect_timeout_ms=int(self._settings.bind_timeout_s * 1000),
        )
        self._client = client
        try:
            session = await client.connect()
        except BaseException:
            await self._stop_client()
            raise
        self._session = session
        self.stats.binds += 1
        self.stats.last_error = ""
        log.info("smpp_link_bound", link=self.name, where=self.where)

    async def _supervise(self) -> None:
        """Receive while bound; after a drop, re-bind with backoff until cancelled."""
        delay = 0.5
        while True:
            session = self._session
            if session is not None:
                await self._receive(session)
                self._session = None
                await self._stop_client()
                self.stats.drops += 1
                log.warning("smpp_link_dropped", link=self.name, where=self.where)
                delay = 0.5
            # Jitter keeps several warnd processes from re-binding in lockstep.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - not security
            try:
                await self._bind()
            except (smpp34.SmppError, OSError) as exc:
                self.stats.last_error = str(exc)
                log.warning("smpp_bind_failed", link=self.name, where=self.where, error=str(exc))
                delay = min(delay * 2, self._settings.reconnect_max_s)

    async def _receive(self, session: smpp34.Smsc) -> None:
        while True:
            try:
                event = await session.next()
            except smpp34.SmppError:
                return
            if isinstance(event, smpp34.Disconnected):
                return
            try:
                self._channel.on_deliver(self, event)
            except BadInputError as exc:
                self.bad_input(str(exc), source=event.source_addr)
            except (ValueError, LookupError, UnicodeError) as exc:
                # Bytes no rule above foresaw: count them too, and keep receiving.
                self.bad_input("undecodable deliver_sm", source=event.source_addr, error=repr(exc))

    def bad_input(self, reason: str, **context: object) -> None:
        self.stats.bad_input[reason] += 1
        masked = {k: _mask(str(v)) if k == "source" else v for k, v in context.items()}
        log.warning("smpp_bad_input", link=self.name, reason=reason, **masked)

    # sending

    def enqueue(self, job: _Job) -> None:
        self._jobs.put_nowait(job)

    async def _lane(self) -> None:
        """One of the link's ``window`` lanes: sends queued messages one at a time.

        Long-lived lanes instead of a task and a window slot per message: the same loop as the
        fastest bare use of the library (``warnd bench sms``), so the window costs nothing extra.
        """
        while True:
            batch, index, message, number, text, queued_at = await self._jobs.get()
            if batch.withdrawn:
                continue
            waited = time.monotonic() - queued_at
            if waited > self._settings.max_queue_wait_s:
                batch.settle(
                    index,
                    SendResult(
                        message.key,
                        Outcome.TRANSIENT,
                        reason=Reason.RATE_LIMITED,
                        detail=f"waited {waited:.0f} s for the link (slow or throttled), not sent",
                    ),
                )
                continue
            try:
                result = await self.submit(batch, message, number, text)
            except asyncio.CancelledError:
                batch.settle(index, _stopped(message, "channel stopped before submit_sm_resp"))
                raise
            except Exception as exc:  # a bug here must not stop the lane or strand the batch
                log.exception("smpp_lane_error", link=self.name)
                result = SendResult(
                    message.key, Outcome.TRANSIENT, reason=Reason.SERVER, detail=repr(exc)
                )
            batch.settle(index, result)

    def destination(self, number: str) -> tuple[str, int, int]:
        """The destination address, TON and NPI for a national number."""
        if self._settings.destination_format == "national":
            return number, 0, 1
        if len(number) == 11 and number.startswith("1"):
            number = "86" + number  # a Chinese mobile number
        return number, 1, 1

    async def submit(
        self, batch: _Batch, message: OutboundMessage, number: str, text: EncodedText
    ) -> SendResult:
        """Send every part of one message in order; the first part's id names it. A batch given
        up meanwhile stops a long message before its next part (dispatch sends it again)."""
        destination, ton, npi = self.destination(number)
        total = len(text.parts)
        reference = next(self._references) & 0xFF
        ids: list[str] = []
        for sequence, body in enumerate(text.parts, start=1):
            # A dead link gives its queue back at once, not at its pace.
            if self._session is not None and (delay := self.pace.reserve()):
                await asyncio.sleep(delay)
            session = None if batch.withdrawn else self._session
            if session is None:
                # Not written to the wire (link down, or the batch given up while this message
                # waited): sending it again later duplicates nothing.
                why = "given up" if batch.withdrawn else "link down"
                detail = f"{why}, not sent" if not ids else f"{why} after part {len(ids)}"
                return SendResult(
                    message.key, Outcome.TRANSIENT, reason=Reason.UNREACHABLE, detail=detail
                )
            payload = body if total == 1 else with_udh(body, reference, total, sequence)
            self.in_flight += 1
            self.stats.submitted += 1
            try:
                # smpp34 returns a Future (ensure_future passes it through untouched).
                answer = asyncio.ensure_future(
                    session.submit_sm(
                        destination,
                        payload,
                        source_addr=self._source,
                        source_addr_ton=self._source_ton,
                        source_addr_npi=self._source_npi,
                        dest_addr_ton=ton,
                        dest_addr_npi=npi,
                        esm_class=ESM_CLASS_UDHI if total > 1 else 0,
                        registered_delivery=1,
                        data_coding=text.data_coding,
                    )
                )
                self._overdue.watch(answer)
                response = await answer
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # stopped from outside, not overdue
                self.stats.timeouts += 1
                return SendResult(
                    message.key,
                    Outcome.TRANSIENT,
                    reason=Reason.TIMEOUT,
                    detail=f"no submit_sm_resp within {self._settings.response_timeout_s:g} s"
                    f" (part {sequence} of {total})",
                )
            except smpp34.SmppError as exc:
                # The session ended before the SMSC answered: it may or may not have the
                # message, and only such messages may reach a phone twice after the retry.
                self.stats.lost += 1
                return SendResult(
                    message.key,
                    Outcome.TRANSIENT,
                    reason=Reason.UNREACHABLE,
                    detail=f"link lost before submit_sm_resp (part {sequence} of {total}): {exc}",
                )
            finally:
                self.in_flight -= 1
            status = response.command_status
            if status != 0:
                return self._refused(message, status, sequence, total)
            ids.append(response.message_id or "")
            # Known before the next await: the receipt may overtake this coroutine.
            self._channel.remember(ids[0], ids[-1], total)
        if not all(ids):
            return SendResult(
                message.key,
                Outcome.TRANSIENT,
                reason=Reason.SERVER,
                detail="submit_sm_resp without a message id",
            )
        self.stats.accepted += 1
        return SendResult(
            message.key,
            Outcome.ACCEPTED,
            external_id=ids[0],
            detail=f"{total} part{'s' if total > 1 else ''}, {text.coding_name}",
            parts=total,
        )

    def _refused(
        self, message: OutboundMessage, status: int, sequence: int, total: int
    ) -> SendResult:
        outcome, reason, name = classify_status(status)
        self.stats.refused += 1
        if status == ESME_RTHROTTLED:
            self.stats.throttled += 1
            if self.pace.slow_down():
                log.warning("smpp_throttled", link=self.name, rate_per_s=round(self.pace.rate, 1))
        part = f" (part {sequence} of {total})" if total > 1 else ""
        return SendResult(message.key, outcome, reason=reason, detail=f"{name}{part}")

    def health(self) -> dict[str, object]:
        return {
            "bound": self.bound,
            "where": self.where,
            "in_flight": self.in_flight,
            "window": self.window,
            "rate_per_s": round(self.pace.rate, 3),
            "configured_rate_per_s": self.pace.base,
            "binds": self.stats.binds,
            "drops": self.stats.drops,
            "submitted": self.stats.submitted,
            "accepted": self.stats.accepted,
            "refused": self.stats.refused,
            "throttled": self.stats.throttled,
            "timeouts": self.stats.timeouts,
            "lost": self.stats.lost,
            "receipts": dict(self.stats.receipts),
            "replies": self.stats.replies,
            "bad_input": dict(self.stats.bad_input),
            "last_error": self.stats.last_error,
        }


# --- the channel ---------------------------------------------------------------------------------

# How many accepted ids (and multi-part groups, and unfinished MO messages) are remembered:
# receipts usually come within minutes, and a city-wide warning is a few hundred thousand texts.
_REMEMBER = 500_000
_PENDING_MO = 10_000
_RECEIPT_GRACE_S = 0.2


@dataclass
class _Group:
    """The parts of one concatenated message, for reporting it delivered once all of them are."""

    total: int
    parts: list[str] = field(default_factory=list)
    delivered: set[str] = field(default_factory=set)


class SmppChannel(Channel):
    """SMS over one or several SMPP links (see the module docstring)."""

    kind = ChannelKind.SMS
    config_model = SmppConfig
    simulated = False
    config: SmppConfig

    def __init__(self, name: str, config: SmppConfig, *, clock: ChannelClock | None = None) -> None:
        super().__init__(name, config)
        self._clock: ChannelClock = clock if clock is not None else WallClock()
        self._link_configs = config.resolved_links()
        self._routes = PrefixRoutes(config.resolved_routes())
        # Built once, so that counters survive a stop and start (a daemon reload).
        self._links = {name: _Link(name, cfg, self) for name, cfg in self._link_configs.items()}
        self._started = False
        # Ids this process was given, for telling a receipt for an unknown id.
        self._issued: OrderedDict[str, None] = OrderedDict()
        # Multi-part messages: part id -> first part's id -> the group of parts.
        self._first_of: dict[str, str] = {}
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        # Unfinished concatenated replies: (link, sender, reference, total) -> sequence -> bytes.
        self._fragments: OrderedDict[tuple[str, str, int, int], dict[int, tuple[int, bytes]]] = (
            OrderedDict()
        )

    @property
    def limits(self) -> Limits:
        links = self._link_configs.values()
        return Limits(
            rate_per_s=sum(link.rate or 0.0 for link in links),
            window=sum(link.window or 0 for link in links),
            max_text=self.config.max_text,
            queues=True,  # the links' lanes keep each window; the rest waits in order
        )

    async def start(self) -> None:
        """Bind every link once; raises SmppBindError when an SMSC refuses the bind."""
        if self._started:
            return
        try:
            for link in self._links.values():
                await link.bind_once()
        except BaseException:
            await asyncio.gather(*(link.close() for link in self._links.values()))
            raise
        self._started = True

    async def stop(self) -> None:
        """Unbind and close every link; later receipts are the SMSC's to redeliver."""
        self._started = False
        await asyncio.gather(*(link.close() for link in self._links.values()))

    def health(self) -> dict[str, object]:
        """Link state and counters for metrics and /readyz.

        ``{"ready": bool, "links": {name: {"bound", "where", "in_flight", "window",
        "rate_per_s" (now, after any slow-down), "configured_rate_per_s", "binds", "drops",
        "submitted" (PDUs), "accepted", "refused", "throttled", "timeouts", "lost",
        "receipts" {status: n}, "replies", "bad_input" {reason: n}, "last_error"}}}``;
        ``ready`` is true when at least one link is bound.
        """
        links = {name: link.health() for name, link in self._links.items()}
        return {"ready": any(link.bound for link in self._links.values()), "links": links}

    # sending

    def _check(self, message: OutboundMessage, number: str) -> SendResult | None:
        if not number:
            return _client_error(message, "no digits in address")
        if not message.text:
            return _client_error(message, "empty text")
        if len(message.text) > self.config.max_text:
            return _client_error(
                message,
                f"text of {len(message.text)} characters; this channel carries at most "
                f"{self.config.max_text}",
            )
        return None

    def route(self, number: str) -> str | None:
        """The configured link for a national number: its route, else the fallback, else the
        only link; None when the configuration sends this number nowhere."""
        name = self._routes.route(number) or self.config.fallback
        if name is None and len(self._links) == 1:
            name = next(iter(self._links))
        return name

    def pick_link(self, name: str) -> _Link | None:
        """The link to send on now: the routed one, or the fallback while it is down."""
        link = self._links[name]
        if link.bound:
            return link
        fallback = self._links.get(self.config.fallback) if self.config.fallback else None
        if fallback is not None and fallback.bound:
            return fallback
        return None

    def _place(self, message: OutboundMessage) -> SendResult | tuple[_Link, str, EncodedText]:
        """Where one message goes (its link, national number and encoded text), or the result it
        gets at once when it cannot go."""
        number = national_number(message.address)
        refused = self._check(message, number)
        if refused is not None:
            return refused
        text = encode_text(message.text)
        if len(text.parts) > 255:
            return _client_error(message, "over 255 parts")
        name = self.route(number)
        if name is None:
            return _client_error(
                message, "no link is routed for this number and there is no fallback"
            )
        link = self.pick_link(name)
        if link is None:
            return SendResult(
                message.key,
                Outcome.TRANSIENT,
                reason=Reason.UNREACHABLE,
                detail="no bound SMPP link for this number (not sent)",
            )
        return link, number, text

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send a batch over the links; one result per message (see the module docstring)."""
        if not self._started:
            raise RuntimeError(f"smpp channel {self.name!r} is not started")
        pending = _Batch(len(batch))
        for index, message in enumerate(batch):
            place = self._place(message)
            if isinstance(place, SendResult):
                pending.settle(index, place)
            else:
                link, number, text = place
                link.enqueue((pending, index, message, number, text, time.monotonic()))
        if pending.left:
            try:
                await pending.done
            except asyncio.CancelledError:
                pending.withdrawn = True  # what is still queued stays unsent
                raise
        return [result for result in pending.results if result is not None]

    def remember(self, first: str, message_id: str, total: int) -> None:
        """Note an SMSC id the moment its part is accepted, for matching its receipt."""
        self._issued[message_id] = None
        if len(self._issued) > _REMEMBER:
            self._issued.popitem(last=False)
        if total == 1:
            return
        self._first_of[message_id] = first
        group = self._groups.get(first)
        if group is None:
            self._groups[first] = group = _Group(total)
            if len(self._groups) > _REMEMBER // 4:
                _, old = self._groups.popitem(last=False)
                for part in old.parts:
                    self._first_of.pop(part, None)
        group.parts.append(message_id)

    # inbound

    def on_deliver(self, link: _Link, event: smpp34.DeliverSmEvent) -> None:
        """One deliver_sm: a receipt or a reply; raises BadInputError with the reason."""
        message_type = event.esm_class & 0x3C
        tlvs = {tlv.tag: tlv.value for tlv in event.tlvs}
        if message_type == 0x04:
            self._on_receipt(link, event.short_message, tlvs)
        elif message_type == 0x00:
            self._on_reply(link, event, tlvs)
        else:
            link.bad_input("unexpected esm_class", esm_class=f"0x{event.esm_class:02X}")

    def _on_receipt(self, link: _Link, short_message: bytes, tlvs: Mapping[int, bytes]) -> None:
        receipt = parse_receipt(short_message, tlvs)
        if receipt.state in _INTERMEDIATE_STATES:
            link.stats.receipts[receipt.state.lower()] += 1
            return
        if receipt.message_id not in self._issued:
            # The SMSC may report before this process has read the submit_sm_resp that gave
            # the id: look again a moment later before calling the id unknown.
            asyncio.get_running_loop().call_later(
                _RECEIPT_GRACE_S, self._settle_receipt, link, receipt
            )
            return
        self._settle_receipt(link, receipt)

    def _settle_receipt(self, link: _Link, receipt: ParsedReceipt) -> None:
        status = _FINAL_STATES[receipt.state]
        link.stats.receipts[status.value] += 1
        message_id = receipt.message_id
        if message_id not in self._issued:
            # Passed on all the same: dispatch keeps receipts it cannot match.
            link.bad_input("receipt for an unknown message id")
        detail = receipt.state + (f" err:{receipt.error}" if receipt.error else "")
        first = self._first_of.get(message_id)
        if first is not None:
            group = self._groups.get(first)
            if group is None:
                return  # the message was already reported failed by an earlier part
            if status is ReceiptStatus.DELIVERED:
                group.delivered.add(message_id)
                if len(group.delivered) < group.total:
                    return  # wait for the other parts
            del self._groups[first]
            message_id = first
        self.emit(DeliveryReceipt(message_id, status, at=self._clock.now(), detail=detail))

    def _on_reply(
        self, link: _Link, event: smpp34.DeliverSmEvent, tlvs: Mapping[int, bytes]
    ) -> None:
        data = event.short_message or tlvs.get(TLV_MESSAGE_PAYLOAD, b"")
        segment: Segment | None = None
        if event.esm_class & ESM_CLASS_UDHI:
            segment, data = split_udh(data)
        elif TLV_SAR_MSG_REF_NUM in tlvs:
            try:
                segment = Segment(
                    int.from_bytes(tlvs[TLV_SAR_MSG_REF_NUM], "big"),
                    tlvs[TLV_SAR_TOTAL_SEGMENTS][0],
                    tlvs[TLV_SAR_SEGMENT_SEQNUM][0],
                )
            except (KeyError, IndexError) as exc:
                raise BadInputError("incomplete SAR parameters") from exc
        if segment is not None and segment.total > 1:
            if not 1 <= segment.sequence <= segment.total:
                raise BadInputError("concatenated part outside its total")
            key = (link.name, event.source_addr, segment.reference, segment.total)
            fragments = self._fragments.setdefault(key, {})
            fragments[segment.sequence] = (event.data_coding, data)
            if len(fragments) < segment.total:
                while len(self._fragments) > _PENDING_MO:
                    self._fragments.popitem(last=False)
                    link.bad_input("concatenated reply never completed")
                return
            del self._fragments[key]
            data = b"".join(fragments[i][1] for i in range(1, segment.total + 1))
        try:
            text, clean = decode_text(data, event.data_coding)
        except LookupError:
            link.bad_input(
                "reply in an unknown encoding",
                source=event.source_addr,
                data_coding=f"0x{event.data_coding:02X}",
            )
            return
        if not clean:
            link.bad_input("reply bytes do not fit their data_coding", source=event.source_addr)
        link.stats.replies += 1
        self.emit(
            Reply(
                sender=_sender(event.source_addr),
                text=text,
                to=event.destination_addr,
                at=self._clock.now(),
            )
        )


def _sender(address: str) -> str:
    """A replying number in the form rosters use (+86…) when it is a Chinese mobile number."""
    number = national_number(address)
    if len(number) == 11 and number.startswith("1"):
        return "+86" + number
    return address


def _client_error(message: OutboundMessage, detail: str) -> SendResult:
    return SendResult(message.key, Outcome.PERMANENT, reason=Reason.CLIENT, detail=detail)


def _stopped(message: OutboundMessage, detail: str) -> SendResult:
    return SendResult(message.key, Outcome.TRANSIENT, reason=Reason.UNREACHABLE, detail=detail)
