"""Ingest's settings sections: the MQTT session, the database, batching, retention."""

from __future__ import annotations

import dataclasses
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting is unknown, of the wrong type or out of its range."""


# A TLS client's files, one setting each (mqtt.ca_file, ...): see client_tls_context().
TLS_FILES = ("ca_file", "cert_file", "key_file", "key_password_file")


@dataclass(frozen=True, slots=True)
class MqttSettings:
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "bedwatch-ingest"
    topic_prefix: str = "bedwatch/v1"
    protocol: int = 5  # 5 for MQTT 5.0, 4 for 3.1.1
    keepalive_s: int = 30
    # Messages the broker may send before any is acknowledged: acks wait for the batch write,
    # so this bounds both memory and how much a batch can hold (MQTT 5 receive-maximum).
    receive_maximum: int = 10_000
    session_expiry_s: int = 7 * 24 * 3600
    reconnect_max_s: float = 30.0
    # TLS, with mqtts:// only. The CA that signed the broker's certificate (empty: the
    # system's trust store); the service's own certificate and key, for a broker that asks
    # for one; a file holding the password of an encrypted key.
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    key_password_file: str = ""

    def check(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise SettingsError(
                f"mqtt.url: expected mqtt://host[:port] or mqtts://..., got {self.url!r}"
            )
        self.tls_context()
        if not re.fullmatch(r"[A-Za-z0-9_/-]+", self.topic_prefix) or self.topic_prefix.endswith(
            "/"
        ):
            raise SettingsError(
                f"mqtt.topic_prefix: not a plain topic prefix: {self.topic_prefix!r}"
            )
        in_range("mqtt.protocol", self.protocol, 4, 5)
        in_range("mqtt.keepalive_s", self.keepalive_s, 5, 600)
        in_range("mqtt.receive_maximum", self.receive_maximum, 1, 65_535)
        in_range("mqtt.session_expiry_s", self.session_expiry_s, 0, 2**32 - 1)
        in_range("mqtt.reconnect_max_s", self.reconnect_max_s, 0.1, 3600)

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of an mqtts:// URL; None for mqtt://."""
        files = {name: getattr(self, name) for name in TLS_FILES}
        if urlsplit(self.url).scheme == "mqtts":
            return client_tls_context("mqtt", **files)
        # Certificates given for a plain URL would be ignored: the operator meant TLS.
        for name, path in files.items():
            if path:
                raise SettingsError(f"mqtt.{name} is set, but mqtt.url is not mqtts://")
        return None


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = "postgresql://postgres@127.0.0.1:5432/bedwatch"
    create_database: bool = True  # create the database named in url when it is missing
    migrate_on_start: bool = True
    use_timescaledb: bool = True  # use the extension when the server has it

    def check(self) -> None:
        if urlsplit(self.url).scheme not in ("postgresql", "postgres"):
            raise SettingsError("database.url: expected postgresql://...")


@dataclass(frozen=True, slots=True)
class IngestSettings:
    flush_max_rows: int = 5_000
    flush_interval_s: float = 0.1
    max_payload_bytes: int = 65_536
    max_batch_samples: int = 120
    future_skew_limit_s: int = 300
    stale_after_s: int = 7 * 24 * 3600
    keep_wave: bool = False  # store raw waveform blocks (a pad at 50 Hz: 1.4 M values a night)
    # QoS 0 telemetry and wave held while the database cannot take them, in MB of payload; past
    # half of it wave is no longer held, past all of it telemetry neither (both still analysed).
    # QoS 1 is bounded by the broker's in-flight window.
    max_held_qos0_mb: int = 64
    # On SIGTERM with the database away: how long to keep trying to store what is held before
    # stopping without it (unacknowledged QoS 1 messages are delivered again after a restart).
    stop_wait_s: float = 30.0

    def check(self) -> None:
        in_range("ingest.flush_max_rows", self.flush_max_rows, 1, 1_000_000)
        in_range("ingest.max_held_qos0_mb", self.max_held_qos0_mb, 1, 1_000_000)
        in_range("ingest.stop_wait_s", self.stop_wait_s, 0, 86_400)
        in_range("ingest.flush_interval_s", self.flush_interval_s, 0.001, 60)
        in_range("ingest.max_payload_bytes", self.max_payload_bytes, 1024, 16 * 1024 * 1024)
        in_range("ingest.max_batch_samples", self.max_batch_samples, 1, 100_000)
        in_range("ingest.future_skew_limit_s", self.future_skew_limit_s, 0, 86_400)
        in_range("ingest.stale_after_s", self.stale_after_s, 60, 10 * 365 * 86_400)


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    samples_days: int = 365
    compress_after_days: int = 7
    wave_days: int = 3
    quarantine_days: int = 90

    def check(self) -> None:
        for f in dataclasses.fields(self):
            in_range(f"retention.{f.name}", getattr(self, f.name), 1, 100 * 365)


def client_tls_context(
    section: str, *, ca_file: str, cert_file: str, key_file: str, key_password_file: str
) -> ssl.SSLContext:
    """A TLS client context that trusts `ca_file` alone (else the system's store), checks the
    server's name and shows the server `cert_file`. A file that cannot be used is a
    SettingsError naming its setting, found at start rather than at the first connection."""
    context = ssl.create_default_context()
    if ca_file:
        _read(f"{section}.ca_file", ca_file)
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except ssl.SSLError:
            raise SettingsError(f"{section}.ca_file: no PEM certificate in {ca_file}") from None
    if key_file and not cert_file:
        raise SettingsError(f"{section}.key_file is set without {section}.cert_file")
    if not cert_file:
        return context
    cert = _read(f"{section}.cert_file", cert_file)
    if "-----BEGIN CERTIFICATE-----" not in cert:
        raise SettingsError(f"{section}.cert_file: no PEM certificate in {cert_file}")
    key = _read(f"{section}.key_file", key_file) if key_file else cert
    if "PRIVATE KEY-----" not in key:
        raise SettingsError(f"{section}.key_file: no PEM private key in {key_file or cert_file}")
    password = ""
    if key_password_file:
        password = _read(f"{section}.key_password_file", key_password_file).rstrip("\r\n")
    elif "ENCRYPTED" in key:
        raise SettingsError(f"{section}.key_file is encrypted: set {section}.key_password_file")
    try:
        # A callable, even for no password: given None, OpenSSL would prompt on the terminal.
        context.load_cert_chain(cert_file, key_file or None, password=lambda: password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise SettingsError(f"{section}.key_file: not the key of {cert_file}") from None
        why = "wrong password or damaged key" if "ENCRYPTED" in key else "damaged PEM"
        raise SettingsError(
            f"{section}.cert_file, {section}.key_file: cannot load them ({why})"
        ) from None
    return context


def _read(name: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from None


def in_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise SettingsError(f"{name}: {value} is outside {low}..{high}")
