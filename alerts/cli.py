"""`bedwatch alerts token|revoke CONTACT`: contacts' API tokens for the acknowledge API."""

from __future__ import annotations

import argparse

from ingest.settings import load_settings


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
