"""The PostgreSQL recorder of the ledger: a short, bounded retry, and a fast insert.

eventsourcing 9.5.6 retries a lost connection ten times, each try waiting up to the
pool's connect timeout: with the database down, a webhook would wait about a minute
before we could answer 503. Meta gives up after 20 s, and a quick 503 is what makes it
deliver again. Here each operation tries twice (enough to replace a connection the
server closed), so an outage is reported within a few seconds.

The insert is the ledger writer's group commit, so it is made cheap:
- The library sends events as one array of a composite type, which psycopg writes out
  as text in Python, escaping every byte of every state with regular expressions (about
  75 us per event). Here the INSERT takes four parallel arrays in binary (uuid[],
  bigint[], text[], bytea[]), which psycopg writes in C.
- The library waits for the INSERT's answer before it sends COMMIT. Here BEGIN, the
  table lock, NOTIFY, INSERT and COMMIT go out in one pipeline: one round trip (two with
  the audit chain's links, whose reads go out in the first). An error aborts the rest
  of the pipeline, so a failed INSERT is never committed.
- The INSERT also checks, under the table lock, that the aggregates the events were
  decided on (`expected_versions`) have not moved on, so the writer need not re-read
  accounts before each batch.
- The pool pings a connection before handing it out only when it has been idle for a
  second (see `_ping_only_idle_connections`).
- A circuit on the pool (`ConnectionCircuit`, in `infrastructure/postgres_connections.py`
  with the bounded `retry`): after consecutive connection failures every caller fails at
  once, instead of waiting out the pool's timeout twice (4 s a webhook, 4 s a readiness
  probe, measured with the database cut); a probe in the background closes it when the
  database answers again.
The rows, their order, the table lock and the NOTIFY are as in the library.

Over 300 lines: each method here replaces a step of the library's recorder (see
`infrastructure/eventsourcing_compat.py`), and the insert's pipeline, its checks and the
binary select read as one path; the connection circuit is a module of its own.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    InterfaceError,
    Notification,
    OperationalError,
    ProgrammingError,
    RecordConflictError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from psycopg import Connection, Cursor
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool

from infrastructure.account_index import PostgresAccountIndex
from infrastructure.content_keys import PostgresContentKeys, keys_of
from infrastructure.eventsourcing_compat import (
    drop_insert_function_statement,
    insert_events_once,
    lock_table,
    max_notification_id_once,
    notify_channel,
    render_insert_statements,
    set_pool_check,
)
from infrastructure.item_keys import ItemKey, PostgresItemKeys
from infrastructure.notification_rows import notifications_of
from infrastructure.postgres_connections import install_circuit, retry
from infrastructure.sql_statements import rendered

log = logging.getLogger(__name__)

ATTEMPTS = 2
WAIT = 0.1
_MOVED_ON = "an aggregate these events were decided on has changed since it was read"


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    """`PostgresApplicationRecorder` with `ATTEMPTS` tries per operation, and a fast insert."""

    validates_reads = True
    """`insert_events` takes `expected_versions` (see there)."""
    links_events = False
    """Whether `_link` writes something beside each insert (the audit chain does)."""

    def _read_for_link(
        self, conn: Connection[DictRow], stack: ExitStack, stored_events: Sequence[StoredEvent]
    ) -> Any:
        """Send what `_link` must read under the table lock (nothing here).

        Runs in the insert's pipeline, after the lock and before the INSERT: the reads go
        out with it, in its first round trip. Cursors opened here go on `stack`; what is
        returned is given to `_link`, which fetches their answers.
        """

    def _link(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        positions: list[int],
        reads: Any,
    ) -> None:
        """Write what goes with inserted events, in their transaction (nothing here)."""

    def _committed(self) -> None:
        """Called after an insert's transaction committed (after `_link`)."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        if not datastore.enable_db_functions:
            # The library creates its insert function on every start, unused with db
            # functions off; `CREATE OR REPLACE FUNCTION` run by processes starting at the
            # same moment fails with "tuple concurrently updated", and the process with it.
            drop_insert_function_statement(self)
        if datastore.pre_ping:
            _ping_only_idle_connections(datastore)
        install_circuit(datastore)
        render_insert_statements(self)
        self.content_keys = PostgresContentKeys(self.datastore.schema, self.events_table_name)
        self.check_identifier_length(self.content_keys.name)
        self.account_index = PostgresAccountIndex(self.datastore.schema, self.events_table_name)
        for name in self.account_index.table_names:
            self.check_identifier_length(name)
        # The account index is made with the event store's tables, by the library's
        # create_table (called by `dmledger db upgrade`), as an index of the events table.
        self.sql_create_statements.extend(self.account_index.create_statements)
        self.item_keys = PostgresItemKeys(self.datastore.schema, self.events_table_name)
        self.check_identifier_length(self.item_keys.name)
        self.sql_create_statements.extend(self.item_keys.create_statements)
        names = {
            "schema": Identifier(self.datastore.schema),
            "table": Identifier(self.events_table_name),
        }
        # Nothing is inserted if an aggregate the writer read has moved on since. Its
        # latest version is a scalar subquery, one index lookup per read aggregate: as a
        # join, PostgreSQL planned a scan of the whole events table for every batch
        # (tests/integration/test_insert_cost.py).
        moved_on = SQL(
            "EXISTS (SELECT FROM unnest(%b::uuid[], %b::bigint[]) AS r(id, version) "
            "  WHERE (SELECT max(e.originator_version) FROM {schema}.{table} e "
            "         WHERE e.originator_id = r.id) > r.version)"
        ).format(**names)
        self._insert_statement = rendered(
            SQL(
                "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
                "WHERE NOT {moved_on} RETURNING notification_id"
            ).format(moved_on=moved_on, **names)
        )
        self._moved_on_statement = rendered(
            SQL("SELECT {moved_on} AS moved_on").format(moved_on=moved_on)
        )
        # The same lookup: an aggregate's latest version, not a pass over all its events.
        self._versions_statement = rendered(
            SQL(
                "SELECT * FROM (SELECT r.id AS originator_id, "
                "  (SELECT max(e.originator_version) FROM {schema}.{table} e "
                "   WHERE e.originator_id = r.id) AS version "
                "  FROM unnest(%b::uuid[]) AS r(id)) AS v WHERE version IS NOT NULL"
            ).format(**names)
        )

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def stored_versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        """Each aggregate's latest stored version, in one query (absent ones left out)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._versions_statement, (list(aggregate_ids),), prepare=True)
            return {row["originator_id"]: int(row["version"]) for row in curs.fetchall()}

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        expected_versions: Mapping[UUID, int] | None = None,
        owners: Mapping[UUID, UUID] | None = None,
        item_keys: Sequence[ItemKey] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Insert and commit in one round trip; refuse if a read aggregate has moved on.

        `owners` names the account of each aggregate these events create (see
        `infrastructure.account_index`): the index's rows go out in the same pipeline,
        after the INSERT, and commit with it or not at all. `item_keys`, the keys the
        events record (`infrastructure.item_keys`), are written only once the INSERT has
        answered that it stored every event, as the content keys are.

        `expected_versions` are the versions of aggregates the events were decided on
        (an account whose credentials were checked, say). If another process has stored
        a later event of one of them, nothing is stored and `RecordConflictError` is
        raised, so the writer decides again on fresh state. The check runs under the
        table lock that every insert takes, so it cannot race with another insert.
        """
        if kwargs.get("tracking") is not None:
            msg = "the ledger's recorder stores no tracking records"
            raise ProgrammingError(msg)
        expected = expected_versions or {}
        read_ids, read_versions = list(expected), list(expected.values())
        if not stored_events:
            if expected:
                self._check_not_moved_on(read_ids, read_versions)
            return []
        params = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
            read_ids,
            read_versions,
        )
        new_keys, shreds = keys_of(stored_events)
        synced = self.links_events or bool(new_keys or shreds or item_keys)
        with (
            self.datastore.get_connection() as conn,
            conn.cursor() as curs,
            conn.cursor() as insert,
            ExitStack() as stack,
        ):
            # BEGIN and COMMIT are sent as statements of the pipeline: psycopg's own
            # transaction block syncs the pipeline after BEGIN, a round trip of its own.
            # The connection goes back to the pool as it came (the library's are in
            # autocommit, and its snapshot insert asserts it).
            autocommit = conn.autocommit
            conn.autocommit = True
            try:
                with conn.pipeline():
                    curs.execute("BEGIN")
                    lock_table(self, curs)
                    notify_channel(self, curs)
                    reads = (
                        self._read_for_link(conn, stack, stored_events)
                        if self.links_events
                        else None
                    )
                    insert.execute(self._insert_statement, params, prepare=True)
                    self.account_index.write(curs, stored_events, owners)
                    if synced:
                        # The links need the events' positions, and content keys are
                        # written only if the events were: fetching the INSERT's answer
                        # syncs the pipeline; the links, the keys and COMMIT then go out
                        # together, with the table still locked.
                        notification_ids = [row["notification_id"] for row in insert.fetchall()]
                        if len(notification_ids) == len(stored_events):
                            if self.links_events:
                                self._link(curs, stored_events, notification_ids, reads)
                            self.content_keys.write(curs, stored_events)
                            self.item_keys.write(curs, item_keys)
                    curs.execute("COMMIT")
                # Leaving the pipeline synced it: the answers, or the first error (which
                # skipped everything after it, COMMIT included).
                if not synced:
                    notification_ids = [row["notification_id"] for row in insert.fetchall()]
            finally:
                if not conn.closed:
                    if conn.info.transaction_status != TransactionStatus.IDLE:
                        conn.rollback()
                    conn.autocommit = autocommit
            _used[conn] = time.monotonic()
        if len(notification_ids) != len(stored_events):
            raise RecordConflictError(_MOVED_ON)
        self._committed()
        return notification_ids

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def select_item_keys(
        self, asked: Mapping[UUID, Sequence[str]]
    ) -> dict[UUID, dict[str, int | None]]:
        """The asked keys each conversation has recorded, in one query
        (`infrastructure.item_keys`)."""
        with self.datastore.get_connection() as conn, conn.cursor(binary=True) as curs:
            return self.item_keys.select(curs, asked)

    # -- the content keys (`application.ports.ContentKeyStore`) ----------------------------

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def wrapped_keys(self, key_ids: Sequence[str]) -> dict[str, str]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return self.content_keys.wrapped_keys(curs, key_ids)

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def key_counts(
        self, conversation_ids: Sequence[str], before_ms: int | None = None
    ) -> dict[str, int]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return self.content_keys.key_counts(curs, conversation_ids, before_ms)

    def rewrap_keys(self, rewrap: Callable[[str], str]) -> int:
        with self.datastore.transaction(commit=True) as curs:
            return self.content_keys.rewrap_keys(curs, rewrap)

    def _check_not_moved_on(self, read_ids: list[UUID], read_versions: list[int]) -> None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._moved_on_statement, (read_ids, read_versions), prepare=True)
            row = curs.fetchone()
        if row is not None and row["moved_on"]:
            raise RecordConflictError(_MOVED_ON)

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def select_events(self, *args: Any, **kwargs: Any) -> Sequence[StoredEvent]:
        return _select_events_binary(self, *args, **kwargs)

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The library's `select_notifications`, with results in binary (see
        `_select_events_binary`): the projection runners read every state."""
        conditions: list[SQL] = []
        params: list[Any] = []
        if start is not None:
            after = ">=" if inclusive_of_start else ">"
            conditions.append(SQL(f"notification_id {after} %s"))  # one of two literals
            params.append(start)
        if stop is not None:
            conditions.append(SQL("notification_id <= %s"))
            params.append(stop)
        if topics:
            conditions.append(SQL("topic = ANY(%s)"))
            params.append(list(topics))
        statement = SQL("SELECT * FROM {schema}.{table}").format(
            schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)
        )
        if conditions:
            statement += SQL(" WHERE ") + SQL(" AND ").join(conditions)
        statement += SQL(" ORDER BY notification_id LIMIT %s")
        params.append(limit)
        with self.datastore.get_connection() as conn, conn.cursor(binary=True) as curs:
            curs.execute(statement, params, prepare=True)
            return notifications_of(curs.fetchall())

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def max_notification_id(self) -> int | None:
        return max_notification_id_once(self)

    # -- each account's events (infrastructure.account_index) ------------------------------

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def account_index_built(self) -> bool:
        """Whether every event of the log is in the account index."""
        with self.datastore.get_connection() as conn:
            return self.account_index.is_built(conn)

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def select_account_notifications(
        self, account_id: UUID, start: int, stop: int, limit: int, topics: Sequence[str] = ()
    ) -> Sequence[Notification]:
        """The account's notifications from `start` to `stop` (both included), in order."""
        with self.datastore.get_connection() as conn:
            return self.account_index.select(conn, account_id, start, stop, limit, topics)

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def account_aggregates(self, account_id: UUID) -> set[UUID]:
        """The aggregates the account owns (itself and its conversations)."""
        with self.datastore.get_connection() as conn:
            return self.account_index.owned(conn, account_id)

    def build_account_index(self, owners: Mapping[UUID, UUID]) -> None:
        """Index the whole log, given the owner of every owned aggregate in it."""
        with self.datastore.get_connection() as conn:
            self.account_index.build(conn, owners)


