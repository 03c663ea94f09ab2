"""The migrations (`infrastructure/migrations`) make exactly the tables the code describes,
on SQLite and PostgreSQL, and make them once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect

from infrastructure import delivery_tables, key_usage, migrations, schema_revision, send_limits
from projections.database import create_view_engine
from projections.parked import projection_failures
from projections.schema import tracking
from tests.support.fresh_process import migrated_sqlite_url, run_python

MIGRATED = [
    *delivery_tables.OWN_TABLES,
    *send_limits.OWN_TABLES,
    key_usage.key_usage,
    tracking,
    projection_failures,
]
"""The tables of the code that the migrations make (the chain's are raw SQL)."""


def _described() -> MetaData:
    described = MetaData()
    for table in MIGRATED:
        table.to_metadata(described)
    return described


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database without tables: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrated.sqlite3"
        return
    server: str = request.getfixturevalue("postgres_server")
    base = server.split("?")[0]
    schema = "m_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{base}?schema={schema}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_the_migrated_tables_are_the_tables_the_code_describes(empty_database: str) -> None:
    engine = create_view_engine(empty_database)
    try:
        migrations.upgrade(engine)
        with engine.connect() as conn:
            schema = migrations.schema_of(conn)
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": False,
                    "include_name": lambda name, kind, _: (
                        kind != "table" or name in {t.name for t in MIGRATED}
                    ),
                },
            )
            if schema is not None:
                conn.exec_driver_sql(f'SET search_path TO "{schema}"')
                conn.dialect.default_schema_name = schema
            differences: list[Any] = compare_metadata(context, _described())
    finally:
        engine.dispose()

    assert differences == []


def test_the_chain_and_key_tables_are_made_beside_the_events(empty_database: str) -> None:
    engine = create_view_engine(empty_database)
    try:
        migrations.upgrade(engine)
        with engine.connect() as conn:
            schema = migrations.schema_of(conn)
            names = set(inspect(conn).get_table_names(schema=schema))
    finally:
        engine.dispose()

    prefix = "dmledger_events" if empty_database.startswith("postgresql") else "stored_events"
    assert {f"{prefix}_chain", f"{prefix}_chain_genesis", f"{prefix}_content_keys"} <= names
    assert migrations.VERSION_TABLE in names


def test_upgrading_an_upgraded_database_changes_nothing(tmp_path: Path) -> None:
    engine = create_view_engine(f"sqlite:///{tmp_path}/twice.sqlite3")
    try:
        first = migrations.upgrade(engine)
        second = migrations.upgrade(engine)
    finally:
        engine.dispose()

    assert first == (None, migrations.head())
    assert second == (migrations.head(), migrations.head())


def test_the_migrations_form_one_line() -> None:
    scripts = ScriptDirectory.from_config(migrations.config())

    assert len(scripts.get_heads()) == 1
    assert [s.revision for s in scripts.walk_revisions()][-1] == "0001"


def test_a_revision_of_a_newer_release_is_not_known() -> None:
    assert migrations.known(migrations.head())
    assert not migrations.known("9999")


@pytest.mark.postgres
def test_a_postgres_database_without_a_schema_setting_is_upgraded_for_good(
    postgres_server: str,
) -> None:
    # given a database named without ?schema= (its tables go to the default schema)
    from tests.conftest import derived_database

    url = derived_database(postgres_server, "migrations")
    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = create_view_engine(url)
    try:
        # when it is upgraded
        migrations.upgrade(engine)

        # then the revision is committed, not rolled back with the connection
        assert migrations.current(engine) == migrations.head()
    finally:
        engine.dispose()
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_the_revisions_read_without_alembic_are_alembics() -> None:
    scripts = ScriptDirectory.from_config(migrations.config())

    assert schema_revision.head() == scripts.get_current_head()
    assert schema_revision.revisions() == {
        s.revision: s.down_revision for s in scripts.walk_revisions()
    }
    assert not schema_revision.known("9999")


def test_the_revision_read_without_alembic_is_alembics(empty_database: str) -> None:
    engine = create_view_engine(empty_database)
    try:
        before = schema_revision.current(engine)
        migrations.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "version_table": migrations.VERSION_TABLE,
                    "version_table_schema": migrations.schema_of(conn),
                },
            )
            by_alembic = context.get_current_revision()
        after = schema_revision.current(engine)
    finally:
        engine.dispose()

    assert before is None
    assert after == by_alembic == schema_revision.head()


def test_a_web_worker_and_the_cli_start_without_importing_alembic(tmp_path: Path) -> None:
    # Alembic with Mako and Pygments is ~10 MiB of a web worker's memory (P6): a process
    # imports it only to migrate. Run in a fresh interpreter, on a migrated SQLite file.
    url = migrated_sqlite_url(tmp_path)
    script = (
        "import sys\n"
        "from infrastructure.schema_version import prepare_schema\n"
        "from projections.database import create_view_engine\n"
        "import interfaces.cli, interfaces.http.app, interfaces.composition\n"
        f"prepare_schema({{}}, create_view_engine({url!r}), {url!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    printed = run_python(script)

    assert printed.strip() == "[]", printed
