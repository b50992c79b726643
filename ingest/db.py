"""Database connections: connect with a clear error, redact URLs, create the database."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from ingest.settings import DatabaseSettings

log = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or refused us; the message says which and where."""


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {one_line(exc)}") from exc


def one_line(exc: BaseException) -> str:
    """libpq's message on one line (it adds a tab-indented hint on a line of its own)."""
    return " ".join(str(exc).split())


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def ensure_database(settings: DatabaseSettings) -> bool:
    """Create the database named in the URL if it is missing and allowed; True if created."""
    parts = urlsplit(settings.url)
    name = parts.path.lstrip("/")
    if not settings.create_database or not name:
        return False
    try:
        with psycopg.connect(settings.url, connect_timeout=10):
            return False
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise DatabaseUnavailable(
                f"cannot connect to {redact(settings.url)}: {one_line(exc)}"
            ) from exc
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with connect(admin_url, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False  # another process created it meanwhile
    log.info("created database %s", name)
    return True
