"""Test helpers: private brokers, databases, a service on a thread, a firmware-like publisher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql

from bedwatch.service import Service
from bedwatch.settings import Settings

ADMIN_URL = os.environ.get(
    "BEDWATCH_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SHARED_BROKER = os.environ.get("BEDWATCH_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


def service_env(**settings: str) -> dict[str, str]:
    """The environment for a `bedwatch` subprocess: this one without any BEDWATCH_* variable
    (the harness's own BEDWATCH_TEST_* would be unknown settings), plus `settings`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BEDWATCH_")}
    return base | settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database for one test; dropped afterwards."""
    name = f"bw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    try:
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


CERTS_TOOL = Path(__file__).resolve().parents[1] / "deploy" / "tls" / "certs.py"


@dataclass(frozen=True)
class PrivateCA:
    """A certificate authority of the test's own, made with the shipped deploy/tls/certs.py."""

    directory: Path

    @classmethod
    def make(cls, directory: Path, name: str = "BedWatch test CA") -> PrivateCA:
        ca = cls(directory)
        ca._certs("ca", "--name", name)
        return ca

    @property
    def cert(self) -> Path:
        return self.directory / "ca.crt"

    def server(self, name: str) -> tuple[Path, Path]:
        """A certificate and key for a server on this machine (localhost, 127.0.0.1)."""
        self._certs("server", name, "--owner", f"{os.getuid()}:{os.getgid()}")
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"

    def clients(self, *names: str) -> None:
        self._certs("client", *names)

    def context(self, client: str | None = None) -> ssl.SSLContext:
        """A client's TLS context that trusts this CA, with `client`'s certificate if given."""
        context = ssl.create_default_context(cafile=self.cert)
        if client is not None:
            cert, key = self.directory / f"{client}.crt", self.directory / f"{client}.key"
            if not cert.exists():
                self.clients(client)
            context.load_cert_chain(cert, key)
        return context

    def _certs(self, *args: str) -> None:
        command = [sys.executable, str(CERTS_TOOL), "--dir", str(self.directory), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=30)


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence {persistence}
persistence_location {dir}/
max_queued_messages 1000000
max_inflight_messages 1000
log_dest file {dir}/mosquitto.log
user root
"""
# A second listener for MQTT over TLS; a client without a certificate of `cafile` is refused.
MOSQUITTO_TLS = """
listener {port} 127.0.0.1
cafile {ca}
certfile {cert}
keyfile {key}
require_certificate true
"""


class Mosquitto:
    """A private Mosquitto on a free port, with the settings a deployment should use."""

    def __init__(
        self, directory: Path, *, persistence: bool = False, tls: PrivateCA | None = None
    ) -> None:
        """`tls`: also listen for MQTT over TLS (`tls_port`), with a server certificate of
        this CA, to clients with a certificate of it."""
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "mosquitto.conf"
        conf = MOSQUITTO_CONF.format(
            port=self.port, dir=directory, persistence=str(persistence).lower()
        )
        self.tls_port: int | None = None
        if tls is not None:
            self.tls_port = free_port()
            cert, key = tls.server(f"mosquitto-{self.tls_port}")
            conf += MOSQUITTO_TLS.format(port=self.tls_port, ca=tls.cert, cert=cert, key=key)
        self.conf.write_text(conf)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        assert self.tls_port is not None, "started without tls"
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._proc = subprocess.Popen([binary, "-c", str(self.conf)])
        wait_for_port(self.port)
        if self.tls_port is not None:
            wait_for_port(self.tls_port)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


PG_BIN = Path(os.environ.get("BEDWATCH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    """A PostgreSQL server of its own on a free port, for tests that stop or break it.

    It lives in a directory of its own under the system's temporary directory (run as root, the
    server runs as the `postgres` user, which must be able to reach it). `stop()` and `start()`
    can be called again and again; `close()` ends the server and removes its directory.
    """

    def __init__(self, *, ssl_files: tuple[Path, Path] | None = None) -> None:
        """`ssl_files`: a server certificate and key; with them, clients may use TLS."""
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="bedwatch-pg-"))
        self.data = self.directory / "data"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            shutil.chown(self.directory, self._user)
        self._options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        if ssl_files is not None:
            self._options += self._ssl_options(*ssl_files)
        try:
            self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                "-E", "UTF8", "--locale", "C.UTF-8",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ssl_options(self, cert: Path, key: Path) -> str:
        # The server refuses a key that others may read, or that is not its user's.
        for source in (cert, key):
            target = self.directory / source.name
            shutil.copy(source, target)
            target.chmod(0o600)
            if self._user is not None:
                shutil.chown(target, self._user)
        return (
            f" -c ssl=on -c ssl_cert_file={self.directory / cert.name}"
            f" -c ssl_key_file={self.directory / key.name}"
        )

    def _run(self, tool: str, *args: str) -> None:
        command = [str(PG_BIN / tool), *args]
        done = subprocess.run(
            command, check=False, capture_output=True, user=self._user, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr.decode(errors='replace').strip()}")

    def start(self) -> None:
        log = str(self.directory / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_postgres(*, ssl_files: tuple[Path, Path] | None = None) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(ssl_files=ssl_files)
    try:
        server.start()
        yield server
    finally:
        server.close()


NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsServer:
    """A private nats-server (Debian's 2.9) with JetStream on free ports; never the machine's own
    instance on 4222 (tests stop and kill these). Its JetStream store is kept in `directory`, so
    a restarted server comes back with its data.

    `ca`: as across machines, TLS only, with a certificate of that CA required of every client;
    `users`: a user name and password required too. `mqtt`: an MQTT listener as well
    (`mqtt_port`). `routes`: the cluster ports of the other nodes of a cluster (`nats_servers`
    in tests/nats.py sets them)."""

    def __init__(
        self,
        directory: Path,
        ca: PrivateCA | None = None,
        users: Mapping[str, str] | None = None,
        *,
        name: str = "n1",
        mqtt: bool = False,
    ) -> None:
        self.name = name
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.monitor_port = free_port()
        self.cluster_port = free_port()
        self.mqtt_port = free_port() if mqtt else None
        self.routes: list[int] = []
        self.ca = ca
        self._tls = ""
        if ca is not None:
            cert, key = ca.server(f"nats-{self.port}")
            self._tls = (
                f'tls {{ ca_file: "{ca.cert}", cert_file: "{cert}", key_file: "{key}",'
                " verify: true, timeout: 2 }\n"
            )
        self._users = ""
        if users:
            logins = [{"user": user, "password": password} for user, password in users.items()]
            self._users = f"authorization {{ users: {json.dumps(logins)} }}\n"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'tls' if self.ca is not None else 'nats'}://127.0.0.1:{self.port}"

    def config(self) -> str:
        text = (
            (
                f"server_name: {self.name}\n"
                f"listen: 127.0.0.1:{self.port}\n"
                f"http: 127.0.0.1:{self.monitor_port}\n"
                f'jetstream {{ store_dir: "{self.directory / "js"}", max_memory_store: 64MB,'
                " max_file_store: 1GB }\n"
            )
            + self._tls
            + self._users
        )
        if self.routes:
            # Routes stay plain: every node of a test's cluster is on this machine's loopback.
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            text += (
                f"cluster {{ name: bw, listen: 127.0.0.1:{self.cluster_port},"
                f" routes: [{routes}] }}\n"
            )
        if self.mqtt_port is not None:
            text += f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}\n"
        return text

    def start(self, *, healthy: bool = True) -> None:
        """Started; with `healthy`, once JetStream is ready (a node of a cluster is not until
        the cluster has a meta leader: start them all, then `wait_healthy` each)."""
        conf = self.directory / "nats.conf"
        conf.write_text(self.config())
        with (self.directory / "nats.log").open("ab") as log:
            self._proc = subprocess.Popen([NATS_SERVER, "-c", str(conf)], stdout=log, stderr=log)
        wait_for_port(self.port)
        if healthy:
            self.wait_healthy()

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        # /healthz answers 200 once JetStream is ready, not merely once the port is open.
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.monitor_port}/healthz"), timeout_s)

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with `kill`), and wait for the end."""
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def monitor(self, path: str) -> Any:
        """A monitoring endpoint's JSON (`connz`, `jsz`, ...)."""
        url = f"http://127.0.0.1:{self.monitor_port}/{path}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.loads(answer.read())


def healthy(addr: str) -> bool:
    """The service at `addr` (host:port) answers /health with 200: broker and database up."""
    return http_ok(f"http://{addr}/health")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port}")


