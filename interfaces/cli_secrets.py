"""`dmledger secrets new-key|reencrypt`: the keys credentials are encrypted with."""

from __future__ import annotations

import argparse
from typing import Any

from infrastructure.secret_box import FernetSecretBox
from infrastructure.settings import Settings
from interfaces.cli_support import services_of


def add_commands(commands: Any) -> None:
    """Add `secrets` to the `dmledger` command's subparsers."""
    secrets = commands.add_parser("secrets", help="secret keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    new_key = secrets.add_parser("new-key", help="print a new random DMLEDGER_SECRET_KEY")
    new_key.set_defaults(run=_new_key)
    reencrypt = secrets.add_parser(
        "reencrypt",
        help="record every account's credentials re-encrypted, and re-wrap every message's "
        "data key, under the newest key",
        description="After putting a new key first in DMLEDGER_SECRET_KEY (old ones after "
        "it), this records each account's credentials under the new key and wraps the data "
        "key of every message's content with it, so that the old key can later be removed.",
    )
    reencrypt.set_defaults(run=_reencrypt)


def _new_key(_settings: Settings, _args: argparse.Namespace) -> int:
    print(FernetSecretBox.new_key())
    return 0


def _reencrypt(settings: Settings, _: argparse.Namespace) -> int:
    with services_of(settings) as services:
        accounts = services.accounts.list()
        for account in accounts:
            services.writer.run_now(services.accounts.reencrypt(account.ig_account_id, by="cli"))
        vault = services.ledger.vault
        rewrapped = vault.keys.rewrap_keys(vault.cipher.rewrap) if vault is not None else 0
    print(f"re-encrypted the credentials of {len(accounts)} accounts under the newest key")
    print(f"re-wrapped {rewrapped} message data keys under the newest key")
    return 0
