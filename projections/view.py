"""A read model kept in SQL tables, with its tracking position written in the same transaction.

A `SqlView` is an eventsourcing `TrackingRecorder`: the runner hands it a batch of events,
the projection changes rows in memory through a `Batch`, and the view writes the changed
rows and the new tracking position in one transaction. A crash between batches loses
both or neither, so a restarted runner carries on exactly where the view stands.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from operator import itemgetter
from typing import Any, cast

from eventsourcing.persistence import Tracking, TrackingRecorder, WaitInterruptedError
from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Select,
    Table,
    bindparam,
    delete,
    select,
    tuple_,
)

from projections.parked import forget, projection_failures
from projections.schema import metadata, rows_with_keys, tracking, upsert, upsert_many, writing

Row = dict[str, Any]
Key = tuple[Any, ...]


class ViewMovedOn(Exception):
    """Another runner moved the view past where this batch starts: nothing was written."""


class Batch:
    """The rows one batch of events reads and changes, written back when the batch ends."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.notes: dict[str, Any] = {}
        """What a projection keeps for the length of one batch (lookups of its own)."""
        self._rows: dict[tuple[str, Key], Row | None] = {}
        self._tables: dict[str, Table] = {}
        self._dirty: set[tuple[str, Key]] = set()
        self._deleted: set[tuple[str, Key]] = set()
        self.written: set[str] = set()
        """Names of the tables whose rows `write` changed."""
        self._indexed = False

    def preload(self, table: Table, keys: Iterable[Key]) -> None:
        """Read the rows with these primary keys in a few queries (absent ones are remembered)."""
        wanted = [k for k in set(keys) if (table.name, k) not in self._rows]
        if not wanted:
            return
        self._tables[table.name] = table
        primary = list(table.primary_key.columns)
        names = [c.name for c in primary]
        postgres = self.conn.dialect.name == "postgresql"
        size = 5000 if postgres else 500
        for start in range(0, len(wanted), size):
            chunk = wanted[start : start + size]
            for k in chunk:
                self._rows[(table.name, k)] = None
            if postgres:
                self._by_index(len(chunk))
                # The keys as one JSON parameter: one statement, compiled once, and no
                # quoting of each key in Python.
                keys_json = json.dumps([dict(zip(names, k, strict=True)) for k in chunk])
                found_rows = self.conn.execute(_preload_statement(table), {"rows": keys_json})
            elif len(primary) == 1:
                condition = primary[0].in_([k[0] for k in chunk])
                found_rows = self.conn.execute(select(table).where(condition))
            else:
                condition = tuple_(*primary).in_(chunk)
                found_rows = self.conn.execute(select(table).where(condition))
            key_of = _key_of(table)
            for found in _dicts(found_rows):
                self._rows[(table.name, key_of(found))] = found

    def load(self, table: Table, *conditions: Any) -> list[Row]:
        """The rows matching `conditions`, as they stand in this batch (one query).

        A row this batch already holds is returned as the batch has it, not as stored;
        rows the batch has deleted or changed so that they no longer match are still
        returned: check them again.
        """
        self._tables[table.name] = table
        return self._take(table, _dicts(self.conn.execute(select(table).where(*conditions))))

    def load_json(self, table: Table, query: Select[Any], rows: Sequence[Row]) -> list[Row]:
        """As `load`, for a query of `table`'s rows that takes `rows` as the JSON parameter
        `:rows` (see `projections.schema.json_records`; PostgreSQL)."""
        self._tables[table.name] = table
        self._by_index(len(rows))
        return self._take(table, _dicts(self.conn.execute(query, {"rows": json.dumps(rows)})))

    def _by_index(self, keys: int) -> None:
        """Have PostgreSQL find rows by key through their index for the rest of the batch.

        Right after a view is dropped (truncated) its tables have no statistics, so the
        planner takes them for a few pages and scans them once per key looked up, while
        the rebuild fills them: quadratic. A lookup by key never needs a sequential scan.
        A live runner's small batches are left alone (one round trip less each).
        """
        if not self._indexed and keys >= 100:
            self.conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            self._indexed = True

    def _take(self, table: Table, stored_rows: Iterable[Row]) -> list[Row]:
        key_of = _key_of(table)
        found: list[Row] = []
        for stored in stored_rows:
            key = (table.name, key_of(stored))
            if key not in self._rows:
                self._rows[key] = stored
            row = self._rows[key]
            if row is not None:
                found.append(row)
        return found

    def get(self, table: Table, key: Key) -> Row | None:
        """The row with this primary key as it stands in this batch, or None."""
        try:
            return self._rows[(table.name, key)]
        except KeyError:
            self.preload(table, [key])
            return self._rows[(table.name, key)]

    def put(self, table: Table, row: Row) -> Row:
        """Insert or replace a row; it is written when the batch ends."""
        name = table.name
        found = (name, _key_of(table)(row))
        if self._deleted:
            self._deleted.discard(found)
        self._tables[name] = table
        self._rows[found] = row
        self._dirty.add(found)
        return row

    def in_memory(self, table: Table) -> list[Row]:
        """The rows of `table` this batch has read or changed so far."""
        return [r for (name, _), r in self._rows.items() if name == table.name and r is not None]

    def delete(self, table: Table, row: Row) -> None:
        """Remove a row (when the batch ends)."""
        key = tuple(row[name] for name in key_names(table))
        self._tables[table.name] = table
        self._rows[(table.name, key)] = None
        self._dirty.discard((table.name, key))
        self._deleted.add((table.name, key))

    def changed(self, table: Table, row: Row) -> None:
        """Mark a row got from `get` as changed."""
        self.put(table, row)

    def write(self) -> None:
        for name, key in self._deleted:
            self.written.add(name)
            table = self._tables[name]
            primary = list(table.primary_key.columns)
            self.conn.execute(
                delete(table).where(*(c == v for c, v in zip(primary, key, strict=True)))
            )
        self._deleted.clear()
        by_table: dict[str, list[Row]] = {}
        for name, key in self._dirty:
            row = self._rows[(name, key)]
            if row is not None:
                by_table.setdefault(name, []).append(row)
        for name, rows in by_table.items():
            self.written.add(name)
            table = self._tables[name]
            upsert_many(self.conn, table, rows, keys=[c.name for c in table.primary_key.columns])
        self._dirty.clear()


