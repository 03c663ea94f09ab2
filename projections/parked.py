"""Events a projection could not apply: parked, so that one bad event stops no one else.

A projection applies the log in order, so an event its handler fails on would otherwise
be retried forever, and every account's events behind it would wait. After a bounded
number of attempts the runner parks such an event: a row here says which projection,
which position in the log, and what went wrong; the view's position moves past it in the
same transaction. `projections status` and `/readyz` report parked events, and
`dmledger projections retry-parked` applies them again once the cause is fixed.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)

from projections.schema import metadata

ERROR_CHARS = 2000
"""An error's description is cut to this length (a driver may quote a whole statement)."""

projection_failures = Table(
    "projection_failures",
    metadata,
    Column("projection", String(100), primary_key=True),
    Column("notification_id", BigInteger, primary_key=True),
    Column("application_name", String(100), nullable=False),
    Column("topic", Text, nullable=False),
    Column("originator_id", String(36), nullable=False),
    Column("originator_version", BigInteger, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("parked_at", BigInteger, nullable=False),
    Column("retried_at", BigInteger),
)
"""The events each projection parked, by position in the log."""


class ParkedEvent(msgspec.Struct, frozen=True):
    """An event a projection skipped, and why."""

    projection: str
    notification_id: int
    topic: str
    originator_id: str
    originator_version: int
    error: str
    attempts: int
    parked_at: int
    """Milliseconds since 1970."""
    retried_at: int | None


def describe(error: BaseException) -> str:
    """A one-paragraph description of an error, safe to store in a text column.

    SQLAlchemy's errors quote the statement and its parameters (a message's text among
    them): the driver's own message is enough, and keeps personal data out of the table.
    """
    cause = getattr(error, "orig", None) or error
    text = f"{type(cause).__name__}: {cause}".split("\n[SQL:", 1)[0]
    return text.replace("\x00", "\ufffd")[:ERROR_CHARS]


def park(
    conn: Connection,
    projection: str,
    application_name: str,
    event: Any,
    position: int,
    error: BaseException,
    attempts: int,
    *,
    at: int,
) -> None:
    """Record that `projection` skips the event at `position` (in the caller's transaction)
    at `at` (ms since the epoch)."""
    conn.execute(
        delete(projection_failures).where(
            projection_failures.c.projection == projection,
            projection_failures.c.notification_id == position,
        )
    )
    conn.execute(
        projection_failures.insert().values(
            projection=projection,
            notification_id=position,
            application_name=application_name,
            topic=type(event).TOPIC,
            originator_id=str(event.originator_id),
            originator_version=int(event.originator_version),
            error=describe(error),
            attempts=attempts,
            parked_at=at,
        )
    )


def unpark(conn: Connection, projection: str, position: int) -> None:
    """The event at `position` has been applied to `projection` after all."""
    conn.execute(
        delete(projection_failures).where(
            projection_failures.c.projection == projection,
            projection_failures.c.notification_id == position,
        )
    )


def still_failing(
    engine: Engine, projection: str, position: int, error: BaseException, *, at: int
) -> None:
    """A retry of a parked event failed again at `at` (ms since the epoch): say so."""
    with engine.begin() as conn:
        conn.execute(
            update(projection_failures)
            .where(
                projection_failures.c.projection == projection,
                projection_failures.c.notification_id == position,
            )
            .values(
                error=describe(error),
                attempts=projection_failures.c.attempts + 1,
                retried_at=at,
            )
        )


def forget(conn: Connection, projection: str) -> None:
    """Drop every parked event of `projection` (its view is rebuilt from zero)."""
    conn.execute(delete(projection_failures).where(projection_failures.c.projection == projection))


def parked_events(engine: Engine, projection: str | None = None) -> list[ParkedEvent]:
    """The parked events, of one projection or all, in log order."""
    query = select(projection_failures).order_by(
        projection_failures.c.notification_id, projection_failures.c.projection
    )
    if projection is not None:
        query = query.where(projection_failures.c.projection == projection)
    with engine.connect() as conn:
        return [
            ParkedEvent(
                projection=row.projection,
                notification_id=int(row.notification_id),
                topic=row.topic,
                originator_id=row.originator_id,
                originator_version=int(row.originator_version),
                error=row.error,
                attempts=int(row.attempts),
                parked_at=int(row.parked_at),
                retried_at=int(row.retried_at) if row.retried_at is not None else None,
            )
            for row in conn.execute(query)
        ]


def parked_counts(conn: Connection) -> dict[str, int]:
    """How many events each projection has parked (projections with none are absent)."""
    query = select(projection_failures.c.projection, func.count()).group_by(
        projection_failures.c.projection
    )
    return {name: int(count) for name, count in conn.execute(query)}
