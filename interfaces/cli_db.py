"""`dmledger db upgrade|current|check`: the database's schema (`infrastructure/migrations`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from application.ledger import Ledger
from infrastructure import schema_revision
from infrastructure.database_presence import require_database
from infrastructure.persistence import describe_database, persistence_env
from infrastructure.settings import Settings
from projections.database import create_view_engine


def add_commands(commands: Any) -> None:
    """Add `db` to the `dmledger` command's subparsers."""
    db = commands.add_parser("db", help="the database's schema").add_subparsers(
        required=True, metavar="ACTION"
    )
    upgrade = db.add_parser(
        "upgrade",
        help="create the tables and apply the schema migrations this release brings",
        description="Creates the event store's tables where missing, then applies every "
        "migration the database lacks, in one transaction. Run it before starting a new "
        "release on PostgreSQL (serve, project and dispatch refuse a schema that is "
        "behind); SQLite upgrades itself on start. Safe to run again.",
    )
    upgrade.set_defaults(run=_upgrade)
    current = db.add_parser("current", help="print the schema's revision and this release's")
    current.set_defaults(run=_current)
    check = db.add_parser(
        "check", help="exit 0 when the schema is this release's, 1 when it needs `db upgrade`"
    )
    check.set_defaults(run=_check)


def upgrade_database(database_url: str) -> tuple[str | None, str]:
    """Bring the database at `database_url` to this release's schema; (from, to)."""
    env = persistence_env(database_url)
    require_database(env)
    # The event store's tables are the library's: it creates them (IF NOT EXISTS).
    Ledger(env={**env, "CREATE_TABLE": "y"}).close()
    from infrastructure import migrations  # Alembic: only to migrate (schema_revision.py)

    engine = create_view_engine(database_url)
    try:
        return migrations.upgrade(engine)
    finally:
        engine.dispose()


def _revisions(settings: Settings) -> tuple[str | None, str]:
    require_database(persistence_env(settings.database_url))
    engine = create_view_engine(settings.database_url)
    try:
        return schema_revision.current(engine), schema_revision.head()
    finally:
        engine.dispose()


def _upgrade(settings: Settings, _: argparse.Namespace) -> int:
    before, after = upgrade_database(settings.database_url)
    where = describe_database(settings.database_url)
    if before == after:
        print(f"{where}: the schema is at revision {after} already")
    else:
        print(f"{where}: upgraded the schema from {before or 'no revision'} to {after}")
    return 0


def _current(settings: Settings, _: argparse.Namespace) -> int:
    at, wanted = _revisions(settings)
    print(f"database: {at or 'no revision'}")
    print(f"release:  {wanted}")
    return 0


def _check(settings: Settings, _: argparse.Namespace) -> int:
    at, wanted = _revisions(settings)
    if at == wanted:
        print(f"the schema is at revision {wanted}, this release's")
        return 0
    print(
        f"the schema is at {at or 'no revision'}, this release needs {wanted}: "
        "run `dmledger db upgrade`",
        file=sys.stderr,
    )
    return 1
