"""`dmledger accounts backfill`: an account's existing conversations, read from Meta."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from application.backfill import BackfillReport
from application.ports import HistoryUnavailable
from infrastructure.settings import Settings
from interfaces.cli_support import CliError, services_of


def add_command(accounts: Any) -> None:
    """Add `backfill` to the `dmledger accounts` subcommands."""
    backfill = accounts.add_parser(
        "backfill",
        help="store an account's existing conversations from Meta's Conversations API",
        description="Reads the account's Instagram conversations and their messages from "
        "Meta's Conversations API (2 calls a second at most) and stores each message not "
        "stored yet as an event marked backfilled: running it again stores nothing new. "
        "No rule answers backfilled messages, and the CRM is not told of them unless "
        "--notify-crm is given.",
    )
    backfill.add_argument("--account", required=True, help="the Instagram account id")
    backfill.add_argument(
        "--since",
        type=_moment,
        help="only messages sent at or after this moment (ISO 8601, e.g. 2026-11-01T00:00Z)",
    )
    backfill.add_argument(
        "--notify-crm",
        action="store_true",
        help="send the CRM a notification of each backfilled message (with backfilled: true)",
    )
    backfill.set_defaults(run=_backfill)


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 moment: {value!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time zone of {value!r} (e.g. Z)")
    return moment


def _backfill(settings: Settings, args: argparse.Namespace) -> int:
    shown = sys.stderr.isatty()

    def progress(report: BackfillReport) -> None:
        if shown:
            sys.stderr.write(f"\rbackfill: {_said(report)}")
            sys.stderr.flush()

    with services_of(settings) as services:
        try:
            report = services.backfill.run(
                args.account, since=args.since, notify_crm=args.notify_crm, progress=progress
            )
        except HistoryUnavailable as failure:
            raise CliError(f"{failure} (what was stored stays: run it again)") from None
        finally:
            if shown:
                sys.stderr.write("\n")
    print(f"backfilled {args.account}: {_said(report)}")
    return 0


def _said(report: BackfillReport) -> str:
    return (
        f"{report.conversations} conversations, {report.messages} messages read, "
        f"{report.stored} new"
    )
