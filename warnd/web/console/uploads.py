"""Roster files uploaded in the console, streamed to a folder part by part: a roster of a
county runs to megabytes, far past what a form may carry (``guard.MAX_FORM_BYTES``), so an
upload is ``multipart/form-data`` read as a stream, its CSRF token first (``guard``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

from aiohttp import BodyPartReader, MultipartReader

from warnd.core.errors import InputError

FIELD: Final = "files"
SUFFIXES: Final = (".csv", ".xlsx")
MAX_FILES: Final = 20
# A county's roster is a few megabytes; the city's (2.9 million households) is imported with
# `warnd roster import`, which shows its progress as it goes.
MAX_BYTES: Final = 100 * 1024 * 1024
MAX_NAME: Final = 120
WRITE_BYTES: Final = 1 << 20  # written a megabyte at a time, off the event loop


def _file_name(raw: str) -> str:
    """The file's own name, without any folder a browser or a forger put before it."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if len(name) > MAX_NAME:
        raise InputError(
            f"files: a file name longer than {MAX_NAME} characters", code="roster_file"
        )
    if not name or any(ord(c) < 32 for c in name) or not name.lower().endswith(SUFFIXES):
        raise InputError(
            f"files: {name[:80]!r} is neither a .csv nor an .xlsx roster file",
            code="roster_file",
        )
    return name


async def receive(reader: MultipartReader, folder: Path) -> list[Path]:
    """Write each uploaded file into ``folder`` under its own name; their paths in order."""
    try:
        return await _receive(reader, folder)
    except (ValueError, asyncio.IncompleteReadError) as exc:
        raise InputError(
            f"files: the upload is not well-formed: {exc}", code="roster_file"
        ) from None


async def _receive(reader: MultipartReader, folder: Path) -> list[Path]:
    paths: list[Path] = []
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name != FIELD or not part.filename:
            continue  # anything else is skipped unread
        name = _file_name(part.filename)
        if any(p.name == name for p in paths):
            raise InputError(f"files: {name} was chosen twice", code="roster_file")
        if len(paths) == MAX_FILES:
            raise InputError(f"files: more than {MAX_FILES} files", code="roster_file")
        path = folder / name
        with path.open("wb") as out:
            pending = bytearray()
            while chunk := await part.read_chunk():
                total += len(chunk)
                if total > MAX_BYTES:
                    raise InputError(
                        f"files: more than {MAX_BYTES // 2**20} MB in all; import a roster this "
                        "large with `warnd roster import`",
                        code="roster_file",
                    )
                pending += chunk
                if len(pending) >= WRITE_BYTES:
                    await asyncio.to_thread(out.write, bytes(pending))
                    pending.clear()
            await asyncio.to_thread(out.write, bytes(pending))
        paths.append(path)
    if not paths:
        raise InputError(
            "files: choose at least one roster file (.csv or .xlsx)", code="roster_file"
        )
    return paths
