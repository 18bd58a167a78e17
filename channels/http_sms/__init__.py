"""The ``http_sms`` channel: a generic HTTP SMS gateway that takes JSON over HTTPS with a token.

Many SMS providers (and operators' own gateways) offer "POST some JSON, get a message id back"
instead of SMPP. This channel speaks one simple, documented shape; a gateway with another shape
gets a small adapter in front of it, not a new channel.

Wire format (every request carries ``Authorization: Bearer <token>`` and
``Content-Type: application/json``; texts are UTF-8 JSON strings, never re-encoded)::

    batch_size = 1: one request per message
      -> {"to": "+8613900000001", "text": "…", "ref": "42", "from": "12379"}
      <- 2xx {"message_id": "gw-123"}

    batch_size > 1: one request per up to batch_size messages
      -> {"messages": [{"to": "…", "text": "…", "ref": "42"}, …], "from": "12379"}
      <- 2xx {"results": [{"ref": "42", "message_id": "gw-123"},
                          {"ref": "43", "error": "invalid number"},
                          {"ref": "44", "error": "queue full", "temporary": true}, …]}

``ref`` is warnd's delivery id as a string, so a gateway can deduplicate a message warnd sends
again after a crash; ``from`` (the sender id / source number) is present only when configured.
``message_id`` may be a string or an integer; it is what delivery receipts will name.

How answers become outcomes (one per message, as the channel contract requires)::

    2xx with a message id for the message         ACCEPTED, external id = the message id
    2xx, batch result {"error": …}                PERMANENT client, the gateway's words
    2xx, batch result {"error", "temporary"}      TRANSIENT server
    2xx without an id for the message, not JSON,  PERMANENT server (see below)
        or larger than 1 MiB
    429                                           TRANSIENT rate_limited; the channel pauses
    5xx                                           TRANSIENT server
    408, or no answer within timeout              TRANSIENT timeout
    401, 403                                      PERMANENT auth
    other 4xx                                     PERMANENT client, the gateway's reason
    3xx (redirects are never followed)            PERMANENT server
    connection refused, reset, DNS failure        TRANSIENT unreachable

A 2xx that names no id is PERMANENT rather than TRANSIENT on purpose: the gateway said it took
the request, so the text may well be on its way; sending it again through the same gateway risks a
duplicate every retry, and without an id no receipt can ever be matched. Failing over to the next
channel at least reaches the person through a route that reports back.

A 429 (or a 503 with ``Retry-After``) pauses every further request of this channel for the
seconds ``Retry-After`` names (an integer or an HTTP date; 1 s when absent, at most
``max_pause``), so a busy gateway is given room instead of being hammered. The pause is taken on
the channel's clock, so tests can see it without waiting.

Replies and delivery receipts come back by webhook: the gateway POSTs them to warnd's
``/api/v1/inbound/sms`` with ``Authorization: Bearer <inbound_token>``, which hands them to
:meth:`Channel.emit` of the channel that token belongs to. What such a body may say, and how it
becomes events, is ``channels.http_sms.webhook``; the endpoint is warnd's. Without an
``inbound_token`` the channel only sends.

Configuration (``[channels.<name>]``, ``type = "http_sms"``) and defaults::

    url = "https://sms.example.cn/api/send"   # required
    token = "…"                               # required; keep the file readable by warnd only
    sender_id = ""                            # the "from" field; empty: the gateway decides
    batch_size = 1                            # messages per request
    timeout = 10.0                            # seconds for one request, connect to last byte
    window = 100                              # messages in flight; requests in flight are
                                              #   window // batch_size (at least one)
    rate_per_s = 100.0                        # messages per second, bursts of one second
    max_text = 670                            # characters per message (10 UCS-2 parts)
    max_pause = 60.0                          # the longest Retry-After pause honoured
    inbound_token = "…"                       # optional, 16 characters or more; authenticates
                                              #   the gateway's webhook calls

Neither token ever appears in a repr, a log line or an error message.

The package: ``channel`` (``HttpSmsChannel`` and its config) and ``webhook`` (reading what the
gateway posts back).
"""
