"""The channel's one connection to the broker: connect (TLS, credentials), subscribe, learn when
the retained statuses have arrived, hand every message on, and reconnect with backoff.

MQTT 5 is tried first with ``protocol = "auto"``; a broker that answers "unsupported protocol
version" (amqtt, older brokers) is spoken to in 3.1.1 from then on. Sessions are clean: what a
reconnect needs (the subscriptions, the retained statuses, the commands not yet acknowledged) is
set up again by the channel, so nothing depends on the broker having kept a session.

When the retained statuses are in: the broker sends them in reply to the SUBSCRIBE, before it
handles what the client sends next, so the link publishes a marker to a topic of its own right
after subscribing; when the marker comes back, everything retained has come before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Final

import aiomqtt
import structlog
from aiomqtt.exceptions import MqttConnectError

from channels.mqtt_broadcast.config import MqttBroadcastConfig
from channels.mqtt_broadcast.wire import ack_filter, status_filter
from channels.registry import ChannelConfigError

log = structlog.get_logger(__name__)

# CONNACK codes meaning "I do not speak this protocol version": 3.1.1's 1 and MQTT 5's 0x84.
_UNSUPPORTED_VERSION: Final = frozenset({1, 132})
_BAD_CREDENTIALS: Final = frozenset({4, 5, 134, 135})
_FIRST_BACKOFF: Final = 0.2


async def tidy_up(client: aiomqtt.Client, *, entered: bool) -> None:
    """Release what an ``aiomqtt.Client`` session leaves behind, once it has ended.

    aiomqtt (2.5) leaves three things behind a connection attempt that failed (timed out,
    refused): the reason in a future nobody awaits (asyncio would log it as an error nobody
    saw), its housekeeping task, still running, and paho's socket, still open. ``entered``: the
    connection was made (``async with client`` was entered)."""
    if not entered:
        client._client._sock_close()
    gone = client._disconnected
    if gone.done() and not gone.cancelled():
        gone.exception()
    misc = client._misc_task
    if misc is not None and not misc.done():
        misc.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await misc


class LinkDownError(Exception):
    """The broker cannot be reached now (no connection, or it dropped during a publish)."""


def _code(exc: aiomqtt.MqttCodeError) -> int:
    rc = exc.rc
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else -1


class Link:
    """One supervised MQTT connection; ``on_message(topic, payload, retained)`` gets every
    message but the link's own marker, ``on_ready()`` runs (as its own task) each time the link is
    connected, subscribed and has received the retained statuses."""

    def __init__(
        self,
        config: MqttBroadcastConfig,
        client_id: str,
        on_message: Callable[[str, bytes, bool], None],
        on_ready: Callable[[], Coroutine[Any, Any, None]],
        *,
        channel: str,
    ) -> None:
        self._config = config
        self._client_id = client_id
        self._on_message = on_message
        self._on_ready = on_ready
        self._channel = channel
        self._prefix = config.topic_prefix
        self._marker = f"{config.topic_prefix}/_warnd/{client_id}/sync"
        self._protocol = (
            aiomqtt.ProtocolVersion.V311
            if config.protocol == "3.1.1"
            else aiomqtt.ProtocolVersion.V5
        )
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready_tasks: set[asyncio.Task[None]] = set()
        self._tls: ssl.SSLContext | None = None
        self._sync_token = ""
        self._entered = False  # the current attempt got past CONNECT
        self.connects = 0
        self.drops = 0
        self.last_error = ""

    @property
    def ready(self) -> bool:
        """Connected, subscribed, retained statuses received."""
        return self._ready.is_set() and self._client is not None

    @property
    def protocol(self) -> str:
        return "5" if self._protocol == aiomqtt.ProtocolVersion.V5 else "3.1.1"

    async def start(self) -> None:
        """Start connecting; wait up to ``start_wait`` seconds for the link to be ready (the
        daemon starts anyway when the broker is down: sends then fail TRANSIENT). Raises
        ChannelConfigError when the CA file cannot be read."""
        if self._task is not None:
            return
        if self._config.tls:
            ca = self._config.tls_ca_file or None
            try:
                self._tls = await asyncio.to_thread(ssl.create_default_context, cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                raise ChannelConfigError(
                    f"channels.{self._channel}.tls_ca_file: {ca!r} is not a readable PEM file "
                    f"of certificates ({exc})"
                ) from None
        self._task = asyncio.create_task(self._run(), name=f"mqtt-link-{self._channel}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.start_wait):
                await self._ready.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        tasks = [*self._ready_tasks, *([task] if task is not None else [])]
        for pending in tasks:
            pending.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ready.clear()
        self._client = None

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1, not retained; return once the broker has acknowledged it (PUBACK).

        Raises LinkDownError when not connected, the connection fails, or no PUBACK comes
        within ``publish_timeout``."""
        client = self._client
        if client is None:
            raise LinkDownError("not connected to the broker")
        try:
            await client.publish(
                topic, payload, qos=1, retain=False, timeout=self._config.publish_timeout
            )
        except aiomqtt.MqttError as exc:
            raise LinkDownError(f"publish failed: {exc}") from None

    def _client_for(self, protocol: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        config = self._config
        password = config.password.get_secret_value() if config.password is not None else None
        client = aiomqtt.Client(
            config.broker,
            config.broker_port(),
            identifier=self._client_id,
            username=config.username or None,
            password=password,
            protocol=protocol,
            keepalive=config.keepalive,
            tls_context=self._tls,
            clean_session=True if protocol == aiomqtt.ProtocolVersion.V311 else None,
            timeout=config.connect_timeout,  # publishes pass their own
            max_inflight_messages=max(config.window, 20),
        )
        # aiomqtt warns past 10 pending calls; a broadcast has a window's worth by design.
        client.pending_calls_threshold = config.window + 100
        return client

    async def _run(self) -> None:
        backoff = _FIRST_BACKOFF
        while True:
            try:
                await self._session()
            except aiomqtt.MqttCodeError as exc:
                code = _code(exc)
                if (
                    isinstance(exc, MqttConnectError)
                    and code in _UNSUPPORTED_VERSION
                    and self._config.protocol == "auto"
                    and self._protocol == aiomqtt.ProtocolVersion.V5
                ):
                    log.info("mqtt_protocol_fallback", channel=self._channel, to="3.1.1")
                    self._protocol = aiomqtt.ProtocolVersion.V311
                    continue
                if code in _BAD_CREDENTIALS:
                    self.last_error = (
                        f"the broker refused channels.{self._channel}.username/password"
                    )
                else:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("mqtt_link_down", channel=self._channel, error=self.last_error)
            except aiomqtt.MqttError as exc:
                if self._silent_to_v5(exc):
                    log.info("mqtt_protocol_fallback", channel=self._channel, to="3.1.1")
                    self._protocol = aiomqtt.ProtocolVersion.V311
                    continue
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("mqtt_link_down", channel=self._channel, error=self.last_error)
            except OSError as exc:  # TLS context or socket trouble before aiomqtt wraps it
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("mqtt_link_down", channel=self._channel, error=self.last_error)
            else:
                backoff = _FIRST_BACKOFF
            if self._ready.is_set():
                self.drops += 1
                backoff = _FIRST_BACKOFF  # it was up: try again soon
            self._ready.clear()
            self._client = None
            # Real time, not the channel's clock: this paces a network, not a warning.
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._config.reconnect_max)

    def _silent_to_v5(self, exc: aiomqtt.MqttError) -> bool:
        """Whether a broker never heard in MQTT 5 let an MQTT 5 CONNECT time out: some 3.1.1
        brokers (amqtt with credentials) neither answer nor refuse it."""
        return (
            self._config.protocol == "auto"
            and self._protocol == aiomqtt.ProtocolVersion.V5
            and self.connects == 0
            and not self._entered
            and "timed out" in str(exc)
        )

    async def _session(self) -> None:
        self._entered = False
        client = self._client_for(self._protocol)
        try:
            await self._use(client)
        finally:
            await tidy_up(client, entered=self._entered)

    async def _use(self, client: aiomqtt.Client) -> None:
        async with client:
            self._entered = True
            self.connects += 1
            self.last_error = ""
            self._sync_token = uuid.uuid4().hex
            # QoS 0 towards warnd: a broker holds only so many unacknowledged QoS 1 messages
            # per client (Mosquitto: 20 in flight, 1,000 queued) and drops the rest, and a
            # city's acknowledgements and retained statuses come in bursts of thousands. At
            # QoS 0 they flow at the connection's speed; what a broken connection loses, the
            # channel recovers (statuses come again on subscribing, unanswered commands go
            # again and speakers acknowledge a repeat again).
            await client.subscribe(
                [
                    (status_filter(self._prefix), 0),
                    (ack_filter(self._prefix), 0),
                    (self._marker, 0),
                ]
            )
            self._client = client
            await client.publish(self._marker, self._sync_token.encode(), qos=1)
            log.info(
                "mqtt_link_up",
                channel=self._channel,
                protocol=self.protocol,
                connects=self.connects,
            )
            async for message in client.messages:
                topic = message.topic.value
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if topic == self._marker:
                    if payload == self._sync_token.encode() and not self._ready.is_set():
                        self._ready.set()
                        task = asyncio.create_task(self._on_ready())
                        self._ready_tasks.add(task)
                        task.add_done_callback(self._ready_tasks.discard)
                    continue
                self._on_message(topic, payload, bool(message.retain))
            raise aiomqtt.MqttError("the message stream ended")
