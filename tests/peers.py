"""Real protocol peers and programs the voice tests run: sipp as a scripted far end, baresip as
an independent phone, and the check that they (and espeak-ng, sox) are installed.

A missing program skips the test with a message naming its Debian package, so a fresh laptop
runs what it can; with ``WARND_REQUIRE_PEERS=1`` (CI) a missing program fails the test instead,
so that a CI machine without them can never pass by skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import struct
import wave
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest

from tests.waiting import until

# The Debian package of every program the voice tests use.
PACKAGES: Final = {
    "sipp": "sip-tester",
    "baresip": "baresip-core",
    "espeak-ng": "espeak-ng",
    "sox": "sox",
    "mosquitto": "mosquitto",
    "pdftotext": "poppler-utils",
    "pdftoppm": "poppler-utils",
    "chromium": "chromium",
}

SCENARIOS: Final = Path(__file__).parent / "sip"
# Debian's RFC 2833 recordings of single key presses (payload type 101), one file per key.
DTMF_RECORDINGS: Final = Path("/usr/share/sip-tester")


def _missing(message: str) -> None:
    if os.environ.get("WARND_REQUIRE_PEERS") == "1":
        pytest.fail(f"{message}; WARND_REQUIRE_PEERS=1 makes a missing peer a failure")
    pytest.skip(message)


def require(*programs: str) -> None:
    """Skip the test (fail it under WARND_REQUIRE_PEERS=1) unless every program is installed."""
    for program in programs:
        if shutil.which(program) is None:
            _missing(f"{program} is not installed (Debian package {PACKAGES.get(program, '?')})")


CHROMIUM: Final = "/usr/bin/chromium"  # Debian's; Playwright downloads no browser of its own


def require_chromium() -> str:
    """Debian's chromium and Playwright for Python, for the console's browser tests; the
    browser's path. Skips (fails under WARND_REQUIRE_PEERS=1) naming what to install."""
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} is missing: apt-get install chromium (Debian package chromium)")
    if importlib.util.find_spec("playwright") is None:
        _missing("playwright is not installed (pip install -e '.[test]')")
    return CHROMIUM


def require_pjsua2() -> None:
    """The same for PJSIP's Python binding, which has wheels for Linux x86-64 only."""
    if importlib.util.find_spec("pjsua2") is None:
        _missing("pjsua2 is not installed (pip install pjsua2-python)")


