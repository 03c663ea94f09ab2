"""Where a rebuild builds its views before they replace the live ones.

A rebuild that dropped the live views and then stopped (the database gone, an operator's
^C, an event no handler can take) left them empty. So a rebuild writes new views in a
space of its own, and each replaces its live view in one transaction when it is
complete: the live rows, parked events and position are swapped for the new ones, or,
if anything fails before, left exactly as they were. A live view built by another
definition version (`projections.definitions`) has its tables made anew in that same
transaction, so a rebuild is also how a read model's tables change.

The space is a schema beside the live one on PostgreSQL (the tables are copied across
with INSERT ... SELECT in the server), and a database file beside the live one on SQLite
(attached for the copy).
"""

from __future__ import annotations

import os
import uuid
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, text

from projections.definitions import stored_version
from projections.parked import projection_failures
from projections.schema import tracking, writing
from projections.view import SqlView


class RebuildSpace:
    """A scratch schema (PostgreSQL) or file (SQLite) for new views, and their swap."""

    def __init__(self, live: Engine) -> None:
        self.live = live
        self._postgres = live.dialect.name == "postgresql"
        suffix = uuid.uuid4().hex[:8]
        if self._postgres:
            translate = live.get_execution_options().get("schema_translate_map") or {}
            with live.connect() as conn:
                self._live_schema = (
                    translate.get(None)
                    or conn.execute(text("SELECT current_schema()")).scalar_one()
                )
            self._schema = f"dmledger_rebuild_{suffix}"
            with live.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{self._schema}"')
            self.engine: Engine = live.execution_options(schema_translate_map={None: self._schema})
        else:
            path = live.url.database or ""
            self._file = f"{path}.rebuild-{suffix}"
            self.engine = create_engine(
                f"sqlite:///{self._file}", connect_args={"check_same_thread": False}
            )

    def __enter__(self) -> RebuildSpace:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Remove the space and whatever is still in it."""
        if self._postgres:
            with self.live.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')
        else:
            self.engine.dispose()
            for leftover in (self._file, f"{self._file}-wal", f"{self._file}-shm"):
                if os.path.exists(leftover):
                    os.remove(leftover)

    def swap(self, live: SqlView, built: SqlView) -> None:
        """Replace `live`'s rows, parked events and position by those of `built` (a view of
        the same class in this space), in one transaction of the live database."""
        if self._postgres:
            with writing(self.live) as conn:
                self._copy(conn, live, self._qualify_postgres)
        else:
            self.engine.dispose()  # everything written is in the file
            with self.live.connect() as conn:
                driver: Any = conn.connection.driver_connection
                # Outside any transaction: SQLite cannot attach within one.
                driver.execute("ATTACH DATABASE ? AS rebuilt", (self._file,))
                try:
                    with conn.execution_options(dmledger_writing=True).begin():
                        self._copy(conn, live, self._qualify_sqlite)
                finally:
                    driver.execute("DETACH DATABASE rebuilt")

    def _copy(self, conn: Connection, live: SqlView, qualify: Any) -> None:
        if stored_version(conn, live.name) != live.version:
            # Built by another definition (or never): the live tables are made anew from
            # this one, in this transaction, so a changed table gets its new columns.
            for table in reversed(live.tables):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {qualify(conn, table, live=True)}")
            for table in live.tables:
                table.create(conn)
        elif self._postgres and live.tables:
            # TRUNCATE, not DELETE: no dead row left behind per live row (see SqlView.drop).
            names = ", ".join(qualify(conn, table, live=True) for table in live.tables)
            conn.exec_driver_sql(f"TRUNCATE {names}")
        # Identifiers only are formatted in (quoted by the dialect); values are bound.
        for table in () if self._postgres else live.tables:
            conn.execute(text(f"DELETE FROM {qualify(conn, table, live=True)}"))  # noqa: S608
        for table in live.tables:
            _copy_rows(conn, table, qualify)
        where = "WHERE projection = :projection"
        for table in (projection_failures, tracking):
            found = qualify(conn, table, live=True)
            conn.execute(text(f"DELETE FROM {found} {where}"), {"projection": live.name})  # noqa: S608
            _copy_rows(conn, table, qualify, where, projection=live.name)
        live.replaced(conn)

    def _qualify_postgres(self, conn: Connection, table: Table, *, live: bool) -> str:
        quote = conn.dialect.identifier_preparer.quote
        schema = self._live_schema if live else self._schema
        return f"{quote(schema)}.{quote(table.name)}"

    @staticmethod
    def _qualify_sqlite(conn: Connection, table: Table, *, live: bool) -> str:
        quote = conn.dialect.identifier_preparer.quote
        return f"{'main' if live else 'rebuilt'}.{quote(table.name)}"


def _copy_rows(
    conn: Connection, table: Table, qualify: Any, where: str = "", **values: Any
) -> None:
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c.name) for c in table.columns)
    into, source = qualify(conn, table, live=True), qualify(conn, table, live=False)
    statement = f"INSERT INTO {into} ({columns}) SELECT {columns} FROM {source} {where}"  # noqa: S608
    conn.execute(text(statement), values)
