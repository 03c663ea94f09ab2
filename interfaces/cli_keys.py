"""`dmledger keys create|list|revoke`: the REST API's keys."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from infrastructure.settings import Settings
from interfaces.cli_support import print_table, services_of


def add_commands(commands: Any) -> None:
    """Add `keys` to the `dmledger` command's subparsers."""
    keys = commands.add_parser("keys", help="REST API keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    create = keys.add_parser(
        "create",
        help="issue an API key (printed once; only its hash is stored)",
        description="Issue a key. --admin: every account; --account ID: that account's CRM; "
        "--auditor: read-only, for --account ID or, without it, every account.",
    )
    create.add_argument("--name", required=True, help="what the key is for, e.g. 'crm-prod'")
    create.add_argument("--account", help="the Instagram account id the key is for")
    role = create.add_mutually_exclusive_group()
    role.add_argument("--admin", action="store_true", help="an admin key, for every account")
    role.add_argument("--auditor", action="store_true", help="a read-only auditor key")
    create.set_defaults(run=_create)
    key_list = keys.add_parser("list", help="list API keys (never their secrets)")
    key_list.set_defaults(run=_list)
    revoke = keys.add_parser("revoke", help="revoke an API key")
    revoke.add_argument("key_id", help="the key's id, as `keys list` shows it")
    revoke.set_defaults(run=_revoke)


def _create(settings: Settings, args: argparse.Namespace) -> int:
    role = "admin" if args.admin else "auditor" if args.auditor else "account"
    with services_of(settings) as services:
        command = services.api_keys.issue(
            name=args.name, role=role, ig_account_id=args.account, by="cli"
        )
        issued = services.writer.run_now(command)
    scope = issued.key.ig_account_id or "every account"
    # Only the key goes to standard output, so that KEY=$(dmledger keys create ...) works.
    print(
        f"issued {issued.key.role} key {issued.key.key_id} ({issued.key.name}) for {scope}; "
        "it is shown this once (only its hash is stored):",
        file=sys.stderr,
    )
    print(issued.token)
    return 0


def _list(settings: Settings, _: argparse.Namespace) -> int:
    with services_of(settings) as services:
        keys = services.api_keys.list()
    rows = [
        (
            k.key_id,
            k.name,
            k.role,
            k.ig_account_id or "*",
            k.created_at.isoformat(timespec="seconds"),
            k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "never",
            "revoked" if k.revoked else "active",
        )
        for k in keys
    ]
    print_table(("KEY ID", "NAME", "ROLE", "ACCOUNT", "CREATED", "LAST USED", "STATE"), rows)
    return 0


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        key = services.writer.run_now(services.api_keys.revoke(args.key_id, by="cli"))
    print(f"revoked key {key.key_id} ({key.name})")
    return 0
