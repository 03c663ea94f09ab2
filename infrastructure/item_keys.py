"""The index of every key each conversation has recorded (`<events table>_item_keys`).

A conversation keeps only its most recent keys (`domain.recorded_keys`); this table keeps
all of them, so that a redelivery days later is still refused. One row per key: the
aggregate, a digest of the key (16 bytes of SHA-256: keys name Meta's ids and, for a
reaction, its emoji; the table holds none of it in clear), and the value the conversation
records with it (Meta's time of a message, else NULL). Rows are written by the ledger's
recorders in the transaction that inserts the events that record the keys (the
`item_keys` keyword of `insert_events`, see `application.ledger.Ledger.before_record`),
and only if those events were inserted. The ledger writer asks for the keys of a batch in
one query (`select`). Migration 0006 fills the table from a log stored before it existed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from infrastructure.sql_statements import rendered

ItemKey = tuple[UUID, str, int | None]
"""(aggregate id, key, value): one key an inserted event records."""

CHUNK = 400
"""Rows per SQLite statement (two parameters each, under SQLite's 999)."""


def digest(key: str) -> bytes:
    """What the table keeps of a key."""
    return hashlib.sha256(key.encode()).digest()[:16]


def _asked(asked: Mapping[UUID, Sequence[str]]) -> dict[tuple[UUID, bytes], str]:
    return {(a, digest(k)): k for a, keys in asked.items() for k in keys}


class PostgresItemKeys:
    """The key index's statements on PostgreSQL."""

    def __init__(self, schema: str, events_table_name: str) -> None:
        self.name = f"{events_table_name}_item_keys"
        names = {"schema": Identifier(schema), "table": Identifier(self.name)}
        self.create_statements: list[Composed] = [
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} (originator_id uuid NOT NULL, "
                "key_digest bytea NOT NULL, value bigint, "
                "PRIMARY KEY (originator_id, key_digest))"
            ).format(**names)
        ]
        # ON CONFLICT: a key is recorded once by its conversation; a row already there
        # was written by migration 0006 from the same event.
        self._insert = rendered(
            SQL(
                "INSERT INTO {schema}.{table} (originator_id, key_digest, value) "
                "SELECT * FROM unnest(%b::uuid[], %b::bytea[], %b::bigint[]) ON CONFLICT DO NOTHING"
            ).format(**names)
        )
        self._select = rendered(
            SQL(
                "SELECT k.originator_id, k.key_digest, k.value FROM {schema}.{table} k "
                "JOIN unnest(%b::uuid[], %b::bytea[]) AS w(id, key_digest) "
                "ON k.originator_id = w.id AND k.key_digest = w.key_digest"
            ).format(**names)
        )

    def write(self, curs: Cursor[DictRow], item_keys: Sequence[ItemKey]) -> None:
        """Send the rows of these keys (in the insert's transaction, once it inserted)."""
        if item_keys:
            curs.execute(
                self._insert,
                (
                    [a for a, _, _ in item_keys],
                    [digest(k) for _, k, _ in item_keys],
                    [v for _, _, v in item_keys],
                ),
                prepare=True,
            )

    def select(
        self, curs: Cursor[DictRow], asked: Mapping[UUID, Sequence[str]]
    ) -> dict[UUID, dict[str, int | None]]:
        """The asked keys the index holds, with their values, by aggregate."""
        wanted = _asked(asked)
        if not wanted:
            return {}
        curs.execute(self._select, ([a for a, _ in wanted], [d for _, d in wanted]), prepare=True)
        found: dict[UUID, dict[str, int | None]] = {}
        for row in curs.fetchall():
            key = wanted[(row["originator_id"], bytes(row["key_digest"]))]
            found.setdefault(row["originator_id"], {})[key] = row["value"]
        return found


class SQLiteItemKeys:
    """The key index's statements on SQLite (aggregate ids as hex, as the events')."""

    def __init__(self, events_table_name: str) -> None:
        t = self.table = f"{events_table_name}_item_keys"
        # Table names are ours, never input: the f-strings below build no injection.
        self.create_statements = [
            f"CREATE TABLE IF NOT EXISTS {t} (originator_id TEXT NOT NULL, "
            "key_digest BLOB NOT NULL, value INTEGER, "
            "PRIMARY KEY (originator_id, key_digest)) WITHOUT ROWID"
        ]
        self._insert = f"INSERT OR IGNORE INTO {t} VALUES (?, ?, ?)"  # noqa: S608

    def write(self, c: Any, item_keys: Sequence[ItemKey]) -> None:
        """Write the rows of these keys (in the insert's transaction, after the events)."""
        if item_keys:
            c.executemany(self._insert, [(a.hex, digest(k), v) for a, k, v in item_keys])

    def select(
        self, c: Any, asked: Mapping[UUID, Sequence[str]]
    ) -> dict[UUID, dict[str, int | None]]:
        """The asked keys the index holds, with their values, by aggregate."""
        wanted = _asked(asked)
        found: dict[UUID, dict[str, int | None]] = {}
        pairs = list(wanted)
        for start in range(0, len(pairs), CHUNK):
            chunk = pairs[start : start + CHUNK]
            where = " OR ".join(["(originator_id = ? AND key_digest = ?)"] * len(chunk))
            params: list[Any] = [p for a, d in chunk for p in (a.hex, d)]
            c.execute(
                f"SELECT originator_id, key_digest, value FROM {self.table} WHERE {where}",  # noqa: S608
                params,
            )
            for row in c.fetchall():
                aggregate = UUID(row[0])
                key = wanted[(aggregate, bytes(row[1]))]
                found.setdefault(aggregate, {})[key] = row[2]
        return found
