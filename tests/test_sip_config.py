"""The sip channel's configuration, the words for how calls end, and the SDP rewrite: plain
decisions over plain data, no peer needed (tests/test_sip.py has the calls)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from channels.base import ChannelKind
from channels.registry import ChannelConfigError, build_channels
from channels.sip import causes
from channels.sip.channel import SipChannel
from channels.sip.config import SipConfig
from channels.sip.protocol import (
    PHASE_PAUSE,
    PHASE_PLAYING,
    PHASE_RINGING,
    PHASE_WAITING,
    WHY_NO_KEY,
    WHY_NO_MEDIA,
    WHY_RING_TIMEOUT,
    WHY_STOPPED,
    CallEnded,
    WorkerSettings,
)
from channels.sip.sdp import with_event_payload
from tests.channel_contract import assert_no_secret_leaks
from tests.peers import require

SECRET = "sip-secret-0123456789"


def table(**settings: object) -> dict[str, object]:
    return {"type": "sip", "proxy": "10.1.2.3:5060", "from_number": "12379", **settings}


def problems(**settings: object) -> str:
    with pytest.raises(ChannelConfigError) as raised:
        build_channels({"voice": table(**settings)})
    return str(raised.value)


# --- configuration -----------------------------------------------------------------------------


def test_the_entry_point_builds_a_voice_channel_with_the_issue_defaults() -> None:
    channel = build_channels({"voice": table()})["voice"]
    assert isinstance(channel, SipChannel)
    assert channel.kind is ChannelKind.VOICE
    assert not channel.simulated
    config = channel.config
    assert (config.max_calls, config.calls_per_s, config.ring_timeout) == (8, 5.0, 40.0)
    assert (config.repeat_prompt, config.dtmf, config.dtmf_payload_type) == (3, "rfc2833", 101)
    limits = channel.limits
    # One call per send: each is recorded once placed (see SipChannel.limits); 8 still ring.
    assert (limits.rate_per_s, limits.window, limits.max_text) == (5.0, 1, 500)
    assert (config.rate_per_s, config.window) == (5.0, 8), "the generic limits follow"


def test_bad_settings_are_reported_by_key() -> None:
    assert "channels.voice.proxy" in problems(proxy="trunk .example:5060")
    assert "channels.voice.proxy" in problems(proxy="10.1.2.3:70000")
    assert "channels.voice.transport" in problems(transport="sctp")
    assert "channels.voice.max_calls" in problems(max_calls=0)
    assert "channels.voice.ring_timeout" in problems(ring_timeout=1)
    assert "channels.voice.dtmf_payload_type" in problems(dtmf_payload_type=8)
    assert "channels.voice.local_address" in problems(local_address="localhost")
    assert "channels.voice.tts" in problems(tts={"engine": "festival"})
    assert "takes max_calls, not window" in problems(window=4)
    assert "takes calls_per_s, not rate_per_s" in problems(rate_per_s=4)
    assert "password is given without username" in problems(password="x")
    assert "rtp_ports must span at least 32 ports" in problems(rtp_ports=[40000, 40009])
    missing = problems(proxy=None)
    assert "channels.voice.proxy" in missing


def test_the_password_may_come_from_a_file_and_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "sip.secret"
    secret.write_text(SECRET + "\n")
    channel = build_channels(
        {"voice": table(username="warnd", password_file=str(secret), registrar="10.1.2.3")}
    )["voice"]
    assert isinstance(channel, SipChannel)
    assert channel.config.password is not None
    assert channel.config.password.get_secret_value() == SECRET
    assert_no_secret_leaks(channel)
    settings = channel._worker_settings(0, 4)
    assert settings.password == SECRET
    assert SECRET not in repr(settings), "the worker's settings keep it out of their repr"


def test_calls_are_spread_over_workers_of_at_most_four() -> None:
    def capacities(max_calls: int) -> list[int]:
        return SipConfig.model_validate(table(max_calls=max_calls)).capacities()

    assert capacities(1) == [1]
    assert capacities(4) == [4]
    assert capacities(8) == [4, 4]
    assert capacities(10) == [4, 3, 3]
    assert capacities(32) == [4] * 8


def test_rtp_ports_are_shared_out_among_workers() -> None:
    config = SipConfig.model_validate(table(max_calls=8, rtp_ports=[40000, 40999]))
    assert config.rtp_slice(0) == (40000, 499)
    assert config.rtp_slice(1) == (40500, 499)
    assert SipConfig.model_validate(table()).rtp_slice(0) == (0, 0)


def test_what_is_dialled() -> None:
    config = SipConfig.model_validate(table())
    assert config.dial_string("+8613800000001") == "+8613800000001"
    assert config.dial_string("+86 138-0000-0001") == "+8613800000001"
    assert config.dial_string("not a number") is None
    assert config.dial_string("+86138;user=x") is None, "nothing but digits reaches the URI"
    national = SipConfig.model_validate(table(number_format="national", dial_prefix="9"))
    assert national.dial_string("+8613800000001") == "913800000001"


def test_the_uris_a_call_uses() -> None:
    direct = SipConfig.model_validate(table())
    assert direct.target_uri("+8613800000001") == "sip:+8613800000001@10.1.2.3:5060"
    assert direct.proxy_uri() == ""
    assert direct.from_uri() == "sip:12379@10.1.2.3"
    assert direct.registrar_uri() == ""
    routed = SipConfig.model_validate(
        table(domain="ims.example.cn", transport="tcp", registrar="ims.example.cn")
    )
    assert routed.target_uri("138") == "sip:138@ims.example.cn;transport=tcp"
    assert routed.proxy_uri() == "sip:10.1.2.3:5060;transport=tcp;lr"
    assert routed.from_uri() == "sip:12379@ims.example.cn"
    assert routed.registrar_uri() == "sip:ims.example.cn;transport=tcp"
    assert SipConfig.model_validate(table(dtmf="both")).dtmf_methods() == ("rfc2833", "sip_info")


def test_worker_settings_travel_as_json() -> None:
    channel = build_channels({"voice": table(codecs=["PCMU"])})["voice"]
    assert isinstance(channel, SipChannel)
    settings = channel._worker_settings(1, 3)
    assert WorkerSettings.from_dict(asdict(settings)) == settings
    assert (settings.index, settings.max_calls, settings.codecs) == (1, 3, ("PCMU",))


# --- how calls end -----------------------------------------------------------------------------


def ending(**facts: object) -> causes.Outcome:
    values: dict[str, object] = {
        "ref": 1,
        "answered": False,
        "keys": "",
        "code": 0,
        "reason": "",
        "why": "",
        "phase": PHASE_RINGING,
        "rang": False,
        "plays": 0,
    }
    values.update(facts)
    return causes.ended(CallEnded(**values), 40.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "kind", "answered", "cause"),
    [
        ({"code": 486, "reason": "Busy Here"}, "busy", False, "busy: 486 Busy Here"),
        ({"code": 600, "reason": "Busy Everywhere"}, "busy", False, "busy: 600 Busy Everywhere"),
        ({"code": 603, "reason": "Decline"}, "declined", False, "declined: 603 Decline"),
        ({"code": 480, "reason": "Temporarily Unavailable"}, "no_answer", False, None),
        ({"code": 503, "reason": "Service Unavailable"}, "unreachable", False, None),
        ({"code": 404, "reason": "Not Found"}, "rejected", False, "rejected: 404 Not Found"),
        ({"code": 407, "reason": "Proxy Authentication Required"}, "rejected", False, None),
        ({"why": WHY_RING_TIMEOUT, "rang": True, "code": 487}, "no_answer", False, None),
        ({"why": WHY_RING_TIMEOUT, "code": 487}, "unreachable", False, None),
        (
            {"answered": True, "why": WHY_NO_KEY, "phase": PHASE_WAITING, "plays": 3},
            "no_key",
            True,
            "answered, no key (prompt said 3 times)",
        ),
        (
            {"answered": True, "code": 200, "phase": PHASE_PLAYING, "plays": 1},
            "hung_up",
            True,
            "hung up during the prompt (play 1)",
        ),
        ({"answered": True, "phase": PHASE_PAUSE, "plays": 2}, "hung_up", True, None),
        (
            {"answered": True, "phase": PHASE_WAITING, "plays": 1},
            "hung_up",
            True,
            "hung up without a key (prompt said once)",
        ),
        ({"answered": True, "why": WHY_NO_MEDIA}, "failed", True, None),
        ({"answered": True, "why": WHY_STOPPED}, "stopped", True, None),
        ({"answered": True, "keys": "21", "plays": 2}, "acknowledged", True, None),
    ],
)
def test_every_ending_has_its_words(
    facts: dict[str, object], kind: str, answered: bool, cause: str | None
) -> None:
    outcome = ending(**facts)
    assert outcome.ending.value == kind
    assert outcome.answered is answered
    if cause is not None:
        assert outcome.cause == cause
    assert outcome.cause.startswith(
        {
            "busy": "busy",
            "declined": "declined",
            "no_answer": "no answer",
            "unreachable": "unreachable",
            "rejected": "rejected",
            "no_key": "answered, no key",
            "hung_up": "hung up",
            "failed": "answered, but no audio",
            "stopped": "stopped",
            "acknowledged": "answered, key 1",
        }[kind]
    )


def test_a_lost_call_is_never_answered() -> None:
    outcome = causes.lost("worker 0 was killed (SIGKILL)", answered=True)
    assert (outcome.ending, outcome.answered, outcome.keys) == (causes.Ending.LOST, False, "")
    assert outcome.cause == "engine lost: worker 0 was killed (SIGKILL) (answered, no key yet)"


# --- the offer's telephone-event payload type --------------------------------------------------

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=pjmedia\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 0 120\r\nc=IN IP4 127.0.0.1\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:120 telephone-event/8000\r\na=fmtp:120 0-16\r\n"
)


def test_telephone_events_are_offered_as_101() -> None:
    rewritten = with_event_payload(OFFER, 101)
    assert "m=audio 4000 RTP/AVP 8 0 101\r\n" in rewritten
    assert "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n" in rewritten
    assert "120" not in rewritten
    assert with_event_payload(rewritten, 101) == rewritten


def test_the_offer_is_left_alone_when_the_number_is_taken_or_no_event_is_offered() -> None:
    taken = OFFER.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:101 opus/48000/2")
    assert with_event_payload(taken, 101) == taken
    plain = "v=0\nm=audio 4000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\n"
    assert with_event_payload(plain, 101) == plain


# --- peers that are missing --------------------------------------------------------------------


def test_a_missing_peer_is_skipped_naming_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("WARND_REQUIRE_PEERS", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match=r"sipp is not installed \(Debian package sip-tester\)"
    ):
        require("sipp")
    monkeypatch.setenv("WARND_REQUIRE_PEERS", "1")
    with pytest.raises(pytest.fail.Exception, match="baresip-core"):
        require("baresip")
