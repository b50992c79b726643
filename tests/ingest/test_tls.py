"""Across machines: MQTT over TLS with client certificates, PostgreSQL with verify-full, NATS."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bedwatch.migrate import migrate
from bedwatch.service import Service
from bedwatch.settings import Settings, SettingsError, load_settings
from bedwatch.site import parse_site
from ingest.db import DatabaseUnavailable, ensure_database
from ingest.mqtt import MqttSession
from ingest.registry import store_site
from ingest.settings import DatabaseSettings, MqttSettings
from simulators.runner import run_fleet
from tests.bedwatch.test_service import bedwatch_run
from tests.ingest.test_end_to_end import SITE, T0, Recorder, count
from tests.simulators.test_fleet import Listener, _config
from tests.support import (
    Device,
    Mosquitto,
    NatsServer,
    PrivateCA,
    PrivatePostgres,
    ServiceThread,
    query,
    service_env,
    settings_for,
    wait_until,
)

KEY_PASSWORD = "keyPassword7"


@dataclass(frozen=True)
class Pki:
    ca: PrivateCA  # ours: the broker's, the database's and every client's certificates
    other: PrivateCA  # someone else's, with certificates of the same names

    def files(self, name: str, *, ca: PrivateCA | None = None) -> dict[str, str]:
        """The service's TLS settings with `name`'s certificate of `ca` (ours by default)."""
        directory = (ca or self.ca).directory
        return {
            "ca_file": str(self.ca.cert),
            "cert_file": str(directory / f"{name}.crt"),
            "key_file": str(directory / f"{name}.key"),
        }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = PrivateCA.make(directory / "ours")
    other = PrivateCA.make(directory / "theirs", "Someone else's CA")
    for authority in (ca, other):
        authority.clients("bedwatch", "band-0001", "mat-0001")
    key = ca.directory / "bedwatch.key"
    subprocess.run(
        ["openssl", "pkey", "-in", key, "-aes256", "-passout", f"pass:{KEY_PASSWORD}",
         "-out", ca.directory / "encrypted.key"],
        check=True, capture_output=True,
    )  # fmt: skip
    (ca.directory / "key-password").write_text(KEY_PASSWORD + "\n")
    return Pki(ca, other)


@pytest.fixture(scope="module")
def broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"), tls=pki.ca)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postgres(pki: Pki) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(ssl_files=pki.ca.server("postgres"))
    try:
        server.start()
        yield server
    finally:
        server.close()


def verify_full(server: PrivatePostgres, database: str, ca: PrivateCA) -> str:
    """The URL as an operator writes it: libpq checks the server's certificate and name."""
    return f"{server.url(database)}?sslmode=verify-full&sslrootcert={ca.cert}"


def test_the_service_takes_telemetry_and_an_sos_over_tls_and_stores_them_over_verify_full(
    pki: Pki, broker: Mosquitto, postgres: PrivatePostgres, prefix: str
) -> None:
    with psycopg.connect(verify_full(postgres, "postgres", pki.ca), autocommit=True) as admin:
        admin.execute("CREATE DATABASE bedwatch")
    url = verify_full(postgres, "bedwatch", pki.ca)
    settings = settings_for(url, broker.tls_url, prefix).replace("mqtt", **pki.files("bedwatch"))
    migrate(settings)
    with psycopg.connect(url) as conn, conn.transaction():
        store_site(conn, parse_site(SITE))
    recorder = Recorder()
    service = Service(settings, components=[recorder])
    with ServiceThread(service):
        assert service.mqtt_events is not None
        wait_until(service.mqtt_events.connected.is_set)  # the second session, over TLS too
        band = Device(broker.tls_url, "band-0001", prefix, tls=pki.ca.context("band-0001"))
        band.send("telemetry", json.dumps({"seq": 1, "ts": T0, "hr": 72, "spo2": 97}))
        band.send("event", json.dumps({"seq": 1, "ts": T0 + 1000, "type": "sos"}))
        wait_until(lambda: count(url, "findings") >= 1)
        band.close()
        [(plain, total)] = query(
            url,
            "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FROM pg_stat_ssl s"
            " JOIN pg_stat_activity a USING (pid)"
            " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()",
        )
    assert query(url, "SELECT device_id, hr, spo2 FROM wristband_samples") == [
        ("band-0001", 72.0, 97.0)
    ]
    assert query(url, "SELECT type FROM device_events") == [("sos",)]
    assert [f.kind for f in recorder.seen] == ["sos"]
    assert total > 0  # the service's own connections ...
    assert plain == 0  # ... every one of them encrypted


