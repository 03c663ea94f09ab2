"""Alembic's environment: runs the migrations on the connection `upgrade` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from infrastructure.migrations import VERSION_TABLE, lock, schema_of

connection = context.config.attributes["connection"]
schema = schema_of(connection)
context.configure(
    connection=connection,
    version_table=VERSION_TABLE,
    version_table_schema=schema,
    # Every migration in one transaction (PostgreSQL's DDL is transactional).
    transaction_per_migration=False,
)
with context.begin_transaction():
    lock(connection)
    if schema is not None:
        # Unqualified names in the migrations are the tables of `?schema=`.
        quoted = connection.dialect.identifier_preparer.quote(schema)
        connection.execute(text(f"SET LOCAL search_path TO {quoted}"))
    context.run_migrations()
