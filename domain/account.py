"""The `Account` aggregate: an Instagram professional account that dmledger serves."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.identity import account_id

REGISTERED = "dmledger:Account.Registered"
"""The stored topic of the event that registers an account."""


class AccountStatus(StrEnum):
    """Whether an account's webhooks are stored and acted on."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"


class Account(Aggregate):
    """An Instagram professional account, with its Meta credentials held only as ciphertext.

    `app_secret`, `access_token` and `verify_token` are ciphertexts produced by the
    application's secret box; the domain never sees a secret in clear text.
    """

    TOPIC = "dmledger:Account"

    class Event(Aggregate.Event):
        """Base of every account event."""

        TOPIC = "dmledger:Account.Event"

    class Created(Event, Aggregate.Created):
        """Base of the account's creation event."""

        TOPIC = "dmledger:Account.Created"

    @staticmethod
    def create_id(ig_account_id: str, **_: Any) -> UUID:
        """Accounts are identified by their Instagram account id."""
        return account_id(ig_account_id)

    @event("Registered", topic=REGISTERED)
    def __init__(
        self,
        ig_account_id: str,
        username: str,
        app_secret: str,
        access_token: str,
        verify_token: str,
        by: str,
    ) -> None:
        self.ig_account_id = ig_account_id
        self.username = username
        self.app_secret = app_secret
        self.access_token = access_token
        self.verify_token = verify_token
        self.status = AccountStatus.ACTIVE
        self.registered_by = by

    @property
    def serves_webhooks(self) -> bool:
        """Whether webhooks addressed to this account are stored (history is kept either way)."""
        return self.status is not AccountStatus.DEACTIVATED

    def __repr__(self) -> str:
        # Never show credentials, even as ciphertext, in logs or tracebacks.
        return f"Account(ig_account_id={self.ig_account_id!r}, username={self.username!r})"
