"""The ``mqtt_broadcast`` channel against real brokers (Mosquitto, and amqtt in-process) and the
simulated speaker fleet of ``warnd speakers simulate``; the contract's parsing without a broker."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.base import (
    DeviceConfirmation,
    DeviceStatus,
    InboundEvent,
    OutboundMessage,
    Outcome,
    Reason,
    WarningContext,
)
from channels.mqtt_broadcast.channel import MqttBroadcastChannel, interrupts
from channels.mqtt_broadcast.config import MqttBroadcastConfig
from channels.mqtt_broadcast.wire import Refused
from channels.registry import ChannelConfigError, build_channels
from tests.brokers import (
    Broker,
    MediaServer,
    amqtt_broker,
    any_mosquitto,
    own_mosquitto,
    unique_prefix,
)
from tests.channel_contract import (
    ChannelContract,
    ChannelFactory,
    assert_one_result_each,
    events_so_far,
)
from tests.waiting import until
from warnd.tools.speakers import FleetOptions, SpeakerFleet, village_codes

MEDIA_KEY = "media-key-0123456789abcdef0123456789abcdef"
PASSWORD = "mqtt-secret-password-42"
TEXT = "济宁市应急管理局：任城区暴雨红色预警，请低洼地带群众立即转移。"
T0 = datetime(2026, 7, 29, 2, 0, tzinfo=UTC)


class TestClock:
    """Channel time moved by hand; sleeps are short real ones, so loops keep turning."""

    __test__ = False

    def __init__(self, at: datetime | None = None) -> None:
        self.at = at or datetime.now(UTC)

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0.005)


@pytest.fixture(params=["mosquitto", "amqtt"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    if request.param == "mosquitto":
        async with any_mosquitto(tmp_path) as found:
            yield found
    else:
        async with amqtt_broker() as found:
            yield found


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[Broker]:
    async with any_mosquitto(tmp_path) as found:
        yield found


@pytest.fixture
async def media() -> AsyncIterator[MediaServer]:
    server = MediaServer()
    await server.start()
    yield server
    await server.stop()


def make_channel(
    broker: Broker,
    prefix: str,
    media: MediaServer,
    tmp_path: Path,
    speech_cache: Path,
    *,
    clock: TestClock | None = None,
    **settings: object,
) -> MqttBroadcastChannel:
    table: dict[str, object] = {
        "type": "mqtt_broadcast",
        "broker": broker.host,
        "port": broker.port,
        "client_id": f"warnd-{prefix.replace('/', '-')}",
        "topic_prefix": prefix,
        "media_url": media.url,
        "media_key": MEDIA_KEY,
        "media_dir": str(tmp_path / "media"),
        "start_wait": 10.0,
        # amqtt lets an MQTT 5 CONNECT time out before the channel falls back to 3.1.1.
        "connect_timeout": 1.5,
        "tts": {"cache_dir": str(speech_cache)},
    }
    table.update(settings)
    channel = MqttBroadcastChannel(
        "speakers", MqttBroadcastConfig.model_validate(table), clock=clock
    )
    media.sources.append(channel)
    return channel


async def start_fleet(
    broker: Broker, prefix: str, ids: list[str], **options: object
) -> SpeakerFleet:
    settings: dict[str, object] = {
        "broker": broker.host,
        "port": broker.port,
        "ids": ids,
        "prefix": prefix,
        "offline": 0.0,
        "fail": 0.0,
        "speed": 50.0,
        "clear_on_stop": True,
    }
    settings.update(options)
    fleet = SpeakerFleet(FleetOptions(**settings))  # type: ignore[arg-type]
    await fleet.start()
    return fleet


def red(
    key: int, speaker: str, *, hazard: str = "rainstorm", level: str = "red"
) -> OutboundMessage:
    warning = WarningContext(
        warning_id=7,
        hazard=hazard,
        level=level,
        exercise=False,
        expires_at=datetime.now(UTC) + timedelta(hours=6),
    )
    return OutboundMessage(key=key, address=speaker, text=TEXT, priority=1, warning=warning)


async def confirmations(
    channel: MqttBroadcastChannel, count: int, within: float = 30.0
) -> list[DeviceConfirmation]:
    """The next ``count`` DeviceConfirmations (statuses in between are passed over)."""
    found: list[DeviceConfirmation] = []
    stream = channel.events()
    try:
        async with asyncio.timeout(within):
            async for event in stream:
                if isinstance(event, DeviceConfirmation):
                    found.append(event)
                    if len(found) >= count:
                        break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return found


async def first_event(
    channel: MqttBroadcastChannel, wanted: type[InboundEvent], check: object, within: float = 20.0
) -> InboundEvent:
    stream = channel.events()
    try:
        async with asyncio.timeout(within):
            async for event in stream:
                if isinstance(event, wanted) and callable(check) and check(event):
                    return event
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    raise AssertionError("the event stream ended")


# --- the shared contract, on both brokers --------------------------------------------------


class TestMqttBroadcastContract(ChannelContract):
    expected_events = (DeviceConfirmation, DeviceStatus)
    event_timeout = 20.0

    @pytest.fixture
    async def fleet(self, broker: Broker) -> AsyncIterator[tuple[str, SpeakerFleet]]:
        prefix = unique_prefix()
        fleet = await start_fleet(broker, prefix, village_codes(3, seed=1))
        yield prefix, fleet
        await fleet.stop()

    @pytest.fixture
    def channel_factory(
        self,
        broker: Broker,
        fleet: tuple[str, SpeakerFleet],
        media: MediaServer,
        tmp_path: Path,
        speech_cache: Path,
    ) -> ChannelFactory:
        prefix, _ = fleet
        return lambda: make_channel(
            broker,
            prefix,
            media,
            tmp_path,
            speech_cache,
            username="warnd",
            password=PASSWORD,
        )

    @pytest.fixture(autouse=True)
    def _fleet_ids(self, fleet: tuple[str, SpeakerFleet]) -> None:
        self.speaker_ids = fleet[1].online_ids

    async def provoke_inbound(self, channel: object) -> list:  # type: ignore[type-arg]
        assert isinstance(channel, MqttBroadcastChannel)
        batch = [red(900 + i, speaker) for i, speaker in enumerate(self.speaker_ids)]
        results = await channel.send(batch)
        assert all(r.outcome is Outcome.ACCEPTED for r in results), results
        return results


# --- a command's whole path ----------------------------------------------------------------


async def test_a_command_is_fetched_played_and_confirmed(
    broker: Broker, media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    prefix = unique_prefix()
    speaker = village_codes(1, seed=2)[0]
    fleet = await start_fleet(broker, prefix, [speaker])
    channel = make_channel(broker, prefix, media, tmp_path, speech_cache)
    try:
        await channel.start()
        assert channel.health()["ready"] is True
        await channel.prepare([TEXT])
        (result,) = await channel.send([red(41, speaker)])
        assert (result.outcome, result.external_id) == (Outcome.ACCEPTED, "41")
        (confirmation,) = await confirmations(channel, 1)
        assert (confirmation.external_id, confirmation.played) == ("41", True)
        assert confirmation.at.tzinfo is not None
        (command,) = fleet.commands
        assert command.id == "41" and command.speaker == speaker
        assert (command.interrupt, command.level, command.exercise, command.repeat) == (
            True,
            "red",
            False,
            2,
        )
        assert command.text == TEXT
        # The audio came over HTTP under a valid signature, and is what the command says.
        (fetched,) = fleet.fetched
        assert fetched.startswith(media.url + "/") and "sig=" in fetched and "expires=" in fetched
        assert [status for _, status in media.requests] == [200]
        file = tmp_path / "media" / f"{command.audio_sha256}.wav"
        assert hashlib.sha256(file.read_bytes()).hexdigest() == command.audio_sha256
        assert fleet.played == [(speaker, "41")]
        broker_health = channel.health()["links"]["broker"]  # type: ignore[index]
        assert broker_health["played"] == 1 and broker_health["in_flight"] == 0
        assert broker_health["protocol"] == ("5" if broker.name == "mosquitto" else "3.1.1")
        assert broker_health["speakers_online"] == 1
    finally:
        await channel.stop()
        await fleet.stop()


async def test_the_red_and_earthquake_clips_carry_the_alert_tone(
    mosquitto: Broker, media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    prefix = unique_prefix()
    speaker = village_codes(1, seed=3)[0]
    fleet = await start_fleet(mosquitto, prefix, [speaker])
    channel = make_channel(mosquitto, prefix, media, tmp_path, speech_cache)
    try:
        await channel.start()
        await channel.prepare([TEXT])
        batch = [
            red(1, speaker, level="yellow"),
            red(2, speaker, hazard="earthquake", level="blue"),
            red(3, speaker, level="orange"),
            OutboundMessage(key=4, address=speaker, text=TEXT),
        ]
        results = await channel.send(batch)
        assert all(r.outcome is Outcome.ACCEPTED for r in results)
        await confirmations(channel, 4)
        commands = {c.id: c for c in fleet.commands}
        assert {i: c.interrupt for i, c in commands.items()} == {
            "1": False,
            "2": True,
            "3": False,
            "4": False,
        }
        plain = {commands[i].audio_sha256 for i in ("1", "3", "4")}
        assert len(plain) == 1 and commands["2"].audio_sha256 not in plain
        assert commands["4"].level is None
    finally:
        await channel.stop()
        await fleet.stop()


def test_interrupt_is_for_earthquakes_and_red_only() -> None:
    def flag(hazard: str, level: str) -> bool:
        return interrupts(red(1, "370811001001", hazard=hazard, level=level))

    assert flag("earthquake", "blue") and flag("rainstorm", "red") and flag("flood", "red")
    assert not any(flag("rainstorm", level) for level in ("blue", "yellow", "orange"))
    assert not interrupts(OutboundMessage(key=1, address="370811001001", text=TEXT))
    # The notice lifting a red warning (its Cancel, at the warning's level) never cuts in.
    lifted = red(1, "370811001001", hazard="earthquake")
    assert lifted.warning is not None
    cancel = replace(lifted, warning=replace(lifted.warning, msg_type="Cancel"))
    assert not interrupts(cancel)


# --- refusals --------------------------------------------------------------------------------


async def test_offline_stale_and_unknown_speakers_are_refused_at_once(
    broker: Broker, media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    prefix = unique_prefix()
    ids = village_codes(6, seed=4)
    fleet = await start_fleet(broker, prefix, ids, offline=0.5, seed=4)
    channel = make_channel(broker, prefix, media, tmp_path, speech_cache)
    try:
        await channel.start()
        dead = fleet.offline_ids
        assert dead
        batch = [red(10 + i, speaker) for i, speaker in enumerate(dead)]
        batch.append(red(99, "370899999999"))
        results = {r.key: r for r in await channel.send(batch)}
        assert_one_result_each(batch, list(results.values()))
        for message in batch:
            result = results[message.key]
            assert (result.outcome, result.reason) == (Outcome.PERMANENT, Reason.UNREACHABLE)
        assert results[10].detail.startswith("speaker offline since")
        assert results[99].detail == "speaker never seen on the broker"
        assert fleet.commands == []
        assert (await channel.send([red(50, fleet.online_ids[0])]))[0].outcome is Outcome.ACCEPTED
    finally:
        await channel.stop()
        await fleet.stop()


async def test_a_silent_speaker_goes_stale_is_reported_offline_and_refused(
    mosquitto: Broker, media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    prefix = unique_prefix()
    speaker = village_codes(1, seed=5)[0]
    fleet = await start_fleet(mosquitto, prefix, [speaker], heartbeat_s=3600)
    clock = TestClock()
    channel = make_channel(
        mosquitto, prefix, media, tmp_path, speech_cache, clock=clock, stale_after=600
    )
    try:
        await channel.start()
        assert channel.fleet.why_unreachable(speaker, clock.now()) is None
        clock.at += timedelta(minutes=11)
        event = await first_event(
            channel, DeviceStatus, lambda e: e.device_id == speaker and not e.online
        )
        assert isinstance(event, DeviceStatus)
        assert event.detail.startswith("no heartbeat since ") and event.at == clock.at
        (result,) = await channel.send([red(5, speaker)])
        assert (result.outcome, result.reason) == (Outcome.PERMANENT, Reason.UNREACHABLE)
        assert result.detail.startswith("no heartbeat since")
        health = channel.health()["links"]["broker"]  # type: ignore[index]
        assert (health["speakers_stale"], health["went_stale"]) == (1, 1)
    finally:
        await channel.stop()
        await fleet.stop()


async def test_a_broker_that_is_down_makes_sends_transient(
    media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    from tests.peers import free_tcp_port

    nowhere = Broker("127.0.0.1", free_tcp_port(), "nothing")
    channel = make_channel(nowhere, unique_prefix(), media, tmp_path, speech_cache, start_wait=0.3)
    await channel.start()
    try:
        (result,) = await channel.send([red(1, "370811001001")])
        assert (result.outcome, result.reason) == (Outcome.TRANSIENT, Reason.UNREACHABLE)
        health = channel.health()
        assert health["ready"] is False
        assert health["links"]["broker"]["last_error"]  # type: ignore[index]
    finally:
        await channel.stop()


async def test_an_unanswered_command_is_reported_not_played(
    mosquitto: Broker, media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    """A speaker that announces itself but never answers (here: a bare status, no firmware)."""
    prefix = unique_prefix()
    speaker = "370811001002"
    clock = TestClock()
    channel = make_channel(mosquitto, prefix, media, tmp_path, speech_cache, clock=clock)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
        try:
            await channel.start()
            from channels.mqtt_broadcast.wire import status_payload

            await device.publish(f"{prefix}/{speaker}/status", status_payload(True), qos=1)
            await until(lambda: channel.fleet.why_unreachable(speaker, clock.now()) is None)
            (result,) = await channel.send([red(8, speaker)])
            assert result.outcome is Outcome.ACCEPTED
            clock.at += timedelta(seconds=channel.config.ack_timeout + 1)
            (confirmation,) = await confirmations(channel, 1)
            assert (confirmation.external_id, confirmation.played) == ("8", False)
            assert "no acknowledgement" in confirmation.detail
        finally:
            await channel.stop()


@pytest.mark.timeout(60)
async def test_a_killed_speaker_is_marked_offline_by_its_last_will(
    mosquitto: Broker, media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    """``warnd speakers simulate`` as a process of its own, killed with SIGKILL: no DISCONNECT,
    so the broker publishes the speaker's Last Will."""
    prefix = unique_prefix()
    speaker = village_codes(1, seed=12)[0]
    channel = make_channel(mosquitto, prefix, media, tmp_path, speech_cache)
    await channel.start()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warnd",
        "speakers",
        "simulate",
        "--broker",
        f"mqtt://{mosquitto.host}:{mosquitto.port}",
        "--ids",
        speaker,
        "--prefix",
        prefix,
        "--offline",
        "0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        online = await first_event(
            channel, DeviceStatus, lambda e: e.device_id == speaker and e.online, within=30
        )
        assert isinstance(online, DeviceStatus) and online.detail == "simulated"
        assert online.power in ("mains", "battery") and online.volume is not None
        process.kill()
        await process.wait()
        offline = await first_event(
            channel, DeviceStatus, lambda e: e.device_id == speaker and not e.online
        )
        assert isinstance(offline, DeviceStatus)
        assert offline.detail == "simulated: connection lost"
        (result,) = await channel.send([red(3, speaker)])
        assert (result.outcome, result.reason) == (Outcome.PERMANENT, Reason.UNREACHABLE)
        assert result.detail.startswith("speaker offline since")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await channel.stop()
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as cleaner:
            await cleaner.publish(f"{prefix}/{speaker}/status", b"", qos=1, retain=True)


