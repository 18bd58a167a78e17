"""The two speech engines: each turns a text into a WAV file of whatever format it makes
(:mod:`channels.tts.speech` converts it for the telephone)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final, Protocol

import aiohttp

from channels.tts.config import EspeakTts, HttpTts
from channels.tts.errors import SpeechError
from channels.tts.programs import run

# A minute of 48 kHz stereo 32-bit float is 23 MB: far more than any warning script needs, and a
# bound on what a TTS server gone wrong can make warnd hold in memory.
MAX_HTTP_AUDIO_BYTES: Final = 32 * 1024 * 1024
_READ_CHUNK: Final = 64 * 1024
_DETAIL_CHARS: Final = 200


class Engine(Protocol):
    """What :class:`channels.tts.speech.Speech` needs of an engine."""

    programs: tuple[str, ...]  # local programs it runs (checked at start-up)

    def identity(self) -> dict[str, object]:
        """Everything besides the text that changes the audio: part of the cache key."""
        ...

    async def render(self, text: str, out: Path) -> None:
        """Write ``text`` spoken, as a WAV file, to ``out``; raise SpeechError on failure."""
        ...

    async def close(self) -> None:
        """Release what the engine holds (an HTTP session)."""
        ...


class EspeakEngine:
    """espeak-ng, offline; the text goes in on stdin, so no text can read as an option."""

    programs: tuple[str, ...] = ("espeak-ng",)

    def __init__(self, config: EspeakTts, key: str) -> None:
        self._config = config
        self._key = f"{key}.engine"

    def identity(self) -> dict[str, object]:
        return {
            "engine": "espeak",
            "voice": self._config.voice,
            "speed": self._config.speed,
            "pitch": self._config.pitch,
        }

    async def render(self, text: str, out: Path) -> None:
        config = self._config
        args = [
            "espeak-ng",
            "-v",
            config.voice,
            "-s",
            str(config.speed),
            "-p",
            str(config.pitch),
            "-b",
            "1",  # the input is UTF-8
            "-w",
            str(out),
            "--stdin",
        ]
        await run(args, stdin=text.encode("utf-8"), within=config.timeout, key=self._key)

    async def close(self) -> None:
        return None


class HttpEngine:
    """The bureau's TTS server: one POST per text, a WAV file back."""

    programs: tuple[str, ...] = ()

    def __init__(self, config: HttpTts, key: str) -> None:
        self._config = config
        self._key = f"{key}.url"
        self._session: aiohttp.ClientSession | None = None

    def identity(self) -> dict[str, object]:
        # The token is left out: a new token does not change the voice, and a secret has no
        # business in a file name's input.
        return {"engine": "http", "url": str(self._config.url), "voice": self._config.voice}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"Accept": "audio/wav"}
            if self._config.token is not None:
                headers["Authorization"] = f"Bearer {self._config.token.get_secret_value()}"
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self._config.timeout)
            )
        return self._session

    async def render(self, text: str, out: Path) -> None:
        payload: dict[str, str] = {"text": text, "format": "wav"}
        if self._config.voice:
            payload["voice"] = self._config.voice
        try:
            # Redirects are not followed: the token goes to the configured URL and nowhere else.
            async with self._open().post(
                str(self._config.url), json=payload, allow_redirects=False
            ) as response:
                status = response.status
                body = await _read_capped(response, self._key)
        except TimeoutError:
            raise SpeechError(
                f"{self._key}: the TTS server gave no answer within {self._config.timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise SpeechError(
                f"{self._key}: the TTS server cannot be reached ({type(exc).__name__})"
            ) from None
        if status != 200:
            said = body[:_DETAIL_CHARS].decode("utf-8", errors="replace").strip()
            raise SpeechError(
                f"{self._key}: the TTS server answered HTTP {status}"
                + (f": {said}" if said else "")
            )
        if body[:4] != b"RIFF" or body[8:12] != b"WAVE":
            raise SpeechError(f"{self._key}: the TTS server's answer is not a WAV file")
        await asyncio.to_thread(out.write_bytes, body)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _read_capped(response: aiohttp.ClientResponse, key: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for part in response.content.iter_chunked(_READ_CHUNK):
        size += len(part)
        if size > MAX_HTTP_AUDIO_BYTES:
            raise SpeechError(
                f"{key}: the TTS server's answer is larger than {MAX_HTTP_AUDIO_BYTES} bytes"
            )
        parts.append(part)
    return b"".join(parts)


def engine_for(config: EspeakTts | HttpTts, key: str) -> Engine:
    """The engine a ``tts`` table asks for; ``key`` is where that table sits (for errors)."""
    if isinstance(config, HttpTts):
        return HttpEngine(config, key)
    return EspeakEngine(config, key)
