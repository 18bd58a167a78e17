"""What SMPP 3.4's PDUs mean for warnd: ``submit_sm_resp`` statuses, delivery receipts and the
parts of concatenated replies (MO).

Pure functions over the fields smpp34 hands over (bytes and TLV values): no I/O, no session.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from channels.base import Outcome, Reason, ReceiptStatus

ESM_CLASS_UDHI = 0x40
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_MESSAGE_PAYLOAD = 0x0424

# --- submit_sm_resp ------------------------------------------------------------------------------

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


class BadInputError(ValueError):
    """Something the SMSC sent cannot be used; the message is the reason that gets counted."""


@dataclass(frozen=True)
class ParsedReceipt:
    message_id: str
    state: str  # the stat word: DELIVRD, UNDELIV …
    error: str = ""

    @property
    def status(self) -> ReceiptStatus | None:
        """What became of the message, or None while it is still on its way (ENROUTE, ACCEPTD)."""
        return _FINAL_STATES.get(self.state)


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


# --- concatenated replies ------------------------------------------------------------------------


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


def sar_segment(tlvs: Mapping[int, bytes]) -> Segment | None:
    """Pure: the concatenation info of the SAR TLVs, or None when the part carries none."""
    if TLV_SAR_MSG_REF_NUM not in tlvs:
        return None
    try:
        return Segment(
            int.from_bytes(tlvs[TLV_SAR_MSG_REF_NUM], "big"),
            tlvs[TLV_SAR_TOTAL_SEGMENTS][0],
            tlvs[TLV_SAR_SEGMENT_SEQNUM][0],
        )
    except (KeyError, IndexError) as exc:
        raise BadInputError("incomplete SAR parameters") from exc
