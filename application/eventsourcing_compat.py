"""What the application layer takes from eventsourcing beyond its documented API, in one place.

Checked against the eventsourcing versions `CHECKED_VERSIONS` (the range pyproject.toml
pins). `tests/unit/test_eventsourcing_compat.py` checks that each part below still exists
with the signature we call, and fails loudly when an upgrade changes one. The
infrastructure layer's parts (recorders, pool, transcoder) are in
`infrastructure.eventsourcing_compat`: the application layer may not import that one.

The private parts, and why each is used:

- `Application._record(processing_event)`: stores a processing event's events in one
  insert. `Ledger.record` calls it (through `HookedApplication.record_events`) instead of
  `save`, which first runs `isinstance` against runtime-checkable protocols for every
  object (a few percent of the ledger writer's time) and then its own snapshotting (below).
- `Application._record(processing_event)` is also overridden, to call `before_record`
  first, for both `save` and `record_events`: how `Ledger` names the owner of each
  aggregate it creates (the `owners` keyword the account index reads, see
  `infrastructure.account_index`).
- `Application._notify(recordings)`: the hook `save` calls after a commit. Overridden
  here to call `HookedApplication.committed`, which `Ledger` implements (waking the
  projection runners, dropping cached credentials).
- `ProcessingEvent.events` / `.saved_kwargs` and `EventStore.put(events, **kwargs)`,
  which hands its keyword arguments to the recorder's `insert_events`: how
  `expected_versions` reaches our PostgreSQL recorder.
- `Aggregate.Event.mutate(aggregate)`: the ledger writer catches a cached aggregate up
  with the events another process stored (`ledger_writer.Changes.get`).
- `CommandMethodDecorator.given_event_cls` and `.decorated_func` (what `@event(SomeEvent)`
  leaves on the aggregate class): `declared_events` pairs each declared event class with
  the method that records it, so that a test checks their fields agree (the library
  builds the event from the class's fields and calls the method with them; a field added
  to one and not the other would be lost or refused).

Where we keep our own mechanism beside the library's, and why:

- **The aggregate cache** (`ledger_writer.AggregateCache`, 20,000 aggregates and ~32 MiB) instead of
  the library's (`AGGREGATE_CACHE_MAXSIZE`, left unset, so off). The library's
  `Repository.get` deep-copies the cached aggregate on every get (a conversation of
  10,000 messages is copied for each webhook) and, with fast-forward on, reads the store
  for newer events on every get (a query per aggregate per command: the writer's own such
  read, of accounts only, was ~44% of its time until `validates_reads` replaced it, see
  benchmarks/README.md); with fast-forward off, it never sees another process's events.
  The writer keeps aggregates across a group commit without copies: a command refuses
  before it changes anything (a crash evicts what it touched), a stale aggregate is
  refused at commit (version conflict, then evicted and run again), and accounts are
  read with `fresh=True`.
- **Snapshots**: the intervals are the library's `snapshotting_intervals` (on `Ledger`),
  but the library takes snapshots only in `save`, by reloading the aggregate from the
  store (`take_snapshot` replays it from the last snapshot). The writer snapshots the
  aggregate it holds in memory, after answering its callers
  (`LedgerWriter._take_snapshots`); `save`, used by tests and tools only, still
  snapshots the library's way at the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import CommandMethodDecorator
from eventsourcing.persistence import Recording

CHECKED_VERSIONS = ">=9.5.6,<9.6"
"""The eventsourcing versions these parts were checked against (pyproject.toml pins these)."""


class HookedApplication(Application[UUID]):
    """eventsourcing's `Application`, with the private hooks dmledger uses under names of ours."""

    def record_events(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """Store the processing event's events in one insert (`Application._record`).

        Neither collects events from aggregates nor snapshots, unlike `save`; nor tells
        `committed` (the caller decides whether it has news)."""
        return self._record(processing_event)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        self.before_record(processing_event)
        return super()._record(processing_event)

    def before_record(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Called before each insert with its events; may add to its `saved_kwargs`."""

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        self.committed(recordings)

    def committed(self, recordings: list[Recording[UUID]]) -> None:
        """Called after each commit of this process that stored `recordings`."""


def declared_events(aggregate: type[Any]) -> Iterator[tuple[type[Any], Callable[..., Any]]]:
    """Each event class declared on `aggregate` and given to `@event`, with the method
    (undecorated) that records it."""
    for value in vars(aggregate).values():
        if isinstance(value, CommandMethodDecorator) and value.given_event_cls is not None:
            yield value.given_event_cls, value.decorated_func