async def test_a_command_without_an_answer_goes_again_under_its_own_id(
    mosquitto: Broker, media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    """A lost acknowledgement (here: a device that answers only the second time) costs a
    repeat of the command, with the same message id, never a second playing."""
    from channels.mqtt_broadcast.wire import ack_payload, parse_command, status_payload

    prefix = unique_prefix()
    speaker = "370811001003"
    clock = TestClock()
    channel = make_channel(mosquitto, prefix, media, tmp_path, speech_cache, clock=clock)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
        try:
            await device.subscribe(f"{prefix}/{speaker}/cmd", qos=1)
            await channel.start()
            await device.publish(f"{prefix}/{speaker}/status", status_payload(True), qos=1)
            await until(lambda: channel.fleet.why_unreachable(speaker, clock.now()) is None)
            (result,) = await channel.send([red(9, speaker)])
            assert result.outcome is Outcome.ACCEPTED
            ids: list[str] = []
            async with asyncio.timeout(20):
                async for message in device.messages:
                    assert isinstance(message.payload, bytes)
                    command = parse_command(message.payload)
                    assert not isinstance(command, Refused)
                    ids.append(command.id)
                    if len(ids) == 1:
                        clock.at += timedelta(seconds=channel.config.resend_after + 1)
                        continue
                    await device.publish(f"{prefix}/{speaker}/ack", ack_payload("9", True), qos=1)
                    break
            assert ids == ["9", "9"]
            (confirmation,) = await confirmations(channel, 1)
            assert (confirmation.external_id, confirmation.played) == ("9", True)
            assert channel.counts["republished"] == 1
        finally:
            await channel.stop()


def _last_error(channel: MqttBroadcastChannel) -> str:
    links = channel.health()["links"]
    assert isinstance(links, dict)
    return str(links["broker"]["last_error"])


# paho-mqtt (2.2) drops, unclosed, the socket of a TLS handshake that failed in its connect thread
# (the socket is freed, and closed, with the exception; Python only warns that nobody closed it).
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning"
)
@pytest.mark.timeout(60)
async def test_tls_and_credentials_to_the_broker(
    tmp_path: Path, media: MediaServer, speech_cache: Path
) -> None:
    """Mosquitto with a TLS listener (a test CA) and a password file: the channel connects with
    the CA and the password read from a file; a wrong password or another CA never connects,
    and the reason names what to fix without the secret."""
    import shutil

    import trustme

    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed (Debian package mosquitto)")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    passwords = tmp_path / "passwords"
    process = await asyncio.create_subprocess_exec(
        "mosquitto_passwd", "-b", "-c", str(passwords), "warnd", PASSWORD
    )
    assert await process.wait() == 0
    passwords.chmod(0o600)
    secret = tmp_path / "mqtt.secret"
    secret.write_text(PASSWORD + "\n")
    extra = (
        f"certfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.pem'}\n"
        f"password_file {passwords}\n"
    )
    async with own_mosquitto(tmp_path, extra) as mosquitto:
        broker = Broker("127.0.0.1", mosquitto.port, "mosquitto")
        settings: dict[str, object] = {
            "tls": True,
            "tls_ca_file": str(tmp_path / "ca.pem"),
            "username": "warnd",
            "password_file": str(secret),
        }
        good = make_channel(broker, unique_prefix(), media, tmp_path, speech_cache, **settings)  # type: ignore[arg-type]
        await good.start()
        try:
            assert good.health()["ready"] is True
        finally:
            await good.stop()

        wrong = {**settings, "password": "not-the-password"}
        del wrong["password_file"]
        other_ca = tmp_path / "other-ca.pem"
        other_ca.write_bytes(trustme.CA().cert_pem.bytes())
        refusals: list[tuple[dict[str, object], str]] = [
            (wrong, "channels.speakers.username/password"),
            ({**settings, "tls_ca_file": str(other_ca)}, "certificate"),
        ]
        for changed, reason in refusals:
            refused = make_channel(
                broker,
                unique_prefix(),
                media,
                tmp_path,
                speech_cache,
                start_wait=5,
                **changed,  # type: ignore[arg-type]
            )
            await refused.start()
            try:
                await until(functools.partial(_last_error, refused))
                assert refused.health()["ready"] is False
                error = _last_error(refused)
                assert reason in error and PASSWORD not in error, error
            finally:
                await refused.stop()


