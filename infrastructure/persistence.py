"""Choosing the event store from `DMLEDGER_DATABASE_URL`: PostgreSQL, SQLite, or memory."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from infrastructure.settings import SettingsError

TRANSCODER = {"TRANSCODER_TOPIC": "infrastructure.msgspec_transcoder:MsgspecTranscoder"}
"""eventsourcing's JSON format, parsed and written by msgspec (see that module)."""


def persistence_env(database_url: str) -> dict[str, str]:
    """The eventsourcing environment for a database URL."""
    if database_url.startswith("memory://"):
        return {"PERSISTENCE_MODULE": "eventsourcing.popo", **TRANSCODER}
    if database_url.startswith("sqlite://"):
        # As in SQLAlchemy: sqlite:///relative/path, sqlite:////absolute/path.
        path = database_url.removeprefix("sqlite:///")
        if path == database_url or not path:
            raise SettingsError("DMLEDGER_DATABASE_URL names no SQLite file (sqlite:///path)")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            **TRANSCODER,
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": "infrastructure.chained_recorders:ChainedSQLiteRecorder",
        }
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError(f"DMLEDGER_DATABASE_URL has an unknown scheme {parts.scheme!r}")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise SettingsError("DMLEDGER_DATABASE_URL names no database (postgresql://.../dbname)")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    env = {
        **TRANSCODER,
        # eventsourcing's PostgreSQL module, with the ledger's recorders (see there).
        "PERSISTENCE_MODULE": "infrastructure.postgres_recorder:LedgerPostgresFactory",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        # Also how long to wait for a pooled connection: with the retries of
        # infrastructure.postgres_recorder, an outage is reported within seconds.
        "POSTGRES_CONNECT_TIMEOUT": query.get("connect_timeout", "2"),
        "APPLICATION_RECORDER_TOPIC": "infrastructure.chained_recorders:ChainedPostgresRecorder",
        "POSTGRES_LOCK_TIMEOUT": "10",
        # Check a pooled connection before use, so a database restart costs no request.
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_POOL_SIZE": query.get("pool_size", "5"),
        "POSTGRES_MAX_OVERFLOW": "10",
        # Off on purpose: in eventsourcing 9.5.6 its insert path takes no table lock.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
    }
    if "schema" in query:
        env["POSTGRES_SCHEMA"] = query["schema"]
    return env


def describe_database(database_url: str) -> str:
    """The database, as an operator reads it on start: never with a password."""
    if database_url.startswith("memory://"):
        return "memory:// (nothing is kept)"
    if database_url.startswith("sqlite://"):
        return f"SQLite {database_url.removeprefix('sqlite:///')}"
    parts = urlsplit(database_url)
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    query = {k: v[-1] for k, v in parse_qs(parts.query).items() if k == "schema"}
    described = f"{parts.scheme}://{user}{host}{port}{parts.path}"
    return f"{described}?{urlencode(query)}" if query else described
