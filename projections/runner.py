"""Runs a projection: follows the ledger's notification log and applies it in batches.

eventsourcing's own `ProjectionRunner` applies one event per transaction and builds its
own application instance; here one transaction carries a batch of events (rows and
tracking together), which is what makes a rebuild fast, and the runner shares the
process's ledger. In a process, one follower (`projections/follower.py`) follows the log
for every runner and writes their batches in one transaction; a runner applies a batch on
its own in a rebuild, in tests, and when its projection fails on an event (the poison
path). Only one process follows a projection at a time; others wait as standbys
(`projections/runner_lock.py`).

A little over 300 lines: following the log, applying a batch, and the poison path
(each event alone, then parked, later retried) share the runner's position and its
view's transaction, and read best in one place; parking's table is `projections/parked.py`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

from eventsourcing.persistence import Notification, Tracking
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from application.errors import StorageUnavailable
from application.ledger import Ledger
from application.ports import Clock
from projections.parked import describe, park, parked_events, still_failing, unpark
from projections.projection import LedgerProjection
from projections.runner_lock import LockSession, RunnerLock
from projections.shared_reading import Read, SharedReading, decode
from projections.view import Batch, SqlView, ViewMovedOn

log = logging.getLogger(__name__)

BACKLOG_BATCHES = 10
"""A runner this many batches behind the head is following a backlog (see
`ProjectionRunner.catch_up_share`); under steady load a runner is a batch or two behind
at most, and must not pause, or it would fall further behind."""

Progress = Callable[[int, int], None]
"""Called with (position reached, head of the log) after each batch."""


def is_poison(error: BaseException) -> bool:
    """Whether `error` comes from the event being applied rather than from the database.

    A poison is retried a few times and then parked: a value the database refuses
    (DataError: a NUL, an integer out of range), a constraint it breaks (IntegrityError),
    or a handler's own exception. The database being away or refusing every statement
    (OperationalError, InterfaceError, a missing table: ProgrammingError) is no event's
    fault: the batch waits and is tried again, however long that takes.
    """
    if isinstance(error, ViewMovedOn | StorageUnavailable):
        return False
    if isinstance(error, DBAPIError):
        return isinstance(error, DataError | IntegrityError) and not error.connection_invalidated
    persistence = getattr(error, "__module__", "").startswith(("eventsourcing", "psycopg"))
    return not persistence and isinstance(error, Exception)


class Wakeup:
    """Something new may be in the log: wakes a waiting runner.

    In a web process each commit wakes a runner twice, by the ledger's commit hook and a
    moment later by PostgreSQL's NOTIFY; both usually arrive before the runner follows
    the log. So a wake-up is cleared when the runner starts following (what it reads
    covers it), not when it wakes: half the runners' batches were empty re-reads.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)

    def clear(self) -> None:
        """The runner is about to read the log: earlier wake-ups are answered."""
        self._event.clear()


