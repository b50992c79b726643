"""The shipped Mosquitto config, password file and ACL, run with the real broker."""

from __future__ import annotations

import getpass
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.deploy.files import ACL, CREDENTIALS_TOOL, MOSQUITTO_CONF, raw_compose
from tests.support import PrivateCA, free_port, wait_for_port, wait_until

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SERVICE_PASSWORD = "serviceSecret9"
SITE = """\
[[residents]]
id = "r-1"
name = "A"
devices = [{ id = "mat-1", kind = "mattress" }, { id = "band-1", kind = "wristband" }]

[[residents]]
id = "r-2"
name = "B"
devices = [{ id = "mat-2", kind = "mattress" }]
"""
# How long a message that should not arrive is given, after a later one has arrived.
SETTLE_S = 0.2


@dataclass(frozen=True)
class Broker:
    port: int
    tls_port: int
    secrets: dict[str, str]  # device id -> secret, as credentials.py issued them
    directory: Path

    def tls(self, name: str | None) -> ssl.SSLContext:
        """A client's TLS context: trusts the broker's CA, shows `name`'s certificate."""
        certs = self.directory / "certs"
        context = ssl.create_default_context(cafile=certs / "ca.crt")
        if name is not None:
            context.load_cert_chain(certs / f"{name}.crt", certs / f"{name}.key")
        return context


