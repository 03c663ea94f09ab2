"""The SQL database of the read models (SQLAlchemy), chosen by `DMLEDGER_DATABASE_URL`.

The read models live beside the event log: in the same PostgreSQL database and schema,
or in the same SQLite file. With `memory://` they go to a temporary SQLite file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from sqlalchemy import Engine, create_engine, event

from projections.schema import WRITING


def create_view_engine(database_url: str) -> Engine:
    """An engine for the read models' tables."""
    if database_url.startswith("memory://"):
        directory = tempfile.mkdtemp(prefix="dmledger-views-")
        return _sqlite_engine(f"sqlite:///{directory}/views.sqlite3")
    if database_url.startswith("sqlite://"):
        path = database_url.removeprefix("sqlite:///")
        if path == ":memory:":
            directory = tempfile.mkdtemp(prefix="dmledger-views-")
            return _sqlite_engine(f"sqlite:///{directory}/views.sqlite3")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_engine(database_url)
    parts = urlsplit(database_url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    url = urlunsplit(parts._replace(scheme="postgresql+psycopg", query=""))
    engine = create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)
    if "schema" in query:
        engine = engine.execution_options(schema_translate_map={None: query["schema"]})
    return engine


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _: Any) -> None:
        # A writing transaction takes the write lock when it starts: SQLite cannot wait for
        # a lock that a reading transaction tries to upgrade ("database is locked").
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        # Content removed from a view (an unsend, an erasure) is overwritten in the file,
        # not left in its free pages.
        dbapi_connection.execute("PRAGMA secure_delete=ON")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        writing = conn.get_execution_options().get(WRITING, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine
