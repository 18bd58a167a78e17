"""The ``mqtt_broadcast`` channel: village loudspeakers (大喇叭) commanded over an MQTT broker.

Modern IP and 4G village speakers are IoT devices on a broker. warnd addresses one broadcast
delivery per village, to the village's 12-digit code, which is the speaker id in the topics; the
wire contract a speaker vendor implements is ``channels/BROADCAST.md`` (``warnd-broadcast/1``).

Behaviour. One MQTT connection (MQTT 5, or 3.1.1 where the broker refuses MQTT 5 or lets its
CONNECT time out), clean session, reconnected with backoff. It subscribes to
``{prefix}/+/status`` (retained states, Last Wills, heartbeats) and ``{prefix}/+/ack``, and at
start waits up to ``start_wait`` seconds for the retained statuses, so that speakers known to
be online are not refused. ``send`` publishes one command per message to
``{prefix}/{speaker}/cmd`` at QoS 1, not retained, and answers:

    ACCEPTED, external id = the message id    the broker acknowledged the publish (PUBACK)
    PERMANENT unreachable                     the speaker is offline, stale or never seen
                                              (warnd fails over, to a gong task)
    PERMANENT client                          not a speaker id, empty or too long a text, or
                                              the warning already expired
    TRANSIENT unreachable                     the broker is down or dropped the publish
    TRANSIENT server                          the speech could not be made

The message id is warnd's delivery key: a delivery sent again is the same command, and speakers
play an id once. What the speaker says comes back as a :class:`DeviceConfirmation` (played, or
failed with the speaker's reason: offline_amplifier, busy, bad_audio, expired, other); a command
no speaker answers within ``ack_timeout`` (or by its expiry) is reported once as not played, "no
acknowledgement from the speaker in time". Commands accepted and not yet answered are published
again, under their own ids, after every reconnect of warnd's link, to a speaker that announces
itself online again (speakers subscribe before they do), and every ``resend_after`` seconds
while unanswered (a command or an acknowledgement a broker dropped costs a repeat): a broker restart
mid-broadcast loses none, and the speakers' de-duplication plays none twice. Every status becomes a
:class:`DeviceStatus`; a speaker online but silent for ``stale_after`` is reported offline once,
"no heartbeat since …", and refused until it is heard again. Payloads that are not the contract
(not JSON, wrong types, too large, a foreign topic, an ack from the wrong speaker) are dropped and
counted by reason in ``health()["links"]["broker"]["ignored"]``.

Audio. Each text is spoken once (:mod:`channels.tts`, espeak-ng ``cmn`` offline by default) when
the warning is planned (:meth:`MqttBroadcastChannel.prepare`), with a variant behind an alert tone
for red and earthquake (``tone``), and kept under ``media_dir`` as ``<sha256>.wav``. The command
carries a signed URL of it, ``{media_url}/<sha256>.wav?expires=…&sig=…`` (:mod:`channels.media`),
good for ``media_ttl`` seconds, which warnd serves at ``GET /media/{name}``; the command's
``expires_at`` is the warning's expiry, at most the URL's.

Configuration (``[channels.<name>]``, ``type = "mqtt_broadcast"``) and defaults::

    broker = "10.0.0.7"            # required: host name or address of the MQTT broker
    port = 1883                    # default 1883, or 8883 with tls = true
    tls = false
    tls_ca_file = ""               # the CA of the broker's certificate (default: the system's)
    username = ""                  # and password = "…" or password_file = "/etc/warnd/mqtt.secret"
    client_id = ""                 # default "warnd-<channel name>"; one warnd owns it at a time
    protocol = "auto"              # "auto" (5, falling back to 3.1.1) | "5" | "3.1.1"
    keepalive = 30
    topic_prefix = "warnd/speakers"
    stale_after = 600.0            # seconds without a status before a speaker counts as offline
    start_wait = 3.0               # seconds start() waits for the connection and retained statuses
    connect_timeout = 5.0          # seconds for the broker's CONNACK
    publish_timeout = 10.0         # seconds for the broker's PUBACK
    ack_timeout = 900.0            # seconds for a speaker's acknowledgement
    resend_after = 120.0           # seconds without an answer before a command goes again
    repeat = 2                     # times a speaker plays the message
    reconnect_max = 30.0           # longest pause between two connection attempts
    max_text = 1000
    rate_per_s = 500.0
    window = 500
    media_url = "http://10.0.0.5:8379/media"   # required: how speakers reach warnd's /media
    media_key = "…"                # required, >= 32 characters; or media_key_file = "/etc/…"
    media_ttl = 3600.0             # seconds a media URL stays good
    media_dir = ""                 # default: beside the speech cache, ~/.cache/warnd/media
    tone = true                    # alert tone before red and earthquake messages
    [channels.<name>.tts]          # speech; see channels.tts (default: espeak-ng, voice cmn)

The package: ``channel`` (``MqttBroadcastChannel``), ``config``, ``link`` (the connection),
``wire`` (topics and payloads), ``fleet`` (speaker states) and ``audio`` (the media files).
"""
