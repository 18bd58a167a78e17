"""Running the local programs speech needs (espeak-ng, sox): bounded in time, killed when given
up, and every failure turned into a :class:`SpeechError` that names the key and the package."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from typing import Final

from channels.tts.errors import SpeechError

# The Debian package that brings each program, for the message when it is missing.
PACKAGES: Final = {"espeak-ng": "espeak-ng", "sox": "sox"}

# How much of a failing program's own words an error keeps.
_DETAIL_CHARS: Final = 300


def missing(program: str, key: str) -> SpeechError:
    """The error for a program that is not installed."""
    package = PACKAGES.get(program, program)
    return SpeechError(f"{key}: {program} is not installed (Debian package {package})")


def require(programs: Sequence[str], key: str) -> None:
    """Raise :class:`SpeechError` for the first of ``programs`` not on the PATH."""
    for program in programs:
        if shutil.which(program) is None:
            raise missing(program, key)


async def run(args: Sequence[str], *, stdin: bytes | None, within: float, key: str) -> None:
    """Run ``args`` to completion, feeding it ``stdin``; raise :class:`SpeechError` when it is
    missing, fails, or outlasts ``within`` seconds. Cancelled, the program is killed first."""
    program = args[0]
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise missing(program, key) from None
    try:
        async with asyncio.timeout(within):
            _, errors = await process.communicate(stdin)
    except TimeoutError:
        await _kill(process)
        raise SpeechError(f"{key}: {program} took longer than {within:g} s") from None
    except BaseException:
        await asyncio.shield(_kill(process))
        raise
    if process.returncode != 0:
        said = errors.decode("utf-8", errors="replace").strip()[-_DETAIL_CHARS:]
        raise SpeechError(
            f"{key}: {program} failed (exit status {process.returncode})"
            + (f": {said}" if said else "")
        )


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()
