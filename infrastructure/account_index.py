"""Each account's events by position: what the auditor's stream and `replay` read.

Two tables beside the events, written in the insert's transaction (as the chain links
are, see `infrastructure.chained_recorders`):

- `<events>_owners` (originator_id, account_id): the account each aggregate belongs to,
  written with the aggregate's first event. The application names it (the `owners`
  keyword of `insert_events`, see `application.ledger.owners_of`): an account owns
  itself and its conversations; an aggregate with no owner (an API key) is in no
  account's history.
- `<events>_by_account` (account_id, notification_id): one row per event of an owned
  aggregate, so an account's history is a range scan of its rows joined to the events
  by position, whatever the size of the log.

A log stored before the index existed has no rows for its events: `<events>_by_account_built`
holds one row once the index covers the whole log. It is written when the tables are
made on an empty log, or by `dmledger audit index` (`build`), which derives the owners
from the log. Until then readers scan the log as before (`application.audit.AuditLog`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.sqlite import SQLiteCursor
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from infrastructure.notification_rows import notifications_of
from infrastructure.sql_statements import rendered


class PostgresAccountIndex:
    """The index's tables and statements on PostgreSQL."""

    def __init__(self, schema: str, events_table: str) -> None:
        names = {
            "schema": Identifier(schema),
            "events": Identifier(events_table),
            "owners": Identifier(f"{events_table}_owners"),
            "rows": Identifier(f"{events_table}_by_account"),
            "built": Identifier(f"{events_table}_by_account_built"),
        }
        self.table_names = [f"{events_table}_owners", f"{events_table}_by_account_built"]
        self.create_statements: list[Composed] = [
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{owners} ("
                "originator_id uuid PRIMARY KEY, account_id uuid NOT NULL)"
            ).format(**names),
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{rows} ("
                "account_id uuid NOT NULL, notification_id bigint NOT NULL, "
                "PRIMARY KEY (account_id, notification_id))"
            ).format(**names),
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{built} ("
                "one boolean PRIMARY KEY DEFAULT true CHECK (one), head bigint NOT NULL)"
            ).format(**names),
            # An empty log is covered from its first event on.
            SQL(
                "INSERT INTO {schema}.{built} (head) SELECT 0 "
                "WHERE NOT EXISTS (SELECT FROM {schema}.{events}) ON CONFLICT DO NOTHING"
            ).format(**names),
        ]
        # Run after the events' INSERT, in its transaction: the owners of the aggregates
        # it created (only if their events are there: a refused insert adds none), then a
        # row for each of its events whose aggregate has an owner. ON CONFLICT: an insert
        # refused because a read aggregate moved on inserted nothing, and these events'
        # (id, version) may be another writer's, already indexed.
        self._insert_owners = rendered(
            SQL(
                "INSERT INTO {schema}.{owners} (originator_id, account_id) "
                "SELECT w.id, w.account FROM unnest(%b::uuid[], %b::uuid[]) AS w(id, account) "
                "WHERE EXISTS (SELECT FROM {schema}.{events} e WHERE e.originator_id = w.id) "
                "ON CONFLICT DO NOTHING"
            ).format(**names)
        )
        self._insert_rows = rendered(
            SQL(
                "INSERT INTO {schema}.{rows} (account_id, notification_id) "
                "SELECT o.account_id, e.notification_id "
                "FROM unnest(%b::uuid[], %b::bigint[]) AS w(id, version) "
                "JOIN {schema}.{events} e "
                "ON e.originator_id = w.id AND e.originator_version = w.version "
                "JOIN {schema}.{owners} o ON o.originator_id = w.id "
                "ON CONFLICT DO NOTHING"
            ).format(**names)
        )
        self._select = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state "
            "FROM {schema}.{rows} b "
            "JOIN {schema}.{events} e ON e.notification_id = b.notification_id "
            "WHERE b.account_id = %s AND b.notification_id >= %s AND b.notification_id <= %s "
        ).format(**names)
        self._order = SQL(" ORDER BY b.notification_id LIMIT %s")
        self._is_built = SQL("SELECT EXISTS (SELECT FROM {schema}.{built}) AS built").format(
            **names
        )
        self._owned = SQL(
            "SELECT originator_id FROM {schema}.{owners} WHERE account_id = %s"
        ).format(**names)
        self._lock = SQL("LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE").format(**names)
        self._build_owners = SQL(
            "INSERT INTO {schema}.{owners} (originator_id, account_id) "
            "SELECT * FROM unnest(%s::uuid[], %s::uuid[]) ON CONFLICT DO NOTHING"
        ).format(**names)
        self._build_rows = SQL(
            "INSERT INTO {schema}.{rows} (account_id, notification_id) "
            "SELECT o.account_id, e.notification_id FROM {schema}.{events} e "
            "JOIN {schema}.{owners} o ON o.originator_id = e.originator_id "
            "ON CONFLICT DO NOTHING"
        ).format(**names)
        self._mark_built = SQL(
            "INSERT INTO {schema}.{built} (head) "
            "SELECT coalesce(max(notification_id), 0) FROM {schema}.{events} "
            "ON CONFLICT DO NOTHING"
        ).format(**names)

    def write(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        owners: Mapping[UUID, UUID] | None,
    ) -> None:
        """Send the index's rows of these events (in the insert's pipeline, after it)."""
        if owners:
            curs.execute(self._insert_owners, (list(owners), list(owners.values())), prepare=True)
        curs.execute(
            self._insert_rows,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
            ),
            prepare=True,
        )

    def is_built(self, conn: Connection[DictRow]) -> bool:
        row = conn.execute(self._is_built).fetchone()
        return bool(row and row["built"])

    def select(
        self,
        conn: Connection[DictRow],
        account_id: UUID,
        start: int,
        stop: int,
        limit: int,
        topics: Sequence[str],
    ) -> list[Notification]:
        statement = self._select
        params: list[Any] = [account_id, start, stop]
        if topics:
            statement += SQL("AND e.topic = ANY(%s)")
            params.append(list(topics))
        statement += self._order
        params.append(limit)
        with conn.cursor(binary=True) as curs:
            curs.execute(statement, params, prepare=True)
            return notifications_of(curs.fetchall())

    def owned(self, conn: Connection[DictRow], account_id: UUID) -> set[UUID]:
        return {row["originator_id"] for row in conn.execute(self._owned, (account_id,))}

    def build(self, conn: Connection[DictRow], owners: Mapping[UUID, UUID]) -> None:
        """Index the whole log, given every aggregate's owner; mark the index built.

        Inserts wait meanwhile (the events table's lock, which every insert takes): an
        event stored during the build, of an aggregate whose owner only this transaction
        adds, would otherwise get no row."""
        with conn.transaction():
            conn.execute(self._lock)
            conn.execute(self._build_owners, (list(owners), list(owners.values())))
            conn.execute(self._build_rows)
            conn.execute(self._mark_built)


