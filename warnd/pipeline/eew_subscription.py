"""The seismic service's early-warning reports over MQTT (``[eew]`` in the config): the national
feed publishes them to a broker, and warnd subscribes.

Each message is taken as ``POST /api/v1/eew`` takes a body (or ``/eew/cap`` when it is CAP XML):
validated, recorded once per (event, report number), handed to the fast path. A refused message
is kept for the duty officer as any feed's is. MQTT has no answer to give a publisher, so a
failed hand-off is tried again here, at once, a few times: the report is left ``failed``, and
receiving it again hands it again.

Sessions are clean, at QoS 1: a report published while warnd is away is not waited for — by the
time warnd is back its moment has passed (the fast path would drop its alerts as expired), and a
second process subscribed to the same topic takes it meanwhile; every process receiving the same
report records it once, and only the first hands it on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from typing import Final

import aiomqtt
import structlog

from channels.mqtt_broadcast.link import tidy_up
from warnd.app.eew import EewHandOffError, receive_eew, receive_eew_cap
from warnd.app.services import Services
from warnd.core.config import EewSubscription
from warnd.core.errors import ConfigError, WarndError

log = structlog.get_logger(__name__)

HAND_OFF_TRIES: Final = 3
_FIRST_BACKOFF: Final = 0.2
_LONGEST_BACKOFF: Final = 10.0


class EewFeed:
    """One supervised subscription; ``run`` until cancelled."""

    def __init__(self, services: Services, config: EewSubscription) -> None:
        self._services = services
        self._config = config
        self._client_id = config.client_id or f"warnd-eew-{socket.gethostname()}-{os.getpid()}"
        self.connects = 0
        self.taken = 0  # messages taken (received, refused or given up on)
        self.last_error = ""

    async def run(self) -> None:
        tls = await self._tls()
        backoff = _FIRST_BACKOFF
        while True:
            entered = False
            client = aiomqtt.Client(
                self._config.host,
                self._config.port,
                identifier=self._client_id,
                username=self._config.username or None,
                password=(
                    self._config.password.get_secret_value()
                    if self._config.password is not None
                    else None
                ),
                protocol=aiomqtt.ProtocolVersion.V311,
                clean_session=True,
                tls_context=tls,
                timeout=10,
            )
            try:
                async with client:
                    entered = True
                    await client.subscribe(self._config.topic, qos=1)
                    self._up()
                    backoff = _FIRST_BACKOFF
                    async for message in client.messages:
                        payload = message.payload
                        await self.take(payload if isinstance(payload, bytes) else b"")
            except (aiomqtt.MqttError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("eew_feed_down", broker=self._config.broker, error=self.last_error)
            finally:
                self._services.metrics.eew_feed_up.labels(broker=self._config.broker).set(0)
                await tidy_up(client, entered=entered)
            # Real time, not warnd's clock: this paces a network, not a warning.
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _LONGEST_BACKOFF)

    async def take(self, payload: bytes) -> None:
        """One message: received as the HTTP endpoints receive a body."""
        receive = receive_eew_cap if payload.lstrip().startswith(b"<") else receive_eew
        try:
            for attempt in range(1, HAND_OFF_TRIES + 1):
                try:
                    await receive(self._services, self._config.feed, payload)
                except EewHandOffError:
                    log.warning("eew_feed_hand_off_failed", attempt=attempt, of=HAND_OFF_TRIES)
                    continue
                except WarndError as exc:  # refused: kept for the duty officer by receive_*
                    log.warning("eew_feed_refused", error=exc.code)
                return
        finally:
            self.taken += 1

    def _up(self) -> None:
        self._services.metrics.eew_feed_up.labels(broker=self._config.broker).set(1)
        self.connects += 1
        self.last_error = ""
        log.info(
            "eew_feed_up",
            broker=self._config.broker,
            topic=self._config.topic,
            connects=self.connects,
        )

    async def _tls(self) -> ssl.SSLContext | None:
        if not self._config.tls:
            return None
        ca = self._config.tls_ca_file
        try:
            return await asyncio.to_thread(ssl.create_default_context, cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"eew.tls_ca_file: {str(ca)!r} is not a readable PEM file of certificates ({exc})"
            ) from None
