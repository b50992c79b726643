"""Who is who: residents, contacts, care teams and wristbands, cached from the registry."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg

from alerts.config import AlertConfig, default_config, parse_alert_config
from alerts.model import Contact, ContactId, Resident, area_within
from ingest.records import ResidentId
from ingest.registry import SUPERVISOR

log = logging.getLogger(__name__)

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Directory:
    residents: dict[ResidentId, Resident] = field(default_factory=dict)
    contacts: dict[ContactId, Contact] = field(default_factory=dict)
    wristbands: dict[ResidentId, str] = field(default_factory=dict)

    def on_team(self, resident_id: ResidentId, contact_id: ContactId) -> bool:
        resident = self.residents.get(resident_id)
        return resident is not None and contact_id in resident.team

    def may_act(self, resident_id: ResidentId, contact_id: ContactId) -> bool:
        """On the resident's care team, or a supervisor of the resident's area."""
        if self.on_team(resident_id, contact_id):
            return True
        resident = self.residents.get(resident_id)
        contact = self.contacts.get(contact_id)
        return (
            resident is not None
            and contact is not None
            and contact.role == SUPERVISOR
            and area_within(resident.area, contact.areas)
        )


async def load_directory(conn: AsyncConn) -> Directory:
    cur = await conn.execute(
        "SELECT id, name, role, language, channels, areas FROM contacts WHERE active"
    )
    contacts = {
        ContactId(i): Contact(ContactId(i), n, r, lang, tuple(ch or ()), tuple(areas or ()))
        for i, n, r, lang, ch, areas in await cur.fetchall()
    }
    cur = await conn.execute(
        "SELECT r.id, r.name, r.room, r.timezone, r.area,"
        " coalesce(array_agg(t.contact_id ORDER BY t.position)"
        "   FILTER (WHERE t.contact_id IS NOT NULL), '{}')"
        " FROM residents r LEFT JOIN care_team t ON t.resident_id = r.id"
        " WHERE r.active GROUP BY r.id"
    )
    residents = {
        ResidentId(i): Resident(ResidentId(i), n, room, tz, tuple(ContactId(c) for c in team), area)
        for i, n, room, tz, area, team in await cur.fetchall()
    }
    cur = await conn.execute(
        "SELECT resident_id, id FROM devices"
        " WHERE kind = 'wristband' AND active AND resident_id IS NOT NULL ORDER BY id"
    )
    wristbands = {ResidentId(r): str(d) for r, d in await cur.fetchall()}
    return Directory(residents, contacts, wristbands)


async def load_config(conn: AsyncConn) -> AlertConfig:
    """The [alerts] table as the registry stored it; defaults (and a log line) if it is bad."""
    cur = await conn.execute("SELECT value FROM site_settings WHERE section = 'alerts'")
    row = await cur.fetchone()
    if row is None:
        return default_config()
    raw = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    try:
        return parse_alert_config(raw)
    except ValueError as exc:
        # The registry refuses a bad [alerts] table at load time; this only guards old rows.
        log.error("stored [alerts] settings are invalid (%s); using the defaults", exc)
        return default_config()
