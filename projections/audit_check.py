"""Checks an account's read models against the log: rebuild them in a scratch space, compare.

For each projection, the live view's tracking position P and the account's live rows are
read in one transaction (a consistent snapshot, even while a runner writes). The same
projection class is then fed the account's events up to P on a temporary SQLite
database, and the two sets of rows are compared row by row, by primary key.

Which rows are the account's: a table with an `ig_account_id` column, those with the
account's id; otherwise a table with a `conversation_id` column, those of the account's
conversations; any other table is not compared (and is named as such). A view may list
columns that are not derived from events (leases, attempts) in `audit_ignored_columns`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
from eventsourcing.persistence import Tracking
from sqlalchemy import Connection, Engine, Table, select

from application.audit import AuditLog
from projections.database import create_view_engine
from projections.projection import LedgerProjection
from projections.registry import ReadModels
from projections.schema import tracking
from projections.view import Batch, SqlView

CHUNK = 200
"""Conversations compared at a time, so an account's rows are never all in memory."""
BATCH = 1000
"""Events applied to the scratch views per transaction."""


class RowDifference(msgspec.Struct, frozen=True):
    """One row that is not the same in the live view and in the rebuilt one."""

    table: str
    key: dict[str, Any]
    kind: str
    """missing (rebuilt only), unexpected (live only) or different."""
    columns: list[str]
    """The columns that differ (all of them when the row is missing or unexpected)."""
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None


class ProjectionCheck(msgspec.Struct):
    """The verdict on one projection."""

    projection: str
    position: int
    """The live view's position in the log: the rebuild went exactly as far."""
    head: int = 0
    """The log's head when the live view was read."""
    rows: int = 0
    """Rows compared."""
    skipped_tables: list[str] = msgspec.field(default_factory=list)
    differences: list[RowDifference] = msgspec.field(default_factory=list)

    @property
    def behind(self) -> int:
        """How many events of the log the live view has not applied yet."""
        return max(0, self.head - self.position)

    @property
    def identical(self) -> bool:
        """The live view holds exactly what the whole log makes of it."""
        return not self.differences and not self.behind


Progress = Callable[[int, int], None]


def check_account(
    read_models: ReadModels,
    audit: AuditLog,
    ig_account_id: str,
    *,
    progress: Progress | None = None,
    max_differences: int = 100,
) -> list[ProjectionCheck]:
    """Compare every projection's live rows for the account with a rebuild from the log."""
    # Policies keep no rows to compare (and cannot be rebuilt): only the read models.
    runners = list(read_models.rebuildable().values())
    if not runners:
        return []
    application = read_models.ledger.name
    with _scratch_engine() as scratch, _snapshots(runners) as live:
        # Read after the snapshots: a view behind it is behind, whatever it then applies.
        head = read_models.ledger.recorder.max_notification_id() or 0
        checks: list[tuple[SqlView, LedgerProjection[Any], Connection, ProjectionCheck]] = []
        for runner, conn in zip(runners, live, strict=True):
            view = runner.view
            position = _position(conn, view.name, application)
            rebuilt_view = type(view)(scratch)
            rebuilt_view.create_tables()
            projection = type(runner.projection)(rebuilt_view)
            check = ProjectionCheck(view.name, position, head=max(head, position))
            checks.append((view, projection, conn, check))

        stop = max(check.position for *_, check in checks)
        ids = audit.aggregate_ids(ig_account_id, stop=stop)
        conversation_ids = sorted(str(i) for i in ids)
        pending: list[tuple[Any, int]] = []
        for position, event in audit.history(ig_account_id, stop=stop, progress=progress):
            pending.append((event, position))
            if len(pending) >= BATCH:
                _feed(checks, pending, application)
                pending = []
        _feed(checks, pending, application)

        for view, _, conn, check in checks:
            for table in view.tables:
                filters = _filters(table, ig_account_id, conversation_ids)
                if filters is None:
                    check.skipped_tables.append(table.name)
                    continue
                ignored = set(getattr(view, "audit_ignored_columns", ()))
                with scratch.connect() as rebuilt_conn:
                    for condition in filters:
                        _compare(
                            check, table, conn, rebuilt_conn, condition, ignored, max_differences
                        )
        return [check for *_, check in checks]


def _feed(
    checks: Sequence[tuple[SqlView, LedgerProjection[Any], Connection, ProjectionCheck]],
    items: list[tuple[Any, int]],
    application: str,
) -> None:
    for _, projection, _, check in checks:
        mine = [(event, position) for event, position in items if position <= check.position]
        if not mine:
            continue

        def change(batch: Batch, mine: list[tuple[Any, int]] = mine, p: Any = projection) -> None:
            p.preload(batch, mine)
            p.project(batch, mine)

        projection.view.apply(Tracking(application, mine[-1][1]), change)


def _filters(table: Table, ig_account_id: str, conversation_ids: list[str]) -> list[Any] | None:
    columns = table.c
    if "ig_account_id" in columns:
        return [columns.ig_account_id == ig_account_id]
    if "conversation_id" in columns:
        return [
            columns.conversation_id.in_(conversation_ids[i : i + CHUNK])
            for i in range(0, len(conversation_ids), CHUNK)
        ]
    return None


def _compare(
    check: ProjectionCheck,
    table: Table,
    live_conn: Connection,
    rebuilt_conn: Connection,
    condition: Any,
    ignored: set[str],
    max_differences: int,
) -> None:
    primary = [c.name for c in table.primary_key.columns]
    query = select(table).where(condition)

    def rows(conn: Connection) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {
            tuple(row[name] for name in primary): dict(row)
            for row in conn.execute(query).mappings()
        }

    live, rebuilt = rows(live_conn), rows(rebuilt_conn)
    for key in sorted(live.keys() | rebuilt.keys(), key=repr):
        check.rows += 1
        if len(check.differences) >= max_differences:
            continue
        mine, theirs = live.get(key), rebuilt.get(key)
        key_dict = dict(zip(primary, key, strict=True))
        if mine is None or theirs is None:
            kind = "missing" if mine is None else "unexpected"
            present = mine if mine is not None else theirs
            assert present is not None
            columns = sorted(present)
            check.differences.append(
                RowDifference(table.name, key_dict, kind, columns, mine, theirs)
            )
            continue
        differing = sorted(c for c in mine if c not in ignored and mine[c] != theirs.get(c))
        if differing:
            check.differences.append(
                RowDifference(table.name, key_dict, "different", differing, mine, theirs)
            )


def _position(conn: Connection, projection: str, application: str) -> int:
    found = conn.execute(
        select(tracking.c.notification_id).where(
            tracking.c.projection == projection, tracking.c.application_name == application
        )
    ).scalar()
    return int(found) if found is not None else 0


@contextmanager
def _snapshots(runners: Sequence[Any]) -> Iterator[list[Connection]]:
    """One read transaction per live view, each a consistent snapshot of it."""
    conns: list[Connection] = []
    try:
        for runner in runners:
            engine: Engine = runner.view.engine
            conn = engine.connect()
            if engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.begin()
            conns.append(conn)
        yield conns
    finally:
        for conn in conns:
            conn.rollback()
            conn.close()


@contextmanager
def _scratch_engine() -> Iterator[Engine]:
    directory = tempfile.mkdtemp(prefix="dmledger-audit-")
    engine = create_view_engine(f"sqlite:///{directory}/scratch.sqlite3")
    try:
        yield engine
    finally:
        engine.dispose()
        shutil.rmtree(directory, ignore_errors=True)