class ProjectionRunner:
    """Keeps one projection's view up to date with the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        projection: LedgerProjection[Any],
        *,
        clock: Clock,
        batch_size: int = 1000,
        poll_seconds: float = 0.5,
        gather_seconds: float = 0.025,
        attempts: int = 3,
        follow_commits: bool = True,
        reading: SharedReading | None = None,
    ) -> None:
        self.ledger = ledger
        self.reading = reading
        """The log as this process's runners read it together (`projections.shared_reading`);
        None: this runner reads it on its own (a rebuild's, or a test's)."""
        self.projection = projection
        self.clock = clock
        """When an event is parked, and retried."""
        self.view: SqlView = projection.view
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.gather_seconds = gather_seconds
        """How long to let commits gather before following the log again, counted from
        when the last catch-up started (`projections.follower`).

        Each catch-up costs several round trips and some Python whatever its size, and
        a web process commits dozens of times a second: waking on each commit made the
        runners take most of the GIL from the requests. This bounds each follower to
        about 1/gather_seconds catch-ups a second, and adds at most that to the lag."""
        self.wakeup = Wakeup()
        self.following = threading.Event()
        """Set while this runner is the active one and hears other processes' commits
        (on PostgreSQL: it holds the projection's lock and LISTENs)."""
        self.catch_up_share = 1.0
        """The share of the time the runner takes while it follows a backlog. Below 1 it
        pauses after each full batch read more than `BACKLOG_BATCHES` batches behind the
        head: runners in a web process share its interpreter with the requests, and a
        restart with a backlog kept webhooks waiting for seconds (once 20 s, Meta's
        timeout) until they caught up."""
        if follow_commits:  # not a rebuild's runner, which lives only as long as it
            ledger.on_commit(self.wakeup.notify)
        self._unknown_topics: set[str] = set()
        self.attempts = attempts
        """How many times an event that fails is tried before it is parked."""

    @property
    def name(self) -> str:
        return self.view.name

    def position(self) -> int:
        """The last notification the view has applied."""
        return self.view.max_tracking_id(self.ledger.name) or 0

    def catch_up(self, *, progress: Progress | None = None) -> int:
        """Apply everything in the log after the view's position; the number of notifications."""
        head = self.ledger.recorder.max_notification_id() or 0 if progress else 0
        return self._follow(self.position(), progress, head)[1]

    def _follow(
        self, position: int, progress: Progress | None = None, head: int = 0
    ) -> tuple[int, int]:
        """Apply the log after `position`; the position reached, and how many were applied.

        Stops at a batch shorter than `batch_size`: that was the head of the log, and a
        later commit wakes the runner again.
        """
        applied = 0
        started = time.monotonic()
        while True:
            read = self._read(position + 1)
            if read.last is None:
                return position, applied
            try:
                self.apply(read.items, upto=read.last, after=position)
            except ViewMovedOn:
                # Another runner got there first (its batch, not ours, was written).
                position = self.position()
                continue
            position = read.last
            applied += read.count
            if progress is not None:
                progress(position, max(head, position))
            if read.count == self.batch_size and self.catch_up_share < 1:
                # More to come. Far behind (a backlog, not a busy moment): leave the
                # interpreter to the process's other work a while.
                head = self.ledger.recorder.max_notification_id() or 0
                if head - position > BACKLOG_BATCHES * self.batch_size:
                    busy = time.monotonic() - started
                    self._pause(busy * (1 / self.catch_up_share - 1))
            started = time.monotonic()
            if read.count < self.batch_size:
                return position, applied

    def _read(self, start: int) -> Read:
        """A batch of the log from `start`: through the process's shared reading if the
        runner has one, else its own."""
        if self.reading is not None:
            return self.reading.read(start, self.batch_size)
        notifications = self.ledger.recorder.select_notifications(
            start=start, limit=self.batch_size
        )
        return Read(
            items=self.decode_all(notifications),
            last=notifications[-1].id if notifications else None,
            count=len(notifications),
        )

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    # -- applying ------------------------------------------------------------------------

    def decode_all(self, notifications: Sequence[Notification]) -> list[tuple[Any, int]]:
        """The (event, position) pairs of the notifications that decode, their content
        opened (the batch's data keys in one query, see `application.content`)."""
        items = [(e, n.id) for n in notifications if (e := self.decode(n)) is not None]
        self.ledger.open_content((e for e, _ in items), recent=True)
        return items

    def apply(self, items: list[tuple[Any, int]], *, upto: int, after: int) -> None:
        """Apply decoded (event, position) pairs that follow `after`, moving the view to
        `upto`, in one transaction; `ViewMovedOn` if the view is no longer at `after`.

        When the batch fails on an event (not on the database being away), the events are
        applied one by one instead, so that only the bad one is held back: it is tried
        `attempts` times, then parked (see `projections.parked`) and the view moves on.
        """
        try:
            self.projection.act(items)
            self.view.apply(
                Tracking(self.ledger.name, upto),
                lambda batch: self.project_batch(batch, items),
                after=after,
            )
        except Exception as error:
            if not is_poison(error):
                raise
            log.warning(
                "projection %s failed on a batch (%s); applying it event by event",
                self.name,
                describe(error),
            )
            self.apply_alone(items, upto=upto, after=after)

    def apply_alone(self, items: list[tuple[Any, int]], *, upto: int, after: int) -> None:
        """Apply a batch event by event, each in a transaction of its own: an event that
        still fails after `attempts` is parked, and the view moves on to `upto`."""
        position = after
        for item in items:
            failure: Exception | None = None
            for _ in range(self.attempts):
                try:
                    self.projection.act([item])
                    self.view.apply(
                        Tracking(self.ledger.name, item[1]),
                        partial(self.project_batch, items=[item]),
                        after=position,
                    )
                except Exception as error:
                    if not is_poison(error):
                        raise
                    failure = error
                else:
                    failure = None
                    break
            if failure is not None:
                self._park(item, failure, after=position)
            position = item[1]
        if position != upto:  # the batch ended with events this projection could not decode
            self.view.apply(Tracking(self.ledger.name, upto), lambda _: None, after=position)

    def _park(self, item: tuple[Any, int], error: Exception, *, after: int) -> None:
        event, position = item
        log.error(
            "projection %s parks the event at %d (%s of %s): it failed %d times, last with %s; "
            "`dmledger projections retry-parked` applies it again",
            self.name,
            position,
            type(event).TOPIC,
            event.originator_id,
            self.attempts,
            describe(error),
        )
        self.view.apply(
            Tracking(self.ledger.name, position),
            lambda batch: park(
                batch.conn,
                self.name,
                self.ledger.name,
                event,
                position,
                error,
                self.attempts,
                at=self.clock.now_ms(),
            ),
            after=after,
        )

    def retry_parked(self) -> tuple[int, int]:
        """Apply this projection's parked events again, in log order, each in a transaction
        of its own; (how many now applied, how many still fail). Runs beside a live runner:
        the view's position row is locked for each, so they take turns."""
        applied = failing = 0
        for parked in parked_events(self.view.engine, self.name):
            found = self.ledger.recorder.select_notifications(start=parked.notification_id, limit=1)
            event = self.decode(found[0]) if found else None
            if event is None or found[0].id != parked.notification_id:
                failing += 1
                continue
            self.ledger.open_content([event])
            item = (event, parked.notification_id)
            try:
                self.projection.act([item])
                self.view.reapply(partial(self._unpark, item=item))
            except Exception as error:
                if not is_poison(error):
                    raise
                still_failing(
                    self.view.engine,
                    self.name,
                    parked.notification_id,
                    error,
                    at=self.clock.now_ms(),
                )
                failing += 1
            else:
                log.info("projection %s applied the parked event at %d", self.name, item[1])
                applied += 1
        return applied, failing

    def _unpark(self, batch: Batch, item: tuple[Any, int]) -> None:
        self.project_batch(batch, [item])
        unpark(batch.conn, self.name, item[1])

    def project_batch(self, batch: Batch, items: list[tuple[Any, int]]) -> None:
        """The projection's change of a batch's rows for these events."""
        self.projection.preload(batch, items)
        self.projection.project(batch, items)

    def decode(self, notification: Notification) -> Any:
        """The notification's domain event, or None (logged once a topic) if it cannot be."""
        return decode(self.ledger, notification, self._unknown_topics, f"projection {self.name}")

    # -- one runner per projection -------------------------------------------------------

    def exclusively(self) -> AbstractContextManager[bool]:
        """The projection's lock, if no other runner holds it (a rebuild takes it): True
        while held; False at once if another process's runner is following the log."""
        return self.lock(threading.Event(), wait=False, listen=False)

    def lock(
        self,
        stop: threading.Event,
        *,
        wait: bool = True,
        listen: bool = True,
        session: LockSession | None = None,
    ) -> RunnerLock:
        """The projection's lock (`projections.runner_lock`), on `session` or on a session
        of its own: waits for it unless told not to; while held, it is woken by other
        processes' commits unless told not to."""
        return RunnerLock(
            self.name,
            self.view.engine,
            events_channel=self.ledger.name.lower() + "_events",
            wake=self.wakeup.notify,
            following=self.following,
            stop=stop,
            wait=wait,
            listen=listen,
            session=session,
        )
