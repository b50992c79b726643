"""Per-contact API tokens: issued once, kept only as a SHA-256, revocable."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg

from alerts.api import token_digest


def issue_token(conn: psycopg.Connection[tuple[Any, ...]], contact_id: str, label: str = "") -> str:
    """A new token for the contact; shown once, stored hashed."""
    token = "bw_" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO contact_tokens (token_sha256, contact_id, label) VALUES (%s, %s, %s)",
        (token_digest(token), contact_id, label),
    )
    return token


def revoke_tokens(conn: psycopg.Connection[tuple[Any, ...]], contact_id: str) -> int:
    """End every API and console token of the contact, and every ack link made for them so far
    (links carry no token: they are refused if made before the revocation)."""
    cur = conn.execute(
        "UPDATE contact_tokens SET revoked_at = now() WHERE contact_id = %s AND revoked_at IS NULL",
        (contact_id,),
    )
    conn.execute(
        "INSERT INTO link_revocations (contact_id, revoked_at) VALUES (%s, now())"
        " ON CONFLICT (contact_id) DO UPDATE SET revoked_at = excluded.revoked_at",
        (contact_id,),
    )
    return cur.rowcount
