"""``warnd speakers simulate``: a simulated fleet of village loudspeakers on a real MQTT broker.

Each simulated speaker speaks ``warnd-broadcast/1`` (channels/BROADCAST.md) as a vendor's
firmware should: it publishes its retained status (online, or offline for the share that stays
dead), heartbeats, takes commands on ``{prefix}/{id}/cmd``, fetches the audio over HTTP and
checks its SHA-256, "plays" it for its length (divided by ``speed``) ``repeat`` times, plays a
message id once (a repeat is acknowledged again, never played again) and acknowledges played or
failed. A few MQTT connections carry many speakers, as a county's head-end does; each
connection's Last Will marks its first speaker offline (MQTT allows one will per connection:
the others go stale instead when a connection dies).

Everything it does is labelled simulated: log events start with ``speaker_simulator``, every
status and acknowledgement it publishes says "simulated" in its detail. Nothing in warnd imports
this module; the tests and ``warnd bench broadcast`` run :class:`SpeakerFleet` in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import random
import signal
import wave
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import click
import structlog

from channels.mqtt_broadcast.wire import (
    CommandBody,
    Refused,
    ack_payload,
    ack_topic,
    command_topic,
    parse_command,
    parse_time,
    status_payload,
    status_topic,
)

log = structlog.get_logger(__name__)

SIMULATED: Final = "simulated"
_SUBSCRIBE_CHUNK: Final = 200
_MAX_AUDIO: Final = 16 * 1024 * 1024


@dataclass
class FleetOptions:
    """How the simulated fleet behaves."""

    broker: str = "127.0.0.1"
    port: int = 1883
    ids: Sequence[str] = ()
    prefix: str = "warnd/speakers"
    offline: float = 0.05  # share of speakers that stay offline
    fail: float = 0.02  # share of commands acknowledged as failed (offline amplifier)
    speed: float = 1.0  # playing time is the audio's length divided by this
    connections: int = 0  # 0: one per speaker up to 8, else 8
    heartbeat_s: float = 60.0
    seed: int = 0
    username: str | None = None
    password: str | None = None
    share_audio: bool = True  # one download per distinct audio for the whole fleet
    clear_on_stop: bool = False  # remove the retained statuses (tests on a shared broker)


@dataclass
class _Speaker:
    id: str
    online: bool
    connection: int
    playing: asyncio.Lock = field(default_factory=asyncio.Lock)
    outcomes: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    busy_with: set[str] = field(default_factory=set)


class SpeakerFleet:
    """Simulated loudspeakers on an MQTT broker, started and stopped in-process."""

    def __init__(self, options: FleetOptions) -> None:
        self.options = options
        rng = random.Random(options.seed)  # noqa: S311 - a simulation, not a secret
        ids = list(dict.fromkeys(options.ids))
        dead = set(rng.sample(ids, round(len(ids) * options.offline))) if ids else set()
        count = options.connections or (len(ids) if len(ids) <= 8 else 8)
        count = max(1, min(count, len(ids) or 1))
        self.speakers = {
            sid: _Speaker(sid, sid not in dead, index % count) for index, sid in enumerate(ids)
        }
        self._groups: list[list[_Speaker]] = [[] for _ in range(count)]
        for speaker in self.speakers.values():
            self._groups[speaker.connection].append(speaker)
        self._clients: dict[int, aiomqtt.Client] = {}
        self._outbox: dict[int, list[tuple[str, bytes]]] = {i: [] for i in range(count)}
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._up: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(count)}
        self._session: aiohttp.ClientSession | None = None
        self._audio: dict[str, asyncio.Task[float | str]] = {}
        self.counts: Counter[str] = Counter()
        self.played: list[tuple[str, str]] = []  # (speaker, message id), in order
        self.commands: list[CommandBody] = []  # every well-formed command received
        self.fetched: list[str] = []  # audio URLs fetched
        self.changed = asyncio.Event()  # set on every acknowledgement (tests wait on it)

    @property
    def online_ids(self) -> list[str]:
        return [s.id for s in self.speakers.values() if s.online]

    @property
    def offline_ids(self) -> list[str]:
        return [s.id for s in self.speakers.values() if not s.online]

    async def start(self, within: float = 30.0) -> None:
        """Connect every connection and publish the statuses; return once all are up."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        for index, group in enumerate(self._groups):
            if group:
                self._tasks.append(asyncio.create_task(self._connection(index, group)))
        async with asyncio.timeout(within):
            await asyncio.gather(*(self._up[i].wait() for i, g in enumerate(self._groups) if g))
        log.info(
            "speaker_simulator_started",
            simulated=True,
            speakers=len(self.speakers),
            offline=len(self.offline_ids),
            connections=len(self._tasks),
        )

    async def stop(self) -> None:
        """Say offline (or clear the retained statuses), disconnect, end every task."""
        for index, client in list(self._clients.items()):
            with contextlib.suppress(aiomqtt.MqttError):
                for speaker in self._groups[index]:
                    await client.publish(
                        status_topic(self.options.prefix, speaker.id),
                        b""
                        if self.options.clear_on_stop
                        else status_payload(False, detail=f"{SIMULATED}: stopped"),
                        qos=1,
                        retain=True,
                    )
        tasks = [*self._tasks, *self._handlers, *self._audio.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._clients.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        log.info("speaker_simulator_stopped", simulated=True, **dict(self.counts))

    async def wait_for(self, count_name: str, at_least: int, within: float = 30.0) -> None:
        """Return once ``counts[count_name] >= at_least``; raise TimeoutError after ``within``."""
        async with asyncio.timeout(within):
            while self.counts[count_name] < at_least:
                self.changed.clear()
                await self.changed.wait()

    # one connection carrying a group of speakers

    def _status(self, speaker: _Speaker, *, heartbeat: bool = False) -> bytes:
        if not speaker.online:
            return status_payload(False, detail=f"{SIMULATED}: offline")
        digest = hashlib.sha256(speaker.id.encode()).digest()
        return status_payload(
            True,
            heartbeat=heartbeat,
            power="mains" if digest[0] % 5 else "battery",
            battery=50 + digest[1] % 51,
            volume=60 + digest[2] % 41,
            detail=SIMULATED,
            at=datetime.now(UTC),
        )

    async def _connection(self, index: int, group: list[_Speaker]) -> None:
        options = self.options
        first = group[0]
        will = aiomqtt.Will(
            status_topic(options.prefix, first.id),
            status_payload(False, detail=f"{SIMULATED}: connection lost"),
            qos=1,
            retain=True,
        )
        name = hashlib.sha256(options.prefix.encode()).hexdigest()[:8]
        backoff = 0.2
        while True:
            try:
                async with aiomqtt.Client(
                    options.broker,
                    options.port,
                    identifier=f"sim-speakers-{name}-{options.seed}-{index}",
                    username=options.username,
                    password=options.password,
                    will=will if first.online else None,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    keepalive=30,
                    max_inflight_messages=200,
                ) as client:
                    client.pending_calls_threshold = 100_000
                    await self._session_up(index, group, client)
                    backoff = 0.2
                    beating = asyncio.create_task(self._heartbeats(client, group))
                    try:
                        async for message in client.messages:
                            self._spawn(self._command(index, message))
                    finally:
                        beating.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await beating
            except aiomqtt.MqttError as exc:
                self.counts["disconnects"] += 1
                log.info("speaker_simulator_link_down", simulated=True, error=str(exc))
            self._clients.pop(index, None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _session_up(self, index: int, group: list[_Speaker], client: aiomqtt.Client) -> None:
        prefix = self.options.prefix
        online = [s for s in group if s.online]
        for start in range(0, len(online), _SUBSCRIBE_CHUNK):
            chunk = online[start : start + _SUBSCRIBE_CHUNK]
            await client.subscribe([(command_topic(prefix, s.id), 1) for s in chunk])
        await asyncio.gather(
            *(
                client.publish(status_topic(prefix, s.id), self._status(s), qos=1, retain=True)
                for s in group
            )
        )
        self._clients[index] = client
        waiting, self._outbox[index] = self._outbox[index], []
        for topic, payload in waiting:  # acknowledgements the last connection could not send
            await self._publish(index, topic, payload)
        self.counts["connects"] += 1
        self._up[index].set()

    async def _heartbeats(self, client: aiomqtt.Client, group: list[_Speaker]) -> None:
        prefix = self.options.prefix
        while True:
            await asyncio.sleep(self.options.heartbeat_s)
            for speaker in group:
                if speaker.online:
                    payload = self._status(speaker, heartbeat=True)
                    await client.publish(
                        status_topic(prefix, speaker.id), payload, qos=1, retain=True
                    )
                    self.counts["heartbeats"] += 1

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _publish(self, index: int, topic: str, payload: bytes) -> None:
        client = self._clients.get(index)
        if client is not None:
            try:
                await client.publish(topic, payload, qos=1)
            except aiomqtt.MqttError:
                pass
            else:
                return
        self._outbox[index].append((topic, payload))

    # a command

    async def _command(self, index: int, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        speaker_id = topic[len(self.options.prefix) + 1 : -len("/cmd")]
        speaker = self.speakers.get(speaker_id)
        payload = message.payload if isinstance(message.payload, bytes) else b""
        command = parse_command(payload)
        if speaker is None or isinstance(command, Refused) or command.speaker != speaker_id:
            self.counts["bad_commands"] += 1
            log.warning("speaker_simulator_bad_command", simulated=True, topic=topic[:120])
            return
        self.counts["commands"] += 1
        self.commands.append(command)
        known = speaker.outcomes.get(command.id)
        if known is not None or command.id in speaker.busy_with:
            self.counts["duplicates"] += 1
            if known is not None:  # answer the repeat again: the first answer may be lost
                await self._ack(index, speaker, command.id, *known)
            return
        speaker.busy_with.add(command.id)
        try:
            played, reason = await self._play(speaker, command)
        finally:
            speaker.busy_with.discard(command.id)
        speaker.outcomes[command.id] = (played, reason)
        await self._ack(index, speaker, command.id, played, reason)

    async def _play(self, speaker: _Speaker, command: CommandBody) -> tuple[bool, str | None]:
        expires = parse_time(command.expires_at)
        if expires is None or expires <= datetime.now(UTC):
            return False, "expired"
        roll = int(hashlib.sha256(f"{speaker.id}/{command.id}".encode()).hexdigest()[:8], 16)
        if roll / 0xFFFFFFFF < self.options.fail:
            return False, "offline_amplifier"
        seconds = await self._fetch(command.audio_url, command.audio_sha256)
        if isinstance(seconds, str):
            return False, "bad_audio"
        async with speaker.playing:  # one loudspeaker says one thing at a time
            await asyncio.sleep(seconds * command.repeat / self.options.speed)
        self.played.append((speaker.id, command.id))
        self.counts["played"] += 1
        return True, None

    async def _ack(
        self, index: int, speaker: _Speaker, message_id: str, played: bool, reason: str | None
    ) -> None:
        payload = ack_payload(message_id, played, reason, SIMULATED)
        await self._publish(index, ack_topic(self.options.prefix, speaker.id), payload)
        self.counts["acks"] += 1
        self.counts["acks_played" if played else "acks_failed"] += 1
        self.changed.set()

    async def _fetch(self, url: str, sha256: str) -> float | str:
        """The audio's length in seconds, or why it cannot be played."""
        if not self.options.share_audio:
            return await self._download(url, sha256)
        task = self._audio.get(sha256)
        if task is None or (task.done() and isinstance(task.result(), str)):
            task = asyncio.create_task(self._download(url, sha256))
            self._audio[sha256] = task
        return await asyncio.shield(task)

    async def _download(self, url: str, sha256: str) -> float | str:
        assert self._session is not None
        self.fetched.append(url)
        self.counts["fetches"] += 1
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    return f"HTTP {response.status}"
                parts: list[bytes] = []
                size = 0
                async for part in response.content.iter_chunked(64 * 1024):
                    size += len(part)
                    if size > _MAX_AUDIO:
                        break
                    parts.append(part)
                body = b"".join(parts)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"fetch failed: {type(exc).__name__}"
        if size > _MAX_AUDIO or hashlib.sha256(body).hexdigest() != sha256:
            self.counts["bad_audio"] += 1
            return "the audio's SHA-256 is not the command's"
        try:
            with wave.open(io.BytesIO(body), "rb") as audio:
                return audio.getnframes() / audio.getframerate()
        except (wave.Error, EOFError):
            return "not a WAV file"


def village_codes(count: int, seed: int = 0) -> list[str]:
    """Plausible 12-digit village codes of Jining (3708…), for a fleet without a roster."""
    rng = random.Random(seed)  # noqa: S311 - a simulation
    codes: set[str] = set()
    while len(codes) < count:
        county = rng.choice(("02", "11", "26", "27", "28", "29", "30", "31", "32", "81", "83"))
        codes.add(f"3708{county}{rng.randrange(100, 130):03d}{rng.randrange(1, 400):03d}")
    return sorted(codes)


async def roster_village_codes(url: str, limit: int) -> list[str]:
    """The village codes of a warnd database's roster."""
    from warnd.db.pool import connect

    conn = await connect(url)
    try:
        rows = await conn.fetch(
            "SELECT code FROM divisions WHERE level = 'village' ORDER BY code LIMIT $1", limit
        )
    finally:
        await conn.close()
    return [row["code"] for row in rows]


def parse_broker(url: str) -> tuple[str, int, str | None, str | None]:
    """Host, port, user and password of ``mqtt://user:pass@host:port`` (or ``host:port``)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise click.BadParameter("give the broker as mqtt://host:port", param_hint="--broker")
    return parts.hostname, parts.port or 1883, parts.username, parts.password


@click.group()
def speakers() -> None:
    """Simulated village loudspeakers (大喇叭) for drills, demos and benchmarks."""


@speakers.command()
@click.option("--broker", default="mqtt://127.0.0.1:1883", show_default=True)
@click.option("--count", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--offline", type=click.FloatRange(0, 1), default=0.05, show_default=True)
@click.option("--fail", type=click.FloatRange(0, 1), default=0.02, show_default=True)
@click.option("--prefix", default="warnd/speakers", show_default=True)
@click.option("--speed", type=click.FloatRange(0.01, 10_000), default=1.0, show_default=True)
@click.option("--connections", type=click.IntRange(0, 10_000), default=0)
@click.option("--heartbeat", type=click.FloatRange(1, 3600), default=60.0, show_default=True)
@click.option("--ids", default="", help="Comma-separated speaker ids (village codes).")
@click.option("--database-url", default="", help="Take the ids from this roster's villages.")
@click.option("--seed", type=int, default=0)
@click.option(
    "--clear-on-stop", is_flag=True, help="Remove the retained statuses when stopped (benches)."
)
def simulate(  # noqa: PLR0917 - one parameter per command-line option, as click passes them
    broker: str,
    count: int,
    offline: float,
    fail: float,
    prefix: str,
    speed: float,
    connections: int,
    heartbeat: float,
    ids: str,
    database_url: str,
    seed: int,
    clear_on_stop: bool,
) -> None:
    """Run simulated speakers until interrupted (Ctrl-C or SIGTERM)."""
    host, port, user, password = parse_broker(broker)
    if ids:
        chosen = [i.strip() for i in ids.split(",") if i.strip()]
    elif database_url:
        chosen = asyncio.run(roster_village_codes(database_url, count))
    else:
        chosen = village_codes(count, seed)
    options = FleetOptions(
        broker=host,
        port=port,
        ids=chosen,
        prefix=prefix,
        offline=offline,
        fail=fail,
        speed=speed,
        connections=connections,
        heartbeat_s=heartbeat,
        seed=seed,
        username=user,
        password=password,
        clear_on_stop=clear_on_stop,
    )

    async def run() -> None:
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
        fleet = SpeakerFleet(options)
        await fleet.start(within=300)
        click.echo(
            f"simulated: {len(fleet.online_ids)} speakers online, {len(fleet.offline_ids)} "
            f"offline on {host}:{port} under {prefix}/ (Ctrl-C to stop)"
        )
        try:
            await stopping.wait()
        finally:
            await fleet.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
