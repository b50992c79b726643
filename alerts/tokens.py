"""API tokens of contacts and of feeds: issued once, kept only as a SHA-256, revocable."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg

from alerts.api import token_digest

Conn = psycopg.Connection[tuple[Any, ...]]


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


def issue_feed_token(conn: Conn, feed_id: str, label: str = "") -> str:
    """A new read-only token for a feed of the site file; shown once, stored hashed. Feeds'
    tokens live apart from contacts' (and look different), so neither passes for the other."""
    row = conn.execute(
        "SELECT value ? %s FROM site_settings WHERE section = 'feeds'", (feed_id,)
    ).fetchone()
    if not (row and row[0]):
        raise LookupError(f"no feed {feed_id!r} in the site file ([feeds.{feed_id}])")
    token = "bwf_" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO feed_tokens (token_sha256, feed_id, label) VALUES (%s, %s, %s)",
        (token_digest(token), feed_id, label),
    )
    return token


def revoke_feed_tokens(conn: Conn, feed_id: str) -> int:
    cur = conn.execute(
        "UPDATE feed_tokens SET revoked_at = now() WHERE feed_id = %s AND revoked_at IS NULL",
        (feed_id,),
    )
    return cur.rowcount
