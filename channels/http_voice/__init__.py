"""The ``http_voice`` channel: notification calls through a carrier's voice-notification API.

Chinese bureaus usually place notification calls through their operator's (or a cloud
provider's) voice-notification service: "POST who to call and what to say, get a call id back;
the call's result comes later on a callback". This channel speaks one simple, documented shape of
that, the way ``http_sms`` does for SMS; a carrier with another shape gets a small adapter in
front of it, not a new channel. The channel places calls; it does not retry unanswered ones (the
escalation chain repeats the call-out, as for every voice channel).

Wire format (every request carries ``Authorization: Bearer <token>`` and
``Content-Type: application/json``; texts are UTF-8 JSON strings)::

    batch_size = 1: one request per call
      -> {"to": "+8613900000001", "ref": "42", "text": "这里是济宁市应急管理局…确认收到请按1",
          "audio_url": "https://tts.example.cn/audio/42.wav",      (only when configured)
          "caller": "12379",                                       (only when configured)
          "menu": {"confirm": "1", "replay": "2"},  (+ "prompt" when menu_prompt is set)
          "ring_timeout": 45, "repeats": 2}
      <- 2xx {"call_id": "vc-123"}

    batch_size > 1: one request per up to batch_size calls; what all calls share is said once
      -> {"calls": [{"to": "…", "ref": "42", "text": "…", "audio_url": "…"}, …],
          "caller": "12379", "menu": {…}, "ring_timeout": 45, "repeats": 2}
      <- 2xx {"results": [{"ref": "42", "call_id": "vc-123"},
                          {"ref": "43", "error": "invalid number"},
                          {"ref": "44", "error": "line busy", "temporary": true}, …]}

``ref`` is warnd's delivery id as a string, so that a gateway can recognise a call warnd asks
for again after a crash. ``text`` is the voice script, spoken by the gateway's text-to-speech;
with ``audio_url`` the gateway plays that recording instead (the text stays in the request, for
a gateway that cannot fetch the recording and for its records). The menu is what the gateway
says while it waits for a key, after the script and again after each repeat: "1" confirms (warnd
acknowledges the call-out with it) and ends the call, ``replay`` says the script again.
``ring_timeout`` is how many seconds the phone rings before the call counts as not answered;
``repeats`` how many times the script is said in all when no key comes. ``call_id`` may be a
string or an integer; it is what the call's result will name.

How answers become outcomes (one per call, as the channel contract requires)::

    2xx with a call id for the call               ACCEPTED, external id = the call id
    2xx, batch result {"error": …}                PERMANENT client, the gateway's words
    2xx, batch result {"error", "temporary"}      TRANSIENT server
    2xx without an id for the call, not JSON,     PERMANENT server (see below)
        or larger than 1 MiB
    429                                           TRANSIENT rate_limited; the channel pauses
    5xx                                           TRANSIENT server
    408, or no answer within timeout              TRANSIENT timeout
    401, 403                                      PERMANENT auth
    other 4xx                                     PERMANENT client, the gateway's reason
    3xx (redirects are never followed)            PERMANENT server
    connection refused, reset, DNS failure        TRANSIENT unreachable

A 2xx without a call id is PERMANENT rather than TRANSIENT for the reason ``http_sms`` gives: the
gateway may be ringing the phone already, asking again through it risks ringing a responder twice
each retry, and without an id no key press could ever be matched to the call. Failing over to
the next channel at least reaches the person through a route that reports back.

A 429 (or a 503 with ``Retry-After``) pauses every further request of this channel for the seconds
``Retry-After`` names (1 s when absent, at most ``max_pause``), through the channel's one pacer
(``channels.pacing.Pacer``), on the channel's clock.

Results come back by webhook: the gateway POSTs them to warnd's ``/api/v1/inbound/voice`` with
``Authorization: Bearer <inbound_token>``, one per call when it has ended::

    {"call_id": "vc-123", "status": "answered", "keys": "1", "detail": "…"}

What such a body may say, and how it becomes ``CallResult`` events, is
``channels.http_voice.webhook``; the endpoint is warnd's. Without an ``inbound_token`` the channel
only places calls, and nothing it places can be acknowledged by a key.

Configuration (``[channels.<name>]``, ``type = "http_voice"``) and defaults::

    url = "https://voice.example.cn/api/call"  # required
    token = "…"                                # required (or token_file = "/abs/path")
    caller = ""                                # the number callees see; empty: the gateway's
    audio_url = ""                             # a recording to play instead of text-to-speech:
                                               #   "https://…/{text_sha256}.wav" or "…/{ref}.wav"
    menu_prompt = ""            # said while waiting for a key (warnd's scripts end with one)
    replay_key = "2"                           # the key that says the script again; "" for none
    ring_timeout = 45                          # seconds the phone rings (5 to 180)
    repeats = 2                                # times the script is said without a key (1 to 5)
    batch_size = 1                             # calls per request
    timeout = 10.0                             # seconds for one request, connect to last byte
    window = 20                                # calls in flight; requests in flight are
                                               #   window // batch_size (at least one)
    rate_per_s = 10.0                          # calls placed per second, bursts of one second
    max_text = 500                             # characters of a voice script
    max_pause = 60.0                           # the longest Retry-After pause honoured
    inbound_token = "…"                        # 16 characters or more (or inbound_token_file);
                                               #   authenticates the gateway's webhook calls

``audio_url`` may name ``{ref}`` (the delivery id) and ``{text_sha256}`` (the SHA-256 of the
script's UTF-8 text, in hex), nothing else: a recording rendered ahead of time from the script
can be found by either. Neither token ever appears in a repr, a log line or an error message.

The package: ``channel`` (``HttpVoiceChannel`` and its config) and ``webhook`` (reading what the
gateway posts back).
"""
