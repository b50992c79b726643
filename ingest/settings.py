"""Service settings: a TOML file and BEDWATCH_* environment variables, checked strictly at start."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting is unknown, of the wrong type or out of its range."""


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

    def check(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise SettingsError(
                f"mqtt.url: expected mqtt://host[:port] or mqtts://..., got {self.url!r}"
            )
        if not re.fullmatch(r"[A-Za-z0-9_/-]+", self.topic_prefix) or self.topic_prefix.endswith(
            "/"
        ):
            raise SettingsError(
                f"mqtt.topic_prefix: not a plain topic prefix: {self.topic_prefix!r}"
            )
        _in_range("mqtt.protocol", self.protocol, 4, 5)
        _in_range("mqtt.keepalive_s", self.keepalive_s, 5, 600)
        _in_range("mqtt.receive_maximum", self.receive_maximum, 1, 65_535)
        _in_range("mqtt.session_expiry_s", self.session_expiry_s, 0, 2**32 - 1)
        _in_range("mqtt.reconnect_max_s", self.reconnect_max_s, 0.1, 3600)


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
        _in_range("ingest.flush_max_rows", self.flush_max_rows, 1, 1_000_000)
        _in_range("ingest.max_held_qos0_mb", self.max_held_qos0_mb, 1, 1_000_000)
        _in_range("ingest.stop_wait_s", self.stop_wait_s, 0, 86_400)
        _in_range("ingest.flush_interval_s", self.flush_interval_s, 0.001, 60)
        _in_range("ingest.max_payload_bytes", self.max_payload_bytes, 1024, 16 * 1024 * 1024)
        _in_range("ingest.max_batch_samples", self.max_batch_samples, 1, 100_000)
        _in_range("ingest.future_skew_limit_s", self.future_skew_limit_s, 0, 86_400)
        _in_range("ingest.stale_after_s", self.stale_after_s, 60, 10 * 365 * 86_400)


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    samples_days: int = 365
    compress_after_days: int = 7
    wave_days: int = 3
    quarantine_days: int = 90

    def check(self) -> None:
        for f in dataclasses.fields(self):
            _in_range(f"retention.{f.name}", getattr(self, f.name), 1, 100 * 365)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    addr: str = "127.0.0.1:8080"

    def check(self) -> None:
        host, sep, port = self.addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65_535:
            raise SettingsError(f"http.addr: expected host:port, got {self.addr!r}")


@dataclass(frozen=True, slots=True)
class AlertsSettings:
    enabled: bool = True
    public_url: str = "http://127.0.0.1:8080"  # how people reach the HTTP API (links in messages)
    link_secret: str = ""  # signs acknowledge links; empty: a key kept in the database
    link_ttl_s: int = 24 * 3600
    delivery_timeout_s: float = 10.0  # one attempt on one channel, whatever the channel does
    max_parallel_deliveries: int = 16
    scheduler_interval_s: float = 0.25  # how often escalations, reminders and retries are looked at
    serve_http: bool = True  # the acknowledge API on http.addr

    def check(self) -> None:
        if urlsplit(self.public_url).scheme not in ("http", "https"):
            raise SettingsError(
                f"alerts.public_url: expected http(s)://..., got {self.public_url!r}"
            )
        if self.link_secret and len(self.link_secret) < 16:
            raise SettingsError("alerts.link_secret: at least 16 characters (or empty)")
        _in_range("alerts.link_ttl_s", self.link_ttl_s, 60, 30 * 86_400)
        _in_range("alerts.delivery_timeout_s", self.delivery_timeout_s, 0.1, 300)
        _in_range("alerts.max_parallel_deliveries", self.max_parallel_deliveries, 1, 256)
        _in_range("alerts.scheduler_interval_s", self.scheduler_interval_s, 0.01, 60)


@dataclass(frozen=True, slots=True)
class Settings:
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)

    def check(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).check()

    def replace(self, section: str, **values: Any) -> Settings:
        """A copy with some values of one section changed (for tests and the CLI)."""
        new = dataclasses.replace(getattr(self, section), **values)
        settings = dataclasses.replace(self, **{section: new})
        settings.check()
        return settings


# The documented short names; any BEDWATCH_<SECTION>__<KEY> works too.
ENV_ALIASES = {
    "BEDWATCH_MQTT_URL": ("mqtt", "url"),
    "BEDWATCH_DATABASE_URL": ("database", "url"),
    "BEDWATCH_HTTP_ADDR": ("http", "addr"),
    "BEDWATCH_TOPIC_PREFIX": ("mqtt", "topic_prefix"),
}
ENV_CONFIG_FILE = "BEDWATCH_CONFIG"


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, overridden by the TOML file, overridden by the environment."""
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_CONFIG_FILE):
        path = Path(env[ENV_CONFIG_FILE])
    raw: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"{path}: {exc}") from exc
        for section, values in document.items():
            if not isinstance(values, dict):
                raise SettingsError(f"{path}: [{section}] must be a table")
            raw[section] = dict(values)
    for name, text in env.items():
        if not name.startswith("BEDWATCH_") or name == ENV_CONFIG_FILE:
            continue
        section, key = _env_target(name)
        raw.setdefault(section, {})[key] = _EnvText(text)
    settings = Settings(**{s: _build_section(s, values) for s, values in raw.items()})
    settings.check()
    return settings


class _EnvText(str):
    """A value that came from the environment, still to be parsed into the field's type."""


def _env_target(name: str) -> tuple[str, str]:
    if name in ENV_ALIASES:
        return ENV_ALIASES[name]
    rest = name.removeprefix("BEDWATCH_")
    section, sep, key = rest.partition("__")
    if not sep:
        known = ", ".join(sorted(ENV_ALIASES))
        raise SettingsError(f"{name}: unknown variable (use {known} or BEDWATCH_SECTION__KEY)")
    return section.lower(), key.lower()


_SECTIONS: dict[str, type[Any]] = {f.name: f.default_factory for f in dataclasses.fields(Settings)}  # type: ignore[misc]


def _build_section(section: str, values: dict[str, Any]) -> Any:
    cls = _SECTIONS.get(section)
    if cls is None:
        raise SettingsError(f"unknown settings section [{section}]; known: {', '.join(_SECTIONS)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    converted: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise SettingsError(f"unknown setting {section}.{key}; known: {', '.join(fields)}")
        default = getattr(cls(), key)
        converted[key] = _convert(f"{section}.{key}", value, type(default))
    return cls(**converted)


def _convert(name: str, value: Any, kind: type[Any]) -> Any:
    if isinstance(value, _EnvText):
        return _parse_env(name, str(value), kind)
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{name}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{name}: expected a whole number, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise SettingsError(f"{name}: expected a string, got {value!r}")
    return value


def _parse_env(name: str, text: str, kind: type[Any]) -> Any:
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise SettingsError(f"{name}: cannot read {text!r} as {kind.__name__}") from None
    return text


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise SettingsError(f"{name}: {value} is outside {low}..{high}")
