"""What the channel knows of each speaker: online, offline, or stale (silent too long). Pure:
statuses and ``now`` in, decisions out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class SpeakerState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"  # said so itself, or its Last Will did
    STALE = "stale"  # said online, but no status for stale_after
    UNKNOWN = "unknown"  # never heard of


@dataclass
class Speaker:
    online: bool
    seen: datetime  # the last status of any kind
    stale: bool = False  # reported stale (once per silence)


def _when(device_at: datetime | None, now: datetime) -> datetime:
    """When a status was true: the device's own time can make it older, never newer than now
    (a speaker with a clock in the future must not stay fresh for ever)."""
    return min(device_at, now) if device_at is not None else now


class Fleet:
    """The speakers heard of on the broker, by id; at most ``limit`` of them, so that statuses
    for invented ids cannot grow warnd's memory without end."""

    def __init__(self, stale_after: float, limit: int = 200_000) -> None:
        self.stale_after = timedelta(seconds=stale_after)
        self.limit = limit
        self._speakers: dict[str, Speaker] = {}

    def __len__(self) -> int:
        return len(self._speakers)

    def heard(
        self, speaker_id: str, online: bool, device_at: datetime | None, now: datetime
    ) -> bool:
        """A status arrived (a retained one at subscription, a change, or a heartbeat); False
        when it is of a new speaker beyond the limit, and was not kept."""
        if speaker_id not in self._speakers and len(self._speakers) >= self.limit:
            return False
        self._speakers[speaker_id] = Speaker(online, _when(device_at, now))
        return True

    def forget(self, speaker_id: str) -> bool:
        """The speaker's retained status was cleared (taken out of service); whether it was
        known."""
        return self._speakers.pop(speaker_id, None) is not None

    def state(self, speaker_id: str, now: datetime) -> SpeakerState:
        speaker = self._speakers.get(speaker_id)
        if speaker is None:
            return SpeakerState.UNKNOWN
        if not speaker.online:
            return SpeakerState.OFFLINE
        if now - speaker.seen >= self.stale_after:
            return SpeakerState.STALE
        return SpeakerState.ONLINE

    def why_unreachable(self, speaker_id: str, now: datetime) -> str | None:
        """None when a command may go to the speaker now; else why not, in words."""
        state = self.state(speaker_id, now)
        if state is SpeakerState.ONLINE:
            return None
        if state is SpeakerState.UNKNOWN:
            return "speaker never seen on the broker"
        seen = self._speakers[speaker_id].seen.isoformat(timespec="seconds")
        if state is SpeakerState.OFFLINE:
            return f"speaker offline since {seen}"
        return f"no heartbeat since {seen}"

    def newly_stale(self, now: datetime) -> list[tuple[str, datetime]]:
        """Speakers that went silent for stale_after since the last look, with when they were
        last heard; each reported once until it is heard again."""
        found: list[tuple[str, datetime]] = []
        for speaker_id, speaker in self._speakers.items():
            if speaker.online and not speaker.stale and now - speaker.seen >= self.stale_after:
                speaker.stale = True
                found.append((speaker_id, speaker.seen))
        return found

    def counts(self, now: datetime) -> dict[SpeakerState, int]:
        counts = dict.fromkeys((SpeakerState.ONLINE, SpeakerState.OFFLINE, SpeakerState.STALE), 0)
        for speaker_id in self._speakers:
            counts[self.state(speaker_id, now)] += 1
        return counts
