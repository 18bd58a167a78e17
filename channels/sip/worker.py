"""An engine worker: one process, one PJSIP user agent, at most four calls, all on one thread.

Run as ``python -m channels.sip.worker`` by :mod:`channels.sip.engine`, which speaks
:mod:`channels.sip.protocol` with it over stdin and stdout. Everything pjsua2 does happens on
this process's main thread (a call from any other thread aborts the process): a reader thread
only turns stdin lines into commands on a queue, and the main loop alternates between PJSIP's
events, those commands and the calls' timers. When stdin closes (the daemon died) the worker
hangs up its calls and exits, so no call outlives the daemon by more than a moment.

Each call: dial, ring until ``ring_timeout``; once answered, play the prompt (a fresh player
each time, so every play starts at the beginning), pause, play again up to ``plays`` times, then
wait ``key_wait`` for a key. "1" is reported at once and the call hung up; "2" starts the prompt
again (at most ``replays`` times); other keys are only recorded. Timers run on this process's
monotonic clock: SIP and RTP are real time whatever clock the daemon runs on.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import sys
import threading
import time
import wave
from typing import IO, Any, Final

import pjsua2 as pj

from channels.sip.protocol import (
    ALIVE_EVERY_S,
    PHASE_PAUSE,
    PHASE_PLAYING,
    PHASE_RINGING,
    PHASE_WAITING,
    WHY_KEY,
    WHY_NO_KEY,
    WHY_NO_MEDIA,
    WHY_RING_TIMEOUT,
    WHY_STOPPED,
    CallRequest,
    WorkerSettings,
    decode,
    encode,
)
from channels.sip.sdp import with_event_payload

# PJSIP gets this long between two looks at the command queue and the timers.
_POLL_MS: Final = 10
# An answered call whose audio path is not up by then is hung up: nobody would hear anything.
_MEDIA_WAIT_S: Final = 5.0
# A call hung up this long ago that PJSIP has not reported over is reported over anyway.
_HANGUP_WAIT_S: Final = 40.0
_GONE: Final = "gone"
# On quit, how long hung-up calls get to finish their BYE or CANCEL before the stack goes.
_QUIT_WAIT_S: Final = 3.0

_TRANSPORTS: Final = {
    "udp": pj.PJSIP_TRANSPORT_UDP,
    "tcp": pj.PJSIP_TRANSPORT_TCP,
    "tls": pj.PJSIP_TRANSPORT_TLS,
}
_DTMF_METHODS: Final = {
    pj.PJSUA_DTMF_METHOD_RFC2833: "rfc2833",
    pj.PJSUA_DTMF_METHOD_SIP_INFO: "sip_info",
}


def _seconds(path: str) -> float:
    with wave.open(path, "rb") as audio:
        return audio.getnframes() / audio.getframerate()


class Line:
    """The line back to the daemon: whole protocol lines, written from the main thread only."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(encode(message))
        self._out.flush()


class Account(pj.Account):  # type: ignore[misc]  # pjsua2 has no type information
    """Our identity towards the trunk; reports registration outcomes."""

    def __init__(self, line: Line) -> None:
        super().__init__()
        self._line = line

    def onRegState(self, prm: Any) -> None:  # noqa: N802 - pjsua2's callback name
        self._line.send(
            {
                "ev": "registration",
                "code": int(prm.code),
                "reason": str(prm.reason),
                "expires": int(prm.expiration),
            }
        )


