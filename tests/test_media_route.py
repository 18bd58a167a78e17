"""``GET /media/{name}``: the audio loudspeakers fetch from warnd under a signed, expiring URL,
served by warnd's own application (route table, middlewares, OpenAPI) from a broadcast channel."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from yarl import URL

from channels.base import Channel, DeviceConfirmation, Outcome
from channels.media import MediaSigner
from channels.mqtt_broadcast.channel import MqttBroadcastChannel
from channels.mqtt_broadcast.config import MqttBroadcastConfig
from tests.brokers import any_mosquitto, unique_prefix
from tests.fixtures import NOW, Api, serve_api
from tests.test_mqtt_broadcast import MEDIA_KEY, TEXT, TestClock, confirmations, red, start_fleet
from warnd.policy.model import Policy
from warnd.tools.speakers import village_codes


@dataclass
class Served:
    api: Api
    channel: MqttBroadcastChannel
    channels: dict[str, Channel]


def broadcast_channel(
    tmp_path: Path, speech_cache: Path, media_url: str, **settings: object
) -> MqttBroadcastChannel:
    table: dict[str, object] = {
        "type": "mqtt_broadcast",
        "broker": "127.0.0.1",
        "media_url": media_url,
        "media_key": MEDIA_KEY,
        "media_dir": str(tmp_path / "media"),
        "tts": {"cache_dir": str(speech_cache)},
    }
    table.update(settings)
    return MqttBroadcastChannel("speakers", MqttBroadcastConfig.model_validate(table))


@pytest.fixture
async def served(
    pool: asyncpg.Pool, policy: Policy, tmp_path: Path, speech_cache: Path
) -> AsyncIterator[Served]:
    channel = broadcast_channel(tmp_path, speech_cache, "http://10.0.0.5:8379/media")
    channels: dict[str, Channel] = {"speakers": channel}
    async for api in serve_api(pool, policy, channels):
        yield Served(api, channel, channels)


def path_of(url: str) -> str:
    return URL(url).path_qs


async def test_a_signed_url_serves_the_file_without_a_token(served: Served) -> None:
    clip = await served.channel.audio.clip(TEXT, toned=False)
    url = served.channel.signed_url(clip.name, NOW)
    assert url.startswith(f"http://10.0.0.5:8379/media/{clip.name}?expires=")
    response = await served.api.client.get(path_of(url))
    assert response.status == 200
    assert response.headers["Content-Type"] == "audio/wav"
    body = await response.read()
    assert hashlib.sha256(body).hexdigest() == clip.sha256
    assert body[:4] == b"RIFF"


async def test_a_wrong_or_missing_signature_is_refused(served: Served) -> None:
    clip = await served.channel.audio.clip(TEXT, toned=False)
    good = URL(served.channel.signed_url(clip.name, NOW))
    expires, sig = good.query["expires"], good.query["sig"]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    other_key = MediaSigner("another-key-0123456789abcdef0123456789", "http://x/media", 3600)
    foreign = URL(other_key.url(clip.name, NOW)[0])
    later = str(int(expires) + 3600)  # a longer life than was signed
    for query in (
        f"?expires={expires}&sig={flipped}",
        f"?expires={later}&sig={sig}",
        foreign.query_string and f"?{foreign.query_string}",
        f"?expires={expires}",
        "",
        f"?expires=abc&sig={sig}",
        f"?expires={expires}&sig={sig.upper()}",
    ):
        response = await served.api.client.get(f"/media/{clip.name}{query}")
        assert response.status == 403, query
        assert (await response.json())["error"] == "forbidden"


async def test_an_expired_url_is_refused(served: Served) -> None:
    clip = await served.channel.audio.clip(TEXT, toned=False)
    old = served.channel.signed_url(clip.name, NOW - timedelta(seconds=3601))
    response = await served.api.client.get(path_of(old))
    assert response.status == 403
    assert (await response.json())["error"] == "expired"


async def test_an_unknown_file_is_404_even_when_signed(served: Served) -> None:
    name = hashlib.sha256(b"nothing").hexdigest() + ".wav"
    response = await served.api.client.get(path_of(served.channel.signed_url(name, NOW)))
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/media/../../etc/passwd",
        "/media/..%2F..%2Fetc%2Fpasswd",
        "/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/media/..",
        "/media/" + "A" * 64 + ".wav",
        "/media/" + "a" * 64 + ".wav%2F..%2F..%2Fsecret",
        "/media/" + "a" * 64 + ".mp4",
        "/media/" + "a" * 63 + ".wav",
        "/media/.tone.wav",
        "/media/%00.wav",
        "/media/",
    ],
)
async def test_anything_but_a_hash_name_is_404(served: Served, path: str) -> None:
    (served.channel.audio.folder).mkdir(parents=True, exist_ok=True)
    response = await served.api.client.get(URL(path, encoded=True))
    assert response.status == 404, path
    assert response.headers["Content-Type"].startswith("application/json")


async def test_without_a_broadcast_channel_there_is_no_media(
    pool: asyncpg.Pool, policy: Policy
) -> None:
    async for api in serve_api(pool, policy, {}):
        name = "a" * 64 + ".wav"
        response = await api.client.get(f"/media/{name}?expires=1&sig={'0' * 64}")
        assert response.status == 404


async def test_the_route_is_public_and_documented(served: Served) -> None:
    response = await served.api.client.get("/api/v1/openapi.json")
    operation = (await response.json())["paths"]["/media/{name}"]["get"]
    assert operation["security"] == [] and operation["x-roles"] == []
    (name,) = [p for p in operation["parameters"] if p["in"] == "path"]
    assert name["schema"] == {"type": "string", "pattern": "^[0-9a-f]{64}\\.wav$"}
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {"expires", "sig"}
    assert {"200", "403", "404"} <= set(operation["responses"])


async def test_speakers_fetch_their_audio_from_warnd_and_confirm(
    served: Served, tmp_path: Path, speech_cache: Path
) -> None:
    """The whole path: warnd's app serves the audio a real speaker fleet on Mosquitto fetches."""
    server = served.api.client.server
    media_url = f"http://127.0.0.1:{server.port}/media"
    async with any_mosquitto(tmp_path) as broker:
        prefix = unique_prefix()
        speaker = village_codes(1, seed=11)[0]
        fleet = await start_fleet(broker, prefix, [speaker])
        clock = TestClock(datetime.now(UTC))
        served.api.services.clock = clock  # the app checks expiries against real time here
        channel = MqttBroadcastChannel(
            "speakers",
            broadcast_channel(
                tmp_path,
                speech_cache,
                media_url,
                port=broker.port,
                topic_prefix=prefix,
                client_id=f"warnd-{prefix.replace('/', '-')}",
            ).config,
            clock=clock,
        )
        served.channels["speakers"] = channel
        try:
            await channel.start()
            await channel.prepare([TEXT])
            (result,) = await channel.send([red(5, speaker)])
            assert result.outcome is Outcome.ACCEPTED
            (confirmation,) = await confirmations(channel, 1)
            assert isinstance(confirmation, DeviceConfirmation)
            assert (confirmation.external_id, confirmation.played) == ("5", True)
            (fetched,) = fleet.fetched
            assert fetched.startswith(media_url)
            assert channel.health()["links"]["broker"]["media_served"] == 1  # type: ignore[index]
        finally:
            await channel.stop()
            await fleet.stop()
