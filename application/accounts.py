"""Registering and reading the Instagram accounts dmledger serves."""

from __future__ import annotations

import hmac
import re
from datetime import datetime

import msgspec

from application.errors import AccountAlreadyRegistered, InvalidInput
from application.ledger import Ledger
from application.ledger_writer import Changes, Command
from application.ports import SecretBox
from domain.account import Account
from domain.identity import account_id

_IG_ID = re.compile(r"^[0-9]{1,32}$")


class AccountSummary(msgspec.Struct, frozen=True):
    """An account as shown to operators: never a credential, only whether each is set."""

    ig_account_id: str
    username: str
    status: str
    registered_at: datetime
    has_app_secret: bool
    has_access_token: bool
    has_verify_token: bool

    @classmethod
    def of(cls, account: Account) -> AccountSummary:
        return cls(
            ig_account_id=account.ig_account_id,
            username=account.username,
            status=str(account.status),
            registered_at=account.created_on,
            has_app_secret=bool(account.app_secret),
            has_access_token=bool(account.access_token),
            has_verify_token=bool(account.verify_token),
        )


class Accounts:
    """Use cases on accounts."""

    def __init__(self, ledger: Ledger, secrets: SecretBox) -> None:
        self._ledger = ledger
        self._secrets = secrets

    def register(
        self,
        *,
        ig_account_id: str,
        username: str,
        app_secret: str,
        access_token: str,
        verify_token: str,
        by: str,
    ) -> Command[AccountSummary]:
        """The command that registers an account; its credentials are encrypted first."""
        ig_account_id = ig_account_id.strip()
        if not _IG_ID.match(ig_account_id):
            raise InvalidInput("ig_account_id", "the Instagram account id must be digits only")
        username = username.strip().removeprefix("@")
        if not username:
            raise InvalidInput("username", "the username must not be empty")
        for field, value in (
            ("app_secret", app_secret),
            ("access_token", access_token),
            ("verify_token", verify_token),
        ):
            if not value or value != value.strip():
                raise InvalidInput(field, f"{field} must be set, without surrounding spaces")
        sealed = {
            "app_secret": self._secrets.encrypt(app_secret),
            "access_token": self._secrets.encrypt(access_token),
            "verify_token": self._secrets.encrypt(verify_token),
        }

        def register(changes: Changes) -> AccountSummary:
            if changes.get(account_id(ig_account_id), Account, fresh=True) is not None:
                raise AccountAlreadyRegistered(
                    f"Instagram account {ig_account_id} is already registered"
                )
            account = Account(ig_account_id=ig_account_id, username=username, by=by, **sealed)
            changes.add(account)
            return AccountSummary.of(account)

        return register

    def list(self) -> list[AccountSummary]:
        """Every registered account."""
        return [AccountSummary.of(account) for account in self._ledger.accounts()]

    def confirm_subscription(self, verify_token: str) -> bool:
        """Whether `verify_token` is the webhook verify token of an account that is served."""
        given = verify_token.encode()
        matched = False
        for account in self._ledger.accounts():
            if not account.serves_webhooks:
                continue
            expected = self._secrets.decrypt(account.verify_token).encode()
            # Compare with every account, so the time taken says nothing about which matched.
            matched |= hmac.compare_digest(expected, given)
        return matched
