"""The schema migrations (Alembic) of every table that is not rebuilt from the log.

What they manage: the delivery queue's state (`infrastructure/delivery_tables.py`), API
key usage (`infrastructure/key_usage.py`), the send rate counters and reusable attachment
ids (`infrastructure/send_limits.py`), the hash chain and its genesis
(`infrastructure/chained_recorders.py`), and the read models' positions and parked
events (`projections/schema.py`, `projections/parked.py`: the auto-reply policy's
position is no read model, it cannot be rebuilt). The read models' own tables are not
migrated: they are rebuilt from the log when their definition changes (`SqlView.version`).

The event store's tables (events, snapshots) are the eventsourcing library's: it creates
them (`CREATE TABLE IF NOT EXISTS`, its `create_table`) with the DDL its recorders are
written against, and a new version of the library brings its own changes. Copying its
DDL into migrations here would fork it. `dmledger db upgrade` has the library create them,
then applies these migrations.

Adding a table (or a column): add a file to `versions/`, numbered after the last one,
whose `down_revision` is the last one's `revision`, and change the table's description in
the code in the same commit; `tests/unit/test_migrations.py` checks that the migrated
database and the code's tables agree, on SQLite and PostgreSQL. Nothing else is needed:
`dmledger db upgrade` applies it, and SQLite databases upgrade themselves on start.

Migrations run on one connection of the read models' engine (the same database and, on
PostgreSQL, the schema of `?schema=`): the schema is put first on the transaction's
search path, so a migration names its tables without a schema.

Which revision a database is at, and this release's head, are answered without Alembic by
`infrastructure/schema_revision.py` (re-exported here): processes ask at every start.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

from infrastructure.schema_revision import VERSION_TABLE, current, head, known, schema_of

__all__ = ["VERSION_TABLE", "config", "current", "head", "known", "lock", "schema_of", "upgrade"]

# Alembic's INFO lines ("Context impl SQLiteImpl.") tell an operator nothing; `dmledger db
# upgrade` says what it did.
logging.getLogger("alembic").setLevel(logging.WARNING)

HERE = Path(__file__).parent
_LOCK = 7_341_120_015
"""The PostgreSQL advisory lock two `db upgrade`s take turns on."""


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration: these scripts, and the connection to run them on."""
    found = Config()
    found.set_main_option("script_location", str(HERE))
    found.attributes["connection"] = connection
    return found


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every migration the database lacks, in one transaction; (from, to)."""
    before = current(engine)
    # Our transaction, committed here: Alembic leaves one it did not begin to its caller
    # (and env.py's first query would have begun one), which would roll it back.
    with engine.execution_options(dmledger_writing=True).begin() as conn:
        command.upgrade(config(conn), "head")
    return before, head()


def lock(conn: Connection) -> None:
    """Wait for any other upgrade of this database to end (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
