"""docker-compose.cluster.yml: three NATS nodes, two bridges, three workers and the engine,
each with settings the roles accept and MQTT identities the broker knows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bedwatch.settings import load_settings
from tests.deploy.files import ACL, DEPLOY, ROOT, SECRETS, compose, site_env
from tests.deploy.test_credentials import SERVICE_USERS

CLUSTER = ROOT / "docker-compose.cluster.yml"
NATS_CONF = DEPLOY / "nats" / "nats.conf"


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    found = compose(site_env(), CLUSTER)["services"]
    assert isinstance(found, dict)
    return found


def role_settings(service: dict[str, Any]) -> Any:
    env = dict(service["environment"])
    env["BEDWATCH_CONFIG"] = str(DEPLOY / "bedwatch.toml")
    return load_settings(environ=env)


def test_three_nats_nodes_of_one_cluster(services: dict[str, dict[str, Any]]) -> None:
    nodes = [services[f"nats-{i}"] for i in (1, 2, 3)]
    assert {n["image"] for n in nodes} == {"nats:2.10.24-alpine"}  # pinned
    assert [n["environment"]["SERVER_NAME"] for n in nodes] == ["nats-1", "nats-2", "nats-3"]
    volumes = [v for n in nodes for v in n["volumes"] if v.endswith(":/data")]
    assert len(set(volumes)) == 3  # a store each
    text = NATS_CONF.read_text(encoding="utf-8")
    for name in ("nats-1", "nats-2", "nats-3"):
        assert f"nats-route://{name}:6222" in text


def test_the_nats_config_is_valid_for_every_node(tmp_path: Path) -> None:
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(server).exists():
        pytest.skip("nats-server is not installed (Debian's nats-server package)")
    for name in ("nats-1", "nats-2", "nats-3"):
        checked = subprocess.run(
            [server, "-c", str(NATS_CONF), "-t"], env={"SERVER_NAME": name},
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr


def test_roles_share_the_image_and_reach_every_node(services: dict[str, dict[str, Any]]) -> None:
    image = compose(site_env())["services"]["bedwatch"]["image"]
    roles = ["bridge-1", "bridge-2", "worker-1", "worker-2", "worker-3", "engine"]
    for name in roles:
        service = services[name]
        assert service["image"] == image
        settings = role_settings(service)
        hosts = [urlsplit(u).hostname for u in settings.cluster.urls]
        assert hosts == ["nats-1", "nats-2", "nats-3"], name
        assert settings.cluster.replicas == 3
        assert urlsplit(settings.database.url).hostname == "timescaledb"
    assert [services[w]["command"] for w in roles[2:5]] == [
        ["worker", "--id", f"worker-{i}"] for i in (1, 2, 3)
    ]
    assert services["engine"]["command"] == ["engine"]
    # One `bedwatch run` would take the same messages: it is left to its profile.
    assert services["bedwatch"]["profiles"] == ["single"]


def test_each_mqtt_session_has_an_identity_of_its_own(services: dict[str, dict[str, Any]]) -> None:
    """The broker takes the user name as the client id: two sessions under one name would take
    each other's place. Every role's user is in the ACL and gets a password from credentials.py."""
    acl = ACL.read_text(encoding="utf-8")
    users = []
    for name in ("bridge-1", "bridge-2", "engine"):
        url = urlsplit(role_settings(services[name]).mqtt.url)
        assert url.password == SECRETS["BEDWATCH_MQTT_PASSWORD"]
        users.append(url.username)
        if name.startswith("bridge"):
            users.append(f"{url.username}-events")  # the bridge's emergency lane
    assert len(set(users)) == len(users)
    for user in users:
        assert f"user {user}\n" in acl
        assert user in SERVICE_USERS
    engine = acl.split("user bedwatch-engine\n", 1)[1].split("\n\n", 1)[0]
    assert engine.strip() == "topic write bedwatch/v1/+/cmd"  # commands only, no data
