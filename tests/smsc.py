"""A scriptable SMSC for the SMPP channel's tests: a real SMPP 3.4 peer on a TCP port.

It is deliberately a different implementation from the one the channel sends with: the channel
speaks through ``smpp34`` (a Rust codec and session), this SMSC encodes and decodes every PDU with
``aiosmpplib``'s pure-Python codec. A bug in one codec therefore cannot hide itself by being
mirrored on the other side. The session logic (bind, answer, push receipts and MO messages) is
the few lines below, so that tests can script what a real operator's SMSC does: refuse a bind,
throttle, answer slowly or not at all, drop the TCP connection mid-batch, send an unknown command
or a malformed PDU.

Everything the SMSC received is kept (``submits`` with the raw PDU bytes), so tests assert on what
actually crossed the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiosmpplib import (  # type: ignore[import-untyped]
    BindTransceiver,
    BindTransceiverResp,
    DeliverSm,
    EnquireLinkResp,
    OptionalParam,
    PhoneNumber,
    SmppCommand,
    SmppCommandStatus,
    SmppMessage,
    SubmitSm,
    SubmitSmResp,
    UnbindResp,
)
from aiosmpplib.state import (  # type: ignore[import-untyped]
    MESSAGE_STATE,
    NPI,
    RECEIPTED_MESSAGE_ID,
    TON,
)

HEADER = 16
# SMPP 3.4 §5.2.28 message_state values the SMSC reports in receipts.
SAR_TAGS = (0x020C, 0x020E, 0x020F)  # sar_msg_ref_num, sar_total_segments, sar_segment_seqnum
MESSAGE_STATES = {"DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "REJECTD": 8}


@dataclass
class Submitted:
    """One submit_sm the SMSC received, decoded by the SMSC's own codec, with its raw bytes."""

    session: int
    sequence: int
    source: str
    destination: str
    esm_class: int
    data_coding: int
    registered_delivery: int
    text: str  # the part's text as aiosmpplib decoded it (UDH removed)
    udh: tuple[int, int, int] | None  # (reference, total, sequence) when the part carries a UDH
    raw: bytes  # the whole PDU as it crossed the wire
    message_id: str = ""  # empty when the SMSC refused it or never answered
    status: int = 0
    at: float = field(default_factory=time.monotonic)  # when it arrived (rates, not timing)


