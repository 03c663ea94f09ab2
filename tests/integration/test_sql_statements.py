"""Statements rendered once (`infrastructure/sql_statements.py`) are the very text psycopg
sends for them through a connection, whatever the schema is called."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from infrastructure.sql_statements import rendered

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("schema", ["public", "cell 7", 'we"ird', "Ünïcode"])
def test_a_rendered_statement_is_what_the_connection_would_send(
    postgres_server: str, schema: str
) -> None:
    statement = SQL(
        "INSERT INTO {schema}.{table} (a) SELECT * FROM unnest(%b::bigint[]) WHERE %s IS NULL"
    ).format(schema=Identifier(schema), table=Identifier("dmledger_events"))
    with psycopg.connect(postgres_server) as conn:
        assert rendered(statement) == statement.as_bytes(conn)
