"""The [cluster] settings section: NATS JetStream, and how workers share partitions."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ingest.settings import SettingsError, in_range


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    nats_url: str = "nats://127.0.0.1:4222"  # several servers: comma-separated
    stream: str = "BW_IN"
    replicas: int = 1  # 3 on a three-node cluster
    max_age_s: int = 3 * 86_400  # how far back a partition can be replayed
    # Across machines: TLS with a private CA and a client certificate, and NATS credentials.
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    creds_file: str = ""  # a NATS credentials file (user JWT and nkey seed)
    worker_id: str = ""  # default: host name and process id
    lease_ttl_s: float = 10.0  # a dead worker's partitions are taken over after this
    checkpoint_every_s: float = 1.0
    metrics_addr: str = ""  # host:port for /metrics of a bridge or a worker ('' : none)

    def check(self) -> None:
        for url in self.urls:
            if urlsplit(url).scheme not in ("nats", "tls") or not urlsplit(url).hostname:
                raise SettingsError(f"cluster.nats_url: expected nats://host:port, got {url!r}")
        if not self.stream.replace("_", "").replace("-", "").isalnum():
            raise SettingsError(f"cluster.stream: not a stream name: {self.stream!r}")
        in_range("cluster.replicas", self.replicas, 1, 5)
        in_range("cluster.max_age_s", self.max_age_s, 60, 365 * 86_400)
        in_range("cluster.lease_ttl_s", self.lease_ttl_s, 1.0, 600.0)
        in_range("cluster.checkpoint_every_s", self.checkpoint_every_s, 0.05, 60.0)
        if bool(self.cert_file) != bool(self.key_file):
            raise SettingsError("cluster.cert_file and cluster.key_file go together")
        for name in ("ca_file", "cert_file", "key_file", "creds_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise SettingsError(f"cluster.{name}: no such file: {path}")

    @property
    def urls(self) -> list[str]:
        return urls_of(self.nats_url)

    def tls(self) -> ssl.SSLContext | None:
        """The context for NATS over TLS with our CA and certificate; None for plain or the
        system's trust store (a tls:// URL alone)."""
        if not (self.ca_file or self.cert_file):
            return None
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def urls_of(nats_url: str) -> list[str]:
    """The servers of a comma-separated list."""
    return [u.strip() for u in nats_url.split(",") if u.strip()]


def shown(nats_url: str) -> str:
    """The servers for logs and messages: a password in a URL (nats://user:password@host)
    replaced."""
    from ingest.db import redact  # here: ingest.db brings psycopg, which `--help` must not load

    return ",".join(redact(u) for u in urls_of(nats_url))
