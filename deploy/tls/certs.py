#!/usr/bin/env python3
"""A private certificate authority for BedWatch's connections between machines, with openssl.

Usage (Python 3.11+ and the openssl command; run from the repository root):

    python3 deploy/tls/certs.py ca
    python3 deploy/tls/certs.py server mosquitto --dns mqtt.example.org --ip 192.0.2.10
    python3 deploy/tls/certs.py client bedwatch mat-0101 band-0101

`ca` makes ca.crt and ca.key (once: it refuses to replace them). `server NAME` makes NAME.crt
and NAME.key for a server reached under the given names and addresses (besides NAME itself,
localhost and 127.0.0.1); `client NAME...` makes a client certificate for each name (common
name = NAME: the service's MQTT user, a device id). Everything goes to deploy/tls/ (--dir).

Give each machine only its own .key and ca.crt. ca.key signs new certificates: keep it off the
broker and the servers (offline is best); anyone holding it can make a certificate we trust.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CA_DAYS = 3650
DAYS = 825  # what browsers accept for a server certificate; devices are re-issued in time
# The uid and gid the eclipse-mosquitto image runs as: it must be able to read its key.
MOSQUITTO_OWNER = (1883, 1883)
CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]


class CertsError(ValueError):
    """A bad name or address, missing CA, or a failed openssl command; the message says which."""


def openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CertsError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_ca(directory: Path, name: str = "BedWatch private CA") -> Path:
    """ca.crt and ca.key in `directory`; refuses to replace an existing CA."""
    cert, key = directory / "ca.crt", directory / "ca.key"
    if cert.exists() or key.exists():
        raise CertsError(f"{cert} or {key} exists: a new CA would void every certificate")
    directory.mkdir(parents=True, exist_ok=True)
    openssl(
        "req", "-x509", "-new", *CURVE, "-nodes", "-keyout", str(key), "-out", str(cert),
        "-days", str(CA_DAYS), "-subj", f"/CN={name}", "-set_serial", _serial(),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    key.chmod(0o600)
    return cert


def issue(
    directory: Path,
    name: str,
    *,
    server: bool,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    days: int = DAYS,
) -> tuple[Path, Path]:
    """NAME.crt and NAME.key signed by the CA in `directory`: a server's or a client's."""
    if not NAME.fullmatch(name):
        raise CertsError(f"bad name {name!r}: letters, digits, '.', '_' and '-'")
    ca_cert, ca_key = directory / "ca.crt", directory / "ca.key"
    if not ca_key.exists():
        raise CertsError(f"no CA in {directory}: run `certs.py ca` first")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid",
    ]
    if server:
        extensions.append(f"subjectAltName={alt_names(name, dns, ips)}")
    with tempfile.TemporaryDirectory() as tmp:
        request, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        ext.write_text("\n".join(extensions) + "\n")
        openssl("req", "-new", *CURVE, "-nodes", "-keyout", str(key), "-out", str(request),
                "-subj", f"/CN={name}")  # fmt: skip
        key.chmod(0o600)
        openssl(
            "x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-set_serial", _serial(), "-days", str(days), "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
    return cert, key


def alt_names(name: str, dns: Sequence[str], ips: Sequence[str]) -> str:
    """The subjectAltName of a server: its name, the given ones, and this machine's loopback."""
    names = dict.fromkeys([name, *dns, "localhost"])
    addresses = dict.fromkeys([*ips, "127.0.0.1"])
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise CertsError(f"not an IP address: {address!r}") from None
    return ",".join([*(f"DNS:{n}" for n in names), *(f"IP:{a}" for a in addresses)])


def _serial() -> str:
    return f"0x{secrets.token_hex(16)}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the files go")
    parser.add_argument("--days", type=int, default=DAYS, help="validity of a new certificate")
    sub = parser.add_subparsers(dest="command", required=True)
    ca = sub.add_parser("ca", help="a new private CA (ca.crt, ca.key)")
    ca.add_argument("--name", default="BedWatch private CA", help="the CA's common name")
    server = sub.add_parser("server", help="a server certificate (the broker, a database)")
    server.add_argument("name", help="file name and common name, e.g. mosquitto")
    server.add_argument("--dns", action="append", default=[], help="another host name")
    server.add_argument("--ip", action="append", default=[], help="an IP address")
    server.add_argument(
        "--owner",
        default=":".join(map(str, MOSQUITTO_OWNER)),
        help="UID:GID to own the key when run as root (default: the Mosquitto image's)",
    )
    client = sub.add_parser("client", help="client certificates (the service, devices)")
    client.add_argument("names", nargs="+", help="common names: bedwatch, device ids")
    args = parser.parse_args(argv)
    try:
        if args.command == "ca":
            made = [make_ca(args.dir, args.name)]
        elif args.command == "server":
            cert, key = issue(args.dir, args.name, server=True, dns=args.dns, ips=args.ip,
                              days=args.days)  # fmt: skip
            if os.geteuid() == 0:
                uid, _, gid = args.owner.partition(":")
                os.chown(key, int(uid), int(gid or uid))
            made = [cert]
        else:
            made = [issue(args.dir, n, server=False, days=args.days)[0] for n in args.names]
    except CertsError as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 2
    for path in made:
        print(f"wrote {path} and {path.with_suffix('.key')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
