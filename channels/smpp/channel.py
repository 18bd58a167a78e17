"""The ``smpp`` channel itself: which link each message takes, and what comes back over the links
matched to what was sent (receipts, also of multi-part messages) or reassembled (replies)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import smpp34

from channels.base import (
    Channel,
    ChannelClock,
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
from channels.smpp.config import SmppConfig
from channels.smpp.link import Link, PendingBatch
from channels.smpp.pdu import (
    ESM_CLASS_UDHI,
    TLV_MESSAGE_PAYLOAD,
    BadInputError,
    ParsedReceipt,
    Segment,
    parse_receipt,
    sar_segment,
    split_udh,
)
from channels.sms_codec import MAX_PARTS, EncodedText, decode_text, encode_text
from channels.sms_routing import PrefixRoutes, national_number

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
    """SMS over one or several SMPP links (see the package docstring)."""

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
        self._links = {
            name: Link(name, cfg, owner=self, settings=config, clock=self._clock)
            for name, cfg in self._link_configs.items()
        }
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

    def pick_link(self, name: str) -> Link | None:
        """The link to send on now: the routed one, or the fallback while it is down."""
        link = self._links[name]
        if link.bound:
            return link
        fallback = self._links.get(self.config.fallback) if self.config.fallback else None
        if fallback is not None and fallback.bound:
            return fallback
        return None

    def _place(self, message: OutboundMessage) -> SendResult | tuple[Link, str, EncodedText]:
        """Where one message goes (its link, national number and encoded text), or the result it
        gets at once when it cannot go."""
        number = national_number(message.address)
        refused = self._check(message, number)
        if refused is not None:
            return refused
        text = encode_text(message.text)
        if len(text.parts) > MAX_PARTS:
            return _client_error(message, f"over {MAX_PARTS} parts")
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
        """Send a batch over the links; one result per message (see the package docstring)."""
        if not self._started:
            raise RuntimeError(f"smpp channel {self.name!r} is not started")
        pending = PendingBatch(len(batch))
        for index, message in enumerate(batch):
            place = self._place(message)
            if isinstance(place, SendResult):
                pending.settle(index, place)
            else:
                link, number, text = place
                link.enqueue(pending, index, message, number, text)
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

    def on_deliver(self, link: Link, event: smpp34.DeliverSmEvent) -> None:
        """One deliver_sm: a receipt or a reply; raises BadInputError with the reason."""
        message_type = event.esm_class & 0x3C
        tlvs = {tlv.tag: tlv.value for tlv in event.tlvs}
        if message_type == 0x04:
            self._on_receipt(link, event.short_message, tlvs)
        elif message_type == 0x00:
            self._on_reply(link, event, tlvs)
        else:
            link.bad_input("unexpected esm_class", esm_class=f"0x{event.esm_class:02X}")

    def _on_receipt(self, link: Link, short_message: bytes, tlvs: Mapping[int, bytes]) -> None:
        receipt = parse_receipt(short_message, tlvs)
        status = receipt.status
        if status is None:
            link.stats.receipts[receipt.state.lower()] += 1
            return
        if receipt.message_id not in self._issued:
            # The SMSC may report before this process has read the submit_sm_resp that gave
            # the id: look again a moment later before calling the id unknown.
            asyncio.get_running_loop().call_later(
                _RECEIPT_GRACE_S, self._settle_receipt, link, receipt, status
            )
            return
        self._settle_receipt(link, receipt, status)

    def _settle_receipt(self, link: Link, receipt: ParsedReceipt, status: ReceiptStatus) -> None:
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
        self, link: Link, event: smpp34.DeliverSmEvent, tlvs: Mapping[int, bytes]
    ) -> None:
        data = event.short_message or tlvs.get(TLV_MESSAGE_PAYLOAD, b"")
        segment: Segment | None
        if event.esm_class & ESM_CLASS_UDHI:
            segment, data = split_udh(data)
        else:
            segment = sar_segment(tlvs)
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
