"""`dmledger erase`: a participant's right to erasure, from the operator's terminal."""

from __future__ import annotations

import argparse
import time
from typing import Any

from application.erasure import erase_participant
from infrastructure.settings import Settings
from interfaces.cli_support import services_of


def add_commands(commands: Any) -> None:
    """Add `erase` to the `dmledger` command's subparsers."""
    erase = commands.add_parser(
        "erase",
        help="destroy the content of everything a participant sent and was sent",
        description="Destroys the data keys of every message of the conversation between "
        "the account and the participant, so their content can never be read again; the "
        "log keeps its events (ids, times) and records ParticipantErased. New messages from "
        "the same person are stored as usual.",
    )
    erase.add_argument("--account", required=True, help="the Instagram account id")
    erase.add_argument("--participant", required=True, help="the participant's IGSID")
    erase.set_defaults(run=_erase)


def _erase(settings: Settings, args: argparse.Namespace) -> int:
    with services_of(settings) as services:
        command = erase_participant(
            services.ledger,
            args.account,
            args.participant,
            by="cli",
            now=int(time.time() * 1000),
        )
        destroyed = services.writer.run_now(command)
    print(
        f"erased participant {args.participant} of {args.account}: {destroyed} data keys destroyed"
    )
    return 0
