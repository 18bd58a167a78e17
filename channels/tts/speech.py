"""Speech: a text in, the path of its telephony WAV out, rendered once and cached on disk (see the
package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from channels.tts.config import EspeakTts, HttpTts
from channels.tts.engines import engine_for
from channels.tts.errors import SpeechError
from channels.tts.programs import require, run

# What every cached file is; part of the cache key, so that changing the conversion below makes
# every file anew instead of mixing old and new audio.
OUTPUT_FORMAT: Final = "wav/8000/mono/s16, gain -n -3, pad 0.5 0.5; v1"
SAMPLE_RATE: Final = 8000

# sox's arguments after the input and output files: normalise to -3 dBFS (headroom for the
# resampler, which sox appends after these effects), half a second of silence at either end.
_EFFECTS: Final = ("gain", "-n", "-3", "pad", "0.5", "0.5")


class Speech:
    """Turns texts into 8 kHz mono 16-bit WAV files with one engine, caching them on disk.

    ``key`` is where the ``tts`` table sits in the configuration (``channels.voice.tts``), for
    error messages. At most ``concurrency`` renderings run at once: each is a CPU-bound program.
    """

    def __init__(
        self, config: EspeakTts | HttpTts, *, key: str = "tts", concurrency: int = 2
    ) -> None:
        self.config = config
        self._key = key
        self._engine = engine_for(config, key)
        self._dir = config.cache_path()
        self._rendering: dict[str, asyncio.Task[Path]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self.rendered = 0  # texts rendered by this object (not found in the cache)

    @property
    def in_progress(self) -> int:
        """Texts being rendered now."""
        return len(self._rendering)

    def check(self) -> None:
        """Raise SpeechError when a program the engine needs is missing or the cache folder
        cannot be made; for start-up, so that a missing program stops the daemon at once."""
        require((*self._engine.programs, "sox"), f"{self._key}.engine")
        try:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SpeechError(
                f"{self._key}.cache_dir: {str(self._dir)!r} cannot be created ({exc.strerror})"
            ) from None

    def path_for(self, text: str) -> Path:
        """Where the audio of ``text`` is (or will be) cached."""
        material = json.dumps(
            {"format": OUTPUT_FORMAT, **self._engine.identity(), "text": text},
            ensure_ascii=False,
            sort_keys=True,
        )
        return self._dir / f"{hashlib.sha256(material.encode('utf-8')).hexdigest()}.wav"

    async def audio(self, text: str) -> Path:
        """The WAV file of ``text``, rendered now unless cached; concurrent calls for one text
        share one rendering. Raises SpeechError (an empty text is one too)."""
        if not text.strip():
            raise SpeechError(f"{self._key}: nothing to say (the text is empty)")
        path = self.path_for(text)
        if await asyncio.to_thread(path.is_file):
            return path
        task = self._rendering.get(path.name)
        if task is None:
            task = asyncio.create_task(self._render(text, path))
            self._rendering[path.name] = task
            task.add_done_callback(functools.partial(self._done, path.name))
        # Shielded: a caller that gives up does not take the rendering away from the others
        # waiting for it, nor from the cache.
        return await asyncio.shield(task)

    async def prepare(self, texts: Iterable[str]) -> dict[str, Path]:
        """Render every text not yet cached (when a warning is planned, before any call); the
        path of each. Raises SpeechError if any cannot be rendered."""
        unique = list(dict.fromkeys(texts))
        paths = await asyncio.gather(*(self.audio(text) for text in unique))
        return dict(zip(unique, paths, strict=True))

    async def close(self) -> None:
        """Stop renderings in progress (nothing half-written stays) and release the engine."""
        tasks = list(self._rendering.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._engine.close()

    def _done(self, name: str, task: asyncio.Task[Path]) -> None:
        self._rendering.pop(name, None)
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have given up waiting for it

    async def _render(self, text: str, path: Path) -> Path:
        async with self._slots:
            if await asyncio.to_thread(path.is_file):  # another process rendered it meanwhile
                return path
            await asyncio.to_thread(self.check)
            stem = f".{path.stem}.{uuid.uuid4().hex}"
            source = path.with_name(f"{stem}.source.wav")
            converted = path.with_name(f"{stem}.wav")
            try:
                await self._engine.render(text, source)
                await run(
                    [
                        "sox",
                        "-V1",  # errors only: a clipped sample is no failure
                        str(source),
                        "-r",
                        str(SAMPLE_RATE),
                        "-c",
                        "1",
                        "-b",
                        "16",
                        "-e",
                        "signed-integer",
                        str(converted),
                        *_EFFECTS,
                    ],
                    stdin=None,
                    within=self.config.timeout,
                    key=f"{self._key}.engine",
                )
                # Renamed into place whole: a reader never sees half a file.
                await asyncio.to_thread(converted.replace, path)
            finally:
                await asyncio.to_thread(_remove, source, converted)
            self.rendered += 1
            return path


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
