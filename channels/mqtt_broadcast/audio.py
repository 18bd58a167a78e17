"""The audio speakers fetch: each text spoken once (channels.tts), optionally behind an alert
tone, kept in the channel's media folder under the SHA-256 of its bytes.

The name is the content's hash, so the ``audio_sha256`` a command carries is exactly what the
speaker can check after downloading, and a file once there never changes. Both variants of a
text (plain, and with the tone for red and earthquake) are made when the warning is planned, so
no command waits for speech; a text nobody prepared is made before its command is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import shutil
import uuid
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from channels.tts import Speech, SpeechError
from channels.tts.programs import run
from channels.tts.speech import SAMPLE_RATE

# A rising two-tone sweep, three times: heard over a village as "listen now", distinct from
# speech. Part of the tone file's name, so a changed tone is a new file, never a mixed cache.
TONE: Final = ("synth", "0.6", "sine", "700-1300", "repeat", "2", "gain", "-6", "pad", "0", "0.4")
_TONE_NAME: Final = f".tone-{hashlib.sha256(' '.join(TONE).encode()).hexdigest()[:16]}.wav"


@dataclass(frozen=True)
class Clip:
    """One audio file a speaker can fetch."""

    name: str  # "<sha256>.wav"
    sha256: str
    seconds: float


class BroadcastAudio:
    """Makes and finds the channel's media files."""

    def __init__(self, speech: Speech, folder: Path, *, key: str) -> None:
        self.speech = speech
        self.folder = folder
        self._key = key
        self._clips: dict[tuple[str, bool], Clip] = {}
        self._making: dict[tuple[str, bool], asyncio.Task[Clip]] = {}

    def check(self) -> None:
        """Raise SpeechError when speech cannot be made or the media folder cannot be created."""
        self.speech.check()
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SpeechError(
                f"{self._key}.media_dir: {str(self.folder)!r} cannot be created ({exc.strerror})"
            ) from None

    def path(self, name: str) -> Path:
        """Where the media file ``name`` (already checked to be a hash name) would be."""
        return self.folder / name

    async def prepare(self, texts: Iterable[str], *, tone: bool) -> None:
        """Make every text's clip (and, with ``tone``, its toned variant) now."""
        wanted = [(text, False) for text in dict.fromkeys(texts)]
        if tone:
            wanted += [(text, True) for text, _ in wanted]
        await asyncio.gather(*(self.clip(text, toned=toned) for text, toned in wanted))

    async def clip(self, text: str, *, toned: bool) -> Clip:
        """The clip of ``text``; concurrent callers share one making. Raises SpeechError."""
        wanted = (text, toned)
        made = self._clips.get(wanted)
        if made is not None:
            return made
        task = self._making.get(wanted)
        if task is None:
            task = asyncio.create_task(self._make(text, toned))
            self._making[wanted] = task
            task.add_done_callback(functools.partial(self._done, wanted))
        # Shielded: a send that is cancelled does not take the clip away from the others.
        return await asyncio.shield(task)

    def _done(self, wanted: tuple[str, bool], task: asyncio.Task[Clip]) -> None:
        self._making.pop(wanted, None)
        if not task.cancelled() and task.exception() is None:
            self._clips[wanted] = task.result()

    async def close(self) -> None:
        tasks = list(self._making.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.speech.close()

    async def _make(self, text: str, toned: bool) -> Clip:
        speech = await self.speech.audio(text)
        await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True, mode=0o700)
        if not toned:
            return await asyncio.to_thread(self._store, speech)
        tone = await self._tone()
        joined = self.folder / f".join-{uuid.uuid4().hex}.wav"
        try:
            await run(
                ["sox", "-V1", str(tone), str(speech), str(joined)],
                stdin=None,
                within=self.speech.config.timeout,
                key=f"{self._key}.tone",
            )
            return await asyncio.to_thread(self._store, joined)
        finally:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(joined.unlink)

    async def _tone(self) -> Path:
        path = self.folder / _TONE_NAME
        if await asyncio.to_thread(path.is_file):
            return path
        aside = self.folder / f".tone-{uuid.uuid4().hex}.wav"
        rate = str(SAMPLE_RATE)
        args = ["sox", "-V1", "-n", "-r", rate, "-c", "1", "-b", "16", "-e", "signed-integer"]
        await run([*args, str(aside), *TONE], stdin=None, within=30.0, key=f"{self._key}.tone")
        await asyncio.to_thread(aside.replace, path)
        return path

    def _store(self, source: Path) -> Clip:
        """Copy ``source`` into the folder under its content's hash (whole, then renamed)."""
        data = source.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest}.wav"
        target = self.folder / name
        if not target.is_file():
            aside = self.folder / f".{digest}.{uuid.uuid4().hex}"
            shutil.copyfile(source, aside)
            aside.replace(target)
        with wave.open(str(target), "rb") as audio:
            seconds = audio.getnframes() / audio.getframerate()
        return Clip(name, digest, round(seconds, 3))
