"""Every private part of eventsourcing (and psycopg_pool) dmledger relies on is still there,
with the signature we call: a library upgrade that changes one fails here, by name.

What each part is for: `application/eventsourcing_compat.py` and
`infrastructure/eventsourcing_compat.py`.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import EventStore, JSONTranscoder
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from psycopg_pool import ConnectionPool

from application.eventsourcing_compat import CHECKED_VERSIONS

ROOT = Path(__file__).resolve().parents[2]


def parameters(function: Callable[..., Any]) -> list[str]:
    """The parameter names; `*args` as "*" and `**kwargs` as "**", whatever their names."""

    def name(parameter: inspect.Parameter) -> str:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return "*"
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return "**"
        return parameter.name

    return [name(p) for p in inspect.signature(function).parameters.values()]


def test_the_pinned_eventsourcing_range_is_the_one_checked() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(Requirement(d) for d in dependencies if Requirement(d).name == "eventsourcing")
    assert pinned.specifier == SpecifierSet(CHECKED_VERSIONS), (
        f"pyproject.toml pins eventsourcing{pinned.specifier}, the compat modules were "
        f"checked for {CHECKED_VERSIONS}: check every part they list, then update both"
    )
    assert version("eventsourcing") in SpecifierSet(CHECKED_VERSIONS)


# (owner, method, the parameters we call it with)
PRIVATE_METHODS = [
    (Application, "_record", ["self", "processing_event"]),
    (Application, "_notify", ["self", "recordings"]),
    (SQLiteApplicationRecorder, "_create_table", ["self", "c"]),
    (SQLiteApplicationRecorder, "_insert_events", ["self", "c", "stored_events", "**"]),
    (PostgresApplicationRecorder, "_lock_table", ["self", "curs"]),
    (PostgresApplicationRecorder, "_notify_channel", ["self", "curs"]),
    (JSONTranscoder, "_decode_obj", ["self", "d"]),
]


@pytest.mark.parametrize(
    ("owner", "name", "expected"),
    PRIVATE_METHODS,
    ids=[f"{o.__name__}.{n}" for o, n, _ in PRIVATE_METHODS],
)
def test_each_private_method_we_call_or_override_has_the_signature_we_use(
    owner: type, name: str, expected: list[str]
) -> None:
    method = getattr(owner, name, None)
    assert callable(method), f"{owner.__name__}.{name} is gone"
    assert parameters(method) == expected


# (owner, public method, the private hook it must still call)
HOOKS_CALLED = [
    (Application, "save", "self._record("),
    (Application, "save", "self._notify("),
    (SQLiteApplicationRecorder, "create_table", "self._create_table("),
    (SQLiteApplicationRecorder, "insert_events", "self._insert_events("),
]


@pytest.mark.parametrize(("owner", "public", "call"), HOOKS_CALLED)
def test_the_library_still_calls_each_hook_we_override(owner: type, public: str, call: str) -> None:
    assert call in inspect.getsource(getattr(owner, public)), (
        f"{owner.__name__}.{public} no longer calls {call}...): our override would be skipped"
    )


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (PostgresApplicationRecorder.max_notification_id, ["self"]),
        (PostgresAggregateRecorder.insert_events, ["self", "stored_events", "**"]),
    ],
)
def test_the_retried_methods_we_call_without_retries_are_still_wrapped(
    method: Callable[..., Any], expected: list[str]
) -> None:
    unwrapped = getattr(method, "__wrapped__", None)
    assert unwrapped is not None, f"{method.__qualname__} is no longer wrapped by `retry`"
    assert parameters(unwrapped) == expected
    assert "retry" in inspect.getsource(method).split("def ", 1)[0]


def test_the_events_a_processing_event_stores_and_their_kwargs_reach_the_recorder() -> None:
    processing_event: ProcessingEvent[Any] = ProcessingEvent()
    assert isinstance(processing_event.events, list)
    assert isinstance(processing_event.saved_kwargs, dict)
    assert parameters(EventStore.put)[-1] == "**"
    assert "**kwargs" in inspect.getsource(EventStore.put).split("insert_events", 1)[1]
    assert "processing_event.saved_kwargs" in inspect.getsource(Application._record)


def test_an_event_still_mutates_an_aggregate_in_place() -> None:
    assert parameters(Aggregate.Event.mutate) == ["self", "aggregate"]


def test_the_library_snapshots_at_the_intervals_the_ledger_names() -> None:
    assert "snapshotting_intervals" in vars(Application)
    assert "self.snapshotting_intervals" in inspect.getsource(Application._take_snapshots)


def test_the_postgres_recorders_still_hold_the_statements_we_use() -> None:
    source = inspect.getsource(PostgresApplicationRecorder.__init__)
    assert "self.create_insert_function_statement_index = len(self.sql_create_statements)" in (
        source
    )
    assert "self.select_events_statement" in inspect.getsource(PostgresAggregateRecorder.__init__)


def test_the_pool_of_a_datastore_still_takes_its_check_from_private_check() -> None:
    datastore = PostgresDatastore(
        dbname="unused", host="127.0.0.1", port="9", user="u", password="", pre_ping=True
    )
    try:
        assert isinstance(datastore.pool, ConnectionPool)
        assert datastore.pool._check is ConnectionPool.check_connection
        assert (datastore.pre_ping, datastore.enable_db_functions) == (True, False)
        assert "self._check(conn)" in inspect.getsource(ConnectionPool._check_connection)
    finally:
        datastore.close()


def test_a_json_transcoder_still_keeps_its_transcodings_by_type() -> None:
    transcoder = JSONTranscoder()
    assert isinstance(transcoder.types, dict)


PRIVATE_NAMES = sorted({name for _, name, _ in PRIVATE_METHODS} | {"__wrapped__"})
COMPAT_MODULES = {
    ROOT / "application" / "eventsourcing_compat.py",
    ROOT / "infrastructure" / "eventsourcing_compat.py",
}


def test_only_the_compat_modules_name_the_private_parts() -> None:
    # In a module that uses eventsourcing: a call, an override, or the pool's check.
    pattern = re.compile(
        r"(?:\.|def )(?:" + "|".join(map(re.escape, PRIVATE_NAMES)) + r")\b|pool\._check\b"
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for layer in ("domain", "application", "projections", "infrastructure", "interfaces")
        for path in sorted((ROOT / layer).rglob("*.py"))
        if path not in COMPAT_MODULES and "eventsourcing" in path.read_text()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "use the compat modules instead:\n" + "\n".join(found)
