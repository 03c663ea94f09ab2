"""The SQL tables of every read model, defined once for PostgreSQL and SQLite (SQLAlchemy Core)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Insert,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

metadata = MetaData()

WRITING = "dmledger_writing"
"""Execution option of transactions that write (SQLite takes its write lock up front)."""


def writing(engine: Engine) -> AbstractContextManager[Connection]:
    """A transaction that writes: `with writing(engine) as conn: ...`."""
    return engine.execution_options(**{WRITING: True}).begin()


tracking = Table(
    "projection_tracking",
    metadata,
    Column("projection", String(100), primary_key=True),
    Column("application_name", String(100), nullable=False),
    Column("notification_id", BigInteger, nullable=False),
)
"""How far each read model has followed the event log."""


def upsert(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str]
) -> None:
    """Insert `rows`, replacing the rows with the same `keys`."""
    if not rows:
        return
    conn.execute(_upsert_statement(conn.dialect.name, table, tuple(keys)), list(rows))


@cache
def _upsert_statement(dialect_name: str, table: Table, keys: tuple[str, ...]) -> Insert:
    # Built once: building it, and its cache key, cost more than running it (a projection
    # writes its tracking row with it after every batch).
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = dialect.insert(table)
    columns = [c.name for c in table.columns if c.name not in keys]
    upserting: Insert = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: statement.excluded[name] for name in columns},
    )
    return upserting


def upsert_many(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str]
) -> None:
    """As `upsert`; on PostgreSQL in one statement, each column sent as one array.

    An executemany sends one INSERT per row (about 40 us each, in the server and in
    psycopg); a batch of a projection writes hundreds of rows. JSON columns go as text
    and are cast by the server; None is stored as JSON `null`, as SQLAlchemy does.
    """
    if conn.dialect.name != "postgresql" or len(rows) < 2:
        upsert(conn, table, rows, keys=keys)
        return
    params: dict[str, list[Any]] = {}
    for column in table.columns:
        name = column.name
        if isinstance(column.type, JSON):
            if column.type.none_as_null:
                params[name] = [
                    None if (v := row.get(name)) is None else json.dumps(v) for row in rows
                ]
            else:
                params[name] = [json.dumps(row.get(name)) for row in rows]
        else:
            params[name] = [row.get(name) for row in rows]
    conn.execute(
        _upsert_many_statement(table, tuple(keys)), {f"p_{k}": v for k, v in params.items()}
    )


@cache
def _upsert_many_statement(table: Table, keys: tuple[str, ...]) -> Insert:
    columns = list(table.columns)
    arrays = [
        cast(
            bindparam(f"p_{c.name}"),
            postgresql.ARRAY(Text if isinstance(c.type, JSON) else c.type),
        )
        for c in columns
    ]
    rows = func.unnest(*arrays).table_valued(*[c.name for c in columns]).render_derived()
    values = select(
        *[
            cast(rows.c[c.name], c.type).label(c.name)
            if isinstance(c.type, JSON)
            else rows.c[c.name]
            for c in columns
        ]
    )
    statement = postgresql.insert(table).from_select([c.name for c in columns], values)
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: statement.excluded[c.name] for c in columns if c.name not in keys},
    )