def local_config(directory: Path, port: int, tls_port: int) -> str:
    """The shipped mosquitto.conf with only the listener ports and file paths made local."""
    text = MOSQUITTO_CONF.read_text(encoding="utf-8")
    assert "\nlistener 1883\n" in text
    assert "\nlistener 8883\n" in text
    text = text.replace("\nlistener 1883\n", f"\nlistener {port} 127.0.0.1\n")
    text = text.replace("\nlistener 8883\n", f"\nlistener {tls_port} 127.0.0.1\n")
    text = text.replace("/mosquitto/config/", f"{directory}/config/")
    text = text.replace("/mosquitto/certs/", f"{directory}/certs/")
    text = text.replace("/mosquitto/data/", f"{directory}/data/")
    # Running as root, Mosquitto would switch to a `mosquitto` user that may not exist here.
    return text + f"\nuser {getpass.getuser()}\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    directory = tmp_path_factory.mktemp("mosquitto")
    (directory / "config").mkdir()
    (directory / "data").mkdir()
    shutil.copy(ACL, directory / "config" / "acl")
    (directory / "site.toml").write_text(SITE)
    (directory / ".env").write_text(f"BEDWATCH_MQTT_PASSWORD={SERVICE_PASSWORD}\n")
    issued = subprocess.run(
        [sys.executable, str(CREDENTIALS_TOOL), "--passwd", str(directory / "config" / "passwd"),
         "--env-file", str(directory / ".env"), "sync", str(directory / "site.toml")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    secrets = dict(line.split(" ") for line in issued.splitlines())
    assert set(secrets) == {"mat-1", "band-1", "mat-2"}
    ca = PrivateCA.make(directory / "certs")
    ca.server("mosquitto")
    ca.clients("bedwatch", "mat-1", "band-1")
    port, tls_port = free_port(), free_port()
    (directory / "mosquitto.conf").write_text(local_config(directory, port, tls_port))
    with (directory / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(directory / "mosquitto.conf")], stdout=log, stderr=log
        )
    try:
        wait_for_port(port)
        wait_for_port(tls_port)
        yield Broker(port, tls_port, secrets, directory)
    finally:
        proc.terminate()
        proc.wait(10)


class Client:
    """One MQTT 5 connection that records what it is told and what arrives."""

    def __init__(
        self,
        broker: Broker,
        username: str | None,
        password: str | None,
        client_id: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.granted: list[ReasonCode] = []
        self.connack: ReasonCode | None = None
        self.disconnected = threading.Event()
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.connect("127.0.0.1", broker.tls_port if tls else broker.port, keepalive=30)
        self.client.loop_start()
        # A client refused for its certificate gets no CONNACK: the broker hangs up.
        wait_until(lambda: self.connack is not None or self.disconnected.is_set(), 10)

    def _on_connect(
        self, _c: paho.Client, _u: object, _f: object, rc: ReasonCode, _p: Properties | None
    ) -> None:
        self.connack = rc

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def _on_subscribe(
        self, _c: paho.Client, _u: object, _m: int, codes: list[ReasonCode], _p: Properties | None
    ) -> None:
        with self._lock:
            self.granted.extend(codes)

    def _on_disconnect(
        self, _c: paho.Client, _u: object, _f: object, _rc: ReasonCode, _p: Properties | None
    ) -> None:
        self.disconnected.set()

    @property
    def connected(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, *topics: str) -> list[ReasonCode]:
        before = len(self.granted)
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.granted) >= before + len(topics), 10)
        return self.granted[before:]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def received(self, topic: str, payload: bytes) -> bool:
        with self._lock:
            return (topic, payload) in self.messages

    def topics(self) -> set[str]:
        with self._lock:
            return {topic for topic, _ in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Connect(Protocol):
    def __call__(
        self,
        username: str | None,
        password: str | None,
        client_id: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> Client: ...


@pytest.fixture
def connect(broker: Broker) -> Iterator[Connect]:
    """Opens clients on the test broker, and closes them after the test."""
    opened: list[Client] = []

    def open_client(
        username: str | None,
        password: str | None,
        client_id: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> Client:
        client = Client(broker, username, password, client_id, tls)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


def test_devices_publish_their_data_and_the_service_reads_all(
    broker: Broker, connect: Connect
) -> None:
    service = connect("bedwatch", SERVICE_PASSWORD)
    assert service.connected
    assert all(not code.is_failure for code in service.subscribe("bedwatch/v1/#"))
    sent = []
    for device_id, channel in (("mat-1", "telemetry"), ("band-1", "event"), ("mat-2", "status")):
        device = connect(device_id, broker.secrets[device_id])
        assert device.connected, device.connack
        payload = marker()
        device.publish(f"bedwatch/v1/{device_id}/{channel}", payload)
        sent.append((f"bedwatch/v1/{device_id}/{channel}", payload))
    wait_until(lambda: all(service.received(*message) for message in sent), 10)


def test_a_device_receives_its_commands_from_the_service(broker: Broker, connect: Connect) -> None:
    device = connect("band-1", broker.secrets["band-1"])
    [granted] = device.subscribe("bedwatch/v1/band-1/cmd")
    assert not granted.is_failure, granted
    service = connect("bedwatch", SERVICE_PASSWORD)
    command = b'{"type": "sos_ack", "alert": "1", "ts": 1764194466000}'
    service.publish("bedwatch/v1/band-1/cmd", command)
    wait_until(lambda: device.received("bedwatch/v1/band-1/cmd", command), 10)


def test_a_device_cannot_publish_as_another(broker: Broker, connect: Connect) -> None:
    service = connect("bedwatch", SERVICE_PASSWORD)
    service.subscribe("bedwatch/v1/#")
    intruder = connect("mat-1", broker.secrets["mat-1"])
    forged = marker()
    intruder.publish("bedwatch/v1/band-1/event", forged)
    intruder.publish("bedwatch/v1/mat-2/telemetry", forged)
    intruder.publish("elsewhere/mat-1/telemetry", forged)
    # Messages from one client arrive in order: once this one is in, the forged ones are not.
    honest = marker()
    intruder.publish("bedwatch/v1/mat-1/telemetry", honest)
    wait_until(lambda: service.received("bedwatch/v1/mat-1/telemetry", honest), 10)
    assert service.topics() == {"bedwatch/v1/mat-1/telemetry"}


def test_a_device_cannot_read_other_devices(broker: Broker, connect: Connect) -> None:
    snoop = connect("mat-2", broker.secrets["mat-2"])
    codes = snoop.subscribe(
        "bedwatch/v1/#", "bedwatch/v1/mat-1/telemetry", "bedwatch/v1/band-1/cmd", "#"
    )
    [own] = snoop.subscribe("bedwatch/v1/mat-2/cmd")
    assert not own.is_failure
    victim = connect("mat-1", broker.secrets["mat-1"])
    victim.publish("bedwatch/v1/mat-1/telemetry", marker())
    service = connect("bedwatch", SERVICE_PASSWORD)
    service.publish("bedwatch/v1/band-1/cmd", marker())
    last = marker()
    service.publish("bedwatch/v1/mat-2/cmd", last)
    wait_until(lambda: snoop.received("bedwatch/v1/mat-2/cmd", last), 10)
    assert snoop.topics() == {"bedwatch/v1/mat-2/cmd"}, codes


def test_the_service_writes_only_commands(broker: Broker, connect: Connect) -> None:
    service = connect("bedwatch", SERVICE_PASSWORD)
    service.subscribe("bedwatch/v1/#")
    service.publish("bedwatch/v1/mat-1/event", b'{"seq": 1, "ts": 1, "type": "sos"}')
    last = marker()
    service.publish("bedwatch/v1/mat-1/cmd", last)
    wait_until(lambda: service.received("bedwatch/v1/mat-1/cmd", last), 10)
    assert service.topics() == {"bedwatch/v1/mat-1/cmd"}


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), ("mat-1", "wrong"), ("mat-1", ""), ("nobody", "x"), ("bedwatch", "wrong")],
)
def test_no_login_without_the_right_secret(
    username: str | None, password: str | None, connect: Connect
) -> None:
    client = connect(username, password)
    assert client.connack is not None
    assert client.connack.is_failure
    assert client.connack.getName() in ("Not authorized", "Bad user name or password")


