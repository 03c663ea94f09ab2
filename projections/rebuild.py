"""Rebuilding read models from the log in one pass: each notification is read and decoded
once and applied to every projection being rebuilt.

Three runners catching up one after the other read and decode the whole log three times;
reading and decoding was about a quarter of each runner's time. Each projection writes
its own rows and tracking position in one transaction per batch, into new views in a
space of the rebuild's own; each new view replaces its live one only when complete (see
`projections.rebuild_space`), so a rebuild that stops midway changes nothing.

Batches are larger than a live runner's: a rebuild is far behind the head, and each batch
has costs its size does not change (round trips, statements, and rewriting the rows every
batch touches, such as each conversation's list row). A batch is bounded
by `batch_size` events, and each event changes at most a few rows, so memory stays
bounded however long the log.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from projections.mirror import Mirror
from projections.rebuild_space import RebuildSpace
from projections.runner import Progress, ProjectionRunner

REBUILD_BATCH = 10_000
"""Events per transaction of a rebuild."""


def rebuild(
    runners: Sequence[ProjectionRunner],
    *,
    batch_size: int = REBUILD_BATCH,
    progress: Progress | None = None,
) -> int:
    """Rebuild these projections' views from the whole log, in one pass, and swap each in
    for its live view when complete (see `projections.rebuild_space`); the number of
    notifications applied to each. Until the swap the live views are left as they are."""
    if not runners:
        return 0
    with RebuildSpace(runners[0].view.engine) as space:
        built = [_in(space, runner) for runner in runners]
        applied = _build(built, batch_size, progress)
        for runner, new in zip(runners, built, strict=True):
            space.swap(runner.view, new.view)
    # What was committed since the new views caught up.
    return applied + max((runner.catch_up() for runner in runners), default=0)


def _in(space: RebuildSpace, runner: ProjectionRunner) -> ProjectionRunner:
    """A runner of the same projection, over a new, empty view in `space`."""
    view = type(runner.view)(space.engine)
    view.create_tables()
    # Only this rebuild writes the new, empty tables: it keeps what they hold in memory
    # rather than reading it back, and COPYs the rows new to them.
    view.mirror = Mirror()
    projection = type(runner.projection)(view)
    return ProjectionRunner(
        runner.ledger,
        projection,
        clock=runner.clock,
        attempts=runner.attempts,
        follow_commits=False,
    )


def _build(runners: Sequence[ProjectionRunner], batch_size: int, progress: Progress | None) -> int:
    """Apply the whole log to these (new) views in one pass; how many notifications."""
    ledger = runners[0].ledger
    head = ledger.recorder.max_notification_id() or 0 if progress else 0
    with _Appliers(runners) as appliers, _young_garbage_only():
        position = 0
        applied = 0
        while True:
            notifications = ledger.recorder.select_notifications(
                start=position + 1, limit=batch_size
            )
            if not notifications:
                break
            items: list[tuple[Any, int]] = runners[0].decode_all(notifications)
            upto = notifications[-1].id
            appliers.apply(items, upto=upto, after=position)
            gc.collect(1)  # the previous batch's cycles, if any: memory stays bounded
            position = upto
            applied += len(notifications)
            if progress is not None:
                progress(position, max(head, position))
            if len(notifications) < batch_size:
                break
    # What was committed while the pass ran.
    return applied + max((runner.catch_up() for runner in runners), default=0)


@contextmanager
def _young_garbage_only() -> Iterator[None]:
    """No automatic collection of the cyclic garbage collector during the pass (the caller
    collects the young generations after each batch); as it was afterwards.

    A pass allocates millions of objects, so the collector ran hundreds of times, and each
    full collection went through every object of the process, the mirrors' rows included
    (`projections.mirror`): a quarter to a third of the pass's CPU time. The rows a pass
    makes are freed by reference counting; the young collections after each batch take
    whatever cycles it made. A rebuild runs before a process serves (`serve`, `project`
    check their read models first) or in a command of its own, so pausing the collector,
    which is process-wide, holds up nothing else.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Appliers:
    """Applies each batch to every projection; on PostgreSQL each projection in a thread
    of its own, while the caller reads and decodes the next batch.

    Each projection's batches are applied in order, one at a time; at most two batches
    are held (the one being applied and the one being decoded). While one thread waits
    for PostgreSQL (a preload, the write, the commit) the others use the interpreter.
    On SQLite the writers would only queue for its one write lock: there, in turn.
    """

    def __init__(self, runners: Sequence[ProjectionRunner]) -> None:
        self.runners = list(runners)
        threaded = all(r.view.engine.dialect.name == "postgresql" for r in runners)
        self._pools = (
            {r.name: ThreadPoolExecutor(1, f"rebuild-{r.name}") for r in runners}
            if threaded and len(runners) > 1
            else {}
        )
        self._pending: list[Future[None]] = []

    def __enter__(self) -> _Appliers:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._wait()
        finally:
            for pool in self._pools.values():
                pool.shutdown(cancel_futures=True)

    def apply(self, items: list[tuple[Any, int]], *, upto: int, after: int) -> None:
        self._wait()
        for runner in self.runners:
            pool = self._pools.get(runner.name)
            if pool is None:
                self._apply(runner, items, upto, after)
            else:
                self._pending.append(pool.submit(self._apply, runner, items, upto, after))

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _apply(
        self, runner: ProjectionRunner, items: list[tuple[Any, int]], upto: int, after: int
    ) -> None:
        runner.apply(items, upto=upto, after=after)
