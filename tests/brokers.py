"""MQTT brokers for the broadcast tests: Mosquitto (the machine's, or one started here) and amqtt
in-process, and a media server that answers speakers' downloads as warnd's /media route does.

A missing Mosquitto skips the test naming its Debian package (fails it under
WARND_REQUIRE_PEERS=1), as every peer in tests/peers.py does. Tests on a shared broker keep apart
by a topic prefix of their own (:func:`unique_prefix`).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

from channels.media import MediaSource, MediaVerdict, valid_name
from tests.peers import free_tcp_port, require, tcp_listening
from tests.waiting import until

MACHINE_MOSQUITTO = 1883


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    name: str  # "mosquitto" | "amqtt"


def unique_prefix() -> str:
    """A topic prefix no other test (or earlier run) uses."""
    return f"test/{uuid.uuid4().hex[:12]}"


class Mosquitto:
    """A mosquitto process of the test's own on a fixed port, so it can be restarted in place;
    ``extra`` lines go into its configuration (TLS, a password file)."""

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.workdir = workdir
        self.port = free_tcp_port()
        self.process: asyncio.subprocess.Process | None = None
        self.extra = extra

    async def start(self) -> None:
        config = self.workdir / "mosquitto.conf"
        anonymous = "false" if "password_file" in self.extra else "true"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous {anonymous}\npersistence false\n"
            # Run as root, mosquitto would become user "mosquitto", who cannot read the test's
            # files (certificates, the password file); it stays the test's own user instead.
            f"log_dest stderr\nuser {getpass.getuser()}\n{self.extra}"
        )
        with (self.workdir / "mosquitto.log").open("ab") as log:  # the child keeps its copy
            self.process = await asyncio.create_subprocess_exec(
                shutil.which("mosquitto") or "/usr/sbin/mosquitto",
                "-c",
                str(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        process = self.process

        async def listening() -> bool:
            if process.returncode is not None:
                said = (self.workdir / "mosquitto.log").read_text(errors="replace")[-1000:]
                raise AssertionError(
                    f"mosquitto ended at once (exit status {process.returncode}): {said}"
                )
            return tcp_listening(self.port)

        await until(listening, 10, what="mosquitto to listen", every=0.02)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def require_mosquitto() -> None:
    if mosquitto_binary() is None:
        require("mosquitto")  # skips (or fails under WARND_REQUIRE_PEERS=1) naming the package


@contextlib.asynccontextmanager
async def own_mosquitto(workdir: Path, extra: str = "") -> AsyncIterator[Mosquitto]:
    require_mosquitto()
    broker = Mosquitto(workdir, extra)
    try:
        await broker.start()
        yield broker
    finally:
        await broker.stop()


@contextlib.asynccontextmanager
async def any_mosquitto(workdir: Path) -> AsyncIterator[Broker]:
    """The machine's Mosquitto on 1883 when it answers, else one started here."""
    if tcp_listening(MACHINE_MOSQUITTO):
        yield Broker("127.0.0.1", MACHINE_MOSQUITTO, "mosquitto")
        return
    async with own_mosquitto(workdir) as broker:
        yield Broker("127.0.0.1", broker.port, "mosquitto")


_AMQTT_MAIN: Final = """
import asyncio, sys
from amqtt.broker import Broker

async def main() -> None:
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:" + sys.argv[1]}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def amqtt_broker() -> AsyncIterator[Broker]:
    """An amqtt broker (MQTT 3.1.1 only), Python like the tests, on a free port.

    In a child interpreter rather than the test's event loop: amqtt keeps per-client tasks
    alive after a client has gone and leaves their sockets open at shutdown, which the channel
    contract (no task left behind) and pytest's resource warnings would blame on the channel.
    """
    port = free_tcp_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _AMQTT_MAIN,
        str(port),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:

        async def listening() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"amqtt ended at once (exit status {process.returncode})")
            return tcp_listening(port)

        await until(listening, 20, what="amqtt to listen", every=0.02)
        yield Broker("127.0.0.1", port, "amqtt")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


class MediaServer:
    """Serves a channel's media as warnd's ``GET /media/{name}`` does (same verdicts), so that
    speakers can fetch in tests that run no warnd; the real route is tested in
    tests/test_media_route.py."""

    def __init__(self) -> None:
        self.sources: list[MediaSource] = []
        self.requests: list[tuple[str, int]] = []  # (path with query, status)
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/media"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        from datetime import UTC, datetime

        name = request.match_info["name"]
        status = 404
        body = b""
        if valid_name(name):
            answers = [
                source.media_file(
                    name,
                    request.query.get("expires", ""),
                    request.query.get("sig", ""),
                    datetime.now(UTC),
                )
                for source in self.sources
            ]
            found = [a for a in answers if a.verdict is MediaVerdict.FOUND and a.path]
            if found and found[0].path is not None:
                status, body = 200, await asyncio.to_thread(found[0].path.read_bytes)
            elif not any(a.verdict is MediaVerdict.MISSING for a in answers):
                status = 403
        self.requests.append((request.path_qs, status))
        return web.Response(status=status, body=body, content_type="audio/wav")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/media/{name}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = free_tcp_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
