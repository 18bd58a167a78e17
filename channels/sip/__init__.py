"""The ``sip`` channel: phone calls over a SIP trunk that speak the warning and hear "press 1".

Engine: PJSIP through its Python binding ``pjsua2`` (PyPI ``pjsua2-python``), in supervised
worker processes. Both candidates were tried against sipp and baresip on this machine:

- ``pjsua2`` placed calls, played a WAV into each, and reported RFC 2833 keys per call, with the
  final SIP status of every failed call (486, 603, 480…). It has two sharp edges, both contained
  by running it in worker processes: the packaged build holds at most 4 calls per process, and
  every pjsua2 call must come from one registered thread (another thread aborts the process,
  it does not raise), so each worker does all its PJSIP work on its main thread and talks JSON
  lines with the daemon over pipes. Its offers number telephone-event 120 (fixed at build time);
  the offer is rewritten to ``dtmf_payload_type`` (101, what trunks and sipp's recordings use),
  see :mod:`channels.sip.sdp`.
- ``baresip`` (Debian's 1.0.0) over ``ctrl_tcp``: dialling and DTMF events work, but it has one
  audio source per process (a per-call prompt means switching the source of "the current
  call", racy with several calls), ends the call when the WAV source reaches its end (no
  repeat, no waiting for a key after the prompt), and hangs up only "the current call". It
  serves instead as the independent test phone.

Behaviour. ``send`` places one call per message, in order, each on the least busy worker with a
free line, paced at ``calls_per_s``; a batch waits at most ``max_queue_wait_s`` in all for free
lines (well inside dispatch's lease), and what finds none by then goes back TRANSIENT
``rate_limited``, unsent. It is ACCEPTED, with the call's SIP Call-ID as the external id, once
the INVITE is on its way; how the call ended arrives later as a :class:`CallResult` event. The
text's audio (:mod:`channels.tts`) is normally rendered when the warning is planned
(:meth:`SipChannel.prepare`); a text nobody prepared is rendered before dialling, never while a
callee listens. Answered, the callee hears the prompt, a pause of ``repeat_pause``, the prompt
again, ``repeat_prompt`` times in all, then ``key_wait`` seconds of silence for a key. "1" is
reported at once and the call hung up; "2" starts the prompt again from its beginning (at most 5
times a call, not counted against ``repeat_prompt``); other keys are only recorded. The channel
never calls anyone twice: unanswered calls are the escalation chain's to repeat.

How calls end (``CallResult.cause`` starts with the phrase in the first column)::

    answered, key 1            answered=True, keys="1" (or "21"…): acknowledges the call-out
    answered, no key           answered=True, keys="": said repeat_prompt times, no "1"
    hung up during the prompt  answered=True: the callee hung up before the prompts ended
    hung up without a key      answered=True: … after the last prompt, before a key
    answered, but no audio     answered=True: no RTP path came up within 5 s
    no answer                  rang ring_timeout seconds, or 408 / 480 / 487 from the network
    busy                       486, 600
    declined                   603
    unreachable                5xx, a transport failure, or no ringing within ring_timeout
    rejected                   other 4xx and 6xx (404 unknown number, 403, 401/407: credentials)
    engine lost                the worker holding the call died (answered=False)
    stopped                    the channel stopped during the call

A worker that dies (a crash, ``kill -9``) or stays silent for 10 s (it is then killed) loses no
call: each call it held comes back as a CallResult ``engine lost: …`` with ``answered=False``
(the escalation chain carries on as for an unanswered call; a "1" heard before the crash was
already reported), a call it was being handed comes back from ``send`` as TRANSIENT
``unreachable``, and a new worker is started (0.5 s, doubling to 30 s while it keeps dying).
The far end of a lost call hears nothing more and hangs up on its own.

Configuration (``[channels.<name>]``, ``type = "sip"``) and defaults::

    proxy = "10.1.2.3:5060"        # required: the trunk's SBC or the IP-PBX (host or host:port)
    transport = "udp"              # "udp" | "tcp" | "tls"
    from_number = "12379"          # required: the calling number (the From user)
    domain = ""                    # request-URI and From domain; set it to route via proxy
    registrar = ""                 # "" : no registration (IP-authenticated trunk)
    username = ""                  # digest credentials (registration and INVITE challenges)
    password = "…"                 # or password_file = "/etc/warnd/sip.secret"
    register_expires = 300
    max_calls = 8                  # simultaneous calls (workers of up to 4 calls each)
    calls_per_s = 5.0              # new calls a second (the trunk's CAPS)
    ring_timeout = 40.0            # seconds a phone may ring
    repeat_prompt = 3              # times the text is said when no key comes
    repeat_pause = 1.0             # seconds between two sayings
    key_wait = 5.0                 # seconds to wait for a key after the last saying
    dtmf = "rfc2833"               # "rfc2833" | "sip_info" | "both": how keys may arrive
    dtmf_payload_type = 101        # telephone-event payload type offered
    codecs = ["PCMA", "PCMU"]      # G.711, in order of preference
    number_format = "international"  # "+8613800000001"; "national": "13800000001"
    dial_prefix = ""               # e.g. "0" or "9" for a PBX's outside line
    local_address = ""             # bind SIP and RTP to this address ("" : all)
    public_address = ""            # the address to advertise behind NAT ("" : as bound)
    rtp_ports = [40000, 40999]     # optional; default any free port
    tls_ca_file = ""               # with transport = "tls"; tls_verify = true
    max_text = 500                 # characters of a script (about two minutes of speech)
    max_queue_wait_s = 30.0
    engine_log_level = 1           # PJSIP's log level into warnd's log (4+: SIP messages)
    [channels.<name>.tts]          # speech; see channels.tts (default: espeak-ng, voice cmn)

What the trunk must support: G.711 (A-law or µ-law) audio, keys as RFC 2833 / RFC 4733
telephone-events (payload type 101 by default; SIP INFO with ``dtmf = "sip_info"`` or
``"both"``); in-band DTMF tones are not detected. The trunk must accept calls from
``from_number`` (by IP or digest credentials) and return RTP to the address warnd advertises.

Operations: :meth:`SipChannel.health` (calls in progress, registration, counters per ending);
every worker's PJSIP log lines and its registration changes go to warnd's log.

The package: ``channel`` (``SipChannel``), ``config``, ``engine`` (worker supervision, the
asyncio side), ``worker`` (the PJSIP process), ``protocol`` (their JSON lines), ``causes`` (how a
call ended, in words) and ``sdp`` (the telephone-event payload type).
"""
