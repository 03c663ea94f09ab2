"""What the infrastructure takes from eventsourcing (and psycopg_pool) beyond their
documented APIs, in one place.

Checked against the eventsourcing versions `application.eventsourcing_compat.CHECKED_VERSIONS`
(the range pyproject.toml pins). `tests/unit/test_eventsourcing_compat.py` checks that
each part below still exists with the signature we call (and, for a hook we override,
that the library still calls it), and fails loudly when an upgrade changes one. The
application layer's parts (`Application._record`, `_notify`, the aggregate cache and
snapshots) are in `application.eventsourcing_compat`.

The private parts, and why each is used:

- `SQLiteApplicationRecorder._create_table(c)` and `._insert_events(c, stored_events,
  **kwargs)`: overridden by `SQLiteRecorderHooks`, so the chained SQLite recorder can add
  a column to an old chain table, and write each event's chain link in the insert's
  transaction, once the events have their positions (`after_create_table`,
  `after_insert_events`).
- `PostgresApplicationRecorder._lock_table(curs)` and `._notify_channel(curs)`: our
  pipelined insert (`postgres_recorder.LedgerPostgresRecorder.insert_events`) takes the
  same table lock and sends the same NOTIFY as the library's insert.
- `PostgresApplicationRecorder.max_notification_id.__wrapped__` and
  `PostgresAggregateRecorder.insert_events.__wrapped__`: the library's methods without its
  `retry` decorator (ten attempts), so that ours (two attempts, and none while the circuit
  is open) is the only one.
- `PostgresApplicationRecorder.sql_create_statements` and
  `.create_insert_function_statement_index`: the statement that creates the library's
  insert function, unused with `POSTGRES_ENABLE_DB_FUNCTIONS` off, is dropped (processes
  starting together failed on it with "tuple concurrently updated").
- `PostgresAggregateRecorder.select_events_statement`: our binary `select_events` starts
  from the library's statement.
- `PostgresDatastore.pool._check` (psycopg_pool's `ConnectionPool._check`): the pool takes
  its connection check only when built, and eventsourcing builds the pool; ours pings only
  connections idle for a second.
- `JSONTranscoder._decode_obj(obj)` and `.types`: the msgspec transcoder revives the
  library's `{"_type_": ..., "_data_": ...}` markers with the library's own code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import JSONTranscoder, StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Identifier

from infrastructure.sql_statements import rendered


class SQLiteRecorderHooks(SQLiteApplicationRecorder):
    """`SQLiteApplicationRecorder` with hooks after it creates its tables and inserts events."""

    def _create_table(self, c: SQLiteCursor) -> None:
        super()._create_table(c)
        self.after_create_table(c)

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        self.after_insert_events(c, stored_events, positions, **kwargs)
        return positions

    def after_create_table(self, c: SQLiteCursor) -> None:
        """Called in the transaction that creates the tables, after them."""

    def after_insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        positions: Sequence[int] | None,
        **kwargs: Any,
    ) -> None:
        """Called in the insert's transaction (holding SQLite's write lock), after the
        events, with the keyword arguments of `insert_events`."""


def lock_table(recorder: PostgresApplicationRecorder, curs: Cursor[DictRow]) -> None:
    """Send the library's table lock of an insert."""
    recorder._lock_table(curs)


def notify_channel(recorder: PostgresApplicationRecorder, curs: Cursor[DictRow]) -> None:
    """Send the library's NOTIFY of an insert: the statement of its `_notify_channel`, on
    the channel its listeners LISTEN to, rendered once (the library composes it anew for
    every insert)."""
    curs.execute(_notify_statement(recorder.channel_name))


@functools.cache
def _notify_statement(channel_name: str) -> bytes:
    return rendered(SQL("NOTIFY {0}").format(Identifier(channel_name)))


def render_insert_statements(recorder: PostgresApplicationRecorder) -> None:
    """Render the library's table lock statements once (`infrastructure.sql_statements`):
    it composes them at start and psycopg renders them again on every insert."""
    recorder.lock_table_statements = [
        rendered(s) if isinstance(s, Composable) else s for s in recorder.lock_table_statements
    ]


def max_notification_id_once(recorder: PostgresApplicationRecorder) -> int | None:
    """The library's `max_notification_id`, tried once (without its retries)."""
    result: int | None = PostgresApplicationRecorder.max_notification_id.__wrapped__(recorder)
    return result


def insert_events_once(
    recorder: PostgresAggregateRecorder, stored_events: Sequence[StoredEvent], **kwargs: Any
) -> Sequence[int] | None:
    """The library's `PostgresAggregateRecorder.insert_events`, tried once."""
    result: Sequence[int] | None = PostgresAggregateRecorder.insert_events.__wrapped__(
        recorder, stored_events, **kwargs
    )
    return result


def drop_insert_function_statement(recorder: PostgresApplicationRecorder) -> None:
    """Leave out the statement that creates the library's insert function."""
    del recorder.sql_create_statements[recorder.create_insert_function_statement_index]


def set_pool_check(datastore: PostgresDatastore, check: Callable[[Connection[Any]], None]) -> None:
    """Make the pool check each connection it hands out with `check`."""
    datastore.pool._check = check


def decode_marked(transcoder: JSONTranscoder, obj: dict[str, Any]) -> Any:
    """The value of a `{"_type_": ..., "_data_": ...}` marker, as the library decodes it."""
    return transcoder._decode_obj(obj)
