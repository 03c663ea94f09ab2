"""Read models built by another definition than this code's: they are rebuilt, not migrated.

A read model's rows are derived from the log, so when its tables or what its projection
writes change, it is rebuilt rather than migrated: its view's `version` is raised in the
same commit. Each view's position (`projection_tracking`) records the version its rows
were built by; a view whose stored version differs from its class's is *outdated*.

What then happens (`interfaces/cli_serve.py`, `require_current_read_models`): on SQLite
(the embedded default) `serve`, `project` and `dispatch` rebuild the outdated read models
before they start, saying so; on PostgreSQL, where a rebuild of a long log is a step an
operator schedules, they refuse to start, naming `dmledger projections rebuild NAME...`.
The rebuild makes the live tables anew from the new definition in the swap's transaction
(`projections.rebuild_space`). A read model that is not rebuildable (the auto-reply
policy's position) has no definition to outgrow.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Engine, select

from projections.schema import tracking
from projections.view import SqlView


def stored_version(conn: Connection, name: str) -> int | None:
    """The definition version read model `name`'s rows were built by; None if it has none
    (never applied anything)."""
    found = conn.execute(
        select(tracking.c.definition_version).where(tracking.c.projection == name)
    ).scalar()
    return int(found) if found is not None else None


def outdated(engine: Engine, views: Iterable[SqlView]) -> list[str]:
    """The names of the views whose rows another definition version built."""
    chosen = list(views)
    with engine.connect() as conn:
        return [
            view.name
            for view in chosen
            if (stored := stored_version(conn, view.name)) is not None and stored != view.version
        ]
