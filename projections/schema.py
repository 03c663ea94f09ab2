"""The SQL tables of every read model, defined once for PostgreSQL and SQLite (SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Engine, MetaData, String, Table
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
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    columns = [c.name for c in table.columns if c.name not in keys]
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: statement.excluded[name] for name in columns},
    )
    conn.execute(statement, list(rows))