class OutboundCall(pj.Call):  # type: ignore[misc]  # pjsua2 has no type information
    """One call and its prompt; every method runs on the main thread."""

    def __init__(self, worker: Worker, request: CallRequest) -> None:
        super().__init__(worker.account)
        self.worker = worker
        self.request = request
        self.seconds = _seconds(request.wav)
        now = time.monotonic()
        self.due = now + request.ring_timeout
        self.on_due = WHY_RING_TIMEOUT
        self.phase = PHASE_RINGING
        self.answered = False
        self.rang = False
        self.keys = ""
        self.why = ""
        self.plays = 0
        self.plays_left = request.plays
        self.replays_left = request.replays
        self.media: Any = None
        self.player: Any = None
        self.over = False
        # What the call says before the daemon has heard it was placed waits for that: PJSIP
        # may end a call inside makeCall (a TCP connection refused), before "placed" is sent.
        self.announced = False
        self.call_id = ""
        self.unsaid: list[dict[str, Any]] = []

    def say(self, message: dict[str, Any]) -> None:
        if self.announced:
            self.worker.line.send(message)
        else:
            self.unsaid.append(message)

    def announce(self) -> None:
        if not self.call_id:
            self.call_id = str(self.getInfo().callIdString)
        self.worker.line.send({"ev": "placed", "ref": self.request.ref, "call_id": self.call_id})
        self.announced = True
        for message in self.unsaid:
            self.worker.line.send(message)
        self.unsaid.clear()

    # PJSIP's callbacks

    def onCallState(self, prm: Any) -> None:  # noqa: N802 - pjsua2's callback name
        info = self.getInfo()
        self.call_id = str(info.callIdString)
        if info.state == pj.PJSIP_INV_STATE_EARLY:
            self.rang = True
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED and not self.answered:
            self.answered = True
            self.phase = PHASE_PLAYING
            self._at(time.monotonic() + _MEDIA_WAIT_S, WHY_NO_MEDIA)
            self.say({"ev": "answered", "ref": self.request.ref})
            if self.media is not None:  # the audio path came up with early media
                self.play()
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.over:
            self.finish(int(info.lastStatusCode), str(info.lastReason))

    def finish(self, code: int, reason: str) -> None:
        """Report the call over, with its facts; it is released outside PJSIP's callbacks."""
        self.over = True
        self.say(
            {
                "ev": "ended",
                "ref": self.request.ref,
                "answered": self.answered,
                "keys": self.keys,
                "code": code,
                "reason": reason,
                "why": self.why,
                "phase": self.phase,
                "rang": self.rang,
                "plays": self.plays,
            }
        )
        self.worker.finished(self)

    def onCallSdpCreated(self, prm: Any) -> None:  # noqa: N802 - pjsua2's callback name
        if prm.remSdp.wholeSdp:
            return  # an answer: it keeps the numbers of the offer it answers
        sdp = prm.sdp.wholeSdp
        rewritten = with_event_payload(sdp, self.worker.settings.dtmf_payload_type)
        if rewritten != sdp:
            prm.sdp.wholeSdp = rewritten

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802 - pjsua2's callback name
        if self.over:
            return
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(index)
                if self.media is not None and audio.getPortId() == self.media.getPortId():
                    return  # a re-INVITE that left the audio path as it was
                self.media = audio
                if self.player is not None:  # the path changed under a prompt: follow it
                    self.player.startTransmit(audio)
                elif self.answered and self.plays == 0:
                    self.play()
                return

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802 - pjsua2's callback name
        method = _DTMF_METHODS.get(prm.method, "")
        if method not in self.worker.settings.dtmf_methods or not self.answered or self.over:
            return
        digit = str(prm.digit)
        self.keys += digit
        self.say({"ev": "key", "ref": self.request.ref, "keys": self.keys, "plays": self.plays})
        if digit == "1":
            self.end(WHY_KEY)
        elif digit == "2" and self.replays_left > 0 and self.media is not None:
            self.replays_left -= 1
            self.play(requested=True)

    # the prompt and the timers

    def _at(self, when: float, what: str) -> None:
        self.due, self.on_due = when, what

    def play(self, *, requested: bool = False) -> None:
        """Say the prompt from its beginning (a "2" does not use up one of the plays)."""
        self.stop_playing()
        player = pj.AudioMediaPlayer()
        try:
            player.createPlayer(self.request.wav, pj.PJMEDIA_FILE_NO_LOOP)
            player.startTransmit(self.media)
        except pj.Error as exc:
            self.worker.log(
                "error", f"call {self.request.ref}: the prompt cannot play: {exc.info()}"
            )
            self.end(WHY_NO_MEDIA)
            return
        self.player = player
        self.plays += 1
        if not requested:
            self.plays_left -= 1
        self.phase = PHASE_PLAYING
        self._at(time.monotonic() + self.seconds, "played")

    def stop_playing(self) -> None:
        player, self.player = self.player, None
        if player is not None and self.media is not None:
            # An error here means the call's audio is already gone; the player goes with it.
            with contextlib.suppress(pj.Error):
                player.stopTransmit(self.media)
        del player

    def tick(self, now: float) -> None:
        if self.over or now < self.due:
            return
        if self.on_due == "played":
            if self.plays_left > 0:
                self.phase = PHASE_PAUSE
                self._at(now + self.request.pause, "play")
            else:
                self.phase = PHASE_WAITING
                self._at(now + self.request.key_wait, WHY_NO_KEY)
        elif self.on_due == "play":
            self.play()
        elif self.on_due == _GONE:
            # Hung up long ago and PJSIP never said the call was over: report it anyway, so
            # the line is not held for ever.
            self.worker.log("warning", f"call {self.request.ref} did not end after hang-up")
            self.finish(0, "no end after hang-up")
        else:
            self.end(self.on_due)

    def end(self, why: str) -> None:
        """Hang up (CANCEL before an answer, BYE after), remembering why."""
        if self.why or self.over:
            return
        self.why = why
        self._at(time.monotonic() + _HANGUP_WAIT_S, _GONE)
        self.stop_playing()
        try:
            self.hangup(pj.CallOpParam(True))
        except pj.Error as exc:
            self.worker.log("warning", f"hangup of call {self.request.ref} failed: {exc.info()}")