def test_a_device_cannot_take_over_another_devices_session(
    broker: Broker, connect: Connect
) -> None:
    victim = connect("band-1", broker.secrets["band-1"], "band-1")
    assert victim.connected
    impostor = connect("mat-1", broker.secrets["mat-1"], "band-1")
    assert impostor.connected
    # The broker named the impostor's session after its user, so the victim is still on.
    service = connect("bedwatch", SERVICE_PASSWORD)
    victim.subscribe("bedwatch/v1/band-1/cmd")
    last = marker()
    service.publish("bedwatch/v1/band-1/cmd", last)
    wait_until(lambda: victim.received("bedwatch/v1/band-1/cmd", last), 10)
    assert not victim.disconnected.is_set()


def test_the_compose_healthcheck_passes_on_the_running_broker(broker: Broker) -> None:
    healthcheck = raw_compose()["services"]["mosquitto"]["healthcheck"]["test"]
    assert healthcheck[0] == "CMD-SHELL"
    command = healthcheck[1].replace("-p 1883", f"-p {broker.port}")
    assert subprocess.run(["sh", "-c", command], check=False, timeout=10).returncode == 0
    down = healthcheck[1].replace("-p 1883", f"-p {free_port()}")
    assert subprocess.run(["sh", "-c", down], check=False, timeout=10).returncode != 0


def test_the_broker_drops_payloads_past_its_size_limit(broker: Broker, connect: Connect) -> None:
    service = connect("bedwatch", SERVICE_PASSWORD)
    service.subscribe("bedwatch/v1/#")
    topic = "bedwatch/v1/mat-1/telemetry"
    huge = b"x" * 5_000_000
    oversize = b"y" * 100_000  # past the service's limit, within the broker's: quarantined there
    after = marker()
    publish_bare(broker, "mat-1", topic, [huge, oversize, after])
    wait_until(lambda: service.received(topic, after), 10)
    assert service.received(topic, oversize)
    assert not service.received(topic, huge)


