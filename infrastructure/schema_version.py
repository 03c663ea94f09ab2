"""At start-up: is the database's schema the one this release's code is written for?

On PostgreSQL only `dmledger db upgrade` changes the schema: a process that finds it
behind (or made by a newer release) stops with one line naming the command, and a
process that finds it current creates nothing (the event store is told not to), so it
can run as a role without `CREATE`. The embedded SQLite default, and `memory://`, upgrade
themselves here, so `./dev serve` stays one command.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine

from infrastructure import schema_revision
from infrastructure.persistence import describe_database
from infrastructure.settings import SettingsError


class SchemaBehind(SettingsError):
    """The PostgreSQL database's schema is not at this release's revision."""


def prepare_schema(env: Mapping[str, str], engine: Engine, database_url: str) -> dict[str, str]:
    """Upgrade an embedded database, or refuse a PostgreSQL one that is not current;
    `env` (the event store's environment) as the event store should then be opened."""
    at, wanted = schema_revision.current(engine), schema_revision.head()
    if "POSTGRES_DBNAME" not in env:
        if at != wanted:
            # Alembic is imported only here, to migrate (see schema_revision.py).
            from infrastructure import migrations

            migrations.upgrade(engine)
        return dict(env)
    if at != wanted:
        where = describe_database(database_url)
        if at is not None and not schema_revision.known(at):
            raise SchemaBehind(
                f"the database schema of {where} is at revision {at}, which this release "
                f"does not know (a newer release upgraded it): run that release, or restore"
            )
        said = f"at revision {at}" if at is not None else "not yet migrated"
        raise SchemaBehind(
            f"the database schema of {where} is {said}, this release needs revision "
            f"{wanted}: run `dmledger db upgrade` first"
        )
    return {**env, "CREATE_TABLE": "n"}