def connack(port: int, context: ssl.SSLContext) -> bool:
    """Whether the broker accepts a client with this TLS context (a CONNACK of success)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"t-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv5,
        reconnect_on_failure=False,
    )
    client.tls_set_context(context)
    outcome: list[bool] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: outcome.append(not reason.is_failure)
    client.on_disconnect = lambda _c, _u, _f, _reason, _p: outcome.append(False)
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:  # refused in the handshake itself (TLS 1.2)
        return False
    client.loop_start()
    try:
        wait_until(lambda: outcome, 10)
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome[0]


@pytest.mark.parametrize("certificate", ["ours", "another CA's", "none"])
def test_a_device_needs_a_certificate_of_our_ca(
    pki: Pki, broker: Mosquitto, certificate: str
) -> None:
    context = pki.ca.context("band-0001" if certificate == "ours" else None)
    if certificate == "another CA's":
        directory = pki.other.directory
        context.load_cert_chain(directory / "band-0001.crt", directory / "band-0001.key")
    assert broker.tls_port is not None
    assert connack(broker.tls_port, context) is (certificate == "ours")


# Paho leaves the socket of a failed TLS handshake to the garbage collector, which warns.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("files", "says"),
    [
        ("a wrong CA file", "has a certificate we do not trust (self-signed certificate in"),
        ("another CA's certificate", "does it take our certificate (mqtt.cert_file)?"),
    ],
)
def test_the_service_says_why_tls_fails(
    pki: Pki, broker: Mosquitto, caplog: pytest.LogCaptureFixture, files: str, says: str
) -> None:
    settings = pki.files("bedwatch", ca=pki.other if "certificate" in files else None)
    if files == "a wrong CA file":
        settings["ca_file"] = str(pki.other.cert)
    client_id = f"bw-{uuid.uuid4().hex[:8]}"
    mqtt = Settings().replace("mqtt", url=broker.tls_url, client_id=client_id, **settings).mqtt
    session = MqttSession(mqtt, lambda *_: None)
    caplog.set_level(logging.WARNING, logger="ingest.mqtt")
    session.start()
    try:
        wait_until(lambda: session.last_error)
        assert not session.connected.is_set()
    finally:
        session.stop()
    assert says in (session.last_error or "")
    assert says in caplog.text


def test_postgres_with_a_certificate_of_another_ca_is_refused(
    pki: Pki, postgres: PrivatePostgres
) -> None:
    url = verify_full(postgres, "postgres", pki.other)
    with pytest.raises(DatabaseUnavailable) as refused:
        ensure_database(DatabaseSettings(url=url))
    message = str(refused.value)
    assert "certificate verify failed" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"CA_FILE": "{dir}/missing.crt"}, "mqtt.ca_file: cannot read {dir}/missing.crt: No such"),
        ({"CA_FILE": "{dir}/bedwatch.key"}, "mqtt.ca_file: no PEM certificate in"),
        ({"CERT_FILE": "{dir}/bedwatch.key"}, "mqtt.cert_file: no PEM certificate in"),
        ({"CERT_FILE": "{dir}/bedwatch.crt"}, "mqtt.key_file: no PEM private key in"),
        ({"KEY_FILE": "{dir}/bedwatch.key"}, "mqtt.key_file is set without mqtt.cert_file"),
        (
            {"CERT_FILE": "{dir}/bedwatch.crt", "KEY_FILE": "{dir}/mat-0001.key"},
            "mqtt.key_file: not the key of {dir}/bedwatch.crt",
        ),
        (
            {"CERT_FILE": "{dir}/bedwatch.crt", "KEY_FILE": "{dir}/encrypted.key"},
            "mqtt.key_file is encrypted: set mqtt.key_password_file",
        ),
        (
            {
                "CERT_FILE": "{dir}/bedwatch.crt",
                "KEY_FILE": "{dir}/encrypted.key",
                "KEY_PASSWORD_FILE": "{dir}/ca.crt",
            },
            "cannot load them (wrong password or damaged key)",
        ),
        ({"URL": "mqtt://127.0.0.1", "CA_FILE": "{dir}/ca.crt"}, "but mqtt.url is not mqtts://"),
    ],
)
def test_unusable_tls_files_are_named_at_start(
    pki: Pki, variables: dict[str, str], message: str
) -> None:
    directory = str(pki.ca.directory)
    environ = {"BEDWATCH_MQTT__URL": "mqtts://broker.example"} | {
        f"BEDWATCH_MQTT__{name}": value.format(dir=directory) for name, value in variables.items()
    }
    with pytest.raises(SettingsError) as bad:
        load_settings(environ=environ)
    assert message.format(dir=directory) in str(bad.value)


def test_an_encrypted_key_is_opened_with_its_password_file(pki: Pki) -> None:
    directory = pki.ca.directory
    settings = MqttSettings(
        url="mqtts://broker.example",
        ca_file=str(pki.ca.cert),
        cert_file=str(directory / "bedwatch.crt"),
        key_file=str(directory / "encrypted.key"),
        key_password_file=str(directory / "key-password"),
    )
    assert settings.tls_context() is not None


def test_bedwatch_run_with_a_missing_ca_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "ca.crt"
    run = bedwatch_run(
        service_env(BEDWATCH_MQTT_URL="mqtts://127.0.0.1", BEDWATCH_MQTT__CA_FILE=str(missing))
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"bedwatch: bad settings: mqtt.ca_file: cannot read {missing}: No such file or directory"
    ]


def test_simulated_devices_publish_over_tls_each_with_its_own_certificate(
    pki: Pki, broker: Mosquitto
) -> None:
    listener = Listener(f"test/{uuid.uuid4().hex}/bedwatch/v1", broker.port)
    try:
        config = _config(listener, beds=1, duration_s=300.0, speed=600.0)
        assert broker.tls_port is not None
        transport = dataclasses.replace(
            config.transport,
            port=broker.tls_port,
            tls=True,
            ca_file=str(pki.ca.cert),
            cert_file=f"{pki.ca.directory}/{{device}}.crt",
            key_file=f"{pki.ca.directory}/{{device}}.key",
        )
        result = run_fleet(dataclasses.replace(config, transport=transport))
        assert result.stats.devices == 2
        assert result.stats.acked == result.stats.published > 10
        wait_until(lambda: len(listener.got) == result.stats.published, 10)
        assert {device for device, *_ in listener.got} == {"mat-0001", "band-0001"}
    finally:
        listener.close()


def nats_hello(server: NatsServer, context: ssl.SSLContext, user: str, password: str) -> str:
    """NATS's own greeting, then TLS, a login and a PING: the server's first answer line."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        info = b""
        while not info.endswith(b"\r\n"):
            info += raw.recv(4096)
        greeting = json.loads(info.removeprefix(b"INFO "))
        assert greeting["tls_required"]
        assert greeting["jetstream"]
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                login = {"user": user, "pass": password, "verbose": False, "tls_required": True}
                tls.sendall(b"CONNECT " + json.dumps(login).encode() + b"\r\nPING\r\n")
                return tls.recv(4096).decode().split("\r\n")[0]
        except (ssl.SSLError, ConnectionError) as exc:
            return f"refused: {exc}"


def test_the_nats_helper_wants_tls_a_certificate_of_our_ca_and_a_password(
    pki: Pki, tmp_path: Path
) -> None:
    # nats-py is not a dependency yet: the server is checked with the protocol's first lines.
    server = NatsServer(tmp_path / "nats", pki.ca, {"worker": "workerSecret5"})
    try:
        server.start()
        worker = pki.ca.context("bedwatch")
        assert nats_hello(server, worker, "worker", "workerSecret5") == "PONG"
        assert nats_hello(server, worker, "worker", "wrong") == "-ERR 'Authorization Violation'"
        stranger = pki.ca.context()
        directory = pki.other.directory
        stranger.load_cert_chain(directory / "bedwatch.crt", directory / "bedwatch.key")
        assert nats_hello(server, stranger, "worker", "workerSecret5").startswith("refused")
        assert nats_hello(server, pki.ca.context(), "worker", "workerSecret5").startswith("refused")
    finally:
        server.stop()
