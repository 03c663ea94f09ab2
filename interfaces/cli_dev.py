"""`dmledger dev fake-graph|crm-receiver`: loopback stand-ins for Meta and a CRM, to try
dmledger end to end on one machine (the README's walkthrough). Each runs until ^C and
prints one line per request it gets."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from typing import Any

from infrastructure.settings import Settings


def add_commands(commands: Any) -> None:
    """Add `dev` to the `dmledger` command's subparsers."""
    dev = commands.add_parser(
        "dev", help="loopback stand-ins for Meta's Graph API and a CRM, to try dmledger"
    ).add_subparsers(required=True, metavar="ACTION")
    graph = dev.add_parser(
        "fake-graph",
        help="a fake Instagram Graph API on 127.0.0.1 that accepts every send and prints it",
        description="Point dmledger at it with DMLEDGER_GRAPH_API_URL=http://127.0.0.1:PORT.",
    )
    graph.add_argument("--port", type=int, default=8900, help="where it listens (8900)")
    graph.add_argument("--token", help="the only access token it takes (default: any)")
    graph.add_argument(
        "--profile",
        action="append",
        default=[],
        type=participant_profile,
        metavar="IGSID=USERNAME[:NAME]",
        help="a participant the user profile API describes (repeat it for more); "
        "it refuses every other one, as Meta does without consent",
    )
    graph.add_argument(
        "--history",
        type=history_of,
        metavar="IG_ID[:CONVERSATIONS[:MESSAGES]]",
        help="conversations of the account IG_ID for the Conversations API, to try "
        "`dmledger accounts backfill` (3 of 10 messages by default)",
    )
    graph.set_defaults(run=_fake_graph)
    crm = dev.add_parser(
        "crm-receiver",
        help="a CRM endpoint on 127.0.0.1 that prints each delivery and checks its signature",
        description="Set the account's CRM endpoint to http://127.0.0.1:PORT/hooks (with "
        "DMLEDGER_CRM_ALLOW_PRIVATE_URLS=true), then give it the whsec_ secret PUT answered.",
    )
    crm.add_argument("--port", type=int, default=8901, help="where it listens (8901)")
    crm.add_argument("--secret", help="the endpoint's whsec_ secret, to verify signatures")
    crm.set_defaults(run=_crm_receiver)


def _fake_graph(_: Settings, args: argparse.Namespace) -> int:
    from interfaces.dev_graph_api import FakeGraphApi

    def sent(record: dict[str, Any]) -> None:
        body = record["body"]
        what = body.get("message") or {
            k: body[k] for k in ("sender_action", "payload") if k in body
        }
        mid = record.get("message_id", "(an action)")
        print(
            f"sent {mid} to {body.get('recipient', {}).get('id')}: "
            f"{json.dumps(what, ensure_ascii=False)}",
            flush=True,
        )

    server = FakeGraphApi(args.token, dict(args.profile), port=args.port, on_send=sent)
    if args.history is not None:
        from interfaces.dev_graph_history import FakeHistory

        account, conversations, messages = args.history
        server.history = FakeHistory.demo(account, conversations, messages)
        print(
            f"its Conversations API has {conversations} conversations of {messages} "
            f"messages for {account}",
            flush=True,
        )
    print(f"fake Graph API on {server.url}; sends are printed here", flush=True)
    return _until_stopped(server.close)


def history_of(value: str) -> tuple[str, int, int]:
    """`IG_ID[:CONVERSATIONS[:MESSAGES]]` as (account, conversations, messages)."""
    ig_id, _, rest = value.partition(":")
    conversations, _, messages = rest.partition(":")
    try:
        shape = (ig_id.strip(), int(conversations or 3), int(messages or 10))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not IG_ID[:CONVERSATIONS[:MESSAGES]]"
        ) from None
    if not shape[0].isdigit() or not 0 < shape[1] <= 1000 or not 0 < shape[2] <= 10_000:
        raise argparse.ArgumentTypeError(
            f"{value!r}: an account id, 1 to 1,000 conversations, 1 to 10,000 messages each"
        )
    return shape


def participant_profile(value: str) -> tuple[str, dict[str, Any]]:
    """`IGSID=USERNAME[:NAME]` as the fake's profile of that participant."""
    igsid, _, rest = value.partition("=")
    username, _, name = rest.partition(":")
    if not igsid.strip() or not username.strip():
        raise argparse.ArgumentTypeError(f"{value!r} is not IGSID=USERNAME[:NAME]")
    return igsid.strip(), {"username": username.strip(), "name": name.strip() or None}


def _crm_receiver(_: Settings, args: argparse.Namespace) -> int:
    from interfaces.dev_crm_receiver import CrmReceiver

    def received(webhook_id: str, payload: dict[str, Any], verified: bool | None) -> None:
        check = {True: "verified", False: "BAD SIGNATURE", None: "not checked"}[verified]
        data = payload.get("data", {})
        detail = data.get("text") or data.get("reply_id") or ""
        who = (data.get("participant") or {}).get("username")
        sender = f"@{who} " if who else ""
        print(f"{check} {webhook_id} {payload.get('type')} {sender}{detail}".rstrip(), flush=True)

    server = CrmReceiver(port=args.port, secret=args.secret, on_delivery=received)
    print(f"CRM receiver on {server.url}; deliveries are printed here", flush=True)
    return _until_stopped(server.close)


def _until_stopped(close: Any) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    close()
    return 0
