"""The alerts section of the settings: links, delivery bounds, the scheduler's pace."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ingest.settings import SettingsError, in_range


@dataclass(frozen=True, slots=True)
class AlertsSettings:
    enabled: bool = True
    public_url: str = "http://127.0.0.1:8080"  # how people reach the HTTP API (links in messages)
    link_secret: str = ""  # signs acknowledge links; empty: a key kept in the database
    link_ttl_s: int = 24 * 3600
    delivery_timeout_s: float = 10.0  # one attempt on one channel, whatever the channel does
    max_parallel_deliveries: int = 16
    max_parallel_critical: int = 8  # for SOS, falls and other critical alerts, on top of those
    scheduler_interval_s: float = 0.25  # how often escalations, reminders and retries are looked at
    serve_http: bool = True  # the acknowledge API on http.addr

    def check(self) -> None:
        if urlsplit(self.public_url).scheme not in ("http", "https"):
            raise SettingsError(
                f"alerts.public_url: expected http(s)://..., got {self.public_url!r}"
            )
        if self.link_secret and len(self.link_secret) < 16:
            raise SettingsError("alerts.link_secret: at least 16 characters (or empty)")
        in_range("alerts.link_ttl_s", self.link_ttl_s, 60, 30 * 86_400)
        in_range("alerts.delivery_timeout_s", self.delivery_timeout_s, 0.1, 300)
        in_range("alerts.max_parallel_deliveries", self.max_parallel_deliveries, 1, 256)
        in_range("alerts.max_parallel_critical", self.max_parallel_critical, 1, 256)
        in_range("alerts.scheduler_interval_s", self.scheduler_interval_s, 0.01, 60)
