"""``GET /media/{name}``: the audio loudspeakers fetch, behind a signed, expiring URL instead of
a token (a speaker has none). Which channel's file it is, and whether the signature holds, each
channel that serves media says for itself (``channels.media.MediaSource``)."""

from __future__ import annotations

from typing import Final

import structlog
from aiohttp import web
from pydantic import Field

from channels.media import MEDIA_NAME, MediaAnswer, MediaSource, MediaVerdict
from warnd.web.http import SERVICES, ApiError, QueryModel, query

log = structlog.get_logger(__name__)

NAME_PATTERN: Final = MEDIA_NAME.pattern.removeprefix("\\A").removesuffix("\\Z")


class MediaQuery(QueryModel):
    """The signature a channel put on the URL it gave a speaker."""

    expires: str = Field(default="", max_length=20, description="expiry, in Unix seconds")
    sig: str = Field(default="", max_length=128, description="hex HMAC-SHA256 of path and expiry")


async def get_media(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    signed = query(request, MediaQuery)
    services = request.app[SERVICES]
    now = services.clock.now()
    answers: list[MediaAnswer] = [
        channel.media_file(name, signed.expires, signed.sig, now)
        for channel in services.channels.values()
        if isinstance(channel, MediaSource)
    ]
    for answer in answers:
        if answer.verdict is MediaVerdict.FOUND and answer.path is not None:
            return web.FileResponse(
                answer.path,
                headers={
                    "Content-Type": answer.content_type,
                    # Named by its content's hash, so it never changes; kept private, as the
                    # URL that reached it is.
                    "Cache-Control": "private, max-age=3600, immutable",
                },
            )
    verdicts = {answer.verdict for answer in answers}
    if MediaVerdict.MISSING in verdicts or not answers:
        raise ApiError(404, "not_found", f"no media file {name}")
    log.warning(
        "media_refused",
        name=name,
        expired=MediaVerdict.EXPIRED in verdicts,
        remote=request.remote,
    )
    if MediaVerdict.EXPIRED in verdicts:
        raise ApiError(403, "expired", "the link has expired; the speaker gets a new one")
    raise ApiError(403, "forbidden", "the link's signature is not valid")