_used: weakref.WeakKeyDictionary[Connection[Any], float] = weakref.WeakKeyDictionary()
"""When the ledger's insert last used each connection (monotonic seconds)."""
PING_AFTER_IDLE = 1.0
"""A connection used for an insert within this many seconds is not pinged again."""


def _ping_only_idle_connections(datastore: PostgresDatastore) -> None:
    """Check a pooled connection before use only if it has been idle a while.

    With `pre_ping`, the pool checks every connection it hands out: a round trip before
    each of the writer's inserts, about a fifth of its time under load. A connection the
    writer used a moment ago is as good as the ping would say; one idle for longer may
    have been closed by a restarted server, and is checked as before. An insert on a
    connection that broke in between fails, and the insert's retry takes another.
    """

    def check(conn: Connection[Any]) -> None:
        last_used = _used.get(conn)
        if last_used is not None and time.monotonic() - last_used < PING_AFTER_IDLE:
            return
        ConnectionPool.check_connection(conn)

    # psycopg_pool takes its check only when built, and eventsourcing builds the pool.
    set_pool_check(datastore, check)


def _select_events_binary(
    recorder: PostgresAggregateRecorder,
    originator_id: UUID | str,
    *,
    gt: int | None = None,
    lte: int | None = None,
    desc: bool = False,
    limit: int | None = None,
) -> list[StoredEvent]:
    """The library's `select_events`, with results in binary.

    In text, each state comes as hex that psycopg decodes in Python: a long
    conversation's 440 kB snapshot took 4-5 ms to read that way, under 1 ms in binary.
    """
    statement = recorder.select_events_statement
    params: list[Any] = [originator_id]
    if gt is not None:
        params.append(gt)
        statement += SQL(" AND originator_version > %s")
    if lte is not None:
        params.append(lte)
        statement += SQL(" AND originator_version <= %s")
    statement += SQL(" ORDER BY originator_version") + SQL(" DESC" if desc else "")
    if limit is not None:
        params.append(limit)
        statement += SQL(" LIMIT %s")
    with recorder.datastore.get_connection() as conn, conn.cursor(binary=True) as curs:
        curs.execute(statement, params, prepare=True)
        return [
            StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"],
            )
            for row in curs.fetchall()
        ]


class SnapshotPostgresRecorder(PostgresAggregateRecorder):
    """The snapshot store's recorder, with the same bounded retries and circuit as the
    ledger's."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        install_circuit(datastore)

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return insert_events_once(self, stored_events, **kwargs)

    @retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS, wait=WAIT)
    def select_events(self, *args: Any, **kwargs: Any) -> Sequence[StoredEvent]:
        return _select_events_binary(self, *args, **kwargs)


class LedgerPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, with the ledger's recorders."""

    aggregate_recorder_class = SnapshotPostgresRecorder
    application_recorder_class = LedgerPostgresRecorder
