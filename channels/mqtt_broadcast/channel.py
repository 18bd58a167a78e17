"""The ``mqtt_broadcast`` channel: a command per village loudspeaker, what the speakers say back
as DeviceConfirmation and DeviceStatus events (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import structlog

from channels.base import (
    Channel,
    ChannelClock,
    ChannelKind,
    DeviceConfirmation,
    DeviceStatus,
    Limits,
    OutboundMessage,
    Outcome,
    Reason,
    SendResult,
    WallClock,
    refusal,
)
from channels.media import MediaAnswer, MediaSigner, MediaVerdict, content_type
from channels.mqtt_broadcast.audio import BroadcastAudio, Clip
from channels.mqtt_broadcast.config import MqttBroadcastConfig
from channels.mqtt_broadcast.fleet import Fleet, SpeakerState
from channels.mqtt_broadcast.link import Link, LinkDownError
from channels.mqtt_broadcast.wire import (
    SPEAKER_ID,
    AckBody,
    Command,
    Refused,
    StatusBody,
    command_topic,
    parse_ack,
    parse_status,
    speaker_of,
)
from channels.tts import Speech, SpeechError

log = structlog.get_logger(__name__)

# Hazards and levels that cut into whatever a speaker is playing (and get the alert tone).
INTERRUPT_HAZARDS: Final = frozenset({"earthquake"})
INTERRUPT_LEVELS: Final = frozenset({"red"})
# Message ids whose outcome was reported, kept to drop the duplicate acks of re-sent commands.
_RECENT: Final = 100_000
# Commands republished at once after a reconnect.
_REPUBLISH_WINDOW: Final = 100


def interrupts(message: OutboundMessage) -> bool:
    """Whether the speaker should cut into what it plays: earthquakes and red warnings only,
    never the notice that lifts one (a Cancel)."""
    warning = message.warning
    if warning is None or warning.msg_type == "Cancel":
        return False
    return warning.hazard in INTERRUPT_HAZARDS or warning.level in INTERRUPT_LEVELS


@dataclass
class _Pending:
    """A command the broker accepted and no speaker has answered yet."""

    speaker: str
    topic: str
    payload: bytes
    deadline: datetime
    sent_at: datetime  # last published


class MqttBroadcastChannel(Channel):
    """Commands village loudspeakers over an MQTT broker and hears whether they played."""

    kind = ChannelKind.BROADCAST
    config_model = MqttBroadcastConfig
    config: MqttBroadcastConfig

    def __init__(
        self, name: str, config: MqttBroadcastConfig, *, clock: ChannelClock | None = None
    ) -> None:
        """``clock`` stamps events and decides staleness and deadlines; the network runs in
        real time."""
        super().__init__(name, config)
        self._clock: ChannelClock = clock if clock is not None else WallClock()
        key = f"channels.{name}"
        self.audio = BroadcastAudio(
            Speech(config.tts, key=f"{key}.tts"), config.media_folder(), key=key
        )
        self._signer = MediaSigner(
            config.media_key.get_secret_value(), str(config.media_url), config.media_ttl
        )
        self.fleet = Fleet(config.stale_after)
        self._pending: dict[str, _Pending] = {}
        self._by_speaker: dict[str, set[str]] = {}  # speaker -> ids of its pending commands
        self._republishing: set[asyncio.Task[None]] = set()
        self._finished: OrderedDict[str, bool] = OrderedDict()  # id -> played
        self._link: Link | None = None
        self._watch: asyncio.Task[None] | None = None
        self.counts: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # sends refused, by reason
        self.ignored: Counter[str] = Counter()  # inbound payloads ignored, by reason
        self.ack_failures: Counter[str] = Counter()  # speakers' failure reasons

    @property
    def limits(self) -> Limits:
        return Limits(
            rate_per_s=self.config.rate_per_s,
            window=self.config.window,
            max_text=self.config.max_text,
        )

    # life cycle

    async def start(self) -> None:
        """Check speech, connect, subscribe and wait (at most ``start_wait``) for the retained
        statuses. Raises SpeechError (a ChannelConfigError) naming what to fix."""
        if self._link is not None:
            return
        await asyncio.to_thread(self.audio.check)
        link = Link(
            self.config,
            self.config.client_identifier(self.name),
            self._received,
            self._republish,
            channel=self.name,
        )
        self._link = link
        self._watch = asyncio.create_task(self._watch_loop(), name=f"mqtt-watch-{self.name}")
        try:
            await link.start()
        except BaseException:
            await self.stop()  # a start that failed leaves nothing running
            raise
        log.info(
            "mqtt_broadcast_started",
            channel=self.name,
            connected=link.ready,
            speakers=len(self.fleet),
        )

    async def stop(self) -> None:
        """Disconnect. Commands not yet acknowledged are forgotten: their deliveries stay
        accepted, and a speaker that plays one after all still acknowledges it to the next
        warnd that listens."""
        link, self._link = self._link, None
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if link is not None:
            await link.stop()
        tasks = list(self._republishing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.audio.close()

    async def prepare(self, texts: Sequence[str]) -> None:
        """Make the audio of ``texts`` (and, with ``tone``, the toned variant for red and
        earthquake) when the warning is planned. Raises SpeechError."""
        await self.audio.prepare(texts, tone=self.config.tone)

    # sending

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        """A command per message, published concurrently; ACCEPTED once the broker has it.

        Raises RuntimeError when the channel is not started."""
        if self._link is None:
            raise RuntimeError(f"mqtt_broadcast channel {self.name!r} is not started")
        return list(await asyncio.gather(*(self._command(message) for message in batch)))

    async def _command(self, message: OutboundMessage) -> SendResult:
        result = await self._attempt(message)
        if result.outcome is Outcome.ACCEPTED:
            self.counts["accepted"] += 1
        else:
            self.refused[f"{result.outcome}_{result.reason}"] += 1
        return result

    def _check(self, message: OutboundMessage, now: datetime) -> SendResult | None:
        """Why the message cannot be commanded now, or None."""
        refused = refusal(message, self.config.max_text)
        if refused is not None:
            return refused
        speaker = message.address.strip()
        if not SPEAKER_ID.match(speaker):
            return _failure(message, Outcome.PERMANENT, Reason.CLIENT, "not a speaker id")
        if self._link is None or not self._link.ready:
            return _failure(
                message, Outcome.TRANSIENT, Reason.UNREACHABLE, "not connected to the broker"
            )
        why = self.fleet.why_unreachable(speaker, now)
        if why is not None:
            return _failure(message, Outcome.PERMANENT, Reason.UNREACHABLE, why)
        warning = message.warning
        expires = warning.expires_at if warning is not None else None
        if expires is not None and expires <= now:
            return _failure(message, Outcome.PERMANENT, Reason.CLIENT, "the warning has expired")
        return None

    async def _attempt(self, message: OutboundMessage) -> SendResult:
        now = self._clock.now()
        refused = self._check(message, now)
        if refused is not None:
            return refused
        speaker = message.address.strip()
        toned = self.config.tone and interrupts(message)
        try:
            clip = await self.audio.clip(message.text, toned=toned)
        except SpeechError as exc:
            return _failure(message, Outcome.TRANSIENT, Reason.SERVER, f"speech: {exc}")
        link = self._link
        if link is None:  # stopped while the audio was being made
            return _failure(message, Outcome.TRANSIENT, Reason.UNREACHABLE, "channel stopped")
        command = self._command_for(message, speaker, clip, now)
        message_id = command.id
        topic = command_topic(self.config.topic_prefix, speaker)
        deadline = min(command.expires_at, now + timedelta(seconds=self.config.ack_timeout))
        pending = _Pending(speaker, topic, command.payload(), deadline, now)
        # Recorded before publishing: a fast speaker may answer before the PUBACK arrives.
        self._add_pending(message_id, pending)
        try:
            await link.publish(topic, pending.payload)
        except LinkDownError as exc:
            self._drop_pending(message_id)
            return _failure(message, Outcome.TRANSIENT, Reason.UNREACHABLE, str(exc))
        except BaseException:
            self._drop_pending(message_id)
            raise
        return SendResult(message.key, Outcome.ACCEPTED, external_id=message_id)

    def _command_for(
        self, message: OutboundMessage, speaker: str, clip: Clip, now: datetime
    ) -> Command:
        url, url_expires = self._signer.url(clip.name, now)
        warning = message.warning
        default_expiry = now + timedelta(seconds=self.config.ack_timeout)
        expires = (
            warning.expires_at
            if warning is not None and warning.expires_at is not None
            else default_expiry
        )
        return Command(
            id=str(message.key),
            speaker=speaker,
            text=message.text,
            audio_url=url,
            audio_sha256=clip.sha256,
            repeat=self.config.repeat,
            # A command outliving its audio URL could not be played: the URL's expiry bounds it.
            expires_at=min(expires, url_expires),
            sent_at=now,
            priority=message.priority,
            interrupt=interrupts(message),
            exercise=warning.exercise if warning is not None else False,
            warning_id=warning.warning_id if warning is not None else None,
            hazard=warning.hazard if warning is not None else None,
            level=warning.level if warning is not None else None,
        )

    def _add_pending(self, message_id: str, pending: _Pending) -> None:
        self._drop_pending(message_id)  # the same delivery sent again replaces itself
        self._pending[message_id] = pending
        self._by_speaker.setdefault(pending.speaker, set()).add(message_id)

    def _drop_pending(self, message_id: str) -> _Pending | None:
        pending = self._pending.pop(message_id, None)
        if pending is not None:
            ids = self._by_speaker.get(pending.speaker)
            if ids is not None:
                ids.discard(message_id)
                if not ids:
                    del self._by_speaker[pending.speaker]
        return pending

    async def _republish(self, speaker: str | None = None) -> None:
        """After a (re)connect, every command no speaker has answered; when a speaker comes
        online, its own."""
        wanted = self._pending.keys() if speaker is None else self._by_speaker.get(speaker, set())
        await self._publish_again(list(wanted), why="reconnect" if speaker is None else "online")

    def _spawn_republish(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._republishing.add(task)
        task.add_done_callback(self._republishing.discard)

    async def _publish_again(self, ids: list[str], *, why: str) -> None:
        """Publish these pending commands again under their own message ids: a speaker plays an
        id once and acknowledges a repeat again, so a lost command or a lost acknowledgement
        costs a repeat, never a second playing."""
        link = self._link
        if link is None or not ids:
            return
        slots = asyncio.Semaphore(_REPUBLISH_WINDOW)

        async def again(message_id: str) -> None:
            async with slots:
                pending = self._pending.get(message_id)
                if pending is None:
                    return  # answered meanwhile
                pending.sent_at = self._clock.now()
                try:
                    await link.publish(pending.topic, pending.payload)
                except LinkDownError:
                    return  # still pending: the next connection tries again
                self.counts["republished"] += 1

        await asyncio.gather(*(again(i) for i in ids))
        log.info("mqtt_commands_republished", channel=self.name, why=why, count=len(ids))

    # receiving

    def _received(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Every message on the subscribed topics; a bad one is counted and dropped.
        ``retained``: the broker's stored copy, sent on subscribing (not news from the
        speaker)."""
        prefix = self.config.topic_prefix
        speaker = speaker_of(topic, prefix, "status")
        if speaker is not None and not payload:
            # An empty retained status is how a speaker is taken off the broker: from now on
            # it is unknown (refused, never seen), not offline.
            if self.fleet.forget(speaker):
                self.counts["speakers_cleared"] += 1
            return
        if speaker is not None:
            self._status(speaker, parse_status(payload), retained=retained)
            return
        speaker = speaker_of(topic, prefix, "ack")
        if speaker is not None:
            self._ack(speaker, parse_ack(payload))
            return
        self._ignore("bad_topic", topic)

    def _ignore(self, reason: str, topic: str) -> None:
        self.ignored[reason] += 1
        count = self.ignored[reason]
        # Logged at the 1st, 2nd, 4th, 8th … of a reason: a flood of junk must not flood the
        # log (the metric counts every one). The topic is cut short: it is the only part of a
        # hostile message that is logged.
        if count & (count - 1) == 0:
            log.warning(
                "mqtt_payload_ignored",
                channel=self.name,
                reason=reason,
                topic=topic[:120],
                count=count,
            )

    def _status(self, speaker: str, body: StatusBody | Refused, *, retained: bool) -> None:
        if isinstance(body, Refused):
            self._ignore(f"status_{body.reason}", f"{speaker}/status")
            return
        now = self._clock.now()
        if not self.fleet.heard(speaker, body.online, body.at, now):
            self._ignore("status_too_many_speakers", f"{speaker}/status")
            return
        self.counts["statuses"] += 1
        if body.online and not body.heartbeat and not retained and speaker in self._by_speaker:
            # A speaker announces itself online once it has subscribed again (the contract's
            # order): what it missed while away goes to it now. (A retained status is only the
            # broker's copy; after warnd's own reconnect everything pending goes again anyway.)
            self._spawn_republish(self._republish(speaker))
        self.emit(
            DeviceStatus(
                device_id=speaker,
                online=body.online,
                heartbeat=body.heartbeat,
                power=body.power,
                battery=body.battery,
                volume=body.volume,
                detail=body.detail,
                at=now,
            )
        )

    def _ack(self, speaker: str, body: AckBody | Refused) -> None:
        if isinstance(body, Refused):
            self._ignore(f"ack_{body.reason}", f"{speaker}/ack")
            return
        played = body.result == "played"
        pending = self._pending.get(body.id)
        if pending is not None and pending.speaker != speaker:
            self._ignore("ack_wrong_speaker", f"{speaker}/ack")
            return
        before = self._finished.get(body.id)
        # A repeat of an answer already given (the speaker's reply to a re-sent command) is
        # dropped; "played" after a timeout is news, and passed on.
        if pending is None and before is not None and (before or not played):
            self.counts["duplicate_acks"] += 1
            return
        self._drop_pending(body.id)
        self._finish(body.id, played)
        if played:
            self.counts["played"] += 1
            detail = body.detail
        else:
            reason = body.reason or "other"
            self.ack_failures[reason] += 1
            detail = f"{reason}: {body.detail}" if body.detail else reason
        self.emit(DeviceConfirmation(body.id, played, detail, self._clock.now()))

    def _finish(self, message_id: str, played: bool) -> None:
        self._finished[message_id] = played
        self._finished.move_to_end(message_id)
        while len(self._finished) > _RECENT:
            self._finished.popitem(last=False)

    async def _watch_loop(self) -> None:
        """Speakers gone silent, commands never answered: looked for every few seconds."""
        every = min(self.config.stale_after / 4, 5.0)
        while True:
            await self._clock.sleep(every)
            self.look(self._clock.now())

    def look(self, now: datetime) -> None:
        """Report speakers that went stale and commands past their deadline, and publish again
        what has waited ``resend_after`` for an answer (the watch loop's one step)."""
        for speaker, seen in self.fleet.newly_stale(now):
            self.counts["went_stale"] += 1
            self.emit(
                DeviceStatus(
                    device_id=speaker,
                    online=False,
                    detail=f"no heartbeat since {seen.isoformat(timespec='seconds')}",
                    at=now,
                )
            )
        overdue = [i for i, pending in self._pending.items() if pending.deadline <= now]
        for message_id in overdue:
            self._drop_pending(message_id)
            self._finish(message_id, played=False)
            self.counts["unanswered"] += 1
            self.emit(
                DeviceConfirmation(
                    message_id, False, "no acknowledgement from the speaker in time", now
                )
            )
        if self._link is None or not self._link.ready:
            return  # the reconnect publishes everything again anyway
        quiet = timedelta(seconds=self.config.resend_after)
        due = [i for i, pending in self._pending.items() if now - pending.sent_at >= quiet]
        for message_id in due:
            self._pending[message_id].sent_at = now  # not due again while this one runs
        if due:
            self._spawn_republish(self._publish_again(due, why="no answer yet"))

    # media

    def media_file(self, name: str, expires: str, signature: str, now: datetime) -> MediaAnswer:
        """The file behind a signed media URL of this channel (see channels.media)."""
        verdict = self._signer.check(name, expires, signature, now)
        if verdict is not MediaVerdict.FOUND:
            return MediaAnswer(verdict)
        path = self.audio.path(name)
        if not path.is_file():
            return MediaAnswer(MediaVerdict.MISSING)
        self.counts["media_served"] += 1
        return MediaAnswer(MediaVerdict.FOUND, path, content_type(name))

    def signed_url(self, name: str, now: datetime) -> str:
        """The URL a speaker fetches media file ``name`` by (operations and tests)."""
        return self._signer.url(name, now)[0]

    # operations

    def health(self) -> dict[str, object]:
        """Broker link, speakers and counters for /readyz and /metrics.

        ``{"ready", "links": {"broker": {"bound" (connected, subscribed, statuses in),
        "in_flight" (commands accepted, not yet answered), "window", "protocol",
        "speakers_online", "speakers_offline", "speakers_stale" (levels), "connects",
        "drops", "accepted", "republished", "played", "unanswered", "statuses",
        "went_stale", "duplicate_acks", "media_served", "speakers_cleared",
        "refused" {outcome_reason: n}, "ack_failed" {reason: n}, "ignored" {reason: n},
        "last_error"}}}``.
        """
        link = self._link
        bound = link is not None and link.ready
        counts = self.fleet.counts(self._clock.now())
        broker: dict[str, object] = {
            "bound": bound,
            "in_flight": len(self._pending),
            "window": self.config.window,
            "protocol": link.protocol if link is not None else "",
            "speakers_online": counts[SpeakerState.ONLINE],
            "speakers_offline": counts[SpeakerState.OFFLINE],
            "speakers_stale": counts[SpeakerState.STALE],
            "connects": link.connects if link is not None else 0,
            "drops": link.drops if link is not None else 0,
            "last_error": link.last_error if link is not None else "",
            "refused": dict(self.refused),
            "ack_failed": dict(self.ack_failures),
            "ignored": dict(self.ignored),
        }
        for name in (
            "accepted",
            "republished",
            "played",
            "unanswered",
            "statuses",
            "went_stale",
            "duplicate_acks",
            "media_served",
            "speakers_cleared",
        ):
            broker[name] = self.counts[name]
        return {"ready": bound, "links": {"broker": broker}}


def _failure(message: OutboundMessage, outcome: Outcome, reason: Reason, detail: str) -> SendResult:
    return SendResult(message.key, outcome, reason=reason, detail=detail)
