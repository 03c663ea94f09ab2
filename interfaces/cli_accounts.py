"""`dmledger accounts add|list|backfill`: the Instagram accounts, registered from a shell."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

import msgspec

from application.accounts import SendingState
from domain.account import CREDENTIALS
from infrastructure.settings import Settings
from interfaces import cli_backfill
from interfaces.cli_support import CliError, print_table, services_of


def add_commands(commands: Any) -> None:
    """Add `accounts` to the `dmledger` command's subparsers."""
    accounts = commands.add_parser("accounts", help="manage Instagram accounts").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = accounts.add_parser(
        "add",
        help="register an Instagram professional account",
        description=(
            "Register an account. Each secret may be given as VALUE, as 'env:NAME' to read "
            "the environment variable NAME, or as '-' to read it from a line of standard "
            "input (in the order app secret, access token, verify token), so secrets stay "
            "out of shell history. A secret not given is asked for when on a terminal."
        ),
    )
    add.add_argument("--ig-id", required=True, help="the Instagram professional account id")
    add.add_argument("--username", required=True, help="the account's Instagram username")
    add.add_argument("--app-secret", help="the Meta app secret that signs webhooks")
    add.add_argument("--access-token", help="the Instagram access token for the Send API")
    add.add_argument("--verify-token", help="the webhook verify token set in Meta's dashboard")
    add.set_defaults(run=_add)
    listing = accounts.add_parser("list", help="list the registered accounts")
    listing.add_argument("--format", choices=("table", "jsonl"), default="table")
    listing.set_defaults(run=_list)
    cli_backfill.add_command(accounts)


def _add(settings: Settings, args: argparse.Namespace) -> int:
    secrets = _read_secrets(args)
    with services_of(settings) as services:
        command = services.accounts.register(
            ig_account_id=args.ig_id, username=args.username, by="cli", **secrets
        )
        summary = services.writer.run_now(command)
    print(f"registered Instagram account {summary.ig_account_id} (@{summary.username})")
    return 0


def _read_secrets(args: argparse.Namespace) -> dict[str, str]:
    """The credentials, each from its option's value, an environment variable, a line of
    standard input or a prompt (see `accounts add --help`)."""
    values: dict[str, str] = {}
    for name in CREDENTIALS:
        given: str | None = getattr(args, name)
        label = "--" + name.replace("_", "-")
        if given == "-":
            line = sys.stdin.readline()
            if not line:
                raise CliError(f"{label} is '-' but standard input has no line left for it")
            values[name] = line.rstrip("\r\n")
        elif given is not None and given.startswith("env:"):
            variable = given.removeprefix("env:")
            if not os.environ.get(variable):
                raise CliError(
                    f"{label} names the environment variable {variable}, which is not set"
                )
            values[name] = os.environ[variable]
        elif given is not None:
            values[name] = given
        elif sys.stdin.isatty():
            values[name] = getpass.getpass(f"{name.replace('_', ' ')}: ")
        else:
            raise CliError(f"{label} is required")
    return values


def _list(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        accounts = services.accounts.list()
    if args.format == "jsonl":
        for account in accounts:
            sys.stdout.write(msgspec.json.encode(account).decode() + "\n")
        return 0
    rows = [
        (
            a.ig_account_id,
            "@" + a.username,
            a.status,
            _sending(a.sending),
            a.registered_at.isoformat(timespec="seconds"),
        )
        for a in accounts
    ]
    print_table(("INSTAGRAM ID", "USERNAME", "STATUS", "SENDING", "REGISTERED"), rows)
    return 0


def _sending(state: SendingState) -> str:
    """What stands between the account and the Send API, in a word or two."""
    held = []
    if state.token_rejected:
        held.append("token-rejected")
    if state.sends_paused_until is not None:
        held.append("paused-until-" + state.sends_paused_until.isoformat(timespec="seconds"))
    if state.token_refresh_failed_at is not None:
        held.append("refresh-failed")
    if state.token_expiring:
        held.append("token-expiring")
    return ",".join(held) or "ok"
