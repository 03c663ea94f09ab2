"""The `ApiKey` aggregate: a key the CRM, an operator or an auditor uses on the REST API.

Only a hash of the key's secret is stored; the key itself is shown once, when issued.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.identity import DMLEDGER_NAMESPACE

ISSUED = "dmledger:ApiKey.Issued"
REVOKED = "dmledger:ApiKey.Revoked"


class Role(StrEnum):
    """What a key may do."""

    ADMIN = "admin"
    """Everything, on every account."""
    ACCOUNT = "account"
    """Read and act on one account's conversations and rules."""
    AUDITOR = "auditor"
    """Read one account's (or, without an account, every account's) history; change nothing."""


def api_key_id(key_id: str) -> UUID:
    """The aggregate id of the key whose public id is `key_id`."""
    return uuid5(DMLEDGER_NAMESPACE, f"api-key:{key_id}")


class ApiKey(Aggregate):
    """An API key: who may use the REST API, for which account, and whether it still may."""

    TOPIC = "dmledger:ApiKey"

    class Event(Aggregate.Event):
        """Base of every API key event."""

        TOPIC = "dmledger:ApiKey.Event"

    class Created(Event, Aggregate.Created):
        """Base of the key's creation event."""

        TOPIC = "dmledger:ApiKey.Created"

    @staticmethod
    def create_id(key_id: str, **_: Any) -> UUID:
        return api_key_id(key_id)

    @event("Issued", topic=ISSUED)
    def __init__(
        self,
        key_id: str,
        name: str,
        role: str,
        ig_account_id: str | None,
        secret_hash: str,
        by: str,
    ) -> None:
        self.key_id = key_id
        self.name = name
        self.role = role
        self.ig_account_id = ig_account_id
        self.secret_hash = secret_hash
        self.issued_by = by
        self.revoked = False

    def revoke(self, *, by: str) -> bool:
        """Stop the key from working; False if it already was revoked."""
        if self.revoked:
            return False
        self._revoked(by=by)
        return True

    @event("Revoked", topic=REVOKED)
    def _revoked(self, by: str) -> None:
        self.revoked = True

    def __repr__(self) -> str:
        return f"ApiKey(key_id={self.key_id!r}, name={self.name!r}, role={self.role!r})"