def require_cjk_font() -> None:
    """The same for the CJK font the PDF report embeds (Debian package fonts-noto-cjk)."""
    from warnd.app.report_files import CjkFontMissingError, cjk_font

    try:
        cjk_font()
    except CjkFontMissingError as exc:
        _missing(str(exc))


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 nothing is bound to now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def udp_bound(port: int) -> bool:
    """Whether something holds UDP ``port`` on 127.0.0.1 (binding it ourselves fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def tcp_listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1 ``port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wav_seconds(path: Path) -> float:
    """The length of a WAV file from its header."""
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


async def sox_stat(path: Path) -> dict[str, float]:
    """``sox FILE -n stat`` as numbers: "Length (seconds)", "RMS amplitude", "Maximum amplitude"…"""
    process = await asyncio.create_subprocess_exec(
        "sox",
        str(path),
        "-n",
        "stat",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, report = await process.communicate()
    assert process.returncode == 0, report.decode(errors="replace")
    stats: dict[str, float] = {}
    for line in report.decode().splitlines():
        name, _, value = line.partition(":")
        with contextlib.suppress(ValueError):
            stats[" ".join(name.split())] = float(value)
    return stats


def key_presses(path: Path, presses: Sequence[tuple[str, float]]) -> None:
    """Write a pcap that sipp's ``play_pcap_audio`` plays as the keys ``presses`` names, each
    (key, seconds after the previous press began), from Debian's one-key recordings.

    The recordings all come from one capture: played one after another, a later key can carry
    an older RTP sequence number and timestamp than the key before it, and the receiver drops
    it as a stale packet. Here sequence numbers and timestamps run on from press to press.
    """
    records: list[bytes] = []
    sequence, at = 1000, 0.0
    for key, delay in presses:
        at += delay
        data = (DTMF_RECORDINGS / f"dtmf_2833_{key}.pcap").read_bytes()
        offset, first, previous = 24, None, None
        while offset < len(data):
            seconds, micros, length, original = struct.unpack_from("<IIII", data, offset)
            packet = bytearray(data[offset + 16 : offset + 16 + length])
            offset += 16 + length
            when = seconds + micros / 1e6
            first = when if first is None else first
            rtp = 14 + 20 + 8  # Ethernet, IPv4, UDP
            old_sequence = struct.unpack_from("!H", packet, rtp + 2)[0]
            if previous is not None and old_sequence != previous:
                sequence += 1  # the repeated end-of-event packets keep their number
            previous = old_sequence
            struct.pack_into("!H", packet, rtp - 2, 0)  # no UDP checksum: the header changed
            struct.pack_into("!HI", packet, rtp + 2, sequence, 8000 + int(at * 8000))
            stamp = 1_000_000 + at + (when - first)
            whole, fraction = int(stamp), round((stamp % 1) * 1e6)
            records.append(struct.pack("<IIII", whole, fraction, length, original) + packet)
        sequence += 1
    header = (DTMF_RECORDINGS / "dtmf_2833_1.pcap").read_bytes()[:24]
    path.write_bytes(header + b"".join(records))


# --- sipp: the far end, scripted by a scenario under tests/sip/ ---------------------------------


@dataclass
class Sipp:
    """A sipp UAS on 127.0.0.1 answering calls as ``scenario`` says."""

    scenario: str
    workdir: Path
    port: int = 0
    media_port: int = 0
    process: asyncio.subprocess.Process | None = None
    extra: tuple[str, ...] = ()
    tcp: bool = False  # SIP over TCP (one connection per call) instead of UDP

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = free_tcp_port() if self.tcp else free_udp_port()
        self.media_port = free_udp_port()
        self.process = await asyncio.create_subprocess_exec(
            "sipp",
            "-sf",
            str(SCENARIOS / self.scenario),
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-mp",
            str(self.media_port),
            "-nostdin",
            "-trace_err",
            "-trace_logs",
            "-trace_msg",
            *(("-t", "t1") if self.tcp else ()),
            *self.extra,
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        process = self.process

        async def listening() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"sipp ended at once (exit status {process.returncode})")
            return tcp_listening(self.port) if self.tcp else udp_bound(self.port)

        await until(listening, 10, what="sipp to listen")

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    def errors(self) -> str:
        """What sipp wrote to its error and log files (for a failing test's message)."""
        return "\n".join(
            path.read_text(errors="replace")[-2000:] for path in sorted(self.workdir.glob("*.log"))
        )


@contextlib.asynccontextmanager
async def running_sipp(
    scenario: str,
    workdir: Path,
    *extra: str,
    presses: Sequence[tuple[str, float]] = (),
    tcp: bool = False,
) -> AsyncIterator[Sipp]:
    """A sipp UAS for the length of the block; with ``presses``, the keys its scenario plays
    as ``keys.pcap`` (see :func:`key_presses`; sipp reads it when it starts)."""
    require("sipp")
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    if presses:
        await asyncio.to_thread(key_presses, workdir / "keys.pcap", presses)
    sipp = Sipp(scenario, workdir, extra=extra, tcp=tcp)
    try:
        await sipp.start()  # inside: a sipp that started but never listened is ended too
        yield sipp
    finally:
        await sipp.stop()


# --- baresip: an independent phone that answers, records what it hears and presses keys --------


@dataclass
class Baresip:
    """baresip answering every call to ``number`` at once, recording what it hears (module
    ``sndfile``) and driven over ``ctrl_tcp`` (netstrings of JSON)."""

    number: str
    home: Path
    port: int = 0
    control_port: int = 0
    process: asyncio.subprocess.Process | None = None
    events: list[dict[str, object]] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _listening: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def recordings(self) -> Path:
        return self.home / "recordings"

    def _configure(self) -> None:
        self.recordings.mkdir(parents=True, exist_ok=True)  # and home with it
        # Something to send while the call lasts: baresip sends RFC 2833 events from its audio
        # transmit loop, which runs only while a source gives frames.
        silence = self.home / "silence.wav"
        with wave.open(str(silence), "wb") as audio:
            audio.setnchannels(1)
            audio.setsampwidth(2)
            audio.setframerate(8000)
            audio.writeframes(b"\0\0" * 8000 * 120)
        (self.home / "config").write_text(
            "\n".join(
                [
                    "poll_method epoll",
                    f"sip_listen 127.0.0.1:{self.port}",
                    "audio_player aubridge,speaker",
                    f"audio_source aufile,{silence}",
                    "audio_alert aubridge,alert",
                    "module_path /usr/lib/baresip/modules",
                    "module g711.so",
                    "module aubridge.so",
                    "module aufile.so",
                    "module sndfile.so",
                    "module ctrl_tcp.so",
                    "module menu.so",
                    "module account.so",
                    f"snd_path {self.recordings}",
                    f"ctrl_tcp_listen 127.0.0.1:{self.control_port}",
                    "",
                ]
            )
        )
        (self.home / "accounts").write_text(
            f"<sip:{self.number}@127.0.0.1:{self.port}>;regint=0;answermode=auto\n"
        )

    async def start(self) -> None:
        self.port = free_udp_port()
        self.control_port = free_tcp_port()
        self._configure()
        self.process = await asyncio.create_subprocess_exec(
            "baresip",
            "-f",
            str(self.home),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

        async def connected() -> bool:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"baresip ended at once ({self.process.returncode})")
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    "127.0.0.1", self.control_port
                )
            except OSError:
                return False
            return True

        await until(connected, 10, what="baresip's ctrl_tcp to listen", every=0.05)
        self._listening = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        assert self._reader is not None
        while True:
            try:
                length = await self._reader.readuntil(b":")
                body = await self._reader.readexactly(int(length[:-1]) + 1)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            message = json.loads(body[:-1])
            if isinstance(message, dict) and message.get("event"):
                self.events.append(message)
                self._changed.set()

    async def command(self, command: str, params: str = "") -> None:
        """Send one ctrl_tcp command (``sndcode`` with a digit presses a key)."""
        assert self._writer is not None
        data = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._writer.write(str(len(data)).encode() + b":" + data + b",")
        await self._writer.drain()

    async def event(self, kind: str, within: float = 10.0) -> dict[str, object]:
        """The first event of ``kind`` (CALL_ESTABLISHED, CALL_CLOSED…), waiting for it."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if event.get("type") == kind:
                        return event
                self._changed.clear()
                await self._changed.wait()

    def heard(self) -> list[Path]:
        """The recordings of what reached baresip's ear (``dump-…-dec.wav``)."""
        return sorted(self.recordings.glob("*-dec.wav"))

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def running_baresip(number: str, home: Path) -> AsyncIterator[Baresip]:
    """A baresip phone for ``number`` for the length of the block."""
    require("baresip")
    phone = Baresip(number, home)
    try:
        await phone.start()
        yield phone
    finally:
        await phone.stop()
