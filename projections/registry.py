"""Every read model, built over one engine, with a runner each."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import Engine, select

from application.auto_reply import AutoReplies
from application.ledger import Ledger
from application.ledger_writer import LedgerWriter
from application.ports import Clock
from projections.auto_reply import AutoReplyPolicy, PolicyPosition
from projections.comments.projection import Comments
from projections.comments.view import CommentsView
from projections.conversation_list.projection import ConversationList
from projections.conversation_list.view import ConversationListView
from projections.definitions import outdated
from projections.follower import Follower
from projections.message_history.projection import MessageHistory
from projections.message_history.view import MessageHistoryView
from projections.outbox.projection import Outboxes
from projections.outbox.view import OutboxView
from projections.parked import ParkedEvent, parked_counts, parked_events
from projections.projection import LedgerProjection
from projections.rebuild import rebuild
from projections.runner import Progress, ProjectionRunner
from projections.schema import tracking
from projections.shared_reading import SharedReading


class ProjectionHealth(msgspec.Struct, frozen=True):
    """How far one projection has followed the log."""

    name: str
    position: int
    head: int
    parked: int
    """Events it skipped because it failed on them (see `projections.parked`)."""

    @property
    def lag(self) -> int:
        return self.head - self.position


class ProjectionBusy(Exception):
    """A runner of another process is following this read model: rebuilding it now would
    race with that runner (both write its rows and its position)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass
class ReadModels:
    """The read models of one process and the runners that keep them up to date."""

    ledger: Ledger
    conversation_list: ConversationListView
    message_history: MessageHistoryView
    outbox: OutboxView
    comments: CommentsView
    runners: dict[str, ProjectionRunner]
    followers: list[Follower]
    """One follows the log for the conversation list (what a user waits to see), one for
    the other read models of this process, in one transaction a batch, and one for the
    auto-reply policy, whose decisions wait for the ledger's writer (the read models, and
    their lag, must not wait with them)."""
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(
        cls,
        ledger: Ledger,
        engine: Engine,
        writer: LedgerWriter,
        auto_replies: AutoReplies,
        *,
        clock: Clock,
    ) -> ReadModels:
        conversation_list = ConversationListView(engine)
        message_history = MessageHistoryView(engine)
        policy_position = PolicyPosition(engine)
        outbox = OutboxView(engine)
        comments = CommentsView(engine)
        projections: list[LedgerProjection[Any]] = [
            ConversationList(conversation_list),
            MessageHistory(message_history),
            Outboxes(outbox),
            Comments(comments),
            AutoReplyPolicy(policy_position, writer, auto_replies),
        ]
        for projection in projections:
            projection.view.create_tables()
        if policy_position.max_tracking_id(ledger.name) is None:
            # Automation acts on what arrives after it first ran, never on the past.
            from eventsourcing.persistence import Tracking

            head = ledger.recorder.max_notification_id() or 0
            policy_position.insert_tracking(Tracking(ledger.name, head))
        # Three followers (`projections.follower`), each a thread, reading the log through
        # one shared reading (each batch read and decoded once for all): the conversation
        # list alone, what a user waits to see, so that its batch commits without waiting
        # for the other views' Python and statements (P2 in benchmarks/README.md); the
        # other read models, each batch in one transaction; the auto-reply policy, whose
        # decisions wait for the ledger's writer.
        reading = SharedReading(ledger)
        runners = {
            p.name: ProjectionRunner(ledger, p, clock=clock, reading=reading, follow_commits=False)
            for p in projections
        }
        listed = runners[conversation_list.name]
        groups = [
            [listed],
            [r for r in runners.values() if r is not listed and not r.projection.acts],
            [r for r in runners.values() if r.projection.acts],
        ]
        followers = [Follower(ledger, group, reading=reading) for group in groups]
        return cls(ledger, conversation_list, message_history, outbox, comments, runners, followers)

    def start(self, *, catch_up_share: float = 1.0) -> None:
        """Follow the log for every projection in a thread of this process; `catch_up_share`
        below 1 makes it pause while it follows a backlog (`ProjectionRunner.catch_up_share`)."""
        if self._threads:
            return
        self._stop.clear()
        for follower in self.followers:
            follower.catch_up_share = catch_up_share
            # Named after what it follows, for an operator reading a thread dump or py-spy.
            name = "projections:" + ",".join(r.name for r in follower.runners)
            thread = threading.Thread(
                target=follower.run, args=(self._stop,), name=name, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for follower in self.followers:
            follower.wakeup.notify()
        for thread in self._threads:
            thread.join(10)
        self._threads.clear()

    def catch_up(self) -> None:
        """Apply the whole log to every read model, here and now (tests, the CLI)."""
        for follower in self.followers:  # the read models first, then the policy
            follower.catch_up()

    def outdated(self) -> list[str]:
        """The rebuildable read models whose rows another definition version built: they
        must be rebuilt before this code follows them (`projections.definitions`)."""
        views = [runner.view for runner in self.rebuildable().values()]
        return outdated(self.conversation_list.engine, views)

    def rebuildable(self) -> dict[str, ProjectionRunner]:
        """The runners of read models that can be dropped and rebuilt from the log."""
        return {n: r for n, r in self.runners.items() if r.projection.rebuildable}

    def rebuild(
        self, names: Sequence[str] | None = None, *, progress: Progress | None = None
    ) -> int:
        """Drop these read models (every rebuildable one by default) and rebuild them from
        the log in one pass; the number of notifications applied. KeyError for a name that
        is not a rebuildable read model; `ProjectionBusy`, before anything is dropped, for
        one another process's runner is following (on PostgreSQL, where runners lock)."""
        rebuildable = self.rebuildable()
        chosen = [rebuildable[name] for name in (names or rebuildable)]
        with ExitStack() as held:
            for runner in chosen:
                if not held.enter_context(runner.exclusively()):
                    raise ProjectionBusy(runner.name)
            return rebuild(chosen, progress=progress)

    def parked(self) -> list[ParkedEvent]:
        """Every event a projection parked, in log order."""
        return parked_events(self.conversation_list.engine)

    def retry_parked(self, names: Sequence[str] | None = None) -> tuple[int, int]:
        """Apply the parked events of these projections (all by default) again; how many
        were applied, and how many still fail."""
        applied = failing = 0
        for name in names or self.runners:
            done, left = self.runners[name].retry_parked()
            applied += done
            failing += left
        return applied, failing

    def health(self) -> list[ProjectionHealth]:
        """Each projection's position, the log's head, and its parked events, read now."""
        head = self.ledger.recorder.max_notification_id() or 0
        with self.conversation_list.engine.connect() as conn:
            counts = parked_counts(conn)
            positions = {
                row.projection: int(row.notification_id)
                for row in conn.execute(
                    select(tracking.c.projection, tracking.c.notification_id).where(
                        tracking.c.application_name == self.ledger.name
                    )
                )
            }
        return [
            ProjectionHealth(
                name=name,
                position=positions.get(name, 0),
                head=max(head, positions.get(name, 0)),
                parked=counts.get(name, 0),
            )
            for name in self.runners
        ]

    def wait_for(self, name: str, timeout: float = 5.0) -> None:
        """Wait until read model `name` has applied everything committed so far."""
        head = self.ledger.recorder.max_notification_id()
        self.runners[name].view.wait(self.ledger.name, head, timeout=timeout)
