"""Signed, expiring URLs for audio that devices fetch from warnd (loudspeakers have no tokens).

A channel that hands devices audio to fetch keeps the files in a folder of its own, names each by
the SHA-256 of its bytes (``<64 hex>.wav``), and gives each device a URL::

    {media_url}/{sha256}.wav?expires={unix seconds}&sig={hex HMAC-SHA256}

The signature is HMAC-SHA256, keyed by the channel's ``media_key``, over the path warnd serves
the file at and the expiry, joined by a newline: ``"/media/{name}\\n{expires}"``. The path, not
the whole URL, is signed so that ``media_url`` may point at a reverse proxy in front of warnd.
warnd's ``GET /media/{name}`` asks every channel that serves media (:class:`MediaSource`) for the
file; a channel answers only for a signature made with its own key, so two channels with two
keys never serve each other's files, and a leaked URL is good for ``media_ttl`` seconds only.

This module holds the pure part (names, signing, checking) and the protocol warnd's web layer
relies on; it never reads a file.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol, runtime_checkable
from urllib.parse import quote

MEDIA_PATH: Final = "/media/"
# The only names warnd serves: a SHA-256 of the content and a known extension. Anything else
# (dots, slashes, percent-escapes, upper case) is refused before a file system is touched.
MEDIA_NAME: Final = re.compile(r"\A[0-9a-f]{64}\.wav\Z")
CONTENT_TYPES: Final = {".wav": "audio/wav"}
_SIGNATURE: Final = re.compile(r"\A[0-9a-f]{64}\Z")
_EXPIRES: Final = re.compile(r"\A[0-9]{1,12}\Z")
MIN_KEY_CHARS: Final = 32


class MediaVerdict(StrEnum):
    """What a channel says of a request for one of its media files."""

    FOUND = "found"  # signed with this channel's key, unexpired, and the file is there
    MISSING = "missing"  # signed with this channel's key, unexpired, but no such file (404)
    EXPIRED = "expired"  # this channel's signature, past its expiry (403)
    FORBIDDEN = "forbidden"  # not this channel's signature (403, unless another channel's)


@dataclass(frozen=True)
class MediaAnswer:
    verdict: MediaVerdict
    path: Path | None = None
    content_type: str = ""


@runtime_checkable
class MediaSource(Protocol):
    """A channel whose devices fetch audio from warnd: warnd's ``GET /media/{name}`` asks each."""

    def media_file(self, name: str, expires: str, signature: str, now: datetime) -> MediaAnswer:
        """Whether ``name`` with this query is this channel's to serve, and the file if so;
        ``name`` has passed :func:`valid_name`. Never raises for a bad request."""
        ...


def valid_name(name: str) -> bool:
    """Whether ``name`` is a media file name warnd would ever serve."""
    return MEDIA_NAME.match(name) is not None


def content_type(name: str) -> str:
    return CONTENT_TYPES[Path(name).suffix]


class MediaSigner:
    """Makes and checks the signed URLs of one channel's media."""

    def __init__(self, key: str, base_url: str, ttl: float) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"a media key has at least {MIN_KEY_CHARS} characters")
        self._key = key.encode("utf-8")
        self._base = base_url.rstrip("/")
        self._ttl = ttl

    def __repr__(self) -> str:  # the key never shows
        return f"<MediaSigner {self._base!r} ttl={self._ttl:g}>"

    def _signature(self, name: str, expires: int) -> str:
        message = f"{MEDIA_PATH}{name}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, name: str, now: datetime) -> tuple[str, datetime]:
        """The URL a device fetches ``name`` by, good until the expiry returned with it."""
        expires = math.ceil(now.timestamp() + self._ttl)
        signature = self._signature(name, expires)
        url = f"{self._base}/{quote(name)}?expires={expires}&sig={signature}"
        return url, datetime.fromtimestamp(expires, tz=now.tzinfo)

    def check(self, name: str, expires: str, signature: str, now: datetime) -> MediaVerdict:
        """FORBIDDEN, EXPIRED, or FOUND (the signature holds; whether the file exists is the
        caller's to say). Compares in constant time."""
        if not (_EXPIRES.match(expires) and _SIGNATURE.match(signature)):
            return MediaVerdict.FORBIDDEN
        expected = self._signature(name, int(expires))
        if not hmac.compare_digest(expected, signature):
            return MediaVerdict.FORBIDDEN
        if int(expires) <= now.timestamp():
            return MediaVerdict.EXPIRED
        return MediaVerdict.FOUND
