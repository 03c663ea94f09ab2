"""A PostgreSQL row of the events table as the library's `Notification`: one mapping, for
every reader that selects whole rows (the log in order, an account's events)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eventsourcing.persistence import Notification


def notifications_of(rows: Iterable[Mapping[str, Any]]) -> list[Notification]:
    """Rows with the events table's columns (`notification_id`, `originator_id`, ...)."""
    return [
        Notification(
            id=row["notification_id"],
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=row["state"],
        )
        for row in rows
    ]
