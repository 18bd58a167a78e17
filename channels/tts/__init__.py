"""Speech for voice channels: a text becomes a telephony WAV file, rendered once and kept on disk.

One small interface, :class:`Speech`, with two engines behind it:

- ``espeak`` (the default, offline): the ``espeak-ng`` program (Debian package ``espeak-ng``),
  voice ``cmn`` (Mandarin).
- ``http``: the bureau's own TTS server. warnd POSTs
  ``{"text": "…", "voice": "…", "format": "wav"}`` as JSON with ``Authorization: Bearer
  <token>`` and expects ``200`` with a WAV file (any sample rate, width or channel count) as the
  body; any other answer is an error naming the URL key.

Whatever the engine gives is converted with ``sox`` (Debian package ``sox``) to what a telephone
line carries: 8 kHz, mono, 16-bit signed PCM, normalised to -3 dBFS, with half a second of
silence in front (the first moments after an answer are often lost while the media path opens)
and behind. sox rather than Python because it resamples with a proper anti-alias filter and reads
every WAV encoding a TTS server may send (float, 24-bit, A-law); the standard library's
``audioop`` is deprecated and gone in Python 3.13.

The file is cached under ``cache_dir`` by a SHA-256 of (output format, engine, voice and options,
text): the same text is rendered once, concurrent requests for it wait for one rendering, and a
file appears only complete (written aside, then renamed). Rendering happens when a warning is
planned (:meth:`Speech.prepare`), never while a callee waits; a channel that is handed a text
nobody prepared renders it before it dials.

Configuration, as the ``tts`` sub-table of a channel (``[channels.voice.tts]``)::

    engine = "espeak"          # or "http"
    cache_dir = ""             # default: $XDG_CACHE_HOME/warnd/tts or ~/.cache/warnd/tts
    timeout = 60.0             # seconds a rendering may take (http: 30.0, per request)
    # espeak
    voice = "cmn"
    speed = 150                # words per minute
    pitch = 50                 # 0-99
    # http
    url = "https://tts.example.cn/v1/synthesize"
    token = "…"                # or token_file = "/etc/warnd/tts.token"
    voice = ""                 # passed on as is; empty: the server's default

Errors are :class:`SpeechError`, a :class:`channels.registry.ChannelConfigError` whose message
names the key to look at (``tts.engine`` when a program is missing, ``tts.url`` when the server
fails), so the daemon reports a missing program at start-up like any other configuration error.
"""

from channels.tts.config import EspeakTts, HttpTts, TtsConfig
from channels.tts.errors import SpeechError
from channels.tts.speech import Speech

__all__ = ["EspeakTts", "HttpTts", "Speech", "SpeechError", "TtsConfig"]
