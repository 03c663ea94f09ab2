"""Before the event store opens a pool on PostgreSQL: does the database (and the schema of
`?schema=`) exist? If not, one line says which and how to make it, instead of the pool's
"couldn't get a connection after 2.00 sec" at the end of a long traceback."""

from __future__ import annotations

import re
from collections.abc import Mapping

import psycopg

from infrastructure.settings import SettingsError


class DatabaseMissing(SettingsError):
    """`DMLEDGER_DATABASE_URL` names a PostgreSQL database or schema that does not exist."""


def require_database(env: Mapping[str, str]) -> None:
    """Raise `DatabaseMissing` when the PostgreSQL database or schema of `env` (the
    eventsourcing environment of `persistence_env`) is missing; anything else about the
    connection is left to the event store, which reports and retries it as it always has."""
    if "POSTGRES_DBNAME" not in env:
        return
    dbname, host, port, user = (
        env["POSTGRES_DBNAME"],
        env["POSTGRES_HOST"],
        env["POSTGRES_PORT"],
        env["POSTGRES_USER"],
    )
    psql = f"psql -h {host} -p {port} -U {user}"
    try:
        with psycopg.connect(
            dbname=dbname,
            host=host,
            port=port,
            user=user,
            password=env.get("POSTGRES_PASSWORD") or None,
            connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT", "2")),
        ) as conn:
            schema = env.get("POSTGRES_SCHEMA")
            if not schema:
                return
            found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
            if found.fetchone() is None:
                raise DatabaseMissing(
                    f'DMLEDGER_DATABASE_URL: the schema "{schema}" does not exist in the '
                    f'PostgreSQL database "{dbname}" on {host}:{port}; create it with: '
                    f"{psql} -d {_identifier(dbname)} -c '{_create('SCHEMA', schema)}'"
                )
    except psycopg.OperationalError as error:
        if f'database "{dbname}" does not exist' not in str(error):
            return
        raise DatabaseMissing(
            f'DMLEDGER_DATABASE_URL: the PostgreSQL database "{dbname}" does not exist on '
            f"{host}:{port}; create it with: "
            f"{psql} -d postgres -c '{_create('DATABASE', dbname)}'"
        ) from None


def _create(kind: str, name: str) -> str:
    return f"CREATE {kind} {_identifier(name)}"


def _identifier(name: str) -> str:
    """`name` as SQL (and the shell, inside single quotes) needs it written."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""').replace("'", "") + '"'
