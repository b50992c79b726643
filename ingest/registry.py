"""The registry: residents, their devices and care contacts, from a site file into the database."""

from __future__ import annotations

import json
import logging
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ingest.protocol import DEVICE_ID, DeviceInfo
from ingest.records import DeviceId, DeviceKind, ResidentId

log = logging.getLogger(__name__)

ROLES = ("care_staff", "family_doctor", "family", "emergency", "supervisor")
# A supervisor is on no care team and is paged by no ladder: they see (and may act for) every
# resident in their areas, in the console, the operations view and the reports.
SUPERVISOR = "supervisor"
ALL_AREAS = "*"
# An area is a path from the community down: 'kangjian/kangle/12' (community, neighbourhood
# committee, building). Segments are names without '/', and the path at most 200 characters.
AREA_MAX = 200
LANGUAGES = ("zh", "en")
# Checks a top-level table of the site file that another component reads (alert routing and
# escalation), or a resident's `detectors` table: `check(mapping)` raises ValueError. The
# application passes them in, so a bad threshold is refused when the site file is loaded, not
# when the service meets it.
SectionCheck = Callable[[Mapping[str, Any]], object]
DetectorSettingsCheck = Callable[[Mapping[str, object]], object]


class SiteError(ValueError):
    """The site file is not valid; the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    name: str
    role: str
    language: str
    channels: tuple[str, ...]
    areas: tuple[str, ...] = ()  # a supervisor's areas ('*': all)


@dataclass(frozen=True, slots=True)
class Device:
    id: DeviceId
    kind: DeviceKind


@dataclass(frozen=True, slots=True)
class Resident:
    id: ResidentId
    name: str
    room: str
    timezone: str
    devices: tuple[Device, ...]
    care_team: tuple[str, ...]
    detectors: Mapping[str, Any] = field(default_factory=dict)
    area: str = ""  # '' : not placed in any area


@dataclass(frozen=True, slots=True)
class Site:
    contacts: tuple[Contact, ...]
    residents: tuple[Resident, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)  # sections owned by other modules


def parse_site(
    text: str,
    *,
    sections: Mapping[str, SectionCheck] | None = None,
    check_detectors: DetectorSettingsCheck | None = None,
) -> Site:
    """The site file, checked whole; `sections` names the other top-level tables allowed."""
    sections = sections or {}
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"not valid TOML: {exc}") from exc
    contacts = tuple(_contact(i, c) for i, c in enumerate(_list(doc, "contacts")))
    residents = tuple(
        _resident(i, r, check_detectors) for i, r in enumerate(_list(doc, "residents"))
    )
    _check_references(contacts, residents)
    extra = {k: v for k, v in doc.items() if k not in ("contacts", "residents")}
    unknown = set(extra) - set(sections)
    if unknown:
        raise SiteError(f"unknown section(s) {', '.join(sorted(unknown))}")
    for section, value in extra.items():
        if not isinstance(value, dict):
            raise SiteError(f"[{section}] must be a table")
        try:
            sections[section](value)
        except ValueError as exc:
            raise SiteError(f"[{section}]: {exc}") from exc
    return Site(contacts, residents, extra)


def _list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise SiteError(f"{key}: expected an array of tables ([[{key}]])")
    return value


def _take(entry: dict[str, Any], where: str, allowed: set[str]) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise SiteError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")


def _str(entry: dict[str, Any], where: str, key: str, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or not value:
        raise SiteError(f"{where}.{key}: expected a non-empty string")
    return value


def _contact(i: int, entry: dict[str, Any]) -> Contact:
    where = f"contacts[{i}]"
    _take(entry, where, {"id", "name", "role", "language", "channels", "areas"})
    role = _str(entry, where, "role")
    if role not in ROLES:
        raise SiteError(f"{where}.role: {role!r} is not one of {', '.join(ROLES)}")
    areas = _areas(where, entry.get("areas"), role)
    language = _str(entry, where, "language", "zh")
    if language not in LANGUAGES:
        raise SiteError(f"{where}.language: {language!r} is not one of {', '.join(LANGUAGES)}")
    channels = entry.get("channels", [])
    if not isinstance(channels, list) or not all(
        isinstance(c, str) and "://" in c for c in channels
    ):
        raise SiteError(f"{where}.channels: expected a list of apprise URLs (scheme://...)")
    return Contact(
        _str(entry, where, "id"),
        _str(entry, where, "name"),
        role,
        language,
        tuple(channels),
        areas,
    )


def _areas(where: str, value: Any, role: str) -> tuple[str, ...]:
    if role != SUPERVISOR:
        if value is not None:
            raise SiteError(f"{where}.areas: only a supervisor has areas")
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise SiteError(
            f"{where}.areas: a supervisor needs a non-empty list of areas"
            f" ('community/committee/building', or '{ALL_AREAS}' for all)"
        )
    return tuple(a if a == ALL_AREAS else area_path(f"{where}.areas", a) for a in value)


def area_path(where: str, value: Any) -> str:
    """An area path checked: 'a/b/c' with non-empty segments and no spaces at their ends."""
    if not isinstance(value, str):
        raise SiteError(f"{where}: expected an area path like 'kangjian/kangle/12'")
    segments = value.split("/")
    if (
        not value
        or len(value) > AREA_MAX
        or any(not s or s != s.strip() or s == ALL_AREAS for s in segments)
    ):
        raise SiteError(
            f"{where}: {value!r} is not an area path (names joined by '/', such as"
            f" 'kangjian/kangle/12', at most {AREA_MAX} characters)"
        )
    return value


def _resident(i: int, entry: dict[str, Any], check: DetectorSettingsCheck | None) -> Resident:
    where = f"residents[{i}]"
    _take(
        entry,
        where,
        {"id", "name", "room", "timezone", "area", "devices", "care_team", "detectors"},
    )
    timezone = _str(entry, where, "timezone", "Asia/Shanghai")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SiteError(f"{where}.timezone: unknown time zone {timezone!r}") from None
    devices_raw = entry.get("devices", [])
    if not isinstance(devices_raw, list):
        raise SiteError(f"{where}.devices: expected a list of {{ id, kind }}")
    devices = tuple(_device(f"{where}.devices[{j}]", d) for j, d in enumerate(devices_raw))
    team = entry.get("care_team", [])
    if not isinstance(team, list) or not all(isinstance(c, str) for c in team):
        raise SiteError(f"{where}.care_team: expected a list of contact ids")
    detectors = entry.get("detectors", {})
    if not isinstance(detectors, dict):
        raise SiteError(f"{where}.detectors: expected a table of thresholds")
    if check is not None:
        try:
            check(detectors)
        except ValueError as exc:
            raise SiteError(f"{where}.detectors: {exc}") from exc
    return Resident(
        ResidentId(_str(entry, where, "id")),
        _str(entry, where, "name"),
        str(entry.get("room", "")),
        timezone,
        devices,
        tuple(team),
        detectors,
        "" if "area" not in entry else area_path(f"{where}.area", entry["area"]),
    )


def _device(where: str, entry: Any) -> Device:
    if not isinstance(entry, dict):
        raise SiteError(f"{where}: expected {{ id = ..., kind = ... }}")
    _take(entry, where, {"id", "kind"})
    device_id = _str(entry, where, "id")
    if not DEVICE_ID.fullmatch(device_id):
        raise SiteError(f"{where}.id: {device_id!r} is not a valid device id")
    kind = _str(entry, where, "kind")
    if kind not in tuple(DeviceKind):
        raise SiteError(f"{where}.kind: {kind!r} is not mattress or wristband")
    return Device(DeviceId(device_id), DeviceKind(kind))


def _check_references(contacts: tuple[Contact, ...], residents: tuple[Resident, ...]) -> None:
    _unique("contacts", [c.id for c in contacts])
    _unique("residents", [r.id for r in residents])
    _unique("devices", [d.id for r in residents for d in r.devices])
    known = {c.id for c in contacts}
    supervisors = {c.id for c in contacts if c.role == SUPERVISOR}
    for r in residents:
        missing = [c for c in r.care_team if c not in known]
        if missing:
            raise SiteError(f"resident {r.id}: care_team names unknown contact(s) {missing}")
        named = [c for c in r.care_team if c in supervisors]
        if named:
            raise SiteError(
                f"resident {r.id}: care_team names supervisor(s) {named}; a supervisor sees"
                " the residents of their areas without being on a team"
            )


def _unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise SiteError(f"{what}: id {i!r} appears twice")
        seen.add(i)


def store_site(conn: psycopg.Connection[tuple[object, ...]], site: Site) -> None:
    """Upsert everything the site file names; what it does not name is left as it is."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO contacts (id, name, role, language, channels, areas)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role,"
            " language = excluded.language, channels = excluded.channels,"
            " areas = excluded.areas, active = true, updated_at = now()",
            [
                (c.id, c.name, c.role, c.language, list(c.channels), list(c.areas))
                for c in site.contacts
            ],
        )
        cur.executemany(
            "INSERT INTO residents (id, name, room, timezone, detector_settings, area)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
            " name = excluded.name, room = excluded.room, timezone = excluded.timezone,"
            " detector_settings = excluded.detector_settings, area = excluded.area,"
            " active = true, updated_at = now()",
            [
                (r.id, r.name, r.room, r.timezone, json.dumps(r.detectors), r.area)
                for r in site.residents
            ],
        )
        cur.executemany(
            "INSERT INTO devices (id, kind, resident_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind,"
            " resident_id = excluded.resident_id, active = true, updated_at = now()",
            [(d.id, d.kind.value, r.id) for r in site.residents for d in r.devices],
        )
        ids = [r.id for r in site.residents]
        cur.executemany(
            "INSERT INTO site_settings (section, value) VALUES (%s, %s) ON CONFLICT (section)"
            " DO UPDATE SET value = excluded.value, updated_at = now()",
            [(section, json.dumps(value)) for section, value in site.extra.items()],
        )
        cur.execute("DELETE FROM care_team WHERE resident_id = ANY(%s)", (ids,))
        cur.executemany(
            "INSERT INTO care_team (resident_id, contact_id, position) VALUES (%s, %s, %s)",
            [(r.id, c, pos) for r in site.residents for pos, c in enumerate(r.care_team)],
        )
    log.info("registry: %d residents, %d contacts", len(site.residents), len(site.contacts))


def load_devices(conn: psycopg.Connection[tuple[object, ...]]) -> dict[DeviceId, DeviceInfo]:
    rows = conn.execute("SELECT id, kind, resident_id FROM devices WHERE active").fetchall()
    return {
        DeviceId(str(i)): DeviceInfo(DeviceKind(str(k)), ResidentId(str(r)) if r else None)
        for i, k, r in rows
    }


def registry_version(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[object, ...]:
    """Changes whenever a registry row is added, changed or removed."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM devices), (SELECT max(updated_at) FROM devices),"
        " (SELECT count(*) FROM residents), (SELECT max(updated_at) FROM residents),"
        " (SELECT count(*) FROM contacts), (SELECT max(updated_at) FROM contacts),"
        " (SELECT max(updated_at) FROM site_settings)"
    ).fetchone()
    return tuple(row) if row else ()
