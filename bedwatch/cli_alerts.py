"""`bedwatch alerts token|revoke CONTACT`, `feed-token|feed-revoke FEED`: API tokens; digests."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from bedwatch.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("alerts", help="API tokens of care contacts and feeds; digest previews")
    cmds = p.add_subparsers(dest="alerts_command", required=True)
    # Contacts' tokens act for a person; feeds' only read (a site file's [feeds.<id>]).
    for issue, revoke, arg, whose in (
        ("token", "revoke", "contact_id", "a contact"),
        ("feed-token", "feed-revoke", "feed_id", "a feed (read-only)"),
    ):
        token = cmds.add_parser(issue, help=f"issue an API token for {whose} (shown once)")
        token.add_argument(arg)
        token.add_argument("--label", default="")
        token.set_defaults(handler=run)
        ended = cmds.add_parser(revoke, help=f"revoke every API token of {whose}")
        ended.add_argument(arg)
        ended.set_defaults(handler=run)
    digest = cmds.add_parser("digest", help="print a contact's daily digest (nothing is sent)")
    digest.add_argument("contact_id")
    digest.add_argument("--date", type=_day, help="local day, YYYY-MM-DD (default: today)")
    digest.set_defaults(handler=run_digest)


def run(args: argparse.Namespace) -> int:
    from alerts import tokens
    from ingest.db import connect

    settings = load_settings(args.config)
    command = args.alerts_command
    with connect(settings.database.url) as conn, conn.transaction():
        if command == "token":
            print(tokens.issue_token(conn, args.contact_id, args.label))
        elif command == "revoke":
            print(f"{tokens.revoke_tokens(conn, args.contact_id)} token(s) revoked")
        elif command == "feed-revoke":
            print(f"{tokens.revoke_feed_tokens(conn, args.feed_id)} token(s) revoked")
        else:
            try:
                print(tokens.issue_feed_token(conn, args.feed_id, args.label))
            except LookupError as exc:
                print(f"bedwatch: {exc.args[0]}", file=sys.stderr)
                return 1
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