def wait_until(check: Callable[[], Any], timeout_s: float = 15.0, every_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {value!r})")
        time.sleep(every_s)


T = TypeVar("T")


class ServiceThread:
    """The service on its own event loop in a thread, so a test can act as the devices."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="service", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self.service.run())
        except BaseException as exc:
            self.error = exc
        finally:
            self._loop.close()

    def __enter__(self) -> Service:
        self._thread.start()
        wait_until(lambda: self.service.ready.is_set() or self.error, 30)
        if self.error:
            raise self.error
        assert self.service.mqtt is not None
        wait_until(self.service.mqtt.connected.is_set, 15)
        return self.service

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def call(self, step: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 30.0) -> T:
        """Run a coroutine of the service's on its event loop, and wait for its result."""
        return asyncio.run_coroutine_threadsafe(step(), self._loop).result(timeout_s)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.service.stop)
            self._thread.join(30)
        if self.error:
            raise self.error


class Device:
    """A device as firmware would connect: client id = device id, QoS 1, a Last Will.

    The client id is the device id within the test's topic prefix: tests that run at the same
    time on the shared broker may name the same device, and one client id in two connections
    would make the broker drop the older one (and send its Last Will)."""

    def __init__(
        self,
        url: str,
        device_id: str,
        prefix: str,
        *,
        will: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.device_id = device_id
        self.prefix = prefix
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}@{prefix}")
        if will:
            self.client.will_set(self.topic("status"), b'{"state":"offline"}', qos=1, retain=True)
        if tls is not None:
            self.client.tls_set_context(tls)
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.client.connect(parts.hostname or "127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def topic(self, channel: str) -> str:
        return f"{self.prefix}/{self.device_id}/{channel}"

    def send(
        self, channel: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
    ) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        info = self.client.publish(self.topic(channel), data, qos=qos, retain=retain)
        info.wait_for_publish(10)

    def send_raw(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def database_down(database_url: str) -> Iterator[None]:
    """This test's database refuses every connection (the shared server stays up)."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            yield
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(name)
                )
            )


def unique_prefix() -> str:
    return f"test/{uuid.uuid4().hex[:10]}/bedwatch/v1"


def settings_for(database_url: str, mqtt_url: str, prefix: str, **ingest: Any) -> Settings:
    settings = Settings().replace("database", url=database_url, create_database=False)
    settings = settings.replace(
        "mqtt", url=mqtt_url, topic_prefix=prefix, client_id=f"bw-{uuid.uuid4().hex[:8]}"
    )
    # A port of its own, not the default 8080, for a component that serves HTTP: tests run at
    # the same time.
    settings = settings.replace("http", addr=f"127.0.0.1:{free_port()}")
    if ingest:
        settings = settings.replace("ingest", **ingest)
    return settings


def query(url: str, statement: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement, args).fetchall()
