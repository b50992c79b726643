"""The service's MQTT session: persistent, QoS 1, acknowledged by hand once a message is stored."""

from __future__ import annotations

import logging
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.settings import MqttSettings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
PUBACK = 0x40
_PUBACK = struct.Struct("!BBH")  # PUBACK, remaining length 2, packet id (success, no properties)

# (raw topic bytes, payload, mid, qos, retain, connection generation)
MessageHandler = Callable[[bytes, bytes, int, int, bool, int], None]


class _Client(paho.Client):
    """paho's client, reading its socket a large chunk at a time.

    paho reads each packet with several small reads (the type byte, the remaining length a byte
    at a time, then the rest), each a system call that also lets go of the GIL, and waits in
    select() before each packet. Here a read takes up to READ_CHUNK bytes and paho's small
    reads are served from them; `loop_read` goes on while whole packets are left, so select()
    waits only once the bytes read so far are used up: its view of the socket stays right.
    A PUBLISH goes to `raw_handler` as soon as it is read (see _handle_publish).
    """

    READ_CHUNK = 65_536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_handler: Callable[[bytes, bytes, int, int, bool], None] | None = None
        self._read_buf = b""
        self._read_pos = 0

    def _create_socket(self) -> Any:
        self._read_buf, self._read_pos = b"", 0  # nothing of a previous connection's is kept
        return super()._create_socket()

    def _sock_recv(self, bufsize: int) -> bytes:
        pos = self._read_pos
        if pos >= len(self._read_buf):
            data = super()._sock_recv(max(bufsize, self.READ_CHUNK))
            if len(data) <= bufsize:
                return data
            self._read_buf, pos = data, 0
        end = pos + bufsize
        self._read_pos = end
        return self._read_buf[pos:end]

    def _handle_publish(self) -> MQTTErrorCode:
        """A QoS 0 or 1 PUBLISH straight to `raw_handler` as (topic, payload, mid, qos, retain):
        paho's own handling builds a message object, a condition variable, the properties (none
        of which the service reads) and matches topic filters, several times the work of reading
        the packet. Anything else (QoS 2, no handler, acknowledgements left to paho, a packet
        that does not parse) is paho's."""
        handler = self.raw_handler
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if handler is None or qos > 1 or not self._manual_ack:
            return super()._handle_publish()
        data = self._in_packet["packet"]
        try:
            end = 2 + ((data[0] << 8) | data[1])
            topic = bytes(data[2:end])
            mid = 0
            if qos:
                mid = (data[end] << 8) | data[end + 1]
                end += 2
            if self._protocol == paho.MQTTv5:  # properties: a variable byte integer, then them
                length, shift = 0, 0
                while True:
                    byte = data[end]
                    end += 1
                    length |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        break
                    shift += 7
                end += length
            if not topic or end > len(data):
                raise ValueError("malformed PUBLISH")
        except (IndexError, ValueError):
            return super()._handle_publish()  # paho says what is wrong with it
        handler(topic, bytes(data[end:]), mid, qos, bool(header & 0x01))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._read_pos < len(self._read_buf)
            and self._sock is not None
        ):
            rc = super().loop_read(1)
        return rc


