#!/usr/bin/env python3
"""Keep Mosquitto's password file in step with the site file: the service user and each device.

Usage (Python 3.11+, standard library only; run from the repository root):

    python3 deploy/mosquitto/credentials.py sync deploy/site.toml
    python3 deploy/mosquitto/credentials.py set mat-0101 [--secret-stdin]

`sync` writes deploy/mosquitto/passwd with the user `bedwatch` (password BEDWATCH_MQTT_PASSWORD
from .env or the environment) and every device of the site file. A device already in the file
keeps its secret; a new one gets a random secret, printed once on stdout as `<id> <secret>` for
provisioning the device; a device no longer in the site file is removed. `set` gives one device
a new random secret (or the one on stdin, for secrets set by the device maker).

Mosquitto reads the file at start and on SIGHUP: `docker compose kill -s SIGHUP mosquitto`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

SERVICE_USER = "bedwatch"
# The service's second session, for the event channel alone (its client id is its user name).
EVENTS_USER = f"{SERVICE_USER}-events"
# Past one machine (docker-compose.cluster.yml), a second bridge holds sessions of its own.
SECOND_BRIDGE = f"{SERVICE_USER}-2"
ENGINE_USER = f"{SERVICE_USER}-engine"  # `bedwatch engine`: commands to wristbands only
SERVICE_USERS = (SERVICE_USER, EVENTS_USER, SECOND_BRIDGE, f"{SECOND_BRIDGE}-events", ENGINE_USER)
SERVICE_PASSWORD_VAR = "BEDWATCH_MQTT_PASSWORD"
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # as in docs/protocol-v1.md
# Mosquitto 2's own format: $7$ = PBKDF2-HMAC-SHA512. Its default of 101 rounds is kept on
# purpose: device secrets are random (nothing to brute-force), and 10,000 beds reconnecting
# after an outage each cost the broker one hash.
HASH_ROUNDS = 101
SALT_BYTES = 12
# The uid and gid the eclipse-mosquitto image runs as: it must be able to read the file.
MOSQUITTO_OWNER = (1883, 1883)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PASSWD = ROOT / "deploy" / "mosquitto" / "passwd"
DEFAULT_ENV = ROOT / ".env"


class CredentialsError(ValueError):
    """A bad site file, device id or password file; the message says which."""


def hash_password(password: str, *, salt: bytes | None = None, rounds: int = HASH_ROUNDS) -> str:
    """The password-file form of a password, as `mosquitto_passwd` writes it."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"$7${rounds}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, hashed: str) -> bool:
    """True if `password` matches a `$7$` hash of the password file."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        raise CredentialsError(f"not a Mosquitto $7$ hash: {hashed[:12]}...")
    salt = base64.b64decode(parts[3])
    return secrets.compare_digest(hash_password(password, salt=salt, rounds=int(parts[2])), hashed)


def new_secret() -> str:
    """A device secret: 128 bits, URL- and shell-safe."""
    return secrets.token_urlsafe(16)


def site_devices(path: Path) -> list[str]:
    """The device ids of a site file, in its order; ids are checked, duplicates refused."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CredentialsError(f"{path}: {exc}") from exc
    ids: list[str] = []
    for i, resident in enumerate(doc.get("residents", [])):
        for device in resident.get("devices", []) if isinstance(resident, dict) else []:
            device_id = device.get("id") if isinstance(device, dict) else None
            if not isinstance(device_id, str):
                raise CredentialsError(f"{path}: residents[{i}]: a device without an id")
            check_device_id(device_id)
            if device_id in ids:
                raise CredentialsError(f"{path}: device {device_id} appears twice")
            ids.append(device_id)
    return ids


def check_device_id(device_id: str) -> None:
    if not DEVICE_ID.fullmatch(device_id):
        raise CredentialsError(f"bad device id {device_id!r} (see docs/protocol-v1.md)")
    if device_id in SERVICE_USERS:
        raise CredentialsError(f"{device_id!r} is one of the service's user names, not a device id")


def read_passwd(path: Path) -> dict[str, str]:
    """user -> hash, in file order; a missing file is an empty one."""
    if not path.exists():
        return {}
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed:
            raise CredentialsError(f"{path}:{number}: expected user:hash")
        entries[user] = hashed
    return entries


def write_passwd(path: Path, entries: Mapping[str, str]) -> None:
    """Replace the file at once (the broker never sees half of it), readable by Mosquitto only."""
    text = "".join(f"{user}:{hashed}\n" for user, hashed in entries.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".passwd-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        if os.geteuid() == 0:
            os.chown(tmp, *MOSQUITTO_OWNER)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as Docker Compose reads them from .env (quotes stripped)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def service_password(env_file: Path) -> str:
    password = os.environ.get(SERVICE_PASSWORD_VAR) or read_env_file(env_file).get(
        SERVICE_PASSWORD_VAR, ""
    )
    if not password:
        raise CredentialsError(
            f"{SERVICE_PASSWORD_VAR} is not set (in {env_file} or the environment)"
        )
    return password


def sync(passwd: Path, site: Path, env_file: Path) -> dict[str, str]:
    """Make the password file match the site file; return the new devices' secrets."""
    devices = site_devices(site)
    old = read_passwd(passwd)
    password = service_password(env_file)
    entries = {user: hash_password(password) for user in SERVICE_USERS}
    issued: dict[str, str] = {}
    for device_id in devices:
        if device_id in old:
            entries[device_id] = old[device_id]
        else:
            issued[device_id] = new_secret()
            entries[device_id] = hash_password(issued[device_id])
    for gone in sorted(set(old) - set(entries)):
        print(f"removed {gone}: not in {site}", file=sys.stderr)
    write_passwd(passwd, entries)
    return issued


def set_secret(passwd: Path, device_id: str, secret: str | None) -> str:
    """Give one device a secret (a new random one unless given); return it."""
    check_device_id(device_id)
    secret = new_secret() if secret is None else secret
    if not secret:
        raise CredentialsError("empty secret")
    entries = read_passwd(passwd)
    entries[device_id] = hash_password(secret)
    write_passwd(passwd, entries)
    return secret


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--passwd", type=Path, default=DEFAULT_PASSWD, help="password file")
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV, help="compose .env file")
    sub = parser.add_subparsers(dest="command", required=True)
    sync_cmd = sub.add_parser("sync", help="the service user and every device of a site file")
    sync_cmd.add_argument("site", type=Path, help="site file (TOML)")
    set_cmd = sub.add_parser("set", help="a new secret for one device")
    set_cmd.add_argument("device_id")
    set_cmd.add_argument("--secret-stdin", action="store_true", help="read the secret from stdin")
    args = parser.parse_args(argv)
    try:
        if args.command == "sync":
            issued = sync(args.passwd, args.site, args.env_file)
        else:
            given = sys.stdin.readline().strip() if args.secret_stdin else None
            secret = set_secret(args.passwd, args.device_id, given)
            issued = {} if args.secret_stdin else {args.device_id: secret}
    except CredentialsError as exc:
        print(f"credentials: {exc}", file=sys.stderr)
        return 2
    for device_id, secret in issued.items():
        print(f"{device_id} {secret}")
    print(f"wrote {args.passwd}; reload: docker compose kill -s SIGHUP mosquitto", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