class Worker:
    """The user agent and its calls."""

    def __init__(self, settings: WorkerSettings, line: Line) -> None:
        self.settings = settings
        self.line = line
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.calls: dict[int, OutboundCall] = {}
        self.over: list[OutboundCall] = []
        self.endpoint = pj.Endpoint()
        self.account: Any = None
        self.quitting = False

    def log(self, level: str, message: str) -> None:
        self.line.send({"ev": "log", "level": level, "message": message})

    # set-up and tear-down

    def start(self) -> str:
        """Bring PJSIP up; the SIP address it listens on."""
        settings = self.settings
        endpoint = self.endpoint
        endpoint.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0  # no PJSIP worker threads: this thread polls
        config.uaConfig.mainThreadOnly = True
        config.uaConfig.maxCalls = settings.max_calls
        config.uaConfig.userAgent = "warnd"
        config.logConfig.level = settings.log_level
        config.logConfig.consoleLevel = settings.log_level
        config.logConfig.msgLogging = settings.log_level >= 4
        config.medConfig.clockRate = 8000
        config.medConfig.sndClockRate = 8000
        config.medConfig.channelCount = 1
        config.medConfig.noVad = True
        config.medConfig.ecTailLen = 0  # we only speak; an echo canceller costs CPU for nothing
        endpoint.libInit(config)
        # PJSIP's own level holds from here on: let what it prints reach the daemon's log.
        os.dup2(2, 1)
        endpoint.audDevManager().setNullDev()  # no sound card: the conference bridge runs alone
        transport = pj.TransportConfig()
        transport.port = 0
        transport.boundAddress = settings.local_address
        transport.publicAddress = settings.public_address
        if settings.transport == "tls":
            transport.tlsConfig.CaListFile = settings.tls_ca_file
            transport.tlsConfig.verifyServer = settings.tls_verify
        transport_id = endpoint.transportCreate(_TRANSPORTS[settings.transport], transport)
        endpoint.libStart()
        for codec in endpoint.codecEnum2():
            endpoint.codecSetPriority(codec.codecId, 0)
        for rank, name in enumerate(settings.codecs):
            endpoint.codecSetPriority(f"{name}/8000/1", 255 - rank)
        self.account = Account(self.line)
        self.account.create(self._account_config(transport_id))
        return str(endpoint.transportGetInfo(transport_id).localName)

    def _account_config(self, transport_id: int) -> Any:
        settings = self.settings
        config = pj.AccountConfig()
        config.idUri = settings.from_uri
        config.sipConfig.transportId = transport_id
        if settings.proxy_uri:
            config.sipConfig.proxies.append(settings.proxy_uri)
        if settings.username:
            config.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", "*", settings.username, 0, settings.password)
            )
        config.regConfig.registrarUri = settings.registrar_uri
        config.regConfig.registerOnAdd = bool(settings.registrar_uri)
        config.regConfig.timeoutSec = settings.register_expires
        config.regConfig.retryIntervalSec = 30
        config.regConfig.unregWaitMsec = 1500  # on stop: say goodbye, but do not linger for it
        media = config.mediaConfig
        media.lockCodecEnabled = False  # no re-INVITE after the answer to settle on one codec
        media.transportConfig.port = settings.rtp_port
        media.transportConfig.portRange = settings.rtp_port_range
        media.transportConfig.boundAddress = settings.local_address
        media.transportConfig.publicAddress = settings.public_address or settings.local_address
        return config

    def stop(self) -> None:
        """Hang up every call, let the hang-ups go out, release every PJSIP object."""
        self._end_all(WHY_STOPPED)
        deadline = time.monotonic() + _QUIT_WAIT_S
        while self.calls and time.monotonic() < deadline:
            self.endpoint.libHandleEvents(_POLL_MS)
            self.reap()
        # Calls still not over are released anyway: a Call object that outlives libDestroy
        # aborts the process when it is finally freed.
        self._release_all()
        if self.account is not None:
            self.account.shutdown()
            self.account = None
        gc.collect()
        self.endpoint.libDestroy()

    def _end_all(self, why: str) -> None:
        # A method of its own so that no loop variable keeps a call alive in stop()'s frame.
        for call in list(self.calls.values()):
            call.end(why)

    def _release_all(self) -> None:
        for call in list(self.calls.values()):
            call.stop_playing()
        self.calls.clear()
        self.over.clear()

    # the loop

    def run(self) -> None:
        next_alive = 0.0
        while not self.quitting:
            self.endpoint.libHandleEvents(_POLL_MS)
            # Calls that ended are released before new ones are placed: the daemon counts a
            # line free as soon as it hears "ended".
            self.reap()
            self.obey()
            now = time.monotonic()
            self.tick(now)
            self.reap()
            if now >= next_alive:
                self.line.send({"ev": "alive", "calls": len(self.calls)})
                next_alive = now + ALIVE_EVERY_S

    def tick(self, now: float) -> None:
        # A method of its own, like _end_all: a loop variable left in run()'s frame would keep
        # the last call object alive after it ended and was reaped; when it was finally freed
        # (at the next loop), pjsua2's Call destructor hung up whatever call then held its
        # PJSIP call slot, a new call, right after its INVITE (a CANCEL, seen under load).
        for call in list(self.calls.values()):
            call.tick(now)

    def obey(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            op = command.get("op")
            if op == "call":
                fields = {k: v for k, v in command.items() if k != "op"}
                self.place(CallRequest(**fields))
            elif op == "quit":
                self.quitting = True
                return

    def place(self, request: CallRequest) -> None:
        if len(self.calls) >= self.settings.max_calls:
            self.line.send(
                {"ev": "refused", "ref": request.ref, "error": "no free line", "status": 0}
            )
            return
        try:
            call = OutboundCall(self, request)
        except (OSError, EOFError, wave.Error) as exc:
            self.line.send(
                {"ev": "refused", "ref": request.ref, "error": f"audio: {exc}", "status": 0}
            )
            return
        # In the table before makeCall: a call that ends inside makeCall is reaped from it.
        self.calls[request.ref] = call
        try:
            call.makeCall(request.uri, pj.CallOpParam(True))
        except pj.Error as exc:
            self.calls.pop(request.ref, None)
            self.line.send(
                {"ev": "refused", "ref": request.ref, "error": exc.info(), "status": exc.status}
            )
            return
        call.announce()

    def finished(self, call: OutboundCall) -> None:
        """Called from the call's own callback: it is released later, outside the callback."""
        self.over.append(call)

    def reap(self) -> None:
        while self.over:
            call = self.over.pop()
            call.stop_playing()
            self.calls.pop(call.request.ref, None)


def _read_commands(stdin: IO[bytes], commands: queue.Queue[dict[str, Any]]) -> None:
    """The reader thread: lines to commands; end of input means the daemon is gone: quit."""
    for line in stdin:
        try:
            commands.put(decode(line))
        except (ValueError, TypeError):
            continue
    commands.put({"op": "quit"})


def main() -> int:
    # The protocol keeps the real stdout; whatever PJSIP (or anything else) prints goes to
    # stderr, which the daemon reads as log lines.
    out = os.fdopen(os.dup(1), "wb")
    # Until PJSIP is told its log level (Worker.start), it chatters on stdout: into the void.
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.close(quiet)
    sys.stdout = sys.stderr
    line = Line(out)
    stdin = sys.stdin.buffer
    first = stdin.readline()
    try:
        settings = WorkerSettings.from_dict(decode(first)["settings"])
    except (ValueError, KeyError, TypeError) as exc:
        line.send({"ev": "init_failed", "error": f"bad init line: {exc}"})
        return 2
    worker = Worker(settings, line)
    try:
        address = worker.start()
    except pj.Error as exc:
        line.send({"ev": "init_failed", "error": exc.info()})
        return 1
    line.send({"ev": "ready", "address": address})
    reader = threading.Thread(
        target=_read_commands, args=(stdin, worker.commands), name="commands", daemon=True
    )
    reader.start()
    try:
        worker.run()
    finally:
        worker.stop()
    line.send({"ev": "bye"})
    return 0


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    # At once: the reader thread may be blocked reading stdin, which the interpreter's own
    # shutdown cannot interrupt; PJSIP is already destroyed and the last line flushed.
    os._exit(status)