class MqttSession:
    """One paho client with its network loop on a thread of its own.

    Paho's threaded loop carries about twice the message rate of an asyncio wrapper on this
    kind of machine (shared/MEASURED.md), and manual acknowledgement needs the raw client.
    Each (re)connection gets a generation number: an ack is only sent on the connection that
    delivered the message, since packet ids mean nothing on the next one (the broker
    redelivers unacknowledged messages there, and storage is idempotent).
    """

    def __init__(
        self,
        settings: MqttSettings,
        on_message: MessageHandler,
        *,
        client_id: str | None = None,
        channels: Sequence[str] = ("#",),
        user_suffix: str = "",
    ) -> None:
        """`channels`: what to subscribe to under the topic prefix (`+/event`, or `#`);
        `user_suffix`: added to the user name of the URL, for a session of its own where the
        broker takes the user name as the client id."""
        self._settings = settings
        self._on_message = on_message
        self._user_suffix = user_suffix
        self.client_id = client_id or settings.client_id
        self._filters = [f"{settings.topic_prefix}/{c}" for c in channels]
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._disconnected = threading.Event()
        self.ever_connected = threading.Event()
        self.last_error: str | None = None
        self._answered = False  # a CONNACK came on this connection, accepting or refusing
        self._client = self._make_client()

    def _make_client(self) -> paho.Client:
        s = self._settings
        protocol = paho.MQTTv5 if s.protocol == 5 else paho.MQTTv311
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            clean_session=None if protocol == paho.MQTTv5 else False,
            manual_ack=True,
        )
        url = urlsplit(s.url)
        if url.username:
            user = unquote(url.username) + self._user_suffix
            client.username_pw_set(user, unquote(url.password or ""))
        tls = s.tls_context()
        self._tls = tls is not None
        if tls is not None:
            client.tls_set_context(tls)
        client.reconnect_delay_set(min_delay=1, max_delay=int(max(1, s.reconnect_max_s)))
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_connect_fail = self._handle_connect_fail
        client.on_message = self._handle_message  # for what _handle_publish leaves to paho
        client.raw_handler = self._handle_raw
        return client

    @property
    def host_port(self) -> tuple[str, int]:
        url = urlsplit(self._settings.url)
        default = 8883 if url.scheme == "mqtts" else 1883
        return url.hostname or "127.0.0.1", url.port or default

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting with backoff until stop()."""
        host, port = self.host_port
        s = self._settings
        properties = None
        if s.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = s.session_expiry_s
            properties.ReceiveMaximum = s.receive_maximum
        self._client.connect_async(
            host, port, keepalive=s.keepalive_s, clean_start=False, properties=properties
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect (the broker keeps the session and anything unacknowledged) and join."""
        # Paho's thread may end before writing what is queued: let the acknowledgements go out
        # first, then wait until the DISCONNECT itself has been sent.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self._client.want_write() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._disconnected.clear()
        if self._client.disconnect() == paho.MQTT_ERR_SUCCESS:
            self._disconnected.wait(max(0.1, deadline - time.monotonic()))
        self._client.loop_stop()
        self.connected.clear()

    def ack(self, generation: int, mid: int, qos: int) -> None:
        if qos and generation == self._generation:
            self._client.ack(mid, qos)

    def ack_many(self, acks: Iterable[tuple[int, int, int]]) -> None:
        """Acknowledge (generation, mid, qos) messages, in order: the PUBACKs of QoS 1 ones go
        out as one write, not one write (and one wake-up of paho's thread) each."""
        generation = self._generation
        mids = [mid for g, mid, qos in acks if qos == 1 and g == generation]
        if not mids:
            return
        queue = getattr(self._client, "_packet_queue", None)
        if queue is None:  # a paho without it: one at a time
            for mid in mids:
                self._client.ack(mid, 1)
            return
        packets = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
        # Queued as one packet of paho's (command PUBACK, no message id of its own): its writer
        # sends the bytes as they are, and nothing waits for an answer to a PUBACK.
        queue(PUBACK, packets, 0, 0)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> paho.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos)

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._answered = True
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("MQTT %s", self.last_error)
            return
        with self._lock:
            self._generation += 1
        for topic in self._filters:
            if self._settings.protocol == 5:
                client.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
            else:
                client.subscribe(topic, qos=1)
        self.last_error = None
        self.connected.set()
        self.ever_connected.set()
        host, port = self.host_port
        log.info(
            "MQTT connected to %s:%d as %s (session present: %s)",
            host,
            port,
            self.client_id,
            flags.session_present,
        )

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was = self.connected.is_set()
        answered, self._answered = self._answered, False
        self.connected.clear()
        self._disconnected.set()
        if reason.is_failure:
            host, port = self.host_port
            self.last_error = f"lost or could not reach the broker at {host}:{port} ({reason})"
            if self._tls and not answered:
                # A broker checks our certificate after the handshake, and then just hangs up.
                self.last_error = (
                    f"the broker at {host}:{port} closed the TLS connection before accepting"
                    " it: does it take our certificate (mqtt.cert_file)?"
                )
            if was or not self.ever_connected.is_set():
                log.warning("MQTT %s; retrying", self.last_error)

    def _handle_connect_fail(self, client: paho.Client, userdata: object) -> None:
        host, port = self.host_port
        # Paho calls this from inside its `except OSError`: the exception says what failed.
        error = connect_error(f"{host}:{port}", sys.exc_info()[1])
        if error != self.last_error:  # said once per outage, not at every retry
            log.warning("%s; retrying (up to every %.0f s)", error, self._settings.reconnect_max_s)
        self.last_error = error

    def _handle_raw(self, topic: bytes, payload: bytes, mid: int, qos: int, retain: bool) -> None:
        # Paho stops its network loop if a callback raises, so nothing may escape from here.
        try:
            self._on_message(topic, payload, mid, qos, retain, self._generation)
        except Exception:
            log.exception("message handler failed on %r; not acknowledged", topic[:200])

    def _handle_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        # Paho stops its network loop if a callback raises, so nothing may escape from here.
        try:
            self._on_message(
                msg._topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain), self._generation
            )
        except Exception:
            log.exception("message handler failed on %r; not acknowledged", msg._topic[:200])


def connect_error(where: str, exc: BaseException | None) -> str:
    """Why a connection to the broker failed, in the words of the setting that can fix it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the MQTT broker at {where} has a certificate we do not trust"
            f" ({exc.verify_message}; see mqtt.ca_file)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS with the MQTT broker at {where} failed ({exc.reason or exc})"
    return f"cannot reach the MQTT broker at {where}"
