"""The site file as the service takes it: ingest's registry with detectors' and alerts' checks."""

from __future__ import annotations

from pathlib import Path

from alerts.config import parse_alert_config
from alerts.feed import parse_feeds
from detectors.settings import parse_detector_settings
from ingest import registry
from ingest.db import connect
from ingest.registry import Site, SiteError

__all__ = ["Site", "SiteError", "load_site_into_db", "parse_site"]


def parse_site(text: str) -> Site:
    """A site file as the service takes it: a bad threshold or route is refused here."""
    return registry.parse_site(
        text,
        sections={"alerts": parse_alert_config, "feeds": parse_feeds},
        check_detectors=parse_detector_settings,
    )


def load_site_into_db(database_url: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteError(f"{path}: {exc.strerror}") from exc
    site = parse_site(text)
    with connect(database_url) as conn, conn.transaction():
        registry.store_site(conn, site)
    return f"loaded {len(site.residents)} residents, {len(site.contacts)} contacts, " + (
        f"{sum(len(r.devices) for r in site.residents)} devices from {path}"
    )