class SQLiteAccountIndex:
    """The index's tables and statements on SQLite (positions are the events' rowids)."""

    def __init__(self, events_table: str) -> None:
        events = events_table
        owners = f"{events_table}_owners"
        rows = f"{events_table}_by_account"
        built = f"{events_table}_by_account_built"
        # Table names are ours, never input: the f-strings below build no injection.
        self.create_statements = [
            f"CREATE TABLE IF NOT EXISTS {owners} ("
            "originator_id TEXT PRIMARY KEY, account_id TEXT NOT NULL) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {rows} ("
            "account_id TEXT NOT NULL, notification_id INTEGER NOT NULL, "
            "PRIMARY KEY (account_id, notification_id)) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {built} ("
            "one INTEGER PRIMARY KEY CHECK (one = 1), head INTEGER NOT NULL)",
        ]
        self._mark_if_empty = (
            f"INSERT OR IGNORE INTO {built} (one, head) SELECT 1, 0 "  # noqa: S608
            f"WHERE NOT EXISTS (SELECT 1 FROM {events})"
        )
        self._marked_or_not_empty = (
            f"SELECT EXISTS (SELECT 1 FROM {built}) OR EXISTS (SELECT 1 FROM {events})"  # noqa: S608
        )
        self._insert_owner = f"INSERT OR IGNORE INTO {owners} VALUES (?, ?)"  # noqa: S608
        self._insert_row = (
            f"INSERT OR IGNORE INTO {rows} (account_id, notification_id) "  # noqa: S608
            f"SELECT account_id, ? FROM {owners} WHERE originator_id = ?"
        )
        self._select = (
            "SELECT e.rowid AS notification_id, e.originator_id, e.originator_version, "  # noqa: S608
            f"e.topic, e.state FROM {rows} b JOIN {events} e ON e.rowid = b.notification_id "
            "WHERE b.account_id = ? AND b.notification_id >= ? AND b.notification_id <= ? "
        )
        self._is_built = f"SELECT EXISTS (SELECT 1 FROM {built})"  # noqa: S608
        self._owned = f"SELECT originator_id FROM {owners} WHERE account_id = ?"  # noqa: S608
        self._build_rows = (
            f"INSERT OR IGNORE INTO {rows} (account_id, notification_id) "  # noqa: S608
            f"SELECT o.account_id, e.rowid FROM {events} e "
            f"JOIN {owners} o ON o.originator_id = e.originator_id"
        )
        self._mark_built = (
            f"INSERT OR IGNORE INTO {built} (one, head) "  # noqa: S608
            f"SELECT 1, coalesce(max(rowid), 0) FROM {events}"
        )

    def after_create(self, c: SQLiteCursor) -> None:
        # Every process runs this at start, in the library's create_table transaction. Read
        # first and write only when there is something to mark: a write after the reads
        # would need SQLite's write lock, which a deferred transaction cannot wait for
        # while `serve` writes ("database is locked" at once, not after the lock timeout).
        c.execute(self._marked_or_not_empty)
        if c.fetchone()[0]:
            return
        c.execute(self._mark_if_empty)

    def write(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        positions: Sequence[int],
        owners: Mapping[UUID, UUID] | None,
    ) -> None:
        """Write the index's rows of these events (in the insert's transaction)."""
        if owners:
            c.executemany(self._insert_owner, [(i.hex, a.hex) for i, a in owners.items()])
        c.executemany(
            self._insert_row,
            [
                (position, _hex(e.originator_id))
                for position, e in zip(positions, stored_events, strict=True)
            ],
        )

    def is_built(self, c: SQLiteCursor) -> bool:
        c.execute(self._is_built)
        return bool(c.fetchone()[0])

    def select(
        self,
        c: SQLiteCursor,
        account_id: UUID,
        start: int,
        stop: int,
        limit: int,
        topics: Sequence[str],
    ) -> list[Notification]:
        statement = self._select
        params: list[Any] = [account_id.hex, start, stop]
        if topics:
            statement += f"AND e.topic IN ({','.join('?' * len(topics))}) "
            params.extend(topics)
        statement += "ORDER BY b.notification_id LIMIT ?"
        params.append(limit)
        c.execute(statement, params)
        return [
            Notification(
                id=row["notification_id"],
                originator_id=UUID(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in c.fetchall()
        ]

    def owned(self, c: SQLiteCursor, account_id: UUID) -> set[UUID]:
        c.execute(self._owned, (account_id.hex,))
        return {UUID(row[0]) for row in c.fetchall()}

    def build(self, c: SQLiteCursor, owners: Mapping[UUID, UUID]) -> None:
        """Index the whole log, given every aggregate's owner (in a write transaction,
        which holds SQLite's one write lock); mark the index built."""
        c.executemany(self._insert_owner, [(i.hex, a.hex) for i, a in owners.items()])
        c.execute(self._build_rows)
        c.execute(self._mark_built)


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else UUID(originator_id).hex