# --- a broker restart mid-broadcast --------------------------------------------------------


@pytest.mark.timeout(90)
async def test_a_broker_restart_mid_broadcast_loses_no_command_and_plays_none_twice(
    tmp_path: Path, media: MediaServer, speech_cache: Path
) -> None:
    async with own_mosquitto(tmp_path) as mosquitto:
        broker = Broker("127.0.0.1", mosquitto.port, "mosquitto")
        prefix = unique_prefix()
        ids = village_codes(30, seed=6)
        # Seconds of playing per command: the restart comes while they play.
        fleet = await start_fleet(broker, prefix, ids, connections=5, speed=4.0)
        channel = make_channel(broker, prefix, media, tmp_path, speech_cache, reconnect_max=0.5)
        try:
            await channel.start()
            await channel.prepare([TEXT])
            batch = [red(100 + i, speaker) for i, speaker in enumerate(ids)]
            results = await channel.send(batch)
            assert all(r.outcome is Outcome.ACCEPTED for r in results)
            await mosquitto.restart()
            found = await confirmations(channel, len(ids), within=60)
            assert sorted(c.external_id for c in found) == sorted(str(m.key) for m in batch)
            assert all(c.played for c in found)
            assert sorted(fleet.played) == sorted(
                (speaker, str(100 + i)) for i, speaker in enumerate(ids)
            ), "every command played exactly once"
            health = channel.health()["links"]["broker"]  # type: ignore[index]
            assert health["drops"] >= 1 and health["in_flight"] == 0
        finally:
            await channel.stop()
            await fleet.stop()