@dataclass
class _Session:
    number: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    bound: bool = False
    sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class TestSmsc:
    """An SMSC on 127.0.0.1; configure its behaviour through the public attributes."""

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, *, system_id: str = "warnd", password: str = "secret") -> None:  # noqa: S107
        self.system_id = system_id
        self.password = password
        self.port = 0
        self.submits: list[Submitted] = []
        self.binds = 0
        self.most_bound = 0  # the most sessions bound at once
        self.bind_refusals = 0
        self.enquire_links = 0
        # (command_id, command_status) of every response the ESME sent us (deliver_sm_resp,
        # generic_nack …), so tests see how the channel answered what the SMSC pushed.
        self.responses: list[tuple[int, int]] = []
        # Behaviour knobs.
        self.statuses: deque[int] = deque()  # answer the next submits with these statuses
        self.response_delay = 0.0  # seconds before each submit_sm_resp
        self.silent = False  # never answer submit_sm
        self.drop_after: int | None = None  # close the connection once this many more arrive
        self.receipt: str | None = None  # push a receipt with this stat after each accept
        self._server: asyncio.Server | None = None
        self._sessions: list[_Session] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(0x1000)
        self._numbers = itertools.count(1)
        self.changed = asyncio.Condition()

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every session."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drop(self) -> None:
        """Cut every TCP connection at once, as a network failure would (no unbind)."""
        for session in self._sessions:
            session.bound = False
            session.writer.transport.abort()
        self._sessions.clear()

    async def wait_for(self, predicate: Any, within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever the SMSC's state changes)."""
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(predicate)

    @property
    def bound_sessions(self) -> int:
        return sum(1 for s in self._sessions if s.bound)

    # --- pushing traffic to the ESME ---------------------------------------------------------

    async def push(self, message: SmppMessage) -> None:
        """Send a request PDU (deliver_sm …) on the newest bound session."""
        session = self._bound()
        message.sequence_num = next(session.sequence)
        await self._write(session, message.pdu())

    async def push_raw(self, data: bytes) -> None:
        """Send arbitrary bytes on the newest bound session (malformed PDUs, unknown commands)."""
        await self._write(self._bound(), data)

    async def push_receipt(
        self, message_id: str, stat: str, *, text: bool = True, tlvs: bool = True
    ) -> None:
        """A delivery receipt: the ``id:… stat:…`` text, the TLVs, or both."""
        body = DeliverSm.encode_receipt({"id": message_id, "stat": stat, "sub": 1, "dlvrd": 1})
        params = []
        if tlvs:
            params = [
                OptionalParam(RECEIPTED_MESSAGE_ID, message_id),
                OptionalParam(MESSAGE_STATE, MESSAGE_STATES[stat]),
            ]
        await self.push(
            DeliverSm(
                short_message=body if text else " ",
                source=PhoneNumber("8613800000001", TON.INTERNATIONAL, NPI.ISDN),
                destination=PhoneNumber("10657", TON.UNKNOWN, NPI.ISDN),
                esm_class=0x04,
                registered_delivery=0,
                encoding="ascii",
                optional_params=params,
            )
        )

    async def push_mo(
        self,
        sender: str,
        text: str = "",
        *,
        encoding: str = "ucs2",
        raw: bytes | None = None,
        data_coding: int | None = None,
        esm_class: int = 0,
        sar: tuple[int, int, int] | None = None,
    ) -> None:
        """A mobile-originated message; ``raw`` sends bytes as they are (UDH, odd encodings),
        ``sar`` is (reference, total, sequence) sent as SAR TLVs."""
        params = []
        if sar is not None:
            params = [OptionalParam(tag, value) for tag, value in zip(SAR_TAGS, sar, strict=True)]
        message = DeliverSm(
            short_message=text or " ",
            source=PhoneNumber(sender, TON.INTERNATIONAL, NPI.ISDN),
            destination=PhoneNumber("10657", TON.UNKNOWN, NPI.ISDN),
            esm_class=esm_class,
            registered_delivery=0,
            encoding=encoding,
            optional_params=params,
        )
        if raw is not None:
            message.set_encoded_message(raw)
        pdu = message.pdu()
        if data_coding is not None:
            # aiosmpplib only names the codings it can encode; patch the octet for odd ones.
            offset = self._data_coding_offset(pdu)
            pdu = pdu[:offset] + bytes([data_coding]) + pdu[offset + 1 :]
        session = self._bound()
        seq = next(session.sequence)
        await self._write(session, pdu[:12] + struct.pack("!I", seq) + pdu[16:])

    # --- the session ---------------------------------------------------------------------------

    def _bound(self) -> _Session:
        for session in reversed(self._sessions):
            if session.bound:
                return session
        raise AssertionError("no ESME is bound to the test SMSC")

    async def _write(self, session: _Session, data: bytes) -> None:
        session.writer.write(data)
        with contextlib.suppress(ConnectionError):
            await session.writer.drain()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(next(self._numbers), reader, writer)
        self._sessions.append(session)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                header = await reader.readexactly(HEADER)
                length = struct.unpack("!I", header[:4])[0]
                pdu = header + await reader.readexactly(length - HEADER)
                await self._handle(session, pdu)
                await self._notify()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            session.bound = False
            if session in self._sessions:
                self._sessions.remove(session)
            writer.transport.abort()
            self._tasks.discard(task)
            await self._notify()

    async def _handle(self, session: _Session, pdu: bytes) -> None:
        header = SmppMessage.parse_header(pdu)
        command = header.smpp_command
        if command & 0x80000000:
            self.responses.append((int(command), int(header.command_status)))
            return
        if command == SmppCommand.BIND_TRANSCEIVER:
            bind = BindTransceiver.from_pdu(pdu, header)
            ok = bind.system_id == self.system_id and bind.password == self.password
            response = BindTransceiverResp(header.sequence_num, system_id="testsmsc")
            if not ok:
                self.bind_refusals += 1
                response.command_status = SmppCommandStatus.ESME_RINVPASWD
            else:
                self.binds += 1
            await self._write(session, response.pdu())
            session.bound = ok
            self.most_bound = max(self.most_bound, self.bound_sessions)
        elif command == SmppCommand.ENQUIRE_LINK:
            self.enquire_links += 1
            await self._write(session, EnquireLinkResp(header.sequence_num).pdu())
        elif command == SmppCommand.UNBIND:
            await self._write(session, UnbindResp(header.sequence_num).pdu())
            session.writer.close()
        elif command == SmppCommand.SUBMIT_SM:
            await self._submit(session, pdu, header)

    async def _submit(self, session: _Session, pdu: bytes, header: Any) -> None:
        message = SubmitSm.from_pdu(pdu, header, default_encoding="gsm0338")
        params = {p.tag: p.value for p in message.optional_params or []}
        udh = None
        if message.esm_class & 0x40:
            udh = (params[0x020C], params[0x020E], params[0x020F])
        data_coding = pdu[self._data_coding_offset(pdu)]
        submitted = Submitted(
            session=session.number,
            sequence=header.sequence_num,
            source=message.source.number,
            destination=message.destination.number,
            esm_class=message.esm_class,
            data_coding=data_coding,
            registered_delivery=message.registered_delivery,
            text=message.short_message or message.message_payload,
            udh=udh,
            raw=pdu,
        )
        self.submits.append(submitted)
        if self.drop_after is not None:
            self.drop_after -= 1
            if self.drop_after <= 0:
                self.drop_after = None
                await self.drop()
                return
        if self.silent:
            return
        status = self.statuses.popleft() if self.statuses else 0
        if self.response_delay:
            task = asyncio.create_task(self._answer_later(session, submitted, status))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        await self._answer(session, submitted, status)

    async def _answer_later(self, session: _Session, submitted: Submitted, status: int) -> None:
        await asyncio.sleep(self.response_delay)
        await self._answer(session, submitted, status)

    async def _answer(self, session: _Session, submitted: Submitted, status: int) -> None:
        response = SubmitSmResp(submitted.sequence)
        submitted.status = status
        if status:
            response.command_status = SmppCommandStatus(status)
        else:
            submitted.message_id = f"{next(self._ids):x}"
            response.message_id = submitted.message_id
        await self._write(session, response.pdu())
        if not status and self.receipt is not None and session.bound:
            await self.push_receipt(submitted.message_id, self.receipt)

    @staticmethod
    def _data_coding_offset(pdu: bytes) -> int:
        """Where data_coding sits: after three C-strings, three octets, two C-strings, two octets.

        aiosmpplib turns data_coding into an encoding name (0 and its default look alike), so the
        test reads the octet itself to tell GSM (0) from UCS-2 (8) exactly as it was sent.
        """
        at = HEADER
        at = pdu.index(b"\x00", at) + 1  # service_type
        at += 2
        at = pdu.index(b"\x00", at) + 1  # source_addr
        at += 2
        at = pdu.index(b"\x00", at) + 1  # destination_addr
        at += 3  # esm_class, protocol_id, priority_flag
        at = pdu.index(b"\x00", at) + 1  # schedule_delivery_time
        at = pdu.index(b"\x00", at) + 1  # validity_period
        at += 2  # registered_delivery, replace_if_present_flag
        return at
