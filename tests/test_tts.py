"""Speech: espeak-ng for real, and an HTTP TTS server (aiohttp on 127.0.0.1) for the http engine.

What is checked is what a telephone line needs: 8 kHz mono 16-bit PCM that is not silence, made
once per text however often (and however concurrently) it is asked for, with errors that name
the key to fix.
"""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import BaseModel, TypeAdapter, ValidationError

from channels.tts import EspeakTts, HttpTts, Speech, SpeechError, TtsConfig
from tests.peers import free_tcp_port, require, sox_stat, wav_seconds
from tests.waiting import until

PROMPT = "暴雨红色预警。确认收到请按1，重听请按2。"
TOKEN = "tts-token-0123456789abcdef"

tts_table = TypeAdapter(TtsConfig)


def espeak(cache: Path, **settings: object) -> Speech:
    return Speech(tts_table.validate_python({"cache_dir": str(cache), **settings}))


def names(folder: Path) -> list[str]:
    """The files in ``folder`` (a directory listing is no I/O worth a thread in a test)."""
    return sorted(path.name for path in folder.iterdir())


def assert_telephony(path: Path) -> None:
    with wave.open(str(path), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        assert audio.getcomptype() == "NONE"


# --- espeak-ng ---------------------------------------------------------------------------------


async def test_espeak_speaks_mandarin_as_telephony_audio(tmp_path: Path) -> None:
    require("espeak-ng", "sox")
    speech = espeak(tmp_path)
    speech.check()
    path = await speech.audio(PROMPT)
    assert path.parent == tmp_path
    assert_telephony(path)
    seconds = wav_seconds(path)
    assert 2.0 < seconds < 20.0, seconds
    stats = await sox_stat(path)
    assert stats["RMS amplitude"] > 0.02, "the audio is (nearly) silence"
    assert stats["Maximum amplitude"] < 0.99, "normalised with headroom, not clipped"


async def test_the_same_text_is_rendered_once_and_found_again_on_disk(tmp_path: Path) -> None:
    require("espeak-ng", "sox")
    speech = espeak(tmp_path)
    first = await speech.audio(PROMPT)
    again = await speech.audio(PROMPT)
    assert first == again
    assert speech.rendered == 1
    # Another process (a restarted daemon) finds it in the cache.
    later = espeak(tmp_path)
    assert await later.audio(PROMPT) == first
    assert later.rendered == 0
    assert names(tmp_path) == [first.name], "no temporary file is left"


async def test_concurrent_requests_for_one_text_render_it_once(tmp_path: Path) -> None:
    require("espeak-ng", "sox")
    speech = espeak(tmp_path)
    paths = await asyncio.gather(*(speech.audio(PROMPT) for _ in range(6)))
    assert len(set(paths)) == 1
    assert speech.rendered == 1


async def test_a_caller_giving_up_does_not_spoil_the_rendering_for_the_others(
    tmp_path: Path,
) -> None:
    require("espeak-ng", "sox")
    speech = espeak(tmp_path)
    impatient = asyncio.create_task(speech.audio(PROMPT))
    await until(lambda: speech.in_progress == 1, what="the rendering to begin")
    patient = asyncio.create_task(speech.audio(PROMPT))
    impatient.cancel()
    path = await patient
    assert impatient.cancelled()
    assert_telephony(path)
    assert speech.rendered == 1


async def test_voice_and_options_are_part_of_the_cache_key(tmp_path: Path) -> None:
    require("espeak-ng", "sox")
    default = espeak(tmp_path)
    faster = espeak(tmp_path, speed=220)
    assert default.path_for(PROMPT) != faster.path_for(PROMPT)
    assert default.path_for(PROMPT) != default.path_for(PROMPT + "。")
    slow, fast = await default.audio(PROMPT), await faster.audio(PROMPT)
    assert wav_seconds(fast) < wav_seconds(slow)


async def test_prepare_renders_every_distinct_text_ahead(tmp_path: Path) -> None:
    require("espeak-ng", "sox")
    speech = espeak(tmp_path)
    texts = [PROMPT, "山洪橙色预警。确认收到请按1。", PROMPT]
    paths = await speech.prepare(texts)
    assert set(paths) == set(texts)
    assert speech.rendered == 2
    assert all(path.is_file() for path in paths.values())
    # What a call asks for later is already there.
    assert await speech.audio(PROMPT) == paths[PROMPT]
    assert speech.rendered == 2


async def test_an_empty_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpeechError, match="nothing to say"):
        await espeak(tmp_path).audio("  \n")


async def test_missing_programs_are_named_with_their_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    speech = Speech(EspeakTts(cache_dir=tmp_path), key="channels.voice.tts")
    with pytest.raises(SpeechError) as raised:
        speech.check()
    assert str(raised.value) == (
        "channels.voice.tts.engine: espeak-ng is not installed (Debian package espeak-ng)"
    )
    with pytest.raises(SpeechError, match="espeak-ng is not installed"):
        await speech.audio(PROMPT)


async def test_sox_missing_is_named_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require("espeak-ng")
    only = tmp_path / "bin"
    only.mkdir()
    espeak_ng = only / "espeak-ng"
    espeak_ng.symlink_to(Path(str(shutil.which("espeak-ng"))))
    monkeypatch.setenv("PATH", str(only))
    with pytest.raises(
        SpeechError, match=r"^tts\.engine: sox is not installed \(Debian package sox\)"
    ):
        espeak(tmp_path / "cache").check()


