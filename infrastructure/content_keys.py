"""The table of content data keys, beside the events (`<events table>_content_keys`).

Each row is one message's data key, wrapped by the secret keys (see
`infrastructure/content_envelope.py`), with what it may be destroyed by: its conversation,
its message's `mid`, and when it was recorded. Rows are inserted and deleted only in the
transaction that inserts the events that make or destroy them (`KeyedStoredEvent`), by the
ledger's recorders (`infrastructure/chained_recorders.py`). The table is not rebuilt from
the log, and a deleted row is gone for good: that is the point. SQLite overwrites deleted
rows with zeros (`secure_delete`); PostgreSQL leaves a dead row until VACUUM reclaims it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from application.content import NewKey, Shred
from infrastructure.sql_statements import rendered

CHUNK = 500
"""Ids per `IN (...)` on SQLite."""


def keys_of(stored_events: Sequence[StoredEvent]) -> tuple[list[NewKey], list[Shred]]:
    """The data keys these events store and destroy."""
    new: list[NewKey] = []
    shreds: list[Shred] = []
    for e in stored_events:
        new.extend(getattr(e, "new_keys", ()))
        shreds.extend(getattr(e, "shreds", ()))
    return new, shreds


class SQLiteContentKeys:
    """The key table's statements on SQLite (run on the recorder's cursors)."""

    def __init__(self, events_table_name: str) -> None:
        self.table = f"{events_table_name}_content_keys"

    def create_statements(self) -> list[str]:
        t = self.table
        return [
            f"CREATE TABLE IF NOT EXISTS {t} (key_id TEXT PRIMARY KEY, "
            "conversation_id TEXT NOT NULL, mid TEXT, recorded_at INTEGER NOT NULL, "
            "wrapped TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {t}_conversation ON {t} (conversation_id, mid)",
        ]

    def write(self, c: Any, stored_events: Sequence[StoredEvent]) -> None:
        """Store and destroy the keys of these events, in their insert's transaction."""
        new, shreds = keys_of(stored_events)
        if new:
            c.executemany(
                f"INSERT INTO {self.table} VALUES (?,?,?,?,?)",  # noqa: S608 - our table name
                [(k.key_id, k.conversation_id, k.mid, k.recorded_at, k.wrapped) for k in new],
            )
        if shreds:
            # Deleted rows are overwritten, not left in free pages of the file.
            c.execute("PRAGMA secure_delete = ON")
        for shred in shreds:
            where, params = self._where(shred)
            c.execute(f"DELETE FROM {self.table} WHERE {where}", params)  # noqa: S608

    def _where(self, shred: Shred) -> tuple[str, list[Any]]:
        marks = ",".join("?" * len(shred.conversation_ids))
        where = f"conversation_id IN ({marks})"
        params: list[Any] = list(shred.conversation_ids)
        if shred.mid is not None:
            where += " AND mid = ?"
            params.append(shred.mid)
        if shred.before_ms is not None:
            where += " AND recorded_at < ?"
            params.append(shred.before_ms)
        return where, params

    def wrapped_keys(self, c: Any, key_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(key_ids), CHUNK):
            chunk = key_ids[start : start + CHUNK]
            c.execute(
                f"SELECT key_id, wrapped FROM {self.table} "  # noqa: S608
                f"WHERE key_id IN ({','.join('?' * len(chunk))})",
                list(chunk),
            )
            found.update((row[0], row[1]) for row in c.fetchall())
        return found

    def key_counts(
        self, c: Any, conversation_ids: Sequence[str], before_ms: int | None
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        for start in range(0, len(conversation_ids), CHUNK):
            shred = Shred(tuple(conversation_ids[start : start + CHUNK]), before_ms=before_ms)
            where, params = self._where(shred)
            c.execute(
                f"SELECT conversation_id, count(*) FROM {self.table} "  # noqa: S608
                f"WHERE {where} GROUP BY conversation_id",
                params,
            )
            counts.update((row[0], int(row[1])) for row in c.fetchall())
        return counts

    def rewrap_keys(self, c: Any, rewrap: Callable[[str], str]) -> int:
        c.execute(f"SELECT key_id, wrapped FROM {self.table}")  # noqa: S608
        rows = [(rewrap(row[1]), row[0]) for row in c.fetchall()]
        c.executemany(f"UPDATE {self.table} SET wrapped = ? WHERE key_id = ?", rows)  # noqa: S608
        return len(rows)


class PostgresContentKeys:
    """The key table's statements on PostgreSQL."""

    def __init__(self, schema: str, events_table_name: str) -> None:
        self.name = f"{events_table_name}_content_keys"
        self._names = {"schema": Identifier(schema), "table": Identifier(self.name)}
        self._insert = rendered(
            self._sql(
                "INSERT INTO {schema}.{table} (key_id, conversation_id, mid, recorded_at, wrapped) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[])"
            )
        )
        self._select = rendered(
            self._sql("SELECT key_id, wrapped FROM {schema}.{table} WHERE key_id = ANY(%s::text[])")
        )

    def _sql(self, statement: str) -> Composed:
        return SQL(statement).format(**self._names)

    def create_statements(self) -> list[Composed]:
        return [
            self._sql(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} (key_id text PRIMARY KEY, "
                "conversation_id text NOT NULL, mid text, recorded_at bigint NOT NULL, "
                "wrapped text NOT NULL)"
            ),
            SQL(
                "CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} (conversation_id, mid)"
            ).format(index=Identifier(f"{self.name}_conversation"), **self._names),
        ]

    def write(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> bool:
        """Send the inserts and deletes of these events' keys; whether there were any."""
        new, shreds = keys_of(stored_events)
        if new:
            curs.execute(
                self._insert,
                (
                    [k.key_id for k in new],
                    [k.conversation_id for k in new],
                    [k.mid for k in new],
                    [k.recorded_at for k in new],
                    [k.wrapped for k in new],
                ),
            )
        for shred in shreds:
            where, params = self._where(shred)
            # `where` is made of our own column names and placeholders, never of input.
            curs.execute(self._sql("DELETE FROM {schema}.{table} WHERE " + where), params)  # noqa: S608
        return bool(new or shreds)

    @staticmethod
    def _where(shred: Shred) -> tuple[str, list[Any]]:
        where = "conversation_id = ANY(%s::text[])"
        params: list[Any] = [list(shred.conversation_ids)]
        if shred.mid is not None:
            where += " AND mid = %s"
            params.append(shred.mid)
        if shred.before_ms is not None:
            where += " AND recorded_at < %s"
            params.append(shred.before_ms)
        return where, params

    def wrapped_keys(self, curs: Cursor[DictRow], key_ids: Sequence[str]) -> dict[str, str]:
        curs.execute(self._select, (list(key_ids),), prepare=True)
        return {row["key_id"]: row["wrapped"] for row in curs.fetchall()}

    def key_counts(
        self, curs: Cursor[DictRow], conversation_ids: Sequence[str], before_ms: int | None
    ) -> dict[str, int]:
        where, params = self._where(Shred(tuple(conversation_ids), before_ms=before_ms))
        statement = (
            "SELECT conversation_id, count(*) AS n FROM {schema}.{table} "  # noqa: S608
            "WHERE " + where + " GROUP BY conversation_id"
        )
        curs.execute(self._sql(statement), params)
        return {row["conversation_id"]: int(row["n"]) for row in curs.fetchall()}

    def rewrap_keys(self, curs: Cursor[DictRow], rewrap: Callable[[str], str]) -> int:
        curs.execute(self._sql("SELECT key_id, wrapped FROM {schema}.{table} FOR UPDATE"))
        rows = curs.fetchall()
        if rows:
            curs.execute(
                self._sql(
                    "UPDATE {schema}.{table} k SET wrapped = w.wrapped FROM "
                    "unnest(%s::text[], %s::text[]) AS w(key_id, wrapped) "
                    "WHERE k.key_id = w.key_id"
                ),
                ([r["key_id"] for r in rows], [rewrap(r["wrapped"]) for r in rows]),
            )
        return len(rows)