# --- hostile input ---------------------------------------------------------------------------

HOSTILE = (
    ("ack", b"not json at all"),
    ("ack", b"[1, 2, 3]"),
    ("ack", b'{"v": "warnd-broadcast/1", "id": "1", "result": "exploded"}'),
    ("ack", b'{"v": "warnd-broadcast/1", "id": "../../etc", "result": "played"}'),
    ("ack", b'{"v": "warnd-broadcast/2", "id": "1", "result": "played"}'),
    ("ack", b'{"v": "warnd-broadcast/1", "id": 1, "result": "played"}'),
    ("ack", b"\xff\xfe\x00garbage"),
    ("ack", b'{"a":' * 5000),
    ("ack", b"{" + b'"x": "' + b"y" * 10_000 + b'"}'),
    ("status", b'{"v": "warnd-broadcast/1", "online": "true"}'),
    ("status", b'{"v": "warnd-broadcast/1", "online": true, "battery": 400}'),
    ("status", b'{"v": "warnd-broadcast/1", "online": true, "battery": 80.5}'),
    ("status", b'{"v": "warnd-broadcast/1", "online": true, "detail": "a\\u0000b"}'),
    ("status", b'{"v": "warnd-broadcast/1", "online": true, "at": "yesterday"}'),
    ("status", b'{"v": "warnd-broadcast/1", "online": true, "at": "2026-07-29T02:00:00"}'),
    ("status", b"null"),
)