async def test_close_stops_a_rendering_and_leaves_no_half_file(tmp_path: Path) -> None:
    require("espeak-ng", "sox")
    speech = espeak(tmp_path)
    rendering = asyncio.create_task(speech.audio(PROMPT * 20))
    await until(lambda: speech.in_progress == 1, what="the rendering to begin")
    await speech.close()
    with pytest.raises(asyncio.CancelledError):
        await rendering
    assert names(tmp_path) == []


# --- configuration -----------------------------------------------------------------------------


class Channel(BaseModel):
    tts: TtsConfig = EspeakTts()


def test_a_table_without_engine_is_espeak_with_the_mandarin_voice() -> None:
    config = Channel.model_validate({"tts": {}}).tts
    assert isinstance(config, EspeakTts)
    assert config.voice == "cmn"
    assert isinstance(Channel().tts, EspeakTts)


def test_bad_tables_name_the_key() -> None:
    with pytest.raises(ValidationError) as raised:
        Channel.model_validate({"tts": {"engine": "festival"}})
    assert raised.value.errors()[0]["loc"] == ("tts",)
    assert "espeak" in raised.value.errors()[0]["msg"]
    with pytest.raises(ValidationError) as raised:
        Channel.model_validate({"tts": {"engine": "http"}})
    assert raised.value.errors()[0]["loc"] == ("tts", "http", "url")
    with pytest.raises(ValidationError) as raised:
        Channel.model_validate({"tts": {"voice": "-w /etc/passwd"}})
    assert raised.value.errors()[0]["loc"] == ("tts", "espeak", "voice")


def test_the_token_may_come_from_a_file_and_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "tts.token"
    secret.write_text(TOKEN + "\n")
    config = Channel.model_validate(
        {"tts": {"engine": "http", "url": "http://127.0.0.1:1/tts", "token_file": str(secret)}}
    ).tts
    assert isinstance(config, HttpTts)
    assert config.token is not None
    assert config.token.get_secret_value() == TOKEN
    for shown in (repr(config), str(config), config.model_dump_json()):
        assert TOKEN not in shown
    with pytest.raises(ValidationError, match="not both"):
        HttpTts.model_validate(
            {"engine": "http", "url": "http://x/", "token": "a", "token_file": str(secret)}
        )
    with pytest.raises(ValidationError, match="absolute path"):
        HttpTts.model_validate({"engine": "http", "url": "http://x/", "token_file": "tts.token"})


# --- the http engine ---------------------------------------------------------------------------


def tone(seconds: float = 1.5, rate: int = 16000) -> bytes:
    """A WAV a TTS server might send: 16 kHz mono, a 440 Hz tone."""
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(frames)
    return out.getvalue()


class TtsServer:
    """Records what it is asked and answers as told (a WAV by default)."""

    def __init__(self) -> None:
        self.received: list[tuple[str | None, Any]] = []
        self.status = 200
        self.body = tone()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get("Authorization"), await request.json()))
        return web.Response(status=self.status, body=self.body, content_type="audio/wav")


@pytest.fixture
async def tts_server() -> AsyncIterator[tuple[TtsServer, str]]:
    server = TtsServer()
    app = web.Application()
    app.router.add_post("/tts", server.handle)
    async with TestServer(app, host="127.0.0.1") as test_server:
        yield server, str(test_server.make_url("/tts"))


def http_speech(url: str, cache: Path, **settings: object) -> Speech:
    table = {"engine": "http", "url": url, "token": TOKEN, "cache_dir": str(cache), **settings}
    return Speech(tts_table.validate_python(table), key="channels.voice.tts")


async def test_http_engine_posts_the_text_with_the_token_and_converts_the_wav(
    tts_server: tuple[TtsServer, str], tmp_path: Path
) -> None:
    require("sox")
    server, url = tts_server
    speech = http_speech(url, tmp_path, voice="xiaoyan")
    try:
        speech.check()
        path = await speech.audio(PROMPT)
        assert await speech.audio(PROMPT) == path
    finally:
        await speech.close()
    assert server.received == [
        (f"Bearer {TOKEN}", {"text": PROMPT, "voice": "xiaoyan", "format": "wav"})
    ]
    assert_telephony(path)
    assert wav_seconds(path) == pytest.approx(1.5 + 1.0, abs=0.01)  # with its two pads
    assert (await sox_stat(path))["RMS amplitude"] > 0.1


async def test_http_engine_failures_name_the_url_key(
    tts_server: tuple[TtsServer, str], tmp_path: Path
) -> None:
    require("sox")
    server, url = tts_server
    speech = http_speech(url, tmp_path)
    try:
        server.status, server.body = 500, b"engine overloaded"
        with pytest.raises(SpeechError) as raised:
            await speech.audio(PROMPT)
        assert str(raised.value) == (
            "channels.voice.tts.url: the TTS server answered HTTP 500: engine overloaded"
        )
        server.status, server.body = 200, b"<html>login</html>"
        with pytest.raises(SpeechError, match=r"^channels\.voice\.tts\.url: .* not a WAV file"):
            await speech.audio(PROMPT)
        assert names(tmp_path) == [], "nothing is cached from a failure"
        # A failure is not remembered: the server recovers, the text is rendered.
        server.body = tone()
        assert_telephony(await speech.audio(PROMPT))
    finally:
        await speech.close()


async def test_http_engine_unreachable_is_a_speech_error(tmp_path: Path) -> None:
    speech = http_speech(f"http://127.0.0.1:{free_tcp_port()}/tts", tmp_path, timeout=5)
    try:
        with pytest.raises(SpeechError, match="cannot be reached"):
            await speech.audio(PROMPT)
    finally:
        await speech.close()
