"""One follower for every read model of a process: each batch of the log read and decoded
once, applied to every projection, and committed in one transaction (their tracking rows
included; the auto-reply policy, which acts, in a second).

Five runners, each committing its own transaction a batch, paid a batch's fixed cost
(statements, a pool checkout, BEGIN and COMMIT) five times. The follower groups the
projections that stand at the same position: one transaction writes every read model's
rows, and their tracking rows in one statement; then a projection with side effects (the
auto-reply policy, `LedgerProjection.act`) acts and moves its own position in a second.
(A process gives the policy a follower of its own, `projections.registry`: its decisions
wait for the ledger's writer, and the read models' lag must not wait with them. It gives
the conversation list one too: what a user waits to see then commits without waiting
for the other views' Python and statements.)
If a projection fails in a transaction, the transaction is rolled back and the batch
written again with each projection inside a savepoint of its own: what the failing one
did is rolled back to its savepoint, the others' work commits, and that projection applies
the batch on its own, event by event, parking what it keeps failing on
(`ProjectionRunner.apply_alone`); it then stands with the others again. (Savepoints
always would cost two statements a projection a batch; failures are rare.)

A projection behind the others (a new read model, one rebuilt or dropped) follows on its
own, in batches that stop where the next one stands, and joins it there: the others never
wait for it. Each projection keeps its own tracking row and its own lock
(`projections.runner_lock`): the follower works only the projections whose lock it holds,
and tries for the others every second, as a standby. A projection whose batch fails on
the database rather than on an event (a missing table, the storage refusing) rests a
second and tries again, while the others go on.

Under 400 lines: following, the two ways of writing a batch and the loop that
holds the locks share the group's positions and its resting projections, and read best
in one place (as `projections/runner.py` does for one projection).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from functools import partial
from typing import Any

from eventsourcing.persistence import Tracking
from sqlalchemy.exc import DBAPIError

from application.ledger import Ledger
from projections.parked import describe
from projections.runner import BACKLOG_BATCHES, ProjectionRunner, Wakeup, is_poison
from projections.runner_lock import LockSession
from projections.schema import tracking, upsert_many, writing
from projections.shared_reading import Read, SharedReading
from projections.view import ViewMovedOn
from projections.view import positions as stored_positions

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
"""How long a projection whose batch failed on the database rests, and how often a
standby tries for the locks it does not hold."""

Items = list[tuple[Any, int]]


class Follower:
    """Keeps every read model of a process up to date with the ledger, together."""

    def __init__(
        self,
        ledger: Ledger,
        runners: Sequence[ProjectionRunner],
        *,
        reading: SharedReading | None = None,
        follow_commits: bool = True,
    ) -> None:
        self.ledger = ledger
        self.runners = list(runners)
        self.reading = reading
        self.wakeup = Wakeup()
        for runner in self.runners:
            runner.wakeup = self.wakeup  # what their locks' LISTEN wakes
        if follow_commits:
            ledger.on_commit(self.wakeup.notify)
        self.catch_up_share = 1.0
        """As `ProjectionRunner.catch_up_share`, for the whole group."""
        self._resting: dict[str, float] = {}
        """Projections whose batch failed on the database, and until when they rest."""
        self._stopping: threading.Event | None = None

    # -- following ------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply everything in the log to every projection, here and now (no locks); the
        number of notifications the furthest behind was moved over."""
        return self._follow(self.positions())

    def positions(self, runners: Sequence[ProjectionRunner] | None = None) -> dict[str, int]:
        """Where each projection (of `runners`, all by default) stands, read now."""
        names = [runner.name for runner in runners or self.runners]
        with self.runners[0].view.engine.connect() as conn:
            return stored_positions(conn, self.ledger.name, names)

    def _follow(self, positions: dict[str, int]) -> int:
        """Move the projections named in `positions` (updated in place) to the head.

        Each step takes the projections furthest behind and applies the next batch to
        them together, stopping where the next ones stand, so that they join them.
        """
        by_name = {runner.name: runner for runner in self.runners}
        applied = 0
        started = time.monotonic()
        while True:
            now = time.monotonic()
            working = {n: p for n, p in positions.items() if self._resting.get(n, 0) <= now}
            if not working:
                return applied
            lowest = min(working.values())
            cohort = [by_name[n] for n, p in working.items() if p == lowest]
            ahead = [p for p in working.values() if p > lowest]
            joins = min(ahead) if ahead else None
            limit = min(runner.batch_size for runner in cohort)
            if joins is not None:
                limit = min(limit, joins - lowest)
            read = self._read(lowest + 1, limit)
            if read.last is None:
                if joins is None:
                    return applied
                upto, items = joins, []  # past the head? Nothing to apply up to the next
            else:
                upto, items = read.last, read.items
                if joins is not None and upto > joins:  # gaps in the ids: stop where it joins
                    upto, items = joins, [i for i in items if i[1] <= joins]
            self.apply(cohort, items, upto=upto, after=lowest, positions=positions)
            applied += read.count
            if read.count == limit and self._share() < 1:
                head = self.ledger.recorder.max_notification_id() or 0
                if head - upto > BACKLOG_BATCHES * limit:
                    busy = time.monotonic() - started
                    self._pause(busy * (1 / self._share() - 1))
            started = time.monotonic()
            if joins is None and read.count < limit:
                return applied

    def _read(self, start: int, limit: int) -> Read:
        if self.reading is not None:
            return self.reading.read(start, limit, reader=self)
        notifications = self.ledger.recorder.select_notifications(start=start, limit=limit)
        return Read(
            items=self.runners[0].decode_all(notifications),
            last=notifications[-1].id if notifications else None,
            count=len(notifications),
        )

    def _share(self) -> float:
        return min([self.catch_up_share, *(r.catch_up_share for r in self.runners)])

    def _pause(self, seconds: float) -> None:
        if self._stopping is not None:
            self._stopping.wait(seconds)
        else:
            time.sleep(seconds)

    # -- applying -------------------------------------------------------------------------

    def apply(
        self,
        cohort: Sequence[ProjectionRunner],
        items: Items,
        *,
        upto: int,
        after: int,
        positions: dict[str, int],
    ) -> None:
        """Apply a batch to projections that all stand at `after`, moving them to `upto`;
        `positions` says where each stands afterwards.

        The read models are written in one transaction; then those that act (the auto-reply
        policy) act and are written in a second: their side effects wait for the ledger's
        writer, and the read models' readers (and their lag) must not wait with them.
        """
        alone: list[tuple[ProjectionRunner, Exception]] = []
        for acting in (False, True):
            acted: list[ProjectionRunner] = []
            for runner in [r for r in cohort if r.projection.acts == acting]:
                try:
                    runner.projection.act(items)
                except Exception as error:
                    self._failed(runner, error, alone)
                else:
                    acted.append(runner)
            if acted and not self._write_together(acted, items, upto=upto, after=after):
                alone += self._write(acted, items, upto=upto, after=after, positions=positions)
            elif acted:
                for runner in acted:
                    positions[runner.name] = upto
        for runner, cause in alone:
            log.warning(
                "projection %s failed on a batch (%s); applying it event by event",
                runner.name,
                describe(cause),
            )
            try:
                runner.apply_alone(items, upto=upto, after=after)
            except ViewMovedOn:
                positions[runner.name] = runner.position()
            except Exception as failure:
                self._rest(runner, failure)
            else:
                positions[runner.name] = upto

    def _write_together(
        self, runners: Sequence[ProjectionRunner], items: Items, *, upto: int, after: int
    ) -> bool:
        """One transaction, no savepoints: every projection's rows, then their tracking
        rows in one statement. False, with nothing written, if any of them fails or stands
        elsewhere: `_write` then sorts them out, each in a savepoint (failures are rare,
        and a savepoint costs two statements a projection)."""
        record = Tracking(self.ledger.name, upto)
        names = [runner.name for runner in runners]
        try:
            with writing(runners[0].view.engine) as conn:
                if set(
                    stored_positions(conn, record.application_name, names, lock=True).values()
                ) != {after}:
                    raise ViewMovedOn(f"not all of {names} are at {after}")
                news = [
                    runner.view.write_rows(conn, partial(runner.project_batch, items=items))
                    for runner in runners
                ]
                rows = [runner.view.tracking_row(record) for runner in runners]
                upsert_many(conn, tracking, rows, keys=["projection"])
        except Exception as error:
            if isinstance(error, DBAPIError) and error.connection_invalidated:
                raise
            return False
        for runner, is_news in zip(runners, news, strict=True):
            runner.view.applied(is_news)
        return True

    def _write(
        self,
        runners: Sequence[ProjectionRunner],
        items: Items,
        *,
        upto: int,
        after: int,
        positions: dict[str, int],
    ) -> list[tuple[ProjectionRunner, Exception]]:
        """One transaction: each projection's rows and tracking in a savepoint of its own,
        so that what fails rolls back alone. The projections whose batch failed on an
        event, with the error."""
        tracking = Tracking(self.ledger.name, upto)
        done: list[tuple[ProjectionRunner, bool]] = []
        moved: list[ProjectionRunner] = []
        poisoned: list[tuple[ProjectionRunner, Exception]] = []
        with writing(runners[0].view.engine) as conn:
            for runner in runners:
                savepoint = conn.begin_nested()
                try:
                    news = runner.view.write(
                        conn, tracking, partial(runner.project_batch, items=items), after=after
                    )
                except ViewMovedOn:
                    savepoint.rollback()
                    moved.append(runner)
                except Exception as error:
                    savepoint.rollback()
                    self._failed(runner, error, poisoned)
                else:
                    savepoint.commit()
                    done.append((runner, news))
        for runner, news in done:
            positions[runner.name] = upto
            runner.view.applied(news)
        for runner in moved:  # another runner got there first (its batch, not ours)
            positions[runner.name] = runner.position()
        return poisoned

    def _failed(
        self,
        runner: ProjectionRunner,
        error: Exception,
        poisoned: list[tuple[ProjectionRunner, Exception]],
    ) -> None:
        """A projection's batch failed: on an event (to apply alone), or else it rests."""
        if is_poison(error):
            poisoned.append((runner, error))
        else:
            self._rest(runner, error)

    def _rest(self, runner: ProjectionRunner, error: Exception) -> None:
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            raise error  # the connection is gone: every projection waits
        log.warning("projection %s paused: %s", runner.name, describe(error))
        self._resting[runner.name] = time.monotonic() + RETRY_SECONDS

    # -- running, as the active follower of the projections whose lock it holds ----------

    def run(self, stop: threading.Event) -> None:
        """Follow the log until `stop` is set; survives database outages."""
        self._stopping = stop
        # The group's locks on one session (a session per projection was one connection
        # per projection and process, standbys included).
        locks = LockSession(self.runners[0].view.engine)
        held: dict[str, ExitStack] = {}
        positions: dict[str, int] = {}
        tried = started = 0.0
        gather = min(r.gather_seconds for r in self.runners)
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() - tried >= RETRY_SECONDS:
                        tried = time.monotonic()
                        if held and not locks.intact():
                            # The locks went with their session (an idle timeout, a
                            # terminated backend): another process may follow them now.
                            log.warning(
                                "projections %s: lost the session holding their locks; "
                                "taking them again",
                                ", ".join(held),
                            )
                            self._release(held, positions)
                        for runner in self._take_locks(held, stop, locks):
                            # While it holds the lock this process alone moves the position.
                            positions[runner.name] = runner.position()
                    self.wakeup.clear()
                    started = time.monotonic()
                    if positions:
                        self._follow(positions)
                    waiting = [r.poll_seconds for r in self.runners if r.name in held]
                    if len(held) < len(self.runners) or self._resting:
                        waiting.append(RETRY_SECONDS)
                    self.wakeup.wait(min(waiting))
                    # Commits gather until `gather` after this catch-up started, not after
                    # the wake-up: no more catch-ups a second, but one that took longer
                    # than that is followed at once rather than after a further sleep.
                    stop.wait(max(0.0, started + gather - time.monotonic()))
                except DBAPIError as error:
                    log.warning("projections paused: %s", error.orig or error)
                    self._release(held, positions)
                    stop.wait(RETRY_SECONDS)
                except Exception:
                    log.exception("projections failed; retrying")
                    self._release(held, positions)
                    stop.wait(RETRY_SECONDS)
        finally:
            self._release(held, positions)
            locks.close()

    def _take_locks(
        self, held: dict[str, ExitStack], stop: threading.Event, locks: LockSession
    ) -> list[ProjectionRunner]:
        """Take the locks of the projections no other process follows; those now held."""
        taken: list[ProjectionRunner] = []
        for runner in self.runners:
            if runner.name in held:
                continue
            stack = ExitStack()
            try:
                holding = stack.enter_context(runner.lock(stop, wait=False, session=locks))
            except BaseException:
                stack.close()
                raise
            if holding:
                held[runner.name] = stack
                taken.append(runner)
            else:
                stack.close()
        return taken

    @staticmethod
    def _release(held: dict[str, ExitStack], positions: dict[str, int]) -> None:
        for stack in held.values():
            stack.close()
        held.clear()
        positions.clear()