async def test_hostile_payloads_are_counted_and_ignored(
    broker: Broker, media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    prefix = unique_prefix()
    channel = make_channel(broker, prefix, media, tmp_path, speech_cache)
    await channel.start()
    try:
        async with aiomqtt.Client(broker.host, broker.port) as attacker:
            for kind, payload in HOSTILE:
                await attacker.publish(f"{prefix}/370811001001/{kind}", payload, qos=1)
            await attacker.publish(f"{prefix}/bad.id/ack", b"{}", qos=1)
            total = len(HOSTILE) + 1
            await until(lambda: sum(channel.ignored.values()) >= total, 20, what="all counted")
        assert await events_so_far(channel) == []
        ignored = channel.health()["links"]["broker"]["ignored"]  # type: ignore[index]
        assert ignored["ack_not_json"] >= 2 and ignored["ack_too_large"] >= 1
        assert ignored["ack_invalid"] >= 4 and ignored["status_invalid"] >= 6
        assert ignored["bad_topic"] == 1
        assert channel.health()["ready"] is True
    finally:
        await channel.stop()


async def test_an_ack_from_another_speaker_is_not_taken(
    mosquitto: Broker, media: MediaServer, tmp_path: Path, speech_cache: Path
) -> None:
    prefix = unique_prefix()
    speaker = village_codes(1, seed=7)[0]
    fleet = await start_fleet(mosquitto, prefix, [speaker], speed=0.001)  # plays "for ever"
    channel = make_channel(mosquitto, prefix, media, tmp_path, speech_cache)
    try:
        await channel.start()
        (result,) = await channel.send([red(77, speaker)])
        assert result.outcome is Outcome.ACCEPTED
        from channels.mqtt_broadcast.wire import ack_payload

        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as other:
            await other.publish(f"{prefix}/370811999999/ack", ack_payload("77", True), qos=1)
        await until(lambda: channel.ignored["ack_wrong_speaker"] == 1)
        assert [e for e in await events_so_far(channel) if isinstance(e, DeviceConfirmation)] == []
    finally:
        await channel.stop()
        await fleet.stop()


# --- configuration -------------------------------------------------------------------------


def _table(**settings: object) -> dict[str, dict[str, object]]:
    table: dict[str, object] = {
        "type": "mqtt_broadcast",
        "broker": "10.0.0.7",
        "media_url": "http://10.0.0.5:8379/media",
        "media_key": MEDIA_KEY,
    }
    table.update(settings)
    return {"loudspeakers": {k: v for k, v in table.items() if v is not None}}


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"media_key": "too-short"}, "channels.loudspeakers.media_key"),
        ({"media_url": None}, "channels.loudspeakers.media_url"),
        ({"media_url": "ftp://x"}, "channels.loudspeakers.media_url"),
        ({"broker": "mqtt://10.0.0.7:1883"}, "channels.loudspeakers.broker"),
        ({"topic_prefix": "city/#"}, "channels.loudspeakers.topic_prefix"),
        ({"topic_prefix": "/city"}, "channels.loudspeakers.topic_prefix"),
        ({"port": 70000}, "channels.loudspeakers.port"),
        ({"protocol": "4"}, "channels.loudspeakers.protocol"),
        ({"stale_after": 0}, "channels.loudspeakers.stale_after"),
        ({"tls_ca_file": "ca.pem", "tls": True}, "channels.loudspeakers.tls_ca_file"),
        ({"password_file": "relative.secret"}, "password_file"),
        ({"password": "x"}, "password is given without username"),
        ({"media_key_file": "/nonexistent/key"}, "media_key_file"),
        ({"client_id": "a b"}, "channels.loudspeakers.client_id"),
        ({"tts": {"engine": "nope"}}, "channels.loudspeakers.tts"),
    ],
)
def test_config_errors_name_the_key(settings: dict[str, object], key: str) -> None:
    with pytest.raises(ChannelConfigError) as raised:
        build_channels(_table(**settings))
    assert key in str(raised.value)
    assert MEDIA_KEY not in str(raised.value)