@cache
def key_names(table: Table) -> tuple[str, ...]:
    """The names of the table's primary key columns (SQLAlchemy's collections are slow)."""
    return tuple(c.name for c in table.primary_key.columns)


def _dicts(result: CursorResult[Any]) -> Iterator[Row]:
    """The rows of a result as dicts (`dict(row_mapping)` builds a key view per row)."""
    names = list(result.keys())
    for values in result:
        yield dict(zip(names, values, strict=True))


@cache
def _key_of(table: Table) -> Callable[[Row], Key]:
    """A function giving a row's primary key (called for every row a batch changes)."""
    names = key_names(table)
    if len(names) == 1:
        only = names[0]
        return lambda row: (row[only],)
    return cast(Callable[[Row], Key], itemgetter(*names))


@cache
def _preload_statement(table: Table) -> Select[Any]:
    """The rows of `table` whose primary keys are in the JSON array `:rows` (PostgreSQL)."""
    return rows_with_keys(table, list(table.primary_key.columns))  # type: ignore[no-any-return]


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

    notify: str | None = None
    """A PostgreSQL channel to NOTIFY when a batch commits (who waits for this view)."""
    announced: Sequence[Table] | None = None
    """The tables whose changes are news to the NOTIFY channel and the `on_applied`
    listeners; None for all of them. A batch that changed none of them stays quiet."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._advanced = threading.Condition()
        self._listeners: list[Callable[[], None]] = []

    def on_applied(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after each batch this process commits to the view that changed
        its `announced` tables; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def create_tables(self) -> None:
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
        with writing(self.engine) as conn:
            if after is not None:
                current = self._current(conn, tracking_record.application_name)
                if current != after:
                    raise ViewMovedOn(f"{self.name} is at {current}, not at {after}")
            batch = Batch(conn)
            change(batch)
            batch.write()
            self._insert_tracking(conn, tracking_record)
            news = self._is_news(batch)
            if news and self.notify and conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"NOTIFY {self.notify}")
        with self._advanced:
            self._advanced.notify_all()
        if news:
            for listener in self._listeners:
                listener()

    def reapply(self, change: Callable[[Batch], None]) -> None:
        """Run `change` on a batch and write its rows, leaving the view's position where it
        is (a parked event applied late); the position's row is locked meanwhile, so a
        runner's batches wait for it rather than overwrite its rows."""
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
        upsert(
            conn,
            tracking,
            [
                {
                    "projection": self.name,
                    "application_name": record.application_name,
                    "notification_id": record.notification_id,
                }
            ],
            keys=["projection"],
        )

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
