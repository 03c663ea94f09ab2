"""The PostgreSQL recorder of the ledger, with a short, bounded retry on a lost connection.

eventsourcing 9.5.6 retries a lost connection ten times, each try waiting up to the
pool's connect timeout: with the database down, a webhook would wait about a minute
before we could answer 503. Meta gives up after 20 s, and a quick 503 is what makes it
deliver again. Here each operation tries twice (enough to replace a connection the
server closed), so an outage is reported within a few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import (
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry

ATTEMPTS = 2
WAIT = 0.1

_base = PostgresApplicationRecorder


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    """`PostgresApplicationRecorder` with `ATTEMPTS` tries per operation instead of ten."""

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        result: Sequence[int] | None = _base.insert_events.__wrapped__(
            self, stored_events, **kwargs
        )
        return result

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def select_events(self, *args: Any, **kwargs: Any) -> Sequence[StoredEvent]:
        result: Sequence[StoredEvent] = _base.select_events.__wrapped__(self, *args, **kwargs)
        return result

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def select_notifications(self, *args: Any, **kwargs: Any) -> Sequence[Notification]:
        result: Sequence[Notification] = _base.select_notifications.__wrapped__(
            self, *args, **kwargs
        )
        return result

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def max_notification_id(self) -> int | None:
        result: int | None = _base.max_notification_id.__wrapped__(self)
        return result