async def test_an_unreadable_ca_file_stops_the_start_naming_the_key(
    tmp_path: Path, media: MediaServer, speech_cache: Path
) -> None:
    before = asyncio.all_tasks()
    broker = Broker("127.0.0.1", 1, "nothing")
    (tmp_path / "ca.pem").write_text("not a certificate")
    for ca in (tmp_path / "missing.pem", tmp_path / "ca.pem"):
        channel = make_channel(
            broker, unique_prefix(), media, tmp_path, speech_cache, tls=True, tls_ca_file=str(ca)
        )
        with pytest.raises(ChannelConfigError, match=r"channels\.speakers\.tls_ca_file"):
            await channel.start()
        assert channel.health()["ready"] is False
    assert asyncio.all_tasks() <= before, "a start that failed leaves no task running"


def test_a_valid_table_builds_with_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.secret"
    secret.write_text(PASSWORD + "\n")
    key = tmp_path / "media.key"
    key.write_text(MEDIA_KEY)
    channels = build_channels(
        _table(
            username="warnd",
            password_file=str(secret),
            media_key=None,
            media_key_file=str(key),
            tls=True,
        )
    )
    channel = channels["loudspeakers"]
    assert isinstance(channel, MqttBroadcastChannel)
    assert channel.config.broker_port() == 8883
    assert channel.config.password is not None
    assert channel.config.password.get_secret_value() == PASSWORD
    shown = repr(channel) + repr(channel.config) + channel.config.model_dump_json()
    assert PASSWORD not in shown and MEDIA_KEY not in shown