def publish_bare(broker: Broker, device_id: str, topic: str, payloads: list[bytes]) -> None:
    """MQTT 3.1.1 on a bare socket: log in, publish each payload at QoS 0, disconnect."""

    def text(value: str) -> bytes:
        return len(value).to_bytes(2, "big") + value.encode()

    def packet(kind: int, body: bytes) -> bytes:
        size, length = len(body), bytearray()
        while True:
            size, digit = divmod(size, 128)
            length.append(digit | (128 if size else 0))
            if not size:
                return bytes([kind, *length]) + body

    login = text("MQTT") + bytes([4, 0xC2, 0, 30]) + text(device_id) * 2
    login += text(broker.secrets[device_id])
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(packet(0x10, login))
        assert sock.recv(4)[:1] == b"\x20"  # CONNACK
        for payload in payloads:
            sock.sendall(packet(0x30, text(topic) + payload))
        sock.sendall(packet(0xE0, b""))  # DISCONNECT


def test_the_services_events_session_reads_events_alone_beside_its_main_one(
    broker: Broker, connect: Connect
) -> None:
    main = connect("bedwatch", SERVICE_PASSWORD)
    events = connect("bedwatch-events", SERVICE_PASSWORD)
    assert main.connected
    assert events.connected
    [granted] = events.subscribe("bedwatch/v1/+/event")
    assert not granted.is_failure
    main.subscribe("bedwatch/v1/#")
    band = connect("band-1", broker.secrets["band-1"])
    press = marker()
    band.publish("bedwatch/v1/band-1/event", press)
    wait_until(lambda: events.received("bedwatch/v1/band-1/event", press), 10)
    wait_until(lambda: main.received("bedwatch/v1/band-1/event", press), 10)
    assert not main.disconnected.is_set()  # two sessions of the service, neither taken over
    events.subscribe("bedwatch/v1/+/telemetry")  # granted or not, nothing may arrive
    telemetry = marker()
    device = connect("mat-1", broker.secrets["mat-1"])
    device.publish("bedwatch/v1/mat-1/telemetry", telemetry)
    wait_until(lambda: main.received("bedwatch/v1/mat-1/telemetry", telemetry), 10)
    assert not events.received("bedwatch/v1/mat-1/telemetry", telemetry)


def test_over_tls_a_device_and_the_services_two_sessions_log_in_with_certificate_and_password(
    broker: Broker, connect: Connect
) -> None:
    main = connect("bedwatch", SERVICE_PASSWORD, tls=broker.tls("bedwatch"))
    events = connect("bedwatch-events", SERVICE_PASSWORD, tls=broker.tls("bedwatch"))
    assert main.connected, main.connack
    assert events.connected, events.connack
    main.subscribe("bedwatch/v1/#")
    events.subscribe("bedwatch/v1/+/event")
    band = connect("band-1", broker.secrets["band-1"], tls=broker.tls("band-1"))
    assert band.connected, band.connack
    press = marker()
    band.publish("bedwatch/v1/band-1/event", press)
    wait_until(lambda: events.received("bedwatch/v1/band-1/event", press), 10)
    wait_until(lambda: main.received("bedwatch/v1/band-1/event", press), 10)
    # One certificate for both sessions, and neither took the other over.
    assert not main.disconnected.is_set()
    assert not events.disconnected.is_set()


@pytest.mark.parametrize(
    ("certificate", "password"),
    [("band-1", "wrong"), ("mat-1", None), (None, "secret")],
)
def test_over_tls_a_device_needs_both_its_password_and_a_certificate(
    broker: Broker, connect: Connect, certificate: str | None, password: str | None
) -> None:
    secret = broker.secrets["band-1"] if password == "secret" else password
    client = connect("band-1", secret, tls=broker.tls(certificate))
    assert not client.connected
    assert client.disconnected.is_set() or client.connack is not None
