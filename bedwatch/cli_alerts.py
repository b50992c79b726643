"""`bedwatch alerts token|revoke CONTACT`: contacts' API tokens for the acknowledge API."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from bedwatch.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("alerts", help="API tokens of care contacts")
    cmds = p.add_subparsers(dest="alerts_command", required=True)
    token = cmds.add_parser("token", help="issue an API token for a contact (shown once)")
    token.add_argument("contact_id")
    token.add_argument("--label", default="")
    token.set_defaults(handler=run)
    revoke = cmds.add_parser("revoke", help="revoke every API token of a contact")
    revoke.add_argument("contact_id")
    revoke.set_defaults(handler=run)
    digest = cmds.add_parser("digest", help="print a contact's daily digest (nothing is sent)")
    digest.add_argument("contact_id")
    digest.add_argument("--date", type=_day, help="local day, YYYY-MM-DD (default: today)")
    digest.set_defaults(handler=run_digest)


def run(args: argparse.Namespace) -> int:
    from alerts.tokens import issue_token, revoke_tokens
    from ingest.db import connect

    settings = load_settings(args.config)
    with connect(settings.database.url) as conn, conn.transaction():
        if args.alerts_command == "token":
            print(issue_token(conn, args.contact_id, args.label))
        else:
            print(f"{revoke_tokens(conn, args.contact_id)} token(s) revoked")
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def run_digest(args: argparse.Namespace) -> int:
    import asyncio
    import time

    import psycopg

    from alerts.digest import preview

    settings = load_settings(args.config)

    async def show() -> str:
        url = settings.database.url
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=10) as conn:
            message = await preview(conn, args.contact_id, args.date, int(time.time() * 1000))
        return f"{message.title}\n\n{message.body}"

    try:
        print(asyncio.run(show()))
    except (LookupError, psycopg.OperationalError) as exc:
        print(f"bedwatch: {exc}", file=sys.stderr)
        return 1
    return 0
