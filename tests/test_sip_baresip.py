"""The sip channel calling baresip: an independent SIP phone that answers, records what reached its
ear (module ``sndfile``) and presses 1 when told (``ctrl_tcp``'s ``sndcode``).

Where sipp checks the signalling, this checks the sound: what the callee heard lasts as long as
the prompt and is speech, not silence.
"""

from __future__ import annotations

from pathlib import Path

from channels.base import CallResult, OutboundMessage, Outcome
from channels.sip.channel import SipChannel
from channels.sip.config import SipConfig
from tests.channel_contract import collect_events
from tests.peers import require, require_pjsua2, running_baresip, sox_stat, wav_seconds
from tests.waiting import until

NUMBER = "+8613800000001"
PROMPT = "暴雨红色预警。确认收到请按1，重听请按2。"
_HEADER_BYTES = 44
_BYTES_PER_SECOND = 8000 * 2  # what baresip records: 8 kHz, 16-bit, mono


def recorded_seconds(recordings: list[Path]) -> float:
    """How much the first recording holds so far, from its size (its header is written last)."""
    if not recordings:
        return 0.0
    return max(recordings[0].stat().st_size - _HEADER_BYTES, 0) / _BYTES_PER_SECOND


async def test_baresip_hears_the_whole_prompt_and_its_1_acknowledges(tmp_path: Path) -> None:
    require_pjsua2()
    require("baresip", "espeak-ng", "sox")
    async with running_baresip(NUMBER, tmp_path / "phone") as phone:
        channel = SipChannel(
            "voice",
            SipConfig.model_validate(
                {
                    "type": "sip",
                    "proxy": phone.proxy,
                    "from_number": "12379",
                    "local_address": "127.0.0.1",
                    "max_calls": 1,
                    "repeat_prompt": 1,
                    "key_wait": 20,  # time enough to press 1 after hearing it all
                    "tts": {"cache_dir": str(tmp_path / "tts")},
                }
            ),
        )
        prompt_path = await channel.speech.audio(PROMPT)
        prompt = wav_seconds(prompt_path)
        await channel.start()
        try:
            (placed,) = await channel.send([OutboundMessage(key=1, address=NUMBER, text=PROMPT)])
            assert placed.outcome is Outcome.ACCEPTED
            await phone.event("CALL_ESTABLISHED")
            # The phone presses 1 once it has heard as much as the prompt lasts.
            await until(
                lambda: recorded_seconds(phone.heard()) >= prompt,
                within=prompt + 10,
                what="baresip to hear the whole prompt",
                every=0.05,
            )
            await phone.command("sndcode", "1")
            (result,) = await collect_events(channel, 1, within=10)
            assert isinstance(result, CallResult)
            assert result.external_id == placed.external_id
            assert (result.answered, result.keys) == (True, "1")
            await phone.event("CALL_CLOSED")
        finally:
            await channel.stop()
    (heard,) = phone.heard()
    recording = await sox_stat(heard)
    assert abs(recording["Length (seconds)"] - prompt) < 1.5, (recording, prompt)
    # Speech passed through G.711 both ways: as loud as the prompt, give or take, not silence.
    said = await sox_stat(prompt_path)
    assert recording["RMS amplitude"] > 0.5 * said["RMS amplitude"], (recording, said)
    assert recording["RMS amplitude"] < 2.0 * said["RMS amplitude"], (recording, said)