# --- the wire contract, without a broker ---------------------------------------------------


def test_the_command_payload_is_the_documented_shape() -> None:
    from channels.mqtt_broadcast.wire import Command

    command = Command(
        id="41",
        speaker="370811001001",
        text=TEXT,
        audio_url="http://10.0.0.5:8379/media/ab.wav?expires=1&sig=2",
        audio_sha256="a" * 64,
        repeat=2,
        expires_at=T0 + timedelta(hours=6),
        sent_at=T0,
        priority=1,
        interrupt=True,
        warning_id=7,
        hazard="rainstorm",
        level="red",
    )
    body = json.loads(command.payload())
    assert body == {
        "v": "warnd-broadcast/1",
        "id": "41",
        "speaker": "370811001001",
        "warning_id": 7,
        "hazard": "rainstorm",
        "level": "red",
        "priority": 1,
        "interrupt": True,
        "exercise": False,
        "text": TEXT,
        "audio_url": "http://10.0.0.5:8379/media/ab.wav?expires=1&sig=2",
        "audio_sha256": "a" * 64,
        "repeat": 2,
        "expires_at": "2026-07-29T08:00:00Z",
        "sent_at": "2026-07-29T02:00:00Z",
    }


def test_the_examples_in_broadcast_md_parse() -> None:
    """Every JSON example of channels/BROADCAST.md is what the parsers take."""
    from channels.mqtt_broadcast.wire import Refused, parse_ack, parse_command, parse_status

    text = (Path(__file__).parents[1] / "channels" / "BROADCAST.md").read_text("utf-8")
    blocks = text.split("```json")[1:]
    assert len(blocks) >= 5
    for block in blocks:
        example = block.split("```")[0].strip().encode("utf-8")
        kind = json.loads(example)
        if "result" in kind:
            assert not isinstance(parse_ack(example), Refused), example
        elif "online" in kind:
            assert not isinstance(parse_status(example), Refused), example
        else:
            assert not isinstance(parse_command(example), Refused), example


