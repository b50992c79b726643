"""Settings: each component's section, from TOML and BEDWATCH_* variables, checked at start."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerts.settings import AlertsSettings
from bedwatch.cluster.settings import ClusterSettings
from ingest.settings import (
    DatabaseSettings,
    IngestSettings,
    MqttSettings,
    RetentionSettings,
    SettingsError,
)

__all__ = ["Settings", "SettingsError", "load_settings"]


@dataclass(frozen=True, slots=True)
class HttpSettings:
    addr: str = "127.0.0.1:8080"

    def check(self) -> None:
        host, sep, port = self.addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65_535:
            raise SettingsError(f"http.addr: expected host:port, got {self.addr!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

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
    "BEDWATCH_NATS_URL": ("cluster", "nats_url"),
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
