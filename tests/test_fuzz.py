"""Fuzzing (issue 15): hypothesis against the parsers of what comes from outside, schemathesis
against the running API. No input may reach a 5xx or an exception other than the refusal each
parser promises. Bounded and seeded, so CI runs the same cases every time."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures import cap_alert
from warnd.core.config import AppConfig
from warnd.core.replies import normalise_code, parse_reply
from warnd.ingest.cap import CapError, parse_cap
from warnd.runtime.daemon import Daemon, make_channels
from warnd.runtime.settings import Settings

CASES = 300  # per property: a few seconds each

VALID = cap_alert().encode()
# Where a feed's mistakes and an attacker's tricks sit in a CAP message: values of elements.
_SLOTS = ("<identifier>", "<sent>", "<headline>", "<severity>", "<event>", "<value>", "<expires>")


@st.composite
def mutated_cap(draw: st.DrawFn) -> bytes:
    """A valid CAP alert with one of its values replaced, a span cut out, or bytes spliced in."""
    text = VALID.decode()
    how = draw(st.sampled_from(["value", "cut", "splice", "polygon", "circle"]))
    if how == "value":
        slot = draw(st.sampled_from(_SLOTS))
        start = text.index(slot) + len(slot)
        end = text.index("<", start)
        value = draw(st.text(max_size=200))
        return (text[:start] + value + text[end:]).encode("utf-8", "surrogatepass")
    if how == "cut":
        start = draw(st.integers(0, len(VALID) - 1))
        length = draw(st.integers(1, 200))
        return VALID[:start] + VALID[start + length :]
    if how == "splice":
        at = draw(st.integers(0, len(VALID)))
        return VALID[:at] + draw(st.binary(max_size=100)) + VALID[at:]
    number = st.floats(allow_nan=True, allow_infinity=True).map(str) | st.text(max_size=12)
    if how == "polygon":
        points = draw(st.lists(st.tuples(number, number), max_size=12))
        shape = "<polygon>" + " ".join(f"{a},{b}" for a, b in points) + "</polygon>"
    else:
        shape = f"<circle>{draw(number)},{draw(number)} {draw(number)}</circle>"
    return text.replace("<geocode>", shape + "<geocode>", 1).encode("utf-8", "surrogatepass")


@settings(max_examples=CASES, deadline=None, derandomize=True)
@given(mutated_cap())
def test_no_cap_message_gets_past_the_parser_but_as_a_warning_or_a_refusal(body: bytes) -> None:
    try:
        warning = parse_cap(body)
    except CapError as exc:
        assert exc.code != "internal_error", exc.detail
        assert exc.detail
    else:
        assert warning.level and warning.hazard


@settings(max_examples=CASES, deadline=None, derandomize=True)
@given(st.text(max_size=300))
def test_no_reply_breaks_the_reply_parser(text: str) -> None:
    reply = parse_reply(text)
    assert reply.kind in ("ack", "progress", "unrecognised")
    assert reply.code is None or normalise_code(reply.code) == reply.code


# --- the running API ---------------------------------------------------------------------------

OFFICER = "user-token-li-0123456789abc"
FEED = "feed-token-cma-0123456789"


def _schemathesis() -> str:
    """The schemathesis beside this Python (the test extras install it), else on the PATH."""
    beside = Path(sys.executable).with_name("schemathesis")
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if found is None:
        pytest.skip("schemathesis is not installed: pip install -e '.[test]'")
    return found


@pytest.mark.timeout(300)  # two bounded runs of a few thousand requests each
async def test_schemathesis_finds_no_server_error(seeded: str, tmp_path: Path) -> None:
    config = AppConfig.model_validate(
        {
            "feeds": {"cma": {"token": FEED}},
            "users": {"li": {"token": OFFICER, "roles": ["officer", "approver"]}},
        }
    )
    daemon = Daemon(
        Settings(http_port=0),
        simulate=True,
        config=config,
        channels=make_channels({}, simulate=True),
    )
    async with daemon.running(seeded):
        document = f"http://127.0.0.1:{daemon.port}/api/v1/openapi.json"
        for token, scope in (
            (
                OFFICER,
                [
                    "--exclude-path",
                    "/api/v1/cap",
                    "--exclude-path",
                    "/api/v1/inbound/sms",
                    "--exclude-path",
                    "/api/v1/inbound/voice",
                ],
            ),
            (FEED, ["--include-path", "/api/v1/cap"]),
        ):
            run = await asyncio.create_subprocess_exec(
                _schemathesis(),
                "run",
                document,
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "25",
                "--seed",
                "370800",
                "--generation-deterministic",
                "--generation-allow-x00",
                "false",
                "--no-color",
                *scope,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=tmp_path,
            )
            output, _ = await run.communicate()
            text = output.decode("utf-8", "replace")
            assert run.returncode == 0, text[-4000:]
            assert "generated" in text
