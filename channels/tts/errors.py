"""The one error speech raises."""

from __future__ import annotations

from channels.registry import ChannelConfigError


class SpeechError(ChannelConfigError):
    """A text could not be turned into audio; the message names the ``tts`` key to look at.

    A configuration error like any other (a program not installed, a TTS server that refuses
    the token), so the daemon reports it at start-up the way it reports a bad channel table.
    """
