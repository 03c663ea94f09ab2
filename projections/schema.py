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
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    true,
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
    Column("definition_version", Integer, nullable=False, server_default="1"),
)
"""How far each read model has followed the event log, and the definition version
(`SqlView.version`) its rows were built by. Not itself rebuilt (the auto-reply policy's
position is here): `infrastructure/migrations` creates and migrates it, with
`projection_failures`."""


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
    """As `upsert`; on PostgreSQL in one statement, all the rows sent as one JSON document.

    An executemany sends one INSERT per row (about 40 us each, in the server and in
    psycopg); a batch of a projection writes hundreds to thousands of rows. Arrays as
    parameters were no better: psycopg quotes each element of a list in Python. One JSON
    text is encoded by the standard library's C encoder and taken apart by the server
    (`json_to_recordset`). A JSON column's value keeps the very text `json.dumps` gives it,
    as SQLAlchemy writes it; None there is stored as JSON `null`, as SQLAlchemy does.
    """
    if conn.dialect.name != "postgresql" or len(rows) < 2:
        upsert(conn, table, rows, keys=keys)
        return
    conn.execute(_upsert_many_statement(table, tuple(keys)), {"rows": json.dumps(rows)})


def json_records(columns: Sequence[Column[Any]]) -> Any:
    """`json_to_recordset(:rows)` with these columns, as a FROM clause (PostgreSQL)."""
    return (
        func.json_to_recordset(cast(bindparam("rows", type_=Text), postgresql.JSON))
        .table_valued(*[Column(c.name, c.type) for c in columns])
        .render_derived(with_types=True)
    )


def rows_with_keys(table: Table, key_columns: Sequence[Column[Any]], *conditions: Any) -> Any:
    """The rows of `table` whose `key_columns` equal those of a record in the JSON array
    `:rows` (and that meet `conditions`), looked up record by record (PostgreSQL).

    A lateral join, so that each record is found through an index: with `IN (SELECT ...)`
    the planner may hash the records and scan the whole table instead.
    """
    keys = json_records(key_columns)
    matching = (
        select(table)
        .where(*[c == keys.c[c.name] for c in key_columns], *conditions)
        .offset(literal_column("0"))  # a fence: else PostgreSQL flattens the lateral join
        .lateral()
    )
    return select(*matching.c).select_from(keys).join(matching, true())


@cache
def _upsert_many_statement(table: Table, keys: tuple[str, ...]) -> Insert:
    columns = list(table.columns)
    rows = json_records(columns)
    values = select(
        *[
            func.coalesce(rows.c[c.name], literal_column("'null'::json", c.type)).label(c.name)
            if isinstance(c.type, JSON) and not c.type.none_as_null
            else rows.c[c.name]
            for c in columns
        ]
    )
    statement = postgresql.insert(table).from_select([c.name for c in columns], values)
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: statement.excluded[c.name] for c in columns if c.name not in keys},
    )


def copy_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows`, none of whose keys is stored yet (a rebuild's new rows): with COPY on
    PostgreSQL, else as `upsert`.

    COPY takes the rows as a stream, each value adapted by psycopg's C code, with no
    statement to plan and no JSON document to build and take apart (`upsert_many`).
    A JSON column's value is written as the very text `upsert_many` stores: `json.dumps`
    of it, and `null` for None, so the two ways store the same bytes.
    """
    if conn.dialect.name != "postgresql" or len(rows) < 2:
        upsert(conn, table, rows, keys=[c.name for c in table.primary_key.columns])
        return
    names, encoded = _copy_columns(table)
    translate = conn.get_execution_options().get("schema_translate_map") or {}
    schema = translate.get(table.schema, table.schema)
    quote = conn.dialect.identifier_preparer.quote
    into = f"{quote(schema)}.{quote(table.name)}" if schema else quote(table.name)
    columns = ", ".join(quote(name) for name in names)
    dumps = json.dumps
    driver: Any = conn.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(f"COPY {into} ({columns}) FROM STDIN") as copy:
        write_row = copy.write_row
        for row in rows:
            values = [row.get(name) for name in names]
            for index, none_as_null in encoded:
                value = values[index]
                if value is None:
                    if not none_as_null:
                        values[index] = "null"
                elif value == []:
                    values[index] = "[]"  # as `json.dumps` writes them, without its cost
                else:
                    values[index] = dumps(value)
            write_row(values)


@cache
def _copy_columns(table: Table) -> tuple[tuple[str, ...], tuple[tuple[int, bool], ...]]:
    """The table's column names, and the JSON columns' indexes, each with whether None
    is SQL NULL there (else JSON `null`, SQLAlchemy's default, as `upsert_many` stores)."""
    columns = list(table.columns)
    encoded = tuple(
        (index, bool(column.type.none_as_null))
        for index, column in enumerate(columns)
        if isinstance(column.type, JSON)
    )
    return tuple(c.name for c in columns), encoded
