"""A read model kept in SQL tables, with its tracking position written in the same transaction.

A `SqlView` is an eventsourcing `TrackingRecorder`: the runner hands it a batch of events,
the projection changes rows in memory through a `Batch`, and the view writes the changed
rows and the new tracking position in one transaction. A crash between batches loses
both or neither, so a restarted runner carries on exactly where the view stands.

The `Batch` (the rows a batch of events reads and changes, in memory) is in
`projections/batch.py`; projections import it from here, with the view.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder, WaitInterruptedError
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    bindparam,
    delete,
    select,
)

from projections.batch import Batch, Key, Row
from projections.mirror import Mirror
from projections.parked import forget, projection_failures
from projections.schema import metadata, tracking, upsert, writing

__all__ = ["Batch", "Key", "Row", "SqlView", "ViewMovedOn"]


class ViewMovedOn(Exception):
    """Another runner moved the view past where this batch starts: nothing was written."""


def _qualified(conn: Connection, table: Table) -> str:
    """The table's quoted name, in the schema the connection's schema translation says."""
    translate = conn.get_execution_options().get("schema_translate_map") or {}
    schema = translate.get(table.schema, table.schema)
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(table.name)}" if schema else quote(table.name)


class SqlView(TrackingRecorder):
    """A read model in SQL tables; its own tracking row says how far it has followed the log."""

    name: str = ""
    """The projection's name: its tracking row, and what `projections rebuild` takes."""
    tables: Sequence[Table] = ()
    """The read model's own tables: made by `create_tables`, never migrated. A read model
    is rebuilt from the log instead (its projection says whether it may be)."""
    version: int = 1
    """The definition version: raise it when `tables` or what the projection writes into
    them change. A view whose rows were built by another version is rebuilt (the rebuild
    makes its tables anew); see `projections.definitions`."""

    notify: str | None = None
    """A PostgreSQL channel to NOTIFY when a batch commits (who waits for this view)."""
    announced: Sequence[Table] | None = None
    """The tables whose changes are news to the NOTIFY channel and the `on_applied`
    listeners; None for all of them. A batch that changed none of them stays quiet."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._advanced = threading.Condition()
        self._listeners: list[Callable[[], None]] = []
        self.mirror: Mirror | None = None
        """What the view's tables hold, when only this process writes them (a rebuild's
        new view: `projections.mirror`); None for a live view, which others write too."""

    def on_applied(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after each batch this process commits to the view that changed
        its `announced` tables; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def create_tables(self) -> None:
        """Make the view's tables where missing. `tracking` and `projection_failures` are
        the migrations' in a live database, and made here in a rebuild's own space."""
        metadata.create_all(self.engine, tables=[tracking, projection_failures, *self.tables])

    def drop(self) -> None:
        """Forget everything: the rows and the tracking position (for a rebuild).

        On PostgreSQL the tables are truncated: a DELETE leaves every row behind as a dead
        tuple until a vacuum, and a rebuild right after it wrote into tables and indexes
        several times their size (after a few rebuilds of the bench log, message_history
        held 48k live and 550k dead rows). TRUNCATE waits for readers of the tables, and
        commits with the tracking row or not at all.
        """
        with writing(self.engine) as conn:
            if conn.dialect.name == "postgresql" and self.tables:
                names = ", ".join(_qualified(conn, table) for table in self.tables)
                conn.exec_driver_sql(f"TRUNCATE {names}")
            else:
                for table in reversed(self.tables):
                    conn.execute(delete(table))
            conn.execute(delete(tracking).where(tracking.c.projection == self.name))
            forget(conn, self.name)
            self.replaced(conn)
        if self.mirror is not None:
            self.mirror.clear()

    def replaced(self, conn: Connection) -> None:
        """Called in the transaction that drops the view or swaps a rebuilt one in: what
        else must change with its rows (nothing, unless a view says otherwise)."""

    def apply(
        self,
        tracking_record: Tracking,
        change: Callable[[Batch], None],
        *,
        after: int | None = None,
    ) -> None:
        """Run `change` on a batch, then write its rows and the tracking, in one transaction.

        With `after` (the position the batch follows), the batch is refused with
        `ViewMovedOn` if the view is no longer there: another runner applied it first.
        """
        try:
            with writing(self.engine) as conn:
                news = self.write(conn, tracking_record, change, after=after)
        except BaseException:
            if self.mirror is not None:
                self.mirror.forget()  # its staged rows were not stored
            raise
        if self.mirror is not None:
            self.mirror.commit()
        self.applied(news)

    def write(
        self,
        conn: Connection,
        tracking_record: Tracking,
        change: Callable[[Batch], None],
        *,
        after: int | None = None,
    ) -> bool:
        """As `apply`, in the caller's transaction (the process's follower writes every
        view's batch in one: `projections.follower`); whether the batch is news to the
        view's listeners, whom the caller tells with `applied` once it has committed."""
        if after is not None:
            current = self._current(conn, tracking_record.application_name)
            if current != after:
                raise ViewMovedOn(f"{self.name} is at {current}, not at {after}")
        news = self.write_rows(conn, change)
        self._insert_tracking(conn, tracking_record)
        return news

    def write_rows(self, conn: Connection, change: Callable[[Batch], None]) -> bool:
        """Run `change` on a batch and write its rows in the caller's transaction, without
        the tracking row; whether the batch is news to the view's listeners."""
        batch = Batch(conn, self.mirror)
        change(batch)
        batch.write()
        news = self._is_news(batch)
        if news and self.notify and conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"NOTIFY {self.notify}")
        return news

    def applied(self, news: bool) -> None:
        """A batch of this view has committed: wake who waits for its position, and its
        listeners if the batch was news to them."""
        with self._advanced:
            self._advanced.notify_all()
        if news:
            for listener in self._listeners:
                listener()

    def reapply(self, change: Callable[[Batch], None]) -> None:
        """Run `change` on a batch and write its rows, leaving the view's position where it
        is (a parked event applied late); the position's row is locked meanwhile, so a
        runner's batches wait for it rather than overwrite its rows."""
        if self.mirror is not None:
            self.mirror.forget()  # rows change here behind it
        with writing(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    select(tracking.c.notification_id)
                    .where(tracking.c.projection == self.name)
                    .with_for_update()
                )
            batch = Batch(conn)
            change(batch)
            batch.write()
        with self._advanced:
            self._advanced.notify_all()
        if self._is_news(batch):
            for listener in self._listeners:
                listener()

    def _is_news(self, batch: Batch) -> bool:
        if self.announced is None:
            return bool(batch.written)
        return any(t.name in batch.written for t in self.announced)

    def _current(self, conn: Connection, application_name: str) -> int:
        query = _position_query(conn.dialect.name == "postgresql")
        found = conn.execute(query, {"name": self.name, "application": application_name}).scalar()
        return int(found) if found is not None else 0

    # -- TrackingRecorder ---------------------------------------------------------------

    def insert_tracking(self, tracking: Tracking) -> None:
        with writing(self.engine) as conn:
            self._insert_tracking(conn, tracking)

    def _insert_tracking(self, conn: Connection, record: Tracking) -> None:
        upsert(conn, tracking, [self.tracking_row(record)], keys=["projection"])

    def tracking_row(self, record: Tracking) -> dict[str, Any]:
        """The view's row of `projection_tracking` at `record`."""
        return {
            "projection": self.name,
            "application_name": record.application_name,
            "notification_id": record.notification_id,
            "definition_version": self.version,
        }

    def max_tracking_id(self, application_name: str) -> int | None:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(tracking.c.notification_id).where(
                    tracking.c.projection == self.name,
                    tracking.c.application_name == application_name,
                )
            ).scalar()
        return int(found) if found is not None else None

    def wait(
        self,
        application_name: str,
        notification_id: int | None,
        timeout: float = 1.0,
        interrupt: threading.Event | None = None,
    ) -> None:
        """Block until the view has followed the log to `notification_id`.

        Woken at once by a runner in this process; polls for one in another process.
        """
        import time

        deadline = time.monotonic() + timeout
        while not self.has_tracking_id(application_name, notification_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = f"{self.name} has not reached notification {notification_id} in {timeout}s"
                raise TimeoutError(msg)
            if interrupt is not None and interrupt.is_set():
                raise WaitInterruptedError
            with self._advanced:
                self._advanced.wait(min(remaining, 0.05))


@cache
def _position_query(lock: bool) -> Select[Any]:
    """A view's tracking position (locked until the transaction ends, on PostgreSQL);
    built once, since each batch of each runner reads it."""
    query = select(tracking.c.notification_id).where(
        tracking.c.projection == bindparam("name"),
        tracking.c.application_name == bindparam("application"),
    )
    return query.with_for_update() if lock else query


def positions(
    conn: Connection, application_name: str, names: Sequence[str], *, lock: bool = False
) -> dict[str, int]:
    """The tracking positions of the views named, in one query (0 for a view that has
    none); locked until the transaction ends with `lock`, on PostgreSQL."""
    query = _positions_query(lock and conn.dialect.name == "postgresql")
    found = conn.execute(query, {"names": list(names), "application": application_name})
    stood = {str(name): int(position) for name, position in found}
    return {name: stood.get(name, 0) for name in names}


@cache
def _positions_query(lock: bool) -> Select[Any]:
    query = select(tracking.c.projection, tracking.c.notification_id).where(
        tracking.c.projection.in_(bindparam("names", expanding=True)),
        tracking.c.application_name == bindparam("application"),
    )
    return query.with_for_update() if lock else query
