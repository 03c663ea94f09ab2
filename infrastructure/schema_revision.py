"""Which schema revision a database is at, and which this release's code is written for,
without importing Alembic.

Every process asks this at start-up (`infrastructure/schema_version.py`), but only `dmledger
db upgrade` (and an embedded database that is behind) runs a migration. Alembic, with Mako
and Pygments behind it, is about 10 MiB of a web worker's resident memory (P6's target is
100 MiB), so the question is answered here: this release's revisions are read from the
migration scripts' own `revision = ...` and `down_revision = ...` lines (parsed, not
imported: importing one imports Alembic), and the database's revision from Alembic's
version table with one query. `tests/unit/test_migrations.py` checks both against
Alembic's own answers.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

VERSIONS = Path(__file__).parent / "migrations" / "versions"
VERSION_TABLE = "dmledger_schema_version"
"""Alembic's version table, named for this application (a schema may be shared)."""


@cache
def revisions() -> dict[str, str | None]:
    """Each revision of this release's migrations, with the one it follows."""
    found: dict[str, str | None] = {}
    for script in sorted(VERSIONS.glob("*.py")):
        values: dict[str, str | None] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                value = node.value.value
                for target in node.targets:
                    if isinstance(target, ast.Name) and (value is None or isinstance(value, str)):
                        values[target.id] = value
        revision = values.get("revision")
        if revision is not None:
            found[revision] = values.get("down_revision")
    return found


def head() -> str:
    """The revision this code's tables are at: the one no other revision follows."""
    followed = set(revisions().values())
    heads = [revision for revision in revisions() if revision not in followed]
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads, not one: {heads}")
    return heads[0]


def known(revision: str) -> bool:
    """Whether `revision` is one of these migrations (not one of a newer release)."""
    return revision in revisions()


def schema_of(conn: Connection) -> str | None:
    """The PostgreSQL schema the engine's tables are in (`?schema=`), else None."""
    if conn.dialect.name != "postgresql":
        return None
    translate = conn.get_execution_options().get("schema_translate_map") or {}
    schema = translate.get(None)
    if schema:
        return str(schema)
    return str(conn.execute(text("SELECT current_schema()")).scalar_one())


def current(engine: Engine) -> str | None:
    """The revision the database is at; None before any migration (new, or made by a
    release before migrations)."""
    with engine.connect() as conn:
        schema = schema_of(conn)
        if not inspect(conn).has_table(VERSION_TABLE, schema=schema):
            return None
        table = VERSION_TABLE if schema is None else f'"{schema}".{VERSION_TABLE}'
        row = conn.execute(text(f"SELECT version_num FROM {table}")).first()  # noqa: S608
        return None if row is None else str(row[0])
