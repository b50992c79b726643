"""docker-compose.yml: services, pinned images, healthchecks, start order, mounts and settings."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bedwatch.settings import load_settings
from tests.deploy.files import (
    ACL,
    COMPOSE,
    MOSQUITTO_CONF,
    READER_SQL,
    ROOT,
    SECRETS,
    InterpolationError,
    compose,
    dockerignore,
    env_example,
    env_example_mentions,
    mosquitto_directives,
    mosquitto_options,
    raw_compose,
    referenced_variables,
    site_env,
)

SERVICES = {"mosquitto", "timescaledb", "bedwatch", "grafana"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    found = compose(site_env())["services"]
    assert isinstance(found, dict)
    return found


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(host path, container path, create_host_path) of each bind mount."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                mounts.append((source, target, True))
        elif volume["type"] == "bind":
            create = volume.get("bind", {}).get("create_host_path", True)
            mounts.append((volume["source"], volume["target"], create))
    return mounts


def host_path(container_path: str, service: dict[str, Any]) -> Path | None:
    """The repository file behind a path inside a container, through its bind mounts."""
    for source, target, _ in bind_mounts(service):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return (ROOT / source / container_path[len(target) :].lstrip("/")).resolve()
    return None


def test_the_four_services_with_pinned_images(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES
    images = {name: services[name]["image"] for name in SERVICES - {"bedwatch"}}
    for image in images.values():
        repository, _, tag = image.partition(":")
        assert tag not in ("", "latest"), image
        assert "$" not in tag, image
    assert images["mosquitto"].startswith("eclipse-mosquitto:2.")
    repository, _, tag = images["timescaledb"].partition(":")
    assert repository == "timescale/timescaledb"
    assert tag.endswith(("-pg15", "-pg16")), tag
    assert images["grafana"].startswith(("grafana/grafana-oss:11.", "grafana/grafana:11."))
    build = services["bedwatch"]["build"]
    assert build["context"] == "."
    assert (ROOT / build["dockerfile"]).is_file()
    for service in services.values():
        assert service["restart"] == "unless-stopped"


def test_secrets_come_from_env_and_are_required() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    mentioned = env_example_mentions()
    missing = referenced_variables(text) - mentioned
    assert not missing, f"not documented in deploy/.env.example: {sorted(missing)}"
    for name in SECRETS:
        assert f"${{{name}:?" in text, f"{name} must be required (${{{name}:?...}})"
        assert env_example()[name] == "", f".env.example must not ship a value for {name}"
        with pytest.raises(InterpolationError, match=name):
            compose({**site_env(), name: ""})
    compose(site_env())  # filled in, it is complete


def test_start_order_waits_for_healthy_database_and_broker(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("mosquitto", "timescaledb", "grafana"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert len(check["test"]) > 1, name
        assert check["retries"] >= 3, name
    assert "pg_isready -h 127.0.0.1" in services["timescaledb"]["healthcheck"]["test"][1]
    assert services["bedwatch"]["depends_on"] == {
        "timescaledb": {"condition": "service_healthy"},
        "mosquitto": {"condition": "service_healthy"},
    }
    assert services["grafana"]["depends_on"] == {"timescaledb": {"condition": "service_healthy"}}
    # Time to store and acknowledge what it holds: docker's default is 10 s.
    assert services["bedwatch"]["stop_grace_period"] == "60s"


def test_service_settings_point_at_the_compose_services(
    services: dict[str, dict[str, Any]],
) -> None:
    env = services["bedwatch"]["environment"]
    config = host_path(env["BEDWATCH_CONFIG"], services["bedwatch"])
    assert config is not None
    assert config.is_file()
    settings = load_settings(environ=env | {"BEDWATCH_CONFIG": str(config)})

    mqtt = urlsplit(settings.mqtt.url)
    assert (mqtt.hostname, mqtt.port) == ("mosquitto", 1883)
    assert (mqtt.username, mqtt.password) == ("bedwatch", SECRETS["BEDWATCH_MQTT_PASSWORD"])
    assert ("listener", "1883") in mosquitto_directives(
        (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    )

    database = urlsplit(settings.database.url)
    db_env = services["timescaledb"]["environment"]
    assert (database.hostname, database.port) == ("timescaledb", 5432)
    assert (database.username, database.password) == (
        db_env["POSTGRES_USER"],
        SECRETS["POSTGRES_PASSWORD"],
    )
    assert database.path == f"/{db_env['POSTGRES_DB']}"
    assert settings.database.migrate_on_start
    assert settings.database.use_timescaledb

    host, _, port = settings.http.addr.rpartition(":")
    assert host == "0.0.0.0"  # reachable from outside the container
    assert services["bedwatch"]["ports"] == [f"127.0.0.1:8080:{port}"]

    # The broker must let the service have as many messages in flight as it asks for, and the
    # ACL must give its user the topic prefix it subscribes to.
    options = mosquitto_options()
    assert settings.mqtt.protocol == 5
    assert int(options["max_inflight_messages"]) >= settings.mqtt.receive_maximum
    acl = ACL.read_text(encoding="utf-8")
    assert f"user {mqtt.username}\ntopic read {settings.mqtt.topic_prefix}/#\n" in acl
    assert f"topic write {settings.mqtt.topic_prefix}/+/cmd\n" in acl
    assert settings.mqtt.client_id == mqtt.username  # the broker forces it anyway


def test_mosquitto_config_as_ingest_needs_it(services: dict[str, dict[str, Any]]) -> None:
    options = mosquitto_options()
    assert options["allow_anonymous"] == "false"
    assert options["persistence"] == "true"
    assert options["use_username_as_clientid"] == "true"
    assert int(options["max_queued_messages"]) >= 1_000_000
    assert int(options["max_inflight_messages"]) >= 1_000
    mosquitto = services["mosquitto"]
    for option in ("password_file", "acl_file"):
        path = options[option]
        assert host_path(path, mosquitto) is not None, f"{option} {path} is not mounted"
    assert host_path(options["acl_file"], mosquitto) == ACL.resolve()
    data = options["persistence_location"].rstrip("/")
    assert f"mosquitto-data:{data}" in mosquitto["volumes"]
    # Plain MQTT stays on the host; what comes from elsewhere comes over TLS.
    assert mosquitto["ports"] == ["127.0.0.1:1883:1883", "8883:8883"]


def test_the_tls_listener_gets_its_files_and_not_the_cas_key(
    services: dict[str, dict[str, Any]],
) -> None:
    directives = mosquitto_directives(MOSQUITTO_CONF.read_text(encoding="utf-8"))
    tls = directives[directives.index(("listener", "8883")) :]
    options = dict(tls)
    assert options["require_certificate"] == "true"
    assert options["use_username_as_clientid"] == "true"
    assert "use_identity_as_username" not in options  # see the comment in mosquitto.conf
    mosquitto = services["mosquitto"]
    tls_dir = (ROOT / "deploy" / "tls").resolve()
    for option in ("cafile", "certfile", "keyfile"):
        path = host_path(options[option], mosquitto)
        assert path is not None, f"{option} {options[option]} is not mounted"
        assert path.parent == tls_dir
    mounted = [source for source, _, _ in bind_mounts(mosquitto)]
    assert not [source for source in mounted if source.endswith("ca.key")]
    # Made on the machine, never committed: certs.py's output is ignored by git.
    ignored = subprocess.run(
        ["git", "check-ignore", "deploy/tls/ca.key", "deploy/tls/mosquitto.key"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    assert ignored == ["deploy/tls/ca.key", "deploy/tls/mosquitto.key"]


def test_mounted_files_exist_and_volumes_are_declared(
    services: dict[str, dict[str, Any]],
) -> None:
    declared = set(raw_compose()["volumes"])
    for name, service in services.items():
        for source, target, create in bind_mounts(service):
            path = ROOT / source
            # A missing file would be created as an empty directory: only the generated
            # password file may be missing, and compose must then refuse, not create it.
            assert path.exists() or not create, f"{name}: {source} -> {target}"
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/")):
                assert volume.split(":")[0] in declared, f"{name}: {volume}"
    assert declared == {"mosquitto-data", "timescaledb-data", "grafana-data"}


def test_only_the_broker_is_open_to_the_network(services: dict[str, dict[str, Any]]) -> None:
    assert "ports" not in services["timescaledb"]
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_secrets_stay_out_of_the_image() -> None:
    ignored = dockerignore()
    assert ".env" in ignored
    assert "deploy/" in ignored


def test_database_init_adds_to_the_images_own_set_up(services: dict[str, dict[str, Any]]) -> None:
    timescaledb = services["timescaledb"]
    targets = [target for _, target, _ in bind_mounts(timescaledb)]
    # The image keeps its TimescaleDB install and tuning scripts in this directory.
    assert "/docker-entrypoint-initdb.d" not in targets
    script = host_path("/docker-entrypoint-initdb.d/010_grafana_reader.sh", timescaledb)
    assert script is not None
    assert os.access(script, os.X_OK)  # run, not sourced into the entrypoint
    [sql_path] = re.findall(r"-f (\S+)", script.read_text(encoding="utf-8"))
    assert host_path(sql_path, timescaledb) == READER_SQL.resolve()
    env = timescaledb["environment"]
    assert env["GRAFANA_DB_PASSWORD"] == SECRETS["GRAFANA_DB_PASSWORD"]
