"""The deployment files as the tests read them: compose with interpolation, mosquitto.conf."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / ".env.example"
MOSQUITTO_CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
ACL = DEPLOY / "mosquitto" / "acl"
CREDENTIALS_TOOL = DEPLOY / "mosquitto" / "credentials.py"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "bedwatch.json"
READER_SQL = DEPLOY / "timescaledb" / "grafana-reader.psql"

# Values a site would put in .env: letters and digits, as .env.example asks.
SECRETS = {
    "POSTGRES_PASSWORD": "pgSecret1",
    "GRAFANA_DB_PASSWORD": "grafanaSecret2",
    "BEDWATCH_MQTT_PASSWORD": "mqttSecret3",
    "GRAFANA_ADMIN_PASSWORD": "adminSecret4",
}


class InterpolationError(ValueError):
    """A ${VAR:?message} whose variable is unset or empty: compose refuses to start."""


_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_]\w*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>.*))?", re.DOTALL)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: $VAR, ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["plain"]:
            return env.get(match["plain"], "")
        braced = _BRACED.fullmatch(match["braced"])
        if braced is None:
            raise InterpolationError(f"bad reference {match[0]!r}")
        value, op, arg = env.get(braced["name"]), braced["op"], braced["arg"] or ""
        missing = (not value) if op and op.startswith(":") else value is None
        if op in (":-", "-") and missing:
            return arg
        if op in (":?", "?") and missing:
            raise InterpolationError(f"{braced['name']}: {arg}")
        return value or ""

    return _REFERENCE.sub(substitute, text)


def referenced_variables(text: str) -> set[str]:
    names = set()
    for match in _REFERENCE.finditer(text):
        if match["plain"]:
            names.add(match["plain"])
        elif match["braced"] and (braced := _BRACED.fullmatch(match["braced"])):
            names.add(braced["name"])
    return names


def _walk(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_walk(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def compose(env: Mapping[str, str], path: Path = COMPOSE) -> dict[str, Any]:
    """A compose file with variables substituted from `env`, as `docker compose config`."""
    document = _walk(yaml.safe_load(path.read_text(encoding="utf-8")), env)
    assert isinstance(document, dict)
    return document


def env_example() -> dict[str, str]:
    """The variables .env.example sets (commented-out optional ones are not set)."""
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def env_example_mentions() -> set[str]:
    """Every variable .env.example names, set or commented out."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def site_env() -> dict[str, str]:
    """.env as an operator fills it in: the example with its secrets set."""
    return {**env_example(), **SECRETS}


def mosquitto_directives(text: str) -> list[tuple[str, str]]:
    """(option, value) pairs of a mosquitto.conf, comments and blank lines dropped."""
    pairs = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            option, _, value = line.partition(" ")
            pairs.append((option, value.strip()))
    return pairs


def mosquitto_options() -> dict[str, str]:
    """Single-valued options of the shipped mosquitto.conf (the last one wins)."""
    return dict(mosquitto_directives(MOSQUITTO_CONF.read_text(encoding="utf-8")))


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