def test_health_feeds_metrics_with_speaker_levels_and_counted_reasons(tmp_path: Path) -> None:
    """What /metrics makes of the channel's health: speakers as levels, reasons as events."""
    from prometheus_client import generate_latest

    from channels.mqtt_broadcast.wire import status_payload
    from warnd.app.metrics import ChannelHealth, Metrics

    clock = TestClock(T0)
    config = MqttBroadcastConfig.model_validate(
        {
            "type": "mqtt_broadcast",
            "broker": "127.0.0.1",
            "media_url": "http://127.0.0.1:1/media",
            "media_key": MEDIA_KEY,
            "media_dir": str(tmp_path / "media"),
            "stale_after": 60,
        }
    )
    channel = MqttBroadcastChannel("speakers", config, clock=clock)
    prefix = config.topic_prefix
    channel._received(f"{prefix}/370811001001/status", status_payload(True, at=T0))
    channel._received(f"{prefix}/370811001002/status", status_payload(False))
    channel._received(
        f"{prefix}/370811001003/status", status_payload(True, at=T0 - timedelta(minutes=5))
    )
    channel._received(f"{prefix}/370811001004/status", b"{nope")
    channel._received(f"{prefix}/370811001004/ack", b"[]")
    metrics = Metrics()
    metrics.registry.register(ChannelHealth({"speakers": channel}))
    text = generate_latest(metrics.registry).decode()
    for level, value in (("speakers_online", 1), ("speakers_offline", 1), ("speakers_stale", 1)):
        line = f'warnd_channel_link_level{{channel="speakers",level="{level}",link="broker"}}'
        assert f"{line} {value}.0" in text, level
    for event in ("ignored_status_not_json", "ignored_ack_not_object", "statuses"):
        assert f'event="{event}",link="broker"}}' in text, event
    assert 'warnd_channel_link_up{channel="speakers",link="broker"} 0.0' in text


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
_FIELDS = st.fixed_dictionaries(
    {"v": st.sampled_from(["warnd-broadcast/1", "warnd-broadcast/2", 1])},
    optional={
        "id": _JSON | st.from_regex(r"[0-9]{1,5}", fullmatch=True),
        "result": _JSON | st.sampled_from(["played", "failed"]),
        "online": _JSON,
        "battery": _JSON,
        "at": _JSON | st.datetimes().map(str),
        "detail": _JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | _JSON.map(lambda v: json.dumps(v).encode())
    | _FIELDS.map(lambda v: json.dumps(v).encode())
)
def test_the_parsers_take_any_bytes_without_raising(payload: bytes) -> None:
    from channels.mqtt_broadcast.wire import AckBody, StatusBody, parse_ack, parse_status

    assert isinstance(parse_ack(payload), AckBody | Refused)
    assert isinstance(parse_status(payload), StatusBody | Refused)
