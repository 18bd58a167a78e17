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
characters outside the BMP travel as UTF-16 surrogate pairs that a split never separates; see
``channels.sms_codec``). Longer texts become concatenated parts with the 6-byte UDH
``05 00 03 ref total seq`` and ``esm_class`` 0x40, sent in order on one link.
``registered_delivery`` is always 1. Each link sends through ``window`` lanes that take the queued
messages in order: a message holds its lane while its parts are in flight and waits for the link's
pace (``channels.pacing``, at the link's rate, on the channel's clock). Messages beyond
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
or a malformed PDU never reaches this package: smpp34's core answers it (``generic_nack``, or an
error status) and keeps the session, so the channel cannot count those.

Operations: :meth:`SmppChannel.health` returns per-link counters and state (see its docstring).

The package: ``channel`` (``SmppChannel``: placing messages on links, matching receipts to what was
sent, reassembling replies), ``link`` (one bind to one SMSC: its supervisor, lanes, pace and
counters), ``pdu`` (what SMPP's PDUs mean: ``submit_sm_resp`` statuses, receipts, concatenated MO
parts) and ``config``. Routing by number prefix is ``channels.sms_routing``.
"""
