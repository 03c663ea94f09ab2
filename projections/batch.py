"""The rows one batch of events reads and changes, kept in memory until the view writes
them with its tracking position (`SqlView.apply`, in `projections/view.py`).

A projection's handlers get and put rows through a `Batch`; the rows it will need are
preloaded in one query per table, and only the rows changed are written, in one
statement per table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Select,
    Table,
    delete,
    select,
    tuple_,
)

from projections.mirror import Mirror
from projections.schema import copy_rows, rows_with_keys, upsert_many

Row = dict[str, Any]
Key = tuple[Any, ...]


class Batch:
    """The rows one batch of events reads and changes, written back when the batch ends."""

    def __init__(self, conn: Connection, mirror: Mirror | None = None) -> None:
        self.conn = conn
        self.mirror = mirror
        """What the view's tables hold, if only this process writes them (a rebuild's new
        view, see `projections.mirror`): rows are taken from it rather than read, and rows
        new to the tables are written with COPY."""
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
        if self.mirror is not None:
            wanted = self._from_mirror(self.mirror, table.name, wanted)
            if not wanted:
                return
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

    def _from_mirror(self, mirror: Mirror, name: str, wanted: list[Key]) -> list[Key]:
        """Take the rows the mirror knows about (held, or known not stored); the keys it
        cannot tell about, to be read from the database."""
        unknown: list[Key] = []
        rows = self._rows
        held = mirror.rows
        complete = mirror.complete
        for k in wanted:
            found = (name, k)
            row = held.get(found)
            if row is not None:
                rows[found] = row.copy()  # the batch changes its own copy
            elif complete:
                rows[found] = None
            else:
                unknown.append(k)
        return unknown

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
        mirror = self.mirror
        for name, key in self._deleted:
            self.written.add(name)
            if mirror is not None:
                mirror.stage(name, key, None)
                if mirror.stored(name, key) is False:
                    continue  # never stored: nothing to delete
            table = self._tables[name]
            primary = list(table.primary_key.columns)
            self.conn.execute(
                delete(table).where(*(c == v for c, v in zip(primary, key, strict=True)))
            )
        self._deleted.clear()
        by_table: dict[str, list[Row]] = {}
        new_by_table: dict[str, list[Row]] = {}
        for name, key in self._dirty:
            row = self._rows[(name, key)]
            if row is None:
                continue
            if mirror is None:
                by_table.setdefault(name, []).append(row)
                continue
            if mirror.complete and (name, key) not in mirror.rows:
                new_by_table.setdefault(name, []).append(row)
            else:
                by_table.setdefault(name, []).append(row)
            mirror.stage(name, key, row)
        for name, rows in new_by_table.items():
            self.written.add(name)
            copy_rows(self.conn, self._tables[name], rows)
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
