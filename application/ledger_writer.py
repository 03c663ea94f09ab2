"""Writes to the ledger through one thread that commits many commands per transaction.

Every change to the ledger is a *command*: a function that reads and changes aggregates
through a `Changes` and returns a result. The writer runs the commands that are waiting,
commits all their events in one transaction (group commit), and only then answers each
caller. A caller is never answered before its events are durable.

The contract of a command: it refuses (raises an `ApplicationError`) before it changes
anything, since its batch's other commands are committed with whatever it leaves behind.
The writer enforces it: a command that raises after changing an aggregate is treated as
a crash (its caller gets its error, and the batch runs again without it, on aggregates
reloaded from the store), never committed half-made.

Aggregates stay in memory between commands, so a busy conversation is not replayed from
the store for each message. Another process may have written to a cached aggregate: the
store then refuses our events (a version conflict), the batch's aggregates are evicted
and the batch runs again on fresh state.

What a command sees (`Changes`) and the writer's aggregate cache are in
`application/changes.py`; `Changes` and `Command` are imported from here by the use
cases, with the writer that runs them. A little over 300 lines: the batch, its commit and
its two ways of running again (conflict, crash) share the writer's state.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.persistence import PersistenceError, RecordConflictError

from application.changes import AggregateCache, Changes, Command
from application.errors import ApplicationError, StorageUnavailable
from application.ledger import Ledger
from application.ports import Metrics, NoMetrics
from domain.conversation import Conversation

log = logging.getLogger(__name__)

__all__ = ["AggregateCache", "Changes", "Command", "LedgerWriter"]

T = TypeVar("T")

_STOP = object()


class LedgerWriter:
    """Runs commands against the ledger and commits them in groups, from one thread."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_batch: int = 256,
        cache_size: int = 20_000,
        conflict_retries: int = 5,
        max_waiting: int = 10_000,
        metrics: Metrics | None = None,
    ) -> None:
        self.ledger = ledger
        self.metrics: Metrics = metrics or NoMetrics()
        self.max_batch = max_batch
        self.conflict_retries = conflict_retries
        self.cache = AggregateCache(cache_size)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_waiting)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.transactions = 0
        """Transactions committed so far (each may hold many commands)."""

    # -- running commands ------------------------------------------------------------

    def submit(self, command: Command[T]) -> Future[T]:
        """Queue a command; the future resolves after its events are committed."""
        if self._thread is None:
            msg = "the ledger writer is not running"
            raise RuntimeError(msg)
        future: Future[T] = Future()
        try:
            self._queue.put_nowait((command, future))
        except queue.Full:
            raise StorageUnavailable("too many webhooks are waiting to be stored") from None
        return future

    async def run(self, command: Command[T]) -> T:
        """Run a command from async code without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(command))

    def run_now(self, command: Command[T]) -> T:
        """Run one command in the calling thread (for the CLI, when no writer thread runs)."""
        future: Future[T] = Future()
        with self._lock:
            self._commit([(command, future)])
        return future.result()

    def run_all(self, commands: list[Command[Any]]) -> list[Future[Any]]:
        """Run commands and wait until each is committed or failed; their futures, done.

        With the writer thread running, they join its batches (committed together with
        the webhooks waiting there); otherwise they run here, in one transaction.
        """
        if self._thread is None:
            futures: list[Future[Any]] = [Future() for _ in commands]
            with self._lock:
                self._commit(list(zip(commands, futures, strict=True)))
        else:
            futures = []
            for command in commands:
                try:
                    futures.append(self.submit(command))
                except StorageUnavailable as error:
                    failed: Future[Any] = Future()
                    failed.set_exception(error)
                    futures.append(failed)
        for future in futures:
            future.exception()  # waits
        return futures

    # -- the writer thread -----------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="ledger-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            with self._lock:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Command[Any], Future[Any]]]) -> None:
        pending = [(c, f) for c, f in batch if f.set_running_or_notify_cancel()]
        conflicts = 0
        known: dict[UUID, dict[str, int | None]] = {}
        while pending:
            changes = Changes(self.ledger, self.cache, fresh=conflicts > 0, known=known)
            try:
                results = self._run_commands(changes, pending)
                if results is None:
                    # A command crashed and was dropped: run the others again on fresh state.
                    self.metrics.batch_rerun("crashed")
                    self.cache.evict(changes.touched)
                    pending = [(c, f) for c, f in pending if not f.done()]
                    continue
                if self._recorded_before(changes, known):
                    # A conversation took for new a key it had forgotten and the store has:
                    # run the batch again on fresh state, with the store's answer.
                    self.metrics.batch_rerun("recorded")
                    self.cache.evict(changes.touched)
                    # Refused commands were answered (they changed nothing): not run again.
                    pending = [(c, f) for c, f in pending if not f.done()]
                    continue
                try:
                    self._save(changes, results, changes.touched)
                    return
                except RecordConflictError:
                    conflicts += 1
                    self.metrics.version_conflict()
                    if conflicts > self.conflict_retries:
                        raise
                    pending = self._save_what_still_holds(changes, pending, results)
                    if pending:
                        self.metrics.batch_rerun("conflict")
            except RecordConflictError:
                self.cache.evict(changes.touched)
                self._fail(pending, "the conversation kept changing under us; try again")
                return
            except Exception as error:
                self.cache.evict(changes.touched)
                log.warning("could not store %d commands: %r", len(pending), error)
                self._fail(pending, "the event store is unavailable; try again")
                return

    def _recorded_before(self, changes: Changes, known: dict[UUID, dict[str, int | None]]) -> bool:
        """Ask the store, in one query, about the keys the batch's conversations looked up
        beyond the recent ones they keep (`domain.recorded_keys`); whether it knew one
        (added to `known` for the batch's next run).

        A conversation answers such a key as not recorded and records what comes with it;
        this check before the commit is what makes that answer exact."""
        asked = changes.older_keys_asked()
        if not asked:
            return False
        found = self.ledger.recorded_keys(asked)
        for aggregate_id, keys in found.items():
            known.setdefault(aggregate_id, {}).update(keys)
        return any(found.values())

    def _save(
        self,
        changes: Changes,
        results: list[tuple[int, Future[Any], Any]],
        aggregate_ids: Iterable[UUID],
    ) -> None:
        """Commit these aggregates' events, then answer the commands and keep the aggregates."""
        aggregates = [changes.touched[a] for a in aggregate_ids]
        stored_before = {a.id: changes.stored_before(a.id) for a in aggregates}
        events = [e for a in aggregates for e in changes.new_events(a.id)]
        read = {a: v for a, v in changes.read_versions.items() if a in stored_before}
        if aggregates:
            started = time.perf_counter()
            self.ledger.record(events, expected_versions=read)
            self.transactions += 1
            self.metrics.batch_committed(
                commands=len(results), events=len(events), seconds=time.perf_counter() - started
            )
        for aggregate in aggregates:
            if isinstance(aggregate, Conversation) and aggregate.older_keys is not None:
                aggregate.older_keys.committed()
            self.cache.put(aggregate)
        for _, future, result in results:
            future.set_result(result)
        self._take_snapshots(aggregates, stored_before)

    def _save_what_still_holds(
        self,
        changes: Changes,
        pending: list[tuple[Command[Any], Future[Any]]],
        results: list[tuple[int, Future[Any], Any]],
    ) -> list[tuple[Command[Any], Future[Any]]]:
        """After a conflict: commit the commands that did not depend on an aggregate another
        process has changed, and return the others, to run again on fresh state.

        Another process writing one of a batch's conversations (its auto-reply policy,
        say) must not make the whole batch reload every aggregate it touched.
        """
        stored = self.ledger.stored_versions(changes.touched_by)
        stale = {a for a in changes.touched_by if stored.get(a, 0) != changes.stored_before(a)}
        if not stale:
            # Nothing to tell the conflict by: run everything again on fresh state.
            self.cache.evict(changes.touched)
            return [(c, f) for c, f in pending if not f.done()]
        commands, forget = changes.entangled_with(stale)
        still_holding = [(i, f, r) for i, f, r in results if i not in commands]
        try:
            self._save(changes, still_holding, [a for a in changes.touched if a not in forget])
        except RecordConflictError:
            self.cache.evict(changes.touched)
            return [(c, f) for c, f in pending if not f.done()]
        # What the batch changed is forgotten: its state holds events that were not stored.
        # What it only read stays cached, and catches up with the store when read again.
        self.cache.evict(a for a in forget if changes.new_events(a))
        return [(c, f) for i, (c, f) in enumerate(pending) if i in commands and not f.done()]

    def _take_snapshots(self, aggregates: list[Aggregate], stored_before: dict[UUID, int]) -> None:
        """Snapshot each aggregate whose version passed a multiple of its interval.

        Runs after the callers are answered; a snapshot is only a shortcut for loading,
        so one that cannot be stored is logged and skipped.
        """
        snapshots = self.ledger.snapshots
        if snapshots is None:
            return
        for aggregate in aggregates:
            interval = self.ledger.snapshotting_intervals.get(type(aggregate))
            before = stored_before.get(aggregate.id, aggregate.version)
            if interval and aggregate.version // interval > before // interval:
                try:
                    snapshots.put([_snapshot_of(aggregate)])
                except Exception as error:
                    log.warning(
                        "could not store a snapshot of %s: %r", aggregate.id, error, exc_info=True
                    )

    @staticmethod
    def _run_commands(
        changes: Changes, pending: list[tuple[Command[Any], Future[Any]]]
    ) -> list[tuple[int, Future[Any], Any]] | None:
        """Run each command; None if one crashed (its future then holds the error).

        Each result comes with the command's index in `pending`."""
        results: list[tuple[int, Future[Any], Any]] = []
        rejected: list[tuple[Future[Any], ApplicationError]] = []
        for index, (command, future) in enumerate(pending):
            changes.start_command(index)
            try:
                results.append((index, future, command(changes)))
            except ApplicationError as refusal:
                if changes.changed_by_command():
                    log.error(
                        "a command refused (%s) after changing an aggregate: a bug; its "
                        "changes are dropped and its batch runs again without it",
                        refusal.detail,
                    )
                    future.set_exception(refusal)
                    return None
                rejected.append((future, refusal))
            except PersistenceError:
                raise
            except Exception as crash:
                log.exception("a command failed; its batch runs again without it")
                future.set_exception(crash)
                return None
        for future, reason in rejected:
            future.set_exception(reason)
        return results

    @staticmethod
    def _fail(pending: list[tuple[Command[Any], Future[Any]]], detail: str) -> None:
        for _, future in pending:
            if not future.done():
                future.set_exception(StorageUnavailable(detail))


def _snapshot_of(aggregate: Aggregate) -> Snapshot:
    """A snapshot of the aggregate as stored: without what this process keeps beside it
    (a conversation's `older_keys`)."""
    snapshot = Snapshot.take(aggregate)
    snapshot.state.pop("older_keys", None)
    return snapshot
