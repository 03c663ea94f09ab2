"""`dmledger deliveries list|show|redeliver`: an account's CRM deliveries, for operators.

The same as the REST endpoints `GET .../deliveries` and `POST .../deliveries/.../redeliver`:
the same rows, the same use case (a redelivery is recorded as `DeliveriesRedelivered`,
by `cli`).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec

from application.errors import NotFound
from infrastructure.settings import Settings
from interfaces.cli_support import CliError, print_table, services_of
from interfaces.http.crm import Delivery

STATUSES = ("pending", "sending", "retrying", "delivered", "dead", "failed")


def add_commands(commands: Any) -> None:
    """Add `deliveries` to the `dmledger` command's subparsers."""
    deliveries = commands.add_parser(
        "deliveries", help="an account's CRM deliveries and their attempts"
    ).add_subparsers(required=True, metavar="ACTION")
    listing = deliveries.add_parser("list", help="the deliveries, newest first")
    listing.add_argument("--account", required=True, help="the Instagram account id")
    listing.add_argument(
        "--status", choices=STATUSES, help="only these (`failed`: retrying or dead)"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    listing.add_argument("--format", choices=("table", "jsonl"), default="table")
    listing.set_defaults(run=_list)
    show = deliveries.add_parser("show", help="one delivery: payload and every attempt (JSON)")
    show.add_argument("--account", required=True, help="the Instagram account id")
    show.add_argument("delivery_id", help="its id (the `webhook-id` the CRM got)")
    show.set_defaults(run=_show)
    redeliver = deliveries.add_parser(
        "redeliver",
        help="deliver one delivery again (same webhook-id), or every one since a time",
    )
    redeliver.add_argument("--account", required=True, help="the Instagram account id")
    which = redeliver.add_mutually_exclusive_group(required=True)
    which.add_argument("delivery_id", nargs="?", help="the delivery to send again")
    which.add_argument("--since", help="every delivery made since this time (ISO 8601, UTC)")
    redeliver.set_defaults(run=_redeliver)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CliError("--limit must be from 1 to 1000")
    with services_of(settings) as services:
        rows = services.delivery_queue.deliveries(
            args.account, status=args.status, limit=args.limit, before_position=None
        )
    found = [Delivery.of(row) for row in rows]
    if args.format == "jsonl":
        for delivery in found:
            print(msgspec.json.encode(delivery).decode())
        return 0
    print_table(
        ("ID", "TYPE", "STATUS", "ATTEMPTS", "LAST ATTEMPT", "NEXT ATTEMPT"),
        [
            (
                d.id,
                d.type,
                d.status,
                str(len(d.attempts)),
                _last(d),
                d.next_attempt_at.isoformat() if d.next_attempt_at else "",
            )
            for d in found
        ],
    )
    return 0


def _last(delivery: Delivery) -> str:
    if not delivery.attempts:
        return ""
    last = delivery.attempts[-1]
    outcome = str(last.status_code) if last.status_code is not None else (last.error or "")
    return f"{last.at.isoformat()} {outcome}"


def _show(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        row = services.delivery_queue.delivery(args.account, args.delivery_id)
    if row is None:
        raise CliError(f"account {args.account} has no delivery {args.delivery_id}")
    print(msgspec.json.format(msgspec.json.encode(Delivery.of(row))).decode())
    return 0


def _redeliver(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        services.writer.start()
        try:
            if args.since is not None:
                since = _time(args.since)
                count = asyncio.run(services.redeliveries.since(args.account, since, by="cli"))
            else:
                count = asyncio.run(
                    services.redeliveries.one(args.account, args.delivery_id, by="cli")
                )
        except NotFound as missing:
            raise CliError(missing.detail) from None
        finally:
            services.writer.stop()
    print(f"{count} deliveries due again; a running dispatcher sends them")
    return 0


def _time(text: str) -> int:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--since must be a time such as 2026-11-23T00:00:00Z, got {text!r}"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)
